import { describe, expect, it } from 'vitest';
import { DebugExit } from '../src/devices/debug-exit.ts';

describe('debug-exit (QEMU isa-debug-exit semantics)', () => {
  const statusFor = (offset: number, size: number, value: number) => {
    let status = -1;
    new DebugExit((s) => (status = s)).write(offset, size, value);
    return status;
  };

  it('a write of v ends with status (v << 1) | 1', () => {
    expect(statusFor(0, 1, 0)).toBe(1);
    expect(statusFor(0, 1, 0x2a)).toBe(85);
    expect(statusFor(0, 1, 0x7f)).toBe(255);
  });

  it('keeps the 8 bits a process exit status has', () => {
    expect(statusFor(0, 1, 0x80)).toBe(1);
    expect(statusFor(0, 2, 0x0102)).toBe(5);
  });
});
