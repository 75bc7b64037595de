import { describe, expect, it } from 'vitest';
import { parseSize } from '../src/cli/size.ts';
import { parseMemory } from '../src/cli/run.ts';
import { UsageError } from '../src/cli/errors.ts';

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
    expect(() => parseMemory('0')).toThrow(UsageError);
    expect(() => parseMemory('1T')).toThrow(/more than this host/);
    expect(() => parseMemory('abc')).toThrow(/not a size/);
    expect(() => parseMemory('1000B')).toThrow(UsageError);
    expect(parseMemory('64M')).toBe(64 * 2 ** 20);
  });
});
