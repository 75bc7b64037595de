// Flat binaries: a raw real-mode program with no headers, run the way kvmtool
// runs a non-Linux file. It is copied to guest-physical 0x10000 and started at
// CS:IP = 0x1000:0000 with every data segment at the same base.
import type { GuestMemory } from '../memory/index.ts';
import type { Registers, SpecialRegisters, Segment } from '../kvm/index.ts';
import { InputError } from '../errors.ts';
import { BootLayout } from '../layout.ts';

const FLAT_LOAD_ADDRESS = BootLayout.FLAT_IMAGE;
const FLAT_SEGMENT = FLAT_LOAD_ADDRESS >> 4;
/** kvmtool's choice of stack for flat files: SS:SP = 0x1000:0x8000. */
export const FLAT_STACK_POINTER = 0x8000;

export function loadFlat(memory: GuestMemory, image: Uint8Array, source = 'flat image'): void {
  if (image.length === 0) throw new InputError(`${source} is empty`);
  if (!memory.contains(FLAT_LOAD_ADDRESS, image.length)) {
    throw new InputError(`${source} (${image.length} bytes) does not fit in guest RAM at 0x${FLAT_LOAD_ADDRESS.toString(16)}; give the guest more --mem`);
  }
  memory.write(FLAT_LOAD_ADDRESS, image);
}

function realModeSegment(reset: Segment, selector: number): Segment {
  // Keep the reset state's access rights (present, 16-bit, 64 KiB limit).
  return { ...reset, selector, base: BigInt(selector << 4), limit: 0xffff };
}

/** The vCPU state a flat binary starts in, derived from the vCPU's reset state. */
export function flatEntryState(reset: { regs: Registers; sregs: SpecialRegisters }): { regs: Registers; sregs: SpecialRegisters } {
  const { sregs } = reset;
  const segment = (s: Segment) => realModeSegment(s, FLAT_SEGMENT);
  return {
    regs: {
      ...reset.regs,
      rip: 0n,
      rsp: BigInt(FLAT_STACK_POINTER),
      rbp: 0n,
      rflags: 0x2n, // bit 1 is always set; IF clear
    },
    sregs: {
      ...sregs,
      cs: segment(sregs.cs), ds: segment(sregs.ds), es: segment(sregs.es),
      fs: segment(sregs.fs), gs: segment(sregs.gs), ss: segment(sregs.ss),
    },
  };
}
