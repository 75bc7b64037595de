// DMA remapping in legacy mode (VT-d 3.4, 9.1-9.3, 9.8): a request from
// source-id bus:dev.fn for an I/O virtual address is looked up through the
// root table (one entry per bus), the context table (one entry per devfn) and
// the second-level page tables the context entry points at (3 or 4 levels,
// 2 MiB and 1 GiB leaves). Nothing is cached, so every request walks the
// tables as the guest left them and invalidations have nothing to drop.
// The tables live in guest RAM and are the guest's: every entry is checked
// (presence, reserved bits, widths) and a table outside RAM is a fault, never
// a host error.
import { FaultReason, VTD_HOST_ADDRESS_WIDTH, VTD_MAX_GUEST_ADDRESS_WIDTH } from './vtd-registers.ts';

/** What the walk reads tables through: guest RAM, bounds-checked. */
export interface TableMemory {
  contains(address: number, length: number): boolean;
  readU32(address: number): number;
}

export type DmaAccess = 'read' | 'write';

export type Translation =
  | { ok: true; address: number; pageSize: number }
  /** `report`: false when the context entry's Fault Processing Disable bit says not to record it. */
  | { ok: false; reason: number; report: boolean };

const PAGE_SIZE = 0x1000;
const ENTRY_SIZE = 16;
const PTE_SIZE = 8;
/** Bits of an entry's high dword that hold address bits 32..HAW-1. */
const HIGH_ADDRESS_MASK = 2 ** (VTD_HOST_ADDRESS_WIDTH - 32) - 1;

/** Context entry Translation Types (9.3). */
const TranslationType = { UNTRANSLATED: 0, PASS_THROUGH: 2 } as const;
/** Context entry Address Width values: 1 = 39-bit, 3-level; 2 = 48-bit, 4-level. */
const LEVELS_BY_AW: Readonly<Record<number, number>> = { 1: 3, 2: 4 };

const PTE_READ = 1 << 0;
const PTE_WRITE = 1 << 1;
const PTE_PAGE_SIZE = 1 << 7;

/** A 64-bit table entry or register as two dwords; an address is in bits HAW-1:12. */
export interface VtdEntry {
  low: number;
  high: number;
}

function readEntry(memory: TableMemory, address: number): VtdEntry | null {
  if (!memory.contains(address, 8)) return null;
  return { low: memory.readU32(address), high: memory.readU32(address + 4) };
}

function entryAddress(entry: VtdEntry): number {
  return (entry.high & HIGH_ADDRESS_MASK) * 2 ** 32 + ((entry.low & ~0xfff) >>> 0);
}

/** Address bits at or above the host address width: reserved in every entry. */
function beyondHostWidth(entry: VtdEntry): boolean {
  return (entry.high & ~HIGH_ADDRESS_MASK) !== 0;
}

function fault(reason: number, report = true): Translation {
  return { ok: false, reason, report };
}

/**
 * Translates `iova` for the device `sourceId` (bus << 8 | devfn) through the
 * root table at `rootTable` (RTADDR as latched by SRTP, both dwords). The
 * result is the guest-physical address and the size of the page it lies in
 * (the caller splits longer accesses at page ends).
 */
export function translateDma(memory: TableMemory, rootTable: VtdEntry, sourceId: number, iova: number, access: DmaAccess): Translation {
  // RTADDR's bits 11:10 select the table type: only legacy (00) is implemented.
  if ((rootTable.low & 0xc00) !== 0 || beyondHostWidth(rootTable)) return fault(FaultReason.ROOT_TABLE_INVALID);
  const bus = (sourceId >>> 8) & 0xff;
  const devfn = sourceId & 0xff;

  const rootAt = entryAddress(rootTable) + bus * ENTRY_SIZE;
  const root = readEntry(memory, rootAt);
  const rootUpper = readEntry(memory, rootAt + 8);
  if (!root || !rootUpper) return fault(FaultReason.ROOT_TABLE_INVALID);
  if (!(root.low & 1)) return fault(FaultReason.ROOT_NOT_PRESENT);
  if ((root.low & 0xffe) !== 0 || beyondHostWidth(root) || rootUpper.low !== 0 || rootUpper.high !== 0) return fault(FaultReason.ROOT_RESERVED);

  const contextAt = entryAddress(root) + devfn * ENTRY_SIZE;
  const context = readEntry(memory, contextAt);
  const contextUpper = readEntry(memory, contextAt + 8);
  if (!context || !contextUpper) return fault(FaultReason.TABLE_UNREADABLE);
  if (!(context.low & 1)) return fault(FaultReason.CONTEXT_NOT_PRESENT);
  const report = (context.low & 2) === 0;
  // Reserved: low 11:4, above HAW; high bit 7 and 63:24 (bits 6:3 are ignored).
  if ((context.low & 0xff0) !== 0 || beyondHostWidth(context) || (contextUpper.low & 0xff00_0080) !== 0 || contextUpper.high !== 0) {
    return fault(FaultReason.CONTEXT_RESERVED, report);
  }
  const type = (context.low >>> 2) & 3;
  if (type === TranslationType.PASS_THROUGH) return { ok: true, address: iova, pageSize: PAGE_SIZE };
  if (type !== TranslationType.UNTRANSLATED) return fault(FaultReason.CONTEXT_INVALID, report);
  const levels = LEVELS_BY_AW[contextUpper.low & 7];
  if (levels === undefined) return fault(FaultReason.CONTEXT_INVALID, report);

  const width = 12 + 9 * levels;
  if (iova >= 2 ** Math.min(width, VTD_MAX_GUEST_ADDRESS_WIDTH)) return fault(FaultReason.ADDRESS_BEYOND_AGAW, report);
  const needed = access === 'write' ? PTE_WRITE : PTE_READ;
  let table = entryAddress(context);
  // Level 1 entries are always leaves, so the walk ends there at the latest.
  for (let level = levels; ; level--) {
    const shift = 12 + 9 * (level - 1);
    const index = Math.floor(iova / 2 ** shift) % 512;
    const pte = readEntry(memory, table + index * PTE_SIZE);
    if (!pte) return fault(FaultReason.TABLE_UNREADABLE, report);
    // A missing entry (neither R nor W) is a permission fault for the access, as in QEMU.
    if (!(pte.low & needed)) return fault(access === 'write' ? FaultReason.WRITE_DENIED : FaultReason.READ_DENIED, report);
    if (beyondHostWidth(pte)) return fault(FaultReason.PTE_RESERVED, report);
    const leaf = level === 1 || (pte.low & PTE_PAGE_SIZE) !== 0;
    if (!leaf) {
      table = entryAddress(pte);
      continue;
    }
    // Large pages: 2 MiB at level 2, 1 GiB at level 3 (CAP.SLLPS); PS elsewhere is reserved.
    if (level > 3) return fault(FaultReason.PTE_RESERVED, report);
    const pageSize = 2 ** shift;
    const frame = entryAddress(pte);
    if (frame % pageSize !== 0) return fault(FaultReason.PTE_RESERVED, report);
    return { ok: true, address: frame + (iova % pageSize), pageSize };
  }
}
