// A machine's virtio configuration turned into devices: each device's index
// within its kind names it and gives a network device its default MAC.
import { closeSync, openSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import type { VirtioDeviceConfig } from '../src/machine/config.ts';
import { indexesWithinKind, openVirtioDevice } from '../src/machine/virtio-devices.ts';

/** /dev/null stands in for a TAP device: opening a net device only keeps the fd. */
const devNull = openSync('/dev/null', 'r+');
afterAll(() => closeSync(devNull));

const noConsole = { console: { write: () => {}, read: () => null } };
const macOf = (config: Uint8Array) => Array.from(config.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(':');

describe('virtio devices from the machine configuration', () => {
  const configs: VirtioDeviceConfig[] = [
    { kind: 'rng' },
    { kind: 'net', tapFd: devNull },
    { kind: 'console' },
    { kind: 'net', tapFd: devNull },
    { kind: 'net', tapFd: devNull, mac: '52:54:00:aa:bb:cc' },
  ];

  it('counts each kind on its own', () => {
    expect(indexesWithinKind(configs)).toEqual([0, 0, 0, 1, 2]);
  });

  it('names each device by kind and index, and gives the Nth network device 52:54:00:12:34:56 + N unless a MAC is given', () => {
    const devices = indexesWithinKind(configs).map((index, i) => openVirtioDevice(configs[i]!, index, noConsole));
    expect(devices.map((d) => d.info.name)).toEqual(['rng0', 'net0', 'console0', 'net1', 'net2']);
    expect(devices.filter((d) => d.info.name.startsWith('net')).map((d) => macOf(d.info.config))).toEqual([
      '52:54:00:12:34:56', '52:54:00:12:34:57', '52:54:00:aa:bb:cc',
    ]);
  });
});
