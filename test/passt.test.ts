// passt as tsvmm starts it for `--net user` (src/network/passt.ts), without a
// guest: the test speaks for the guest on tsvmm's end of the socket, through
// the same StreamBackend the virtio-net device uses, and asks passt's DHCP
// server for an address. Stopping it ends passt.
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { ReadableWaiter } from '../src/kvm/index.ts';
import { StreamBackend } from '../src/devices/virtio/net-stream.ts';
import { PasstProcess, startUserNetworks } from '../src/network/passt.ts';
import { InputError } from '../src/errors.ts';
import type { MachineConfig } from '../src/machine/config.ts';
import { DhcpMessage, dhcpFrame, parseDhcpReply } from './helpers/dhcp-frames.ts';

const unavailable = spawnSync('passt', ['--version']).error !== undefined ? 'passt is not installed (Debian package passt)' : null;
if (unavailable) console.warn(`passt tests: skipped: ${unavailable}`);

const MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
const HEADER = 12;

const running: PasstProcess[] = [];
afterEach(async () => {
  for (const passt of running.splice(0)) {
    passt.stop();
    await passt.ended;
  }
});

describe.skipIf(unavailable !== null)('passt for --net user', () => {
  it('answers a DHCP discover on its socket with an offer: an address, the gateway, MTU 1500', () => {
    const passt = PasstProcess.start({ hostForwards: [] }, () => {});
    running.push(passt);
    const backend = new StreamBackend(passt.fd, 'passt');
    const xid = 0x7e57_0001;
    const discover = dhcpFrame(MAC, xid, [[53, [DhcpMessage.DISCOVER]], [55, [1, 3, 26]]]);
    // The frame as the guest hands it to the device: the virtio-net header first.
    expect(backend.send([new Uint8Array(HEADER), discover], HEADER + discover.length)).toBeNull();
    expect(backend.blocked).toBe(false);

    const waiter = new ReadableWaiter();
    const buffer = new Uint8Array(HEADER + 1514);
    const deadline = Date.now() + 10_000;
    let offer: ReturnType<typeof parseDhcpReply> = null;
    while (!offer && Date.now() < deadline && backend.failure === null) {
      if (waiter.wait([passt.fd], 200).length === 0) continue;
      for (let length = backend.receive([buffer], buffer.length); length > 0; length = backend.receive([buffer], buffer.length)) {
        const reply = parseDhcpReply(buffer.subarray(HEADER, length), xid);
        if (reply?.type === DhcpMessage.OFFER) offer = reply;
      }
    }
    expect(backend.failure).toBeNull();
    expect(offer).not.toBeNull();
    expect(offer!.yourIp).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(offer!.yourIp).not.toBe('0.0.0.0');
    expect(offer!.options.get(3)?.length).toBe(4);
    expect([...offer!.options.get(26) ?? []]).toEqual([0x05, 0xdc]);
  });

  it('stop() ends passt', async () => {
    const passt = PasstProcess.start({ hostForwards: [] }, () => {});
    passt.stop();
    const status = await Promise.race([passt.ended, new Promise<'timeout'>((done) => setTimeout(() => done('timeout'), 10_000))]);
    expect(status).not.toBe('timeout');
  });

  it('startUserNetworks gives each --net user device its passt socket and leaves the others alone', () => {
    const config = {
      memoryBytes: 1 << 20,
      virtio: [{ kind: 'net', user: { hostForwards: [] } }, { kind: 'net', tap: 'tap0' }, { kind: 'rng' }],
    } as MachineConfig;
    const started = startUserNetworks(config, () => {});
    try {
      const [user, tap, rng] = started.config.virtio!;
      expect(user).toMatchObject({ kind: 'net', streamFd: expect.any(Number) });
      expect(tap).toEqual({ kind: 'net', tap: 'tap0' });
      expect(rng).toEqual({ kind: 'rng' });
    } finally {
      started.stop();
    }
  });
});

describe('without passt', () => {
  it('--net user is one line naming the package', () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      expect(() => PasstProcess.start({ hostForwards: [] }, () => {})).toThrow(
        new InputError('--net user needs passt, which is not installed (Debian package passt)'),
      );
    } finally {
      process.env.PATH = path;
    }
  });
});
