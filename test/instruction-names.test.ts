import { describe, expect, it } from 'vitest';
import { instructionName, KernelSymbols } from '../src/vcpu/index.ts';

describe('names of the instructions PVM cannot emulate (docs/pvm.md)', () => {
  it.each([
    ['f0 48 0f c7 0e', 'lock cmpxchg16b'],
    ['48 0f ae 2f', 'xrstor64'],
    ['0f ae 2f', 'xrstor'],
    ['f3 48 0f b8 c7', 'popcnt'],
    ['0f 01 ca', 'clac'],
    ['0f 01 cb', 'stac'],
    ['db e2', 'fnclex'],
    ['0f 77', 'emms'],
    ['df 45 f8', 'fild'],
    ['0f 01 c1', 'vmcall'],
    ['cc', 'int3'],
    ['9b', 'fwait'],
    ['0f 05', 'syscall'],
    ['f3 6e', 'rep outsb'],
  ])('%s is %s', (hex, name) => {
    expect(instructionName(Uint8Array.from(hex.split(' ').map((b) => parseInt(b, 16))))).toBe(name);
  });

  it('returns null for what it does not know', () => {
    expect(instructionName(Uint8Array.of(0x89, 0xc3))).toBeNull();
  });
});

describe('System.map lookup', () => {
  const symbols = KernelSymbols.parse([
    'ffffffff81000000 T _text',
    'ffffffff81000000 T startup_64',
    'ffffffff81001000 t fpu__drop',
    'ffffffff81002000 D some_data',
    'ffffffff81003000 T text_poke',
  ].join('\n'));

  it('names an address as symbol+offset, using text symbols only', () => {
    expect(symbols.lookup(0xffffffff8100102an)).toBe('fpu__drop+0x2a');
    expect(symbols.lookup(0xffffffff81002004n)).toBe('fpu__drop+0x1004');
    expect(symbols.lookup(0xffffffff81003000n)).toBe('text_poke');
  });

  it('reaches the vCPU thread whole: the transferable form (one typed array, one string) gives the same names', () => {
    const copy = KernelSymbols.fromTransferable(structuredClone(symbols.toTransferable()));
    expect(copy.size).toBe(symbols.size);
    for (const address of [0xffffffff81000000n, 0xffffffff8100102an, 0xffffffff81003000n, 0x1000n]) {
      expect(copy.lookup(address)).toBe(symbols.lookup(address));
    }
    expect(KernelSymbols.fromTransferable(KernelSymbols.parse('').toTransferable()).size).toBe(0);
  });

  it('has no name for addresses outside the kernel', () => {
    expect(symbols.lookup(0x1000n)).toBeNull();
    expect(symbols.lookup(0xffffffffa0000000n)).toBeNull();
  });
});
