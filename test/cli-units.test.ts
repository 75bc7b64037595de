import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT_FAILURE, EXIT_USAGE, exitStatusOf } from '../src/cli/errors.ts';
import { DebugExit } from '../src/devices/debug-exit.ts';
import { parseSize } from '../src/cli/size.ts';
import { parseMemory } from '../src/cli/run.ts';
import { InputError } from '../src/errors.ts';
import { KvmError } from '../src/kvm/index.ts';
import type { VcpuStop } from '../src/vcpu/index.ts';
import { ImageIoError } from '../src/storage/errors.ts';
import { HostFile } from '../src/storage/host-file.ts';
import { Qcow2CorruptionError } from '../src/storage/qcow2/corruption.ts';

describe('memory sizes', () => {
  it('reads units the way QEMU users write them', () => {
    expect(parseSize('256M')).toBe(256 * 2 ** 20);
    expect(parseSize('1G')).toBe(2 ** 30);
    expect(parseSize('1.5G')).toBe(1.5 * 2 ** 30);
    expect(parseSize('512')).toBe(512 * 2 ** 20);
    expect(parseSize('64KiB')).toBe(64 * 1024);
    expect(parseSize('lots')).toBeNull();
  });

  it('--mem refuses zero, nonsense, odd sizes and more than the host has', () => {
    expect(() => parseMemory('0')).toThrow(InputError);
    expect(() => parseMemory('1T')).toThrow(/more than this host/);
    expect(() => parseMemory('abc')).toThrow(/not a size/);
    expect(() => parseMemory('1000B')).toThrow(InputError);
    expect(parseMemory('64M')).toBe(64 * 2 ** 20);
  });
});

describe('exit statuses', () => {
  it('one table: input errors of every layer end with 2, host and KVM failures with 4, anything else is a bug', () => {
    // Errors from each layer that reads user input, as the layers throw them.
    expect(exitStatusOf(new InputError('--mem x: not a size'))).toBe(EXIT_USAGE);
    expect(exitStatusOf(new Qcow2CorruptionError('a.qcow2', 'L1 table past the end'))).toBe(EXIT_USAGE);
    expect(exitStatusOf(new InputError('kernel: not a bzImage'))).toBe(EXIT_USAGE);
    // An image the host fails to read or write is no fault of the user's input.
    expect(exitStatusOf(new ImageIoError('a.img: read of 512 bytes at offset 0 failed: EIO'))).toBe(EXIT_FAILURE);
    expect(exitStatusOf(new KvmError('KVM_CREATE_VM', 13))).toBe(EXIT_FAILURE);
    expect(exitStatusOf(new TypeError('x is undefined'))).toBeNull();
  });

  it('a failure of tsvmm, KVM or the host (4) is no status a debug-exit write can produce, nor one kvm-unit-tests\' runner calls PASS or SKIP', () => {
    expect(EXIT_FAILURE).toBe(4);
    const debugExitStatuses = new Set<number>();
    for (let v = 0; v < 0x200; v++) new DebugExit((status) => debugExitStatuses.add(status)).write(0, 2, v);
    expect(debugExitStatuses.has(EXIT_FAILURE)).toBe(false);
    expect(debugExitStatuses.has(EXIT_USAGE)).toBe(false);
    // scripts/vmm.bash: 1 (debug-exit of 0) is PASS, 77 SKIP, 124 a timeout, above 127 a signal; 0 a clean stop.
    expect([0, 1, 77, 124]).not.toContain(EXIT_FAILURE);
    expect(EXIT_FAILURE).toBeLessThan(128);
  });

  it('a read the host refuses on an image is an ImageIoError; a truncated image is an InputError', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-exit-'));
    try {
      const path = join(dir, 'short.img');
      writeFileSync(path, new Uint8Array(512));
      const file = HostFile.open(path, true);
      try {
        expect(() => file.readExactAt(new Uint8Array(1024), 0, 'the header')).toThrow(InputError);
      } finally {
        file.close();
      }
      // A real EIO: /proc/self/mem is a regular file, and address 0 is never mapped.
      const memory = HostFile.open('/proc/self/mem', true);
      try {
        expect(() => memory.readAt(new Uint8Array(16), 0)).toThrow(ImageIoError);
        expect(() => memory.readAt(new Uint8Array(16), 0)).toThrow(/EIO/);
      } finally {
        memory.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('stop causes', () => {
  it('a misspelt cause does not type-check (npm run typecheck fails on it)', () => {
    const stopped: VcpuStop = { cause: 'stopped', status: 0 };
    // @ts-expect-error: 'power-off' is not a StopCause ('poweroff' is)
    const misspelt: VcpuStop = { cause: 'power-off', status: 0 };
    expect([stopped.cause, misspelt.cause]).toEqual(['stopped', 'power-off']);
  });
});
