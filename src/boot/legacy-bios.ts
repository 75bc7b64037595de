// What a PC BIOS leaves behind when it starts a boot loader, for kernels that
// tsvmm starts without one (multiboot): the real-mode interrupt vector table,
// the few BIOS data area fields real-mode code reads, and the hardware
// interrupt handlers the table points at. With these, and the 8259s set up as
// BIOS_PIC_UNMASKED says, PIT IRQ0 keeps ticking at 18.2 Hz through the PIC
// into real mode as it does after SeaBIOS — which is what ends a real-mode
// `sti; hlt` (kvm-unit-tests' realmode.flat) when nothing else interrupts it.
//
// BIOS services (int 0x10, 0x13, 0x15, ...) are not provided: every vector
// other than a hardware interrupt's points at a bare `iret`.
import type { GuestMemory } from '../memory/index.ts';
import { BootLayout, IrqLayout, PortLayout } from '../layout.ts';

/** Where the real-mode IVT and the BIOS data area are (fixed by the PC). */
export const IVT_ADDRESS = 0x0;
const IVT_VECTORS = 256;
export const BDA_ADDRESS = 0x400;
export const BDA_SIZE = 0x100;

/** BIOS data area fields (offsets from 0x400). */
export const BdaField = {
  /** I/O port of COM1 (the first of four words). */
  COM1_PORT: 0x00,
  /** Segment of the extended BIOS data area. */
  EBDA_SEGMENT: 0x0e,
  /** KiB of conventional memory below the EBDA. */
  BASE_MEMORY_KIB: 0x13,
  /** IRQ0 ticks since midnight (a dword), which the timer handler counts. */
  TIMER_TICKS: 0x6c,
} as const;

/** The vectors a PC BIOS gives the 8259s' IRQ 0-7 and 8-15 (the same the PICs are programmed with). */
export const BIOS_MASTER_VECTOR_BASE = 0x08;
export const BIOS_SLAVE_VECTOR_BASE = 0x70;

/**
 * The 8259 inputs a BIOS leaves unmasked: the timer, whose handler is the one
 * the BIOS itself needs, and the slave's cascade.
 */
export const BIOS_PIC_UNMASKED: readonly number[] = [IrqLayout.PIT, 2];

/** The handlers' segment: the system BIOS's, F000. */
const HANDLER_SEGMENT = BootLayout.BIOS_HANDLERS >> 4;

const PIC_MASTER_COMMAND = 0x20;
const PIC_SLAVE_COMMAND = 0xa0;
const PIC_EOI = 0x20;

// The handlers, 16-bit code. Each saves what it uses and returns with iret.
const IRET = [0xcf];
/** IRQ0: count the tick in the BDA (as every BIOS does), then EOI. */
const TIMER_HANDLER = [
  0x50, //                                  push ax
  0x1e, //                                  push ds
  0x31, 0xc0, //                            xor ax, ax
  0x8e, 0xd8, //                            mov ds, ax
  0x83, 0x06, ...le16(BDA_ADDRESS + BdaField.TIMER_TICKS), 0x01, //     add word [0x46c], 1
  0x83, 0x16, ...le16(BDA_ADDRESS + BdaField.TIMER_TICKS + 2), 0x00, // adc word [0x46e], 0
  0xb0, PIC_EOI, //                         mov al, 0x20
  0xe6, PIC_MASTER_COMMAND, //              out 0x20, al
  0x1f, //                                  pop ds
  0x58, //                                  pop ax
  ...IRET,
];
/** Any other IRQ of the master PIC: EOI it. */
const MASTER_IRQ_HANDLER = [0x50, 0xb0, PIC_EOI, 0xe6, PIC_MASTER_COMMAND, 0x58, ...IRET];
/** An IRQ of the slave PIC: EOI the slave, then the master's cascade input. */
const SLAVE_IRQ_HANDLER = [0x50, 0xb0, PIC_EOI, 0xe6, PIC_SLAVE_COMMAND, 0xe6, PIC_MASTER_COMMAND, 0x58, ...IRET];

function le16(value: number): [number, number] {
  return [value & 0xff, value >> 8];
}

