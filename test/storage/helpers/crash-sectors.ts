// The sectors the SIGKILL test writes: each names its own place and the write
// it came from, so after a crash every sector can be checked to be a whole
// sector that was written there (or the backing file's), never garbage or a
// sector from somewhere else.
export const SECTOR = 512;
const MAGIC = 0x7453564d;  // "tSVM"

/** Fills `bytes` (whole sectors, the first at disk sector `firstSector`) as write number `sequence`. */
export function fillSectors(bytes: Uint8Array, firstSector: number, sequence: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at < bytes.length; at += SECTOR) {
    const sector = firstSector + at / SECTOR;
    bytes.fill((sequence + sector) & 0xff, at + 12, at + SECTOR);
    view.setUint32(at, MAGIC);
    view.setUint32(at + 4, sector);
    view.setUint32(at + 8, sequence);
  }
}

/** A description of the first sector that is not a whole sector written at its place, or null. */
export function findBadSector(bytes: Uint8Array, firstSector: number, allowZero: boolean): string | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at < bytes.length; at += SECTOR) {
    const sector = firstSector + at / SECTOR;
    const body = bytes.subarray(at, at + SECTOR);
    if (allowZero && body.every((b) => b === 0)) continue;
    if (view.getUint32(at) !== MAGIC) return `sector ${sector}: no magic`;
    if (view.getUint32(at + 4) !== sector) return `sector ${sector}: holds sector ${view.getUint32(at + 4)}`;
    const fill = (view.getUint32(at + 8) + sector) & 0xff;
    if (!body.subarray(12).every((b) => b === fill)) return `sector ${sector}: torn`;
  }
  return null;
}
