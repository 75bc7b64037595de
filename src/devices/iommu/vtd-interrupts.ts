// Interrupt remapping (VT-d 3.4, 5.1): an interrupt request in remappable
// format carries an index into the Interrupt Remapping Table instead of a
// destination and vector; the 16-byte IRTE there says where the interrupt
// goes. A request comes as an MSI write (address 0xFEExxxxx with bit 4 set)
// or, from the IOAPIC, as a redirection entry with bit 48 set. The result is
// an ordinary (compatibility-format) MSI, which the machine hands to the
// local APICs. This file decodes; intel-vtd.ts decides whether remapping is
// on and records the faults.
import { FaultReason } from './vtd-registers.ts';
import type { TableMemory, VtdEntry } from './vtd-translation.ts';

/** An MSI as the local APICs take it: the address (0xFEE00000 | ...) and the data. */
export interface MsiMessage {
  address: number;
  data: number;
}

export type Remapped =
  | { ok: true; message: MsiMessage }
  /** `report`: false when the IRTE's Fault Processing Disable bit says not to record it. */
  | { ok: false; reason: number; index: number; report: boolean };

/** The interrupt window's address bits (31:20) and the remappable-format bit (5.1.2.2). */
const MSI_WINDOW = 0xfee0_0000;
const MSI_WINDOW_MASK = 0xfff0_0000;
const MSI_REMAPPABLE = 1 << 4;
const MSI_SUBHANDLE_VALID = 1 << 3;

const IRTE_SIZE = 16;

/** A request in remappable format: its IRTE index (handle plus subhandle when SHV is set). */
export function remappableIndex(message: MsiMessage): number | null {
  if ((message.address & MSI_WINDOW_MASK) >>> 0 !== MSI_WINDOW || !(message.address & MSI_REMAPPABLE)) return null;
  const handle = ((message.address >>> 5) & 0x7fff) | (((message.address >>> 2) & 1) << 15);
  return message.address & MSI_SUBHANDLE_VALID ? (handle + (message.data & 0xffff)) & 0xffff : handle;
}

/**
 * The IRTE index of an IOAPIC redirection entry in remappable format
 * (5.1.5.1: bit 48 set, index[14:0] in bits 63:49, index[15] in bit 11), or
 * null for a compatibility-format entry.
 */
export function ioapicEntryIndex(entry: bigint): number | null {
  if (!((entry >> 48n) & 1n)) return null;
  return Number((entry >> 49n) & 0x7fffn) | (Number((entry >> 11n) & 1n) << 15);
}

/** A source-id's bits the IRTE's Source-ID Qualifier leaves out of the comparison (9.10, SQ). */
const SQ_IGNORED_BITS = [0, 0b100, 0b110, 0b111] as const;

/**
 * Looks up IRTE `index` in the table IRTA (as latched by SIRTP) points at and
 * turns it into an MSI. `sourceId`: the requester to verify against the
 * IRTE's SID/SQ/SVT, or null when the request carries none the unit can check.
 * Destinations are xAPIC IDs (ECAP.EIM is 0): the 8 bits at 15:8 of the
 * IRTE's destination field.
 */
export function remapIndex(memory: TableMemory, irta: VtdEntry, index: number, sourceId: number | null): Remapped {
  const failed = (reason: number, report = true): Remapped => ({ ok: false, reason, index, report });
  const entries = 2 ** ((irta.low & 0xf) + 1);
  if (index >= entries) return failed(FaultReason.IR_INDEX_BEYOND_TABLE);
  const tableAddress = (irta.high & 0xffff) * 2 ** 32 + ((irta.low & ~0xfff) >>> 0);
  const at = tableAddress + index * IRTE_SIZE;
  if (!memory.contains(at, IRTE_SIZE)) return failed(FaultReason.IRTE_UNREADABLE);
  const low = memory.readU32(at);
  const destination = memory.readU32(at + 4);
  const sourceWord = memory.readU32(at + 8);
  const reservedHigh = memory.readU32(at + 12);
  const report = (low & 2) === 0;
  if (!(low & 1)) return failed(FaultReason.IRTE_NOT_PRESENT, report);
  // Remapped (not posted) format: bits 14:12 and 31:24 reserved, bit 15 (IM) must be 0;
  // bits 127:84 reserved; in xAPIC mode only destination bits 15:8 exist.
  const reserved = (low & 0xff00_f000) !== 0 || (sourceWord >>> 20) !== 0 || reservedHigh !== 0 || (destination & ~0xff00) !== 0;
  if (reserved) return failed(FaultReason.IRTE_RESERVED, report);

  if (sourceId !== null) {
    const sid = sourceWord & 0xffff;
    const qualifier = (sourceWord >>> 16) & 3;
    const validation = (sourceWord >>> 18) & 3;
    if (validation === 3) return failed(FaultReason.IRTE_RESERVED, report);
    // SVT 1: the requester must be SID, less the function bits SQ masks; SVT 2: its bus in SID's range.
    if (validation === 1 && ((sourceId ^ sid) & ~SQ_IGNORED_BITS[qualifier]!) !== 0) return failed(FaultReason.SOURCE_ID_MISMATCH, report);
    if (validation === 2) {
      const bus = sourceId >>> 8;
      if (bus < (sid >>> 8) || bus > (sid & 0xff)) return failed(FaultReason.SOURCE_ID_MISMATCH, report);
    }
  }

  const destinationMode = (low >>> 2) & 1;
  const redirectionHint = (low >>> 3) & 1;
  const triggerMode = (low >>> 4) & 1;
  const deliveryMode = (low >>> 5) & 7;
  const vector = (low >>> 16) & 0xff;
  const apicId = (destination >>> 8) & 0xff;
  const address = (MSI_WINDOW | (apicId << 12) | (redirectionHint << 3) | (destinationMode << 2)) >>> 0;
  // A level-triggered message is an assertion (bit 14), as an IOAPIC sends it.
  const data = vector | (deliveryMode << 8) | (triggerMode << 15) | (triggerMode << 14);
  return { ok: true, message: { address, data } };
}
