// What a multiboot kernel finds of "the BIOS" (src/boot/legacy-bios.ts): the
// real-mode IVT and its handlers, the BIOS data area, the 8259 masks, and KVM's
// PIT programmed as a BIOS leaves it. Then realmode-bios, a multiboot guest
// linked at 0x8000 like kvm-unit-tests' realmode.flat, drops to real mode under
// KVM and takes IRQ0 ticks through the PIC into the IVT, with tsvmm's PIT and
// with KVM's.
import { describe, expect, it } from 'vitest';
import { multibootFirmwarePath } from '../firmware/firmware.ts';
import {
  BDA_ADDRESS, BdaField, BIOS_MASTER_VECTOR_BASE, BIOS_PIC_UNMASKED, BIOS_SLAVE_VECTOR_BASE, pitProgrammedByBios, writeLegacyBios,
} from '../src/boot/legacy-bios.ts';
import { BootLayout, ramLayout } from '../src/layout.ts';
import { GuestMemory } from '../src/memory/index.ts';
import { hasKvm, tsvmm } from './helpers/kvm.ts';

const IRET = 0xcf;

function lowMemory() {
  const memory = GuestMemory.ofArrayBuffers([ramLayout(2 * 2 ** 20)[0]!]);
  memory.fill(0, 2 * 2 ** 20, 0xee);
  return memory;
}

/** The linear address an IVT entry points at (segment * 16 + offset). */
function vectorTarget(memory: GuestMemory, vector: number): number {
  return memory.readU16(vector * 4 + 2) * 16 + memory.readU16(vector * 4);
}

describe('the real-mode state a BIOS leaves', () => {
  it('every vector points into the BIOS segment: IRQ handlers for 0x08-0x0f and 0x70-0x77, a bare iret for the rest', () => {
    const memory = lowMemory();
    const layout = writeLegacyBios(memory);
    const handler = (offset: number) => BootLayout.BIOS_HANDLERS + offset;
    expect(vectorTarget(memory, BIOS_MASTER_VECTOR_BASE)).toBe(handler(layout.timer));
    for (let irq = 1; irq < 8; irq++) expect(vectorTarget(memory, BIOS_MASTER_VECTOR_BASE + irq)).toBe(handler(layout.masterIrq));
    for (let irq = 0; irq < 8; irq++) expect(vectorTarget(memory, BIOS_SLAVE_VECTOR_BASE + irq)).toBe(handler(layout.slaveIrq));
    for (const vector of [0, 7, 0x10, 0x13, 0x6f, 0x78, 0xff]) expect(vectorTarget(memory, vector)).toBe(handler(layout.iret));
    expect(memory.readU8(handler(layout.iret))).toBe(IRET);
    expect(memory.readU16(2)).toBe(0xf000); // segment F000, as SeaBIOS's handlers
  });

  it('the IRQ handlers acknowledge their PIC (EOI to 0x20, and to 0xa0 first for the slave) and end in iret', () => {
    const memory = lowMemory();
    const layout = writeLegacyBios(memory);
    const code = (from: number, to: number) => [...memory.read(BootLayout.BIOS_HANDLERS + from, to - from)];
    const timer = code(layout.timer, layout.masterIrq);
    const master = code(layout.masterIrq, layout.slaveIrq);
    const slave = code(layout.slaveIrq, layout.slaveIrq + 9);
    // mov al, 0x20; out 0x20, al
    expect(timer.join()).toContain([0xb0, 0x20, 0xe6, 0x20].join());
    expect(master).toEqual([0x50, 0xb0, 0x20, 0xe6, 0x20, 0x58, IRET]);
    expect(slave).toEqual([0x50, 0xb0, 0x20, 0xe6, 0xa0, 0xe6, 0x20, 0x58, IRET]);
    expect(timer.at(-1)).toBe(IRET);
    // add word [0x46c], 1; adc word [0x46e], 0: the BDA's tick count
    expect(timer.join()).toContain([0x83, 0x06, 0x6c, 0x04, 0x01, 0x83, 0x16, 0x6e, 0x04, 0x00].join());
  });

  it('the BIOS data area: COM1, the EBDA segment, 639 KiB of base memory, the tick count from 0', () => {
    const memory = lowMemory();
    writeLegacyBios(memory);
    expect(memory.readU16(BDA_ADDRESS + BdaField.COM1_PORT)).toBe(0x3f8);
    expect(memory.readU16(BDA_ADDRESS + BdaField.EBDA_SEGMENT)).toBe(0x9fc0);
    expect(memory.readU16(BDA_ADDRESS + BdaField.BASE_MEMORY_KIB)).toBe(639);
    expect(memory.readU32(BDA_ADDRESS + BdaField.TIMER_TICKS)).toBe(0);
    expect(memory.readU8(BDA_ADDRESS + 0xff)).toBe(0);
  });

  it('the 8259s: the timer and the cascade are open', () => {
    expect([...BIOS_PIC_UNMASKED].sort()).toEqual([0, 2]);
  });

  it("KVM's PIT: counter 0 as a rate generator, count 65536, LSB then MSB, gate high; counters 1 and 2 untouched", () => {
    const pit2 = new Uint8Array(112).fill(0xaa);
    pitProgrammedByBios(pit2);
    const view = new DataView(pit2.buffer);
    expect(view.getUint32(0, true)).toBe(0); // KVM loads 0 as 0x10000
    expect([pit2[9], pit2[10], pit2[12], pit2[13], pit2[14], pit2[15]]).toEqual([3, 3, 3, 2, 0, 1]);
    expect(pit2.subarray(24, 72).every((b) => b === 0xaa)).toBe(true);
    expect(() => pitProgrammedByBios(new Uint8Array(48))).toThrow(RangeError);
  });
});

describe('realmode-bios: a multiboot kernel in real mode, as realmode.flat runs', () => {
  const expected = (ticks: string) => [
    'ivt 08=F000:0001 10=F000:0000', // the timer handler follows the one-byte iret
    'pic imr=FA FF',
    'int10 returned',
    `ticks +${ticks}`,
    '',
  ].join('\n');

  for (const pit of ['tsvmm', 'kernel'] as const) {
    it.skipIf(!hasKvm)(`--pit ${pit}: three sti; hlt each end with an IRQ0 the BIOS handler counted and acknowledged`, () => {
      const r = tsvmm(['run', '-k', multibootFirmwarePath('realmode-bios'), '--pit', pit], { timeoutMs: 60_000 });
      const ticks = /ticks \+([0-9A-F]{4})/.exec(r.stdout)?.[1] ?? 'none';
      expect(r.stdout).toBe(expected(ticks));
      expect(parseInt(ticks, 16)).toBeGreaterThanOrEqual(3);
      expect(r.status).toBe(1);
    });
  }
});