/** Where each handler went: offsets in the handler segment (for tests and traces). */
export interface LegacyBiosLayout {
  iret: number;
  timer: number;
  masterIrq: number;
  slaveIrq: number;
}

/**
 * Writes the handlers at BootLayout.BIOS_HANDLERS, the IVT pointing at them
 * and the BIOS data area. Returns where the handlers are.
 */
export function writeLegacyBios(memory: GuestMemory): LegacyBiosLayout {
  const code: number[] = [];
  const place = (bytes: readonly number[]) => {
    const offset = code.length;
    code.push(...bytes);
    return offset;
  };
  const layout = {
    iret: place(IRET), timer: place(TIMER_HANDLER), masterIrq: place(MASTER_IRQ_HANDLER), slaveIrq: place(SLAVE_IRQ_HANDLER),
  };
  memory.write(BootLayout.BIOS_HANDLERS, Uint8Array.from(code));

  const handlerOf = (vector: number) => {
    if (vector === BIOS_MASTER_VECTOR_BASE + IrqLayout.PIT) return layout.timer;
    if (vector > BIOS_MASTER_VECTOR_BASE && vector < BIOS_MASTER_VECTOR_BASE + 8) return layout.masterIrq;
    if (vector >= BIOS_SLAVE_VECTOR_BASE && vector < BIOS_SLAVE_VECTOR_BASE + 8) return layout.slaveIrq;
    return layout.iret;
  };
  // Each IVT entry is a far pointer: offset, then segment.
  for (let vector = 0; vector < IVT_VECTORS; vector++) {
    memory.writeU16(IVT_ADDRESS + vector * 4, handlerOf(vector));
    memory.writeU16(IVT_ADDRESS + vector * 4 + 2, HANDLER_SEGMENT);
  }

  memory.fill(BDA_ADDRESS, BDA_SIZE, 0);
  memory.writeU16(BDA_ADDRESS + BdaField.COM1_PORT, PortLayout.COM1);
  memory.writeU16(BDA_ADDRESS + BdaField.EBDA_SEGMENT, BootLayout.EBDA_START >> 4);
  memory.writeU16(BDA_ADDRESS + BdaField.BASE_MEMORY_KIB, BootLayout.EBDA_START >> 10);
  return layout;
}

// struct kvm_pit_channel_state (24 bytes each, three in kvm_pit_state2): the fields set here.
const PIT_CHANNEL_SIZE = 24;
const PitChannelField = { COUNT: 0, READ_STATE: 9, WRITE_STATE: 10, RW_MODE: 12, MODE: 13, BCD: 14, GATE: 15 } as const;
/** Access "LSB then MSB" (KVM's RW_STATE_WORD0). */
const PIT_RW_WORD = 3;
/** Mode 2, rate generator, as SeaBIOS programs counter 0. */
const PIT_RATE_GENERATOR = 2;

/**
 * KVM's in-kernel PIT (`--pit kernel`) starts silent; a BIOS programs counter
 * 0 as a rate generator with count 0 (65536: 18.2 Hz). Returns `pit2`, a
 * kvm_pit_state2 from KVM_GET_PIT2, changed so: KVM_SET_PIT2 loads the count
 * and starts the timer.
 */
export function pitProgrammedByBios(pit2: Uint8Array): Uint8Array {
  if (pit2.byteLength < 3 * PIT_CHANNEL_SIZE) throw new RangeError('a kvm_pit_state2 has three channels');
  const view = new DataView(pit2.buffer, pit2.byteOffset, pit2.byteLength); // channel 0 is first
  view.setUint32(PitChannelField.COUNT, 0, true); // 0 is 65536
  for (const field of [PitChannelField.READ_STATE, PitChannelField.WRITE_STATE, PitChannelField.RW_MODE]) view.setUint8(field, PIT_RW_WORD);
  view.setUint8(PitChannelField.MODE, PIT_RATE_GENERATOR);
  view.setUint8(PitChannelField.BCD, 0);
  view.setUint8(PitChannelField.GATE, 1);
  return pit2;
}
