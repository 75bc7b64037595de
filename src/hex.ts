// How tsvmm writes an address, a port or a register in a message: 0x and
// lower-case hex digits, zero-padded to `width` digits when given. One helper
// beside the layers, so every layer's messages print numbers alike.
export function hex(n: number | bigint, width = 0): string {
  return `0x${n.toString(16).padStart(width, '0')}`;
}
