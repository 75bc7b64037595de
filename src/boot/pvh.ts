// The PVH start_info (xen/include/public/arch-x86/hvm/start_info.h): what a
// kernel entered through its PVH entry point reads instead of boot_params.
import type { GuestMemory } from '../memory/index.ts';
import type { E820Entry } from './memory-map.ts';

export const HVM_START_MAGIC = 0x336e_c578;

export interface StartInfoInput {
  cmdlineAddress: number;
  initrd?: { address: number; size: number };
  memmap: readonly E820Entry[];
  startInfoAddress: number;
  modlistAddress: number;
  memmapAddress: number;
  /** Guest-physical address of the ACPI RSDP, when the machine has tables. */
  rsdpAddress?: number;
}

export function writeStartInfo(memory: GuestMemory, input: StartInfoInput): void {
  const info = Buffer.alloc(56);
  info.writeUInt32LE(HVM_START_MAGIC, 0);
  info.writeUInt32LE(1, 4); // version 1: has the memory map fields
  info.writeUInt32LE(input.initrd ? 1 : 0, 12); // nr_modules
  info.writeBigUInt64LE(BigInt(input.initrd ? input.modlistAddress : 0), 16);
  info.writeBigUInt64LE(BigInt(input.cmdlineAddress), 24);
  info.writeBigUInt64LE(BigInt(input.rsdpAddress ?? 0), 32); // rsdp_paddr; 0: no ACPI
  info.writeBigUInt64LE(BigInt(input.memmapAddress), 40);
  info.writeUInt32LE(input.memmap.length, 48);
  memory.write(input.startInfoAddress, info);

  if (input.initrd) {
    const module = Buffer.alloc(32);
    module.writeBigUInt64LE(BigInt(input.initrd.address), 0);
    module.writeBigUInt64LE(BigInt(input.initrd.size), 8);
    memory.write(input.modlistAddress, module);
  }
  const table = Buffer.alloc(input.memmap.length * 24);
  input.memmap.forEach((e, i) => {
    table.writeBigUInt64LE(BigInt(e.address), i * 24);
    table.writeBigUInt64LE(BigInt(e.size), i * 24 + 8);
    table.writeUInt32LE(e.type, i * 24 + 16);
  });
  memory.write(input.memmapAddress, table);
}
