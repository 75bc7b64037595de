// A flat binary as a 64 KiB BIOS image, so that QEMU runs the same guest file
// as tsvmm and kvmtool (`qemu-system-x86_64 -bios IMAGE`). QEMU maps the image
// just below 1 MiB (0xF0000-0xFFFFF) and the vCPU starts at F000:FFF0, the
// reset vector. There a far jump leads to a 29-byte stub that copies the
// payload (kept at the start of the image) to 1000:0000 and jumps to it: the
// kvmtool convention tsvmm's --flat follows. The guest then sets its own
// segments and stack (REAL_MODE_INIT in firmware/include/common.inc).
import { readFileSync, writeFileSync } from 'node:fs';

export const ROM_SIZE = 0x10000;
const STUB_OFFSET = 0xff00;
const RESET_VECTOR = 0xfff0;
/** The payload must end before the stub. */
export const MAX_PAYLOAD = STUB_OFFSET;

/** The copy stub, real mode, at F000:FF00; `length` is patched into `mov cx`. */
function stub(length: number): number[] {
  return [
    0xfa, //                        cli
    0xfc, //                        cld
    0xb8, 0x00, 0xf0, //            mov ax, 0xF000
    0x8e, 0xd8, //                  mov ds, ax        ; source: the ROM at 0xF0000
    0xb8, 0x00, 0x10, //            mov ax, 0x1000
    0x8e, 0xc0, //                  mov es, ax        ; destination: 0x10000
    0x31, 0xf6, //                  xor si, si
    0x31, 0xff, //                  xor di, di
    0xb9, length & 0xff, length >> 8, // mov cx, length
    0xf3, 0xa4, //                  rep movsb
    0xea, 0x00, 0x00, 0x00, 0x10, //  jmp far 1000:0000
  ];
}

/** The BIOS image for a flat binary (at most MAX_PAYLOAD bytes). */
export function flatToRom(flat: Uint8Array): Uint8Array {
  if (flat.length === 0 || flat.length > MAX_PAYLOAD) throw new Error(`flat binary of ${flat.length} bytes: a ROM payload is 1..${MAX_PAYLOAD} bytes`);
  const rom = new Uint8Array(ROM_SIZE);
  rom.set(flat, 0);
  rom.set(stub(flat.length), STUB_OFFSET);
  // The reset vector: jmp far F000:FF00.
  rom.set([0xea, STUB_OFFSET & 0xff, STUB_OFFSET >> 8, 0x00, 0xf0], RESET_VECTOR);
  return rom;
}

/** Writes the ROM for the flat binary at `flatPath` to `romPath`. */
export function writeFlatRom(flatPath: string, romPath: string): string {
  writeFileSync(romPath, flatToRom(readFileSync(flatPath)));
  return romPath;
}
