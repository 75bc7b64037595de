// The register file of an Intel VT-d remapping unit (Intel Virtualization
// Technology for Directed I/O, rev. 4.x, chapter 11) as tsvmm implements it:
// offsets, bits, and the capability values this unit reports. Everything
// here is the spec's numbering; intel-vtd.ts gives it behaviour.

/** The register page: 4 KiB, as the DMAR table's DRHD says (size field 0 = one page). */
export const VTD_REGISTER_SIZE = 0x1000;

/** Register offsets (11.4). 64-bit registers are two dwords, low first. */
export const VtdRegister = {
  VER: 0x00,
  CAP: 0x08,
  ECAP: 0x10,
  GCMD: 0x18,
  GSTS: 0x1c,
  RTADDR: 0x20,
  CCMD: 0x28,
  FSTS: 0x34,
  FECTL: 0x38,
  FEDATA: 0x3c,
  FEADDR: 0x40,
  FEUADDR: 0x44,
  IQH: 0x80,
  IQT: 0x88,
  IQA: 0x90,
  ICS: 0x9c,
  IECTL: 0xa0,
  IEDATA: 0xa4,
  IEADDR: 0xa8,
  IEUADDR: 0xac,
  IRTA: 0xb8,
  /** IOTLB registers: Invalidate Address then IOTLB Invalidate, where ECAP.IRO says (QEMU's 0x200). */
  IVA: 0x200,
  IOTLB: 0x208,
  /** The one fault recording register (16 bytes), where CAP.FRO says (QEMU's 0x220). */
  FRCD: 0x220,
} as const;

/** Bytes of the register page that hold registers; the rest reads as 0 and ignores writes. */
export const VTD_REGISTERS_END = VtdRegister.FRCD + 16;

/** ECAP bits the unit's behaviour depends on. */
export const Ecap = {
  IR: 1 << 3,
} as const;

/** Version 1.0: major in bits 7:4 (kvm-unit-tests checks it is at least 1). */
export const VTD_VERSION = 0x10;

/** Global Command and Global Status: the same bit positions (11.4.4, 11.4.5). */
export const VtdGlobal = {
  /** Translation Enable / Status. */
  TE: 1 << 31,
  /** Set Root Table Pointer / Root Table Pointer Status. */
  SRTP: 1 << 30,
  /** Set Fault Log (advanced fault logging, not implemented: CAP.AFL = 0). */
  SFL: 1 << 29,
  /** Write Buffer Flush (not needed: CAP.RWBF = 0). */
  WBF: 1 << 27,
  /** Queued Invalidation Enable / Status. */
  QIE: 1 << 26,
  /** Interrupt Remapping Enable / Status. */
  IRE: 1 << 25,
  /** Set Interrupt Remap Table Pointer / its Status. */
  SIRTP: 1 << 24,
  /** Compatibility Format Interrupt (pass-through while remapping is on). */
  CFI: 1 << 23,
} as const;

/** Fault Status (11.4.9.1): the RW1C bits, Primary Pending Fault, and the Fault Record Index. */
export const VtdFaultStatus = {
  PFO: 1 << 0,
  PPF: 1 << 1,
  IQE: 1 << 4,
  ICE: 1 << 5,
  ITE: 1 << 6,
  RW1C: (1 << 0) | (1 << 4) | (1 << 5) | (1 << 6),
} as const;

/** Fault Event Control and Invalidation Event Control: Interrupt Mask and Interrupt Pending. */
export const EventControl = {
  IM: 1 << 31,
  IP: 1 << 30,
} as const;

/** Invalidation Completion Status: Invalidation Wait Descriptor Complete (RW1C). */
export const ICS_IWC = 1;

/** Context Command's high dword: ICC (bit 63) starts it, CIRG (62:61) asks, CAIG (60:59) answers. */
export const CCMD_ICC = 1 << 31;
/** IOTLB Invalidate's high dword: IVT (bit 63), IIRG (61:60), IAIG (58:57). */
export const IOTLB_IVT = 1 << 31;

/**
 * Fault reasons (Appendix A) this unit records: DMA remapping (0x1-0xC)
 * and interrupt remapping (0x20-0x26).
 */
export const FaultReason = {
  ROOT_NOT_PRESENT: 0x1,
  CONTEXT_NOT_PRESENT: 0x2,
  CONTEXT_INVALID: 0x3,
  ADDRESS_BEYOND_AGAW: 0x4,
  WRITE_DENIED: 0x5,
  READ_DENIED: 0x6,
  TABLE_UNREADABLE: 0x7,
  ROOT_TABLE_INVALID: 0x8,
  ROOT_RESERVED: 0xa,
  CONTEXT_RESERVED: 0xb,
  PTE_RESERVED: 0xc,
  IR_REQUEST_RESERVED: 0x20,
  IR_INDEX_BEYOND_TABLE: 0x21,
  IRTE_NOT_PRESENT: 0x22,
  IRTE_UNREADABLE: 0x23,
  IRTE_RESERVED: 0x24,
  COMPATIBILITY_BLOCKED: 0x25,
  SOURCE_ID_MISMATCH: 0x26,
} as const;

/**
 * Address widths: 48-bit input addresses (4-level tables) at most, and host
 * physical addresses of 48 bits (DMAR's HAW field is this minus one).
 */
export const VTD_MAX_GUEST_ADDRESS_WIDTH = 48;
export const VTD_HOST_ADDRESS_WIDTH = 48;

/**
 * What this unit reports in CAP and ECAP (11.4.2, 11.4.3), as low and high
 * dwords. `interruptRemapping`: ECAP.IR. ECAP.EIM stays 0 (xAPIC
 * destinations only, QEMU's eim=off).
 */
export function vtdCapabilities(options: { interruptRemapping: boolean }): { cap: [number, number]; ecap: [number, number] } {
  // CAP: ND (2:0) = 2, 256 domain IDs; SAGAW (12:8) = 0b00110, 39-bit (3-level)
  // and 48-bit (4-level) tables; MGAW (21:16) = width - 1; FRO (33:24) =
  // FRCD / 16; SLLPS (37:34) = 0b0011, 2 MiB and 1 GiB pages; PSI (39);
  // NFR (47:40) = 0, one fault record; MAMV (53:48) = 0x3f. No caching mode,
  // no write-buffer flushing, no PMRs.
  const fro = VtdRegister.FRCD / 16;
  const capLow = (2 | (0b00110 << 8) | ((VTD_MAX_GUEST_ADDRESS_WIDTH - 1) << 16) | ((fro & 0xff) << 24)) >>> 0;
  const capHigh = ((fro >> 8) | (0b0011 << 2) | (1 << 7) | (0x3f << 16)) >>> 0;
  // ECAP: QI (1), IR (3), PT (6, pass-through contexts), IRO (17:8) = IVA / 16.
  const iro = VtdRegister.IVA / 16;
  let ecapLow = (1 << 1) | (1 << 6) | (iro << 8);
  if (options.interruptRemapping) ecapLow |= Ecap.IR;
  return { cap: [capLow, capHigh], ecap: [ecapLow >>> 0, 0] };
}

