// The VT-d unit without KVM: its tables are written into a GuestMemory in the
// layouts of the VT-d spec (root entry 9.1, context entry 9.3, second-level
// PTE 9.8, IRTE 9.10, invalidation descriptors 6.5.2), and the guest's side
// is register reads and writes.
import { describe, expect, it } from 'vitest';
import {
  FaultReason, IntelVtd, ioapicEntryIndex, remappableIndex, RemappedDma, translateDma, VtdFaultStatus, VtdGlobal, VtdRegister,
  type MsiMessage,
} from '../src/devices/iommu/index.ts';
import { GuestMemory } from '../src/memory/index.ts';

const RAM = 0x40_0000;
const ROOT = 0x1_0000;
const CONTEXT = 0x1_1000;
const PML4 = 0x1_2000;
const PDPT = 0x1_3000;
const PD = 0x1_4000;
const PT = 0x1_5000;
const IRT = 0x2_0000;
const QUEUE = 0x3_0000;
const STATUS = 0x3_8000;
/** edu's source-id in slot 1: bus 0, device 1, function 0. */
const SID = 0x0008;

function setup(options = { interruptRemapping: true }) {
  const memory = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: RAM }]);
  const events: MsiMessage[] = [];
  const unit = new IntelVtd({ memory, signalMsi: (m) => events.push(m) }, IntelVtd.createState(options));
  const q = (offset: number, value: bigint) => unit.write64(offset, value);
  const l = (offset: number, value: number) => unit.write(offset, 4, value);
  const status = () => unit.read(VtdRegister.GSTS, 4);
  // The way kvm-unit-tests and Linux set a command: the status, plus the bit.
  const command = (bit: number) => l(VtdRegister.GCMD, (status() | bit) >>> 0);
  return { memory, unit, events, q, l, status, command };
}

/** A 16-byte root or context entry, or an 8-byte PTE (two dwords each half). */
function entry(memory: GuestMemory, address: number, low: bigint, high = 0n): void {
  memory.writeU64(address, low);
  memory.writeU64(address + 8, high);
}

/** Root entry for bus 0 → context table; context entry for devfn 8 → PML4, 4 levels (AW = 2). */
function mapFourLevels(memory: GuestMemory, { aw = 2n, table = BigInt(PML4) } = {}): void {
  entry(memory, ROOT, BigInt(CONTEXT) | 1n);
  entry(memory, CONTEXT + SID * 16, table | 1n, aw | (0x42n << 8n));
}

describe('VT-d registers', () => {
  it('reports version 1.0, 39- and 48-bit SAGAW, 2 MiB and 1 GiB pages, QI and IR with the IOTLB and fault record offsets', () => {
    const { unit } = setup();
    expect(unit.read(VtdRegister.VER, 4)).toBe(0x10);
    const cap = unit.read64(VtdRegister.CAP);
    expect((cap >> 8n) & 0x1fn).toBe(0b00110n);
    expect((cap >> 34n) & 0xfn).toBe(0b0011n);
    expect(((cap >> 24n) & 0x3ffn) * 16n).toBe(BigInt(VtdRegister.FRCD));
    const ecap = unit.read64(VtdRegister.ECAP);
    expect(ecap & 0b1010n).toBe(0b1010n); // QI, IR
    expect(((ecap >> 8n) & 0x3ffn) * 16n).toBe(BigInt(VtdRegister.IVA));
    expect(setup({ interruptRemapping: false }).unit.read64(VtdRegister.ECAP) & 0b1000n).toBe(0n);
  });

  it('answers each GCMD bit in GSTS at once, and latches the root and IR table pointers', () => {
    const { unit, q, command, status } = setup();
    q(VtdRegister.RTADDR, BigInt(ROOT));
    command(VtdGlobal.SRTP);
    q(VtdRegister.IRTA, BigInt(IRT) | 0xfn);
    command(VtdGlobal.SIRTP);
    command(VtdGlobal.QIE);
    command(VtdGlobal.TE);
    command(VtdGlobal.IRE);
    expect(status() >>> 0).toBe((VtdGlobal.SRTP | VtdGlobal.SIRTP | VtdGlobal.QIE | VtdGlobal.TE | VtdGlobal.IRE) >>> 0);
    expect(unit.read(VtdRegister.GCMD, 4)).toBe(0);
    // Writing RTADDR again changes nothing until SRTP: the unit still walks the latched table.
    q(VtdRegister.RTADDR, 0x20_0000n);
    expect(unit.translate(SID, 0, 'read')).toMatchObject({ ok: false, reason: FaultReason.ROOT_NOT_PRESENT });
  });

  it("keeps IR's bits out of GSTS on a unit without interrupt remapping", () => {
    const { command, status } = setup({ interruptRemapping: false });
    command(VtdGlobal.IRE);
    command(VtdGlobal.SIRTP);
    expect(status()).toBe(0);
  });

  it('completes register-based context and IOTLB invalidations at once, answering with the granularity asked', () => {
    const { unit, l } = setup();
    l(VtdRegister.CCMD + 4, (1 << 31) | (1 << 29)); // ICC, global
    expect(unit.read(VtdRegister.CCMD + 4, 4) >>> 0).toBe((1 << 29) | (1 << 27)); // ICC clear, CAIG = CIRG
    l(VtdRegister.IOTLB + 4, (1 << 31) | (2 << 28)); // IVT, domain-selective
    expect(unit.read(VtdRegister.IOTLB + 4, 4) >>> 0).toBe((2 << 28) | (2 << 25)); // IVT clear, IAIG = IIRG
  });
});

describe('DMA remapping (legacy mode)', () => {
  it('walks 4 levels to a 4 KiB page and keeps the offset', () => {
    const { memory } = setup();
    mapFourLevels(memory);
    entry(memory, PML4 + 0 * 8, BigInt(PDPT) | 3n);
    memory.writeU64(PDPT + 1 * 8, BigInt(PD) | 3n);
    memory.writeU64(PD + 2 * 8, BigInt(PT) | 3n);
    memory.writeU64(PT + 3 * 8, 0x7000n | 1n); // read-only
    const iova = 1 * 2 ** 30 + 2 * 2 ** 21 + 3 * 0x1000 + 0x123;
    expect(translateDma(memory, { low: ROOT, high: 0 }, SID, iova, 'read')).toEqual({ ok: true, address: 0x7123, pageSize: 0x1000 });
    expect(translateDma(memory, { low: ROOT, high: 0 }, SID, iova, 'write')).toMatchObject({ ok: false, reason: FaultReason.WRITE_DENIED });
  });

  it('takes 2 MiB leaves at level 2 and 1 GiB leaves at level 3 of a 3-level table, and refuses misaligned ones', () => {
    const { memory } = setup();
    mapFourLevels(memory, { aw: 1n, table: BigInt(PDPT) });
    memory.writeU64(PDPT + 0 * 8, BigInt(PD) | 3n);
    memory.writeU64(PD + 1 * 8, 0x20_0000n | 0x80n | 3n);
    memory.writeU64(PDPT + 1 * 8, 0x4000_0000n | 0x80n | 3n);
    memory.writeU64(PD + 2 * 8, 0x20_1000n | 0x80n | 3n);
    const root = { low: ROOT, high: 0 };
    expect(translateDma(memory, root, SID, 0x20_0000 + 0x1_2345, 'write')).toEqual({ ok: true, address: 0x21_2345, pageSize: 0x20_0000 });
    expect(translateDma(memory, root, SID, 0x4000_0000 + 0x10, 'read')).toEqual({ ok: true, address: 0x4000_0010, pageSize: 2 ** 30 });
    expect(translateDma(memory, root, SID, 0x40_0000, 'read')).toMatchObject({ ok: false, reason: FaultReason.PTE_RESERVED });
    // 39 bits is all a 3-level table translates.
    expect(translateDma(memory, root, SID, 2 ** 39, 'read')).toMatchObject({ ok: false, reason: FaultReason.ADDRESS_BEYOND_AGAW });
  });

  it('names each missing or malformed entry with its fault reason', () => {
    const { memory } = setup();
    const root = { low: ROOT, high: 0 };
    expect(translateDma(memory, root, SID, 0, 'read')).toMatchObject({ ok: false, reason: FaultReason.ROOT_NOT_PRESENT });
    entry(memory, ROOT, BigInt(CONTEXT) | 1n | 0x10n);
    expect(translateDma(memory, root, SID, 0, 'read')).toMatchObject({ ok: false, reason: FaultReason.ROOT_RESERVED });
    entry(memory, ROOT, BigInt(CONTEXT) | 1n);
    expect(translateDma(memory, root, SID, 0, 'read')).toMatchObject({ ok: false, reason: FaultReason.CONTEXT_NOT_PRESENT });
    entry(memory, CONTEXT + SID * 16, BigInt(PML4) | 1n, 3n); // AW 3: 5 levels, not offered
    expect(translateDma(memory, root, SID, 0, 'read')).toMatchObject({ ok: false, reason: FaultReason.CONTEXT_INVALID });
    entry(memory, CONTEXT + SID * 16, BigInt(PML4) | 1n | (3n << 2n), 2n); // TT 3: reserved
    expect(translateDma(memory, root, SID, 0, 'read')).toMatchObject({ ok: false, reason: FaultReason.CONTEXT_INVALID });
    entry(memory, CONTEXT + SID * 16, BigInt(PML4) | 1n | 2n, 2n); // FPD: not to be recorded
    expect(translateDma(memory, root, SID, 0, 'read')).toEqual({ ok: false, reason: FaultReason.READ_DENIED, report: false });
    entry(memory, CONTEXT + SID * 16, 1n | (2n << 2n), 2n); // pass-through
    expect(translateDma(memory, root, SID, 0x1234, 'write')).toEqual({ ok: true, address: 0x1234, pageSize: 0x1000 });
    // A legacy unit refuses the scalable-mode root table type.
    expect(translateDma(memory, { low: ROOT | 0x400, high: 0 }, SID, 0, 'read')).toMatchObject({ ok: false, reason: FaultReason.ROOT_TABLE_INVALID });
  });

  it('records a fault once, with source-id, reason, type and page, sets PPF and sends the fault event; a second is an overflow', () => {
    const { unit, memory, q, l, command, events } = setup();
    mapFourLevels(memory);
    q(VtdRegister.RTADDR, BigInt(ROOT));
    command(VtdGlobal.SRTP);
    command(VtdGlobal.TE);
    l(VtdRegister.FEDATA, 0x41);
    l(VtdRegister.FEADDR, 0xfee0_0000);
    expect(unit.translate(SID, 0x5678, 'read').ok).toBe(false);
    expect(unit.read(VtdRegister.FSTS, 4) & VtdFaultStatus.PPF).toBe(VtdFaultStatus.PPF);
    expect(unit.read64(VtdRegister.FRCD)).toBe(0x5000n);
    const high = unit.read64(VtdRegister.FRCD + 8);
    expect(high & 0xffffn).toBe(BigInt(SID));
    expect((high >> 32n) & 0xffn).toBe(BigInt(FaultReason.READ_DENIED));
    expect((high >> 62n) & 3n).toBe(3n); // F and T (a read)
    expect(events).toEqual([{ address: 0xfee0_0000, data: 0x41 }]);
    unit.translate(SID, 0, 'write');
    expect(unit.read(VtdRegister.FSTS, 4) & VtdFaultStatus.PFO).toBe(VtdFaultStatus.PFO);
    // Software clears F (write 1) and PFO: the next fault is recorded again.
    l(VtdRegister.FRCD + 12, 1 << 31);
    l(VtdRegister.FSTS, VtdFaultStatus.PFO);
    expect(unit.read(VtdRegister.FSTS, 4)).toBe(0);
    unit.translate(SID, 0, 'write');
    expect((unit.read64(VtdRegister.FRCD + 8) >> 32n) & 0xffn).toBe(BigInt(FaultReason.WRITE_DENIED));
  });

  it('with translation off, DMA addresses are guest-physical', () => {
    const { unit } = setup();
    expect(unit.translate(SID, 0x1234, 'write')).toMatchObject({ ok: true, address: 0x1234 });
  });
});

describe('interrupt remapping', () => {
  function irte(memory: GuestMemory, index: number, { vector = 0xee, apic = 1, level = false, present = true, sid = SID, svt = 1 } = {}) {
    const low = (present ? 1 : 0) | (level ? 1 << 4 : 0) | (vector << 16);
    memory.writeU32(IRT + index * 16, low);
    memory.writeU32(IRT + index * 16 + 4, apic << 8);
    memory.writeU32(IRT + index * 16 + 8, sid | (svt << 18));
    memory.writeU32(IRT + index * 16 + 12, 0);
  }

  function enabled(options?: { cfi?: boolean }) {
    const s = setup();
    s.q(VtdRegister.IRTA, BigInt(IRT) | 7n); // 256 entries
    s.command(VtdGlobal.SIRTP);
    s.command(VtdGlobal.IRE);
    if (options?.cfi) s.command(VtdGlobal.CFI);
    return s;
  }

  it('decodes the handle of a remappable MSI (with and without a subhandle) and of an IOAPIC entry', () => {
    expect(remappableIndex({ address: 0xfee0_0000 | (5 << 5) | 0x10, data: 0 })).toBe(5);
    expect(remappableIndex({ address: 0xfee0_0000 | (1 << 2) | 0x10, data: 0 })).toBe(0x8000);
    expect(remappableIndex({ address: 0xfee0_0000 | (5 << 5) | 0x18, data: 3 })).toBe(8);
    expect(remappableIndex({ address: 0xfee0_1000, data: 0x41 })).toBeNull();
    expect(ioapicEntryIndex((1n << 48n) | (2n << 49n) | 0xedn)).toBe(2);
    expect(ioapicEntryIndex((1n << 48n) | (1n << 11n))).toBe(0x8000);
    expect(ioapicEntryIndex(0xedn)).toBeNull();
  });

  it('turns an IRTE into a compatibility-format MSI: xAPIC destination, vector, trigger', () => {
    const { unit, memory } = enabled();
    irte(memory, 2, { vector: 0xee, apic: 3 });
    irte(memory, 3, { vector: 0x51, apic: 0, level: true });
    expect(unit.remapMsi(SID, { address: 0xfee0_0000 | (2 << 5) | 0x10, data: 0 })).toEqual({ address: 0xfee0_3000, data: 0xee });
    expect(unit.remapIoapicEntry((1n << 48n) | (3n << 49n))).toEqual({ kind: 'msi', message: { address: 0xfee0_0000, data: 0x51 | 0xc000 } });
  });

  it('checks the requester against the IRTE source-id, except for the IOAPIC', () => {
    const { unit, memory } = enabled();
    irte(memory, 2, { sid: 0x0010 });
    expect(unit.remapMsi(SID, { address: 0xfee0_0000 | (2 << 5) | 0x10, data: 0 })).toBeNull();
    expect((unit.read64(VtdRegister.FRCD + 8) >> 32n) & 0xffn).toBe(BigInt(FaultReason.SOURCE_ID_MISMATCH));
    expect(unit.remapIoapicEntry((1n << 48n) | (2n << 49n)).kind).toBe('msi');
  });

  it('blocks a missing IRTE, an index past the table and compatibility format (unless CFI), recording each', () => {
    const { unit, memory, l } = enabled();
    irte(memory, 4, { present: false });
    const reason = () => Number((unit.read64(VtdRegister.FRCD + 8) >> 32n) & 0xffn);
    const clear = () => l(VtdRegister.FRCD + 12, 1 << 31);
    expect(unit.remapMsi(SID, { address: 0xfee0_0000 | (4 << 5) | 0x10, data: 0 })).toBeNull();
    expect(reason()).toBe(FaultReason.IRTE_NOT_PRESENT);
    expect(unit.read64(VtdRegister.FRCD)).toBe(4n << 48n);
    clear();
    expect(unit.remapMsi(SID, { address: 0xfee0_0000 | (300 << 5) | 0x10, data: 0 })).toBeNull();
    expect(reason()).toBe(FaultReason.IR_INDEX_BEYOND_TABLE);
    clear();
    expect(unit.remapMsi(SID, { address: 0xfee0_0000, data: 0x30 })).toBeNull();
    expect(reason()).toBe(FaultReason.COMPATIBILITY_BLOCKED);
    expect(unit.remapIoapicEntry(0x30n)).toEqual({ kind: 'blocked' });
    const cfi = enabled({ cfi: true });
    expect(cfi.unit.remapMsi(SID, { address: 0xfee0_0000, data: 0x30 })).toEqual({ address: 0xfee0_0000, data: 0x30 });
    expect(cfi.unit.remapIoapicEntry(0x30n)).toEqual({ kind: 'ioapic' });
  });

  it('passes everything through while remapping is off', () => {
    const { unit } = setup();
    expect(unit.remapMsi(SID, { address: 0xfee0_0010, data: 0 })).toEqual({ address: 0xfee0_0010, data: 0 });
    expect(unit.remapIoapicEntry(1n << 48n)).toEqual({ kind: 'ioapic' });
  });
});

describe('queued invalidation', () => {
  function queue(descriptors: [bigint, bigint][]) {
    const s = setup();
    descriptors.forEach(([low, high], i) => entry(s.memory, QUEUE + 16 * i, low, high));
    s.q(VtdRegister.IQA, BigInt(QUEUE)); // 256 entries
    s.l(VtdRegister.IQT, 0);
    s.command(VtdGlobal.QIE);
    return s;
  }

  it('runs descriptors up to the tail: a wait writes its status and raises the completion event', () => {
    const wait = 5n | (1n << 4n) | (1n << 5n) | (0x1234_5678n << 32n);
    const { unit, memory, l, events } = queue([[1n | (1n << 4n), 0n], [2n | (1n << 4n), 0n], [wait, BigInt(STATUS)]]);
    l(VtdRegister.IEDATA, 0x42);
    l(VtdRegister.IEADDR, 0xfee0_0000);
    l(VtdRegister.IQT, 3 << 4);
    expect(unit.read(VtdRegister.IQH, 4)).toBe(3 << 4);
    expect(memory.readU32(STATUS)).toBe(0x1234_5678);
    expect(unit.read(VtdRegister.ICS, 4)).toBe(1);
    expect(events).toEqual([{ address: 0xfee0_0000, data: 0x42 }]);
    expect(unit.invalidationsDone).toBe(3);
  });

  it('keeps a completion event pending while IECTL masks it, and sends it on unmasking', () => {
    const wait = 5n | (1n << 4n);
    const { unit, l, events } = queue([[wait, 0n]]);
    l(VtdRegister.IECTL, 1 << 31);
    l(VtdRegister.IQT, 1 << 4);
    expect(events).toEqual([]);
    expect(unit.read(VtdRegister.IECTL, 4) >>> 0).toBe(((1 << 31) | (1 << 30)) >>> 0);
    l(VtdRegister.IECTL, 0);
    expect(events).toHaveLength(1);
  });
});

describe('a hostile guest', () => {
  it('a queue tail beyond the queue sets IQE and runs nothing; so does an unknown descriptor, which IQH then names', () => {
    const s = setup();
    s.q(VtdRegister.IQA, BigInt(QUEUE)); // 256 entries: indexes 0..255
    s.command(VtdGlobal.QIE);
    s.l(VtdRegister.IQT, 300 << 4);
    expect(s.unit.read(VtdRegister.FSTS, 4) & VtdFaultStatus.IQE).toBe(VtdFaultStatus.IQE);
    expect(s.unit.read(VtdRegister.IQH, 4)).toBe(0);
    // While IQE is set nothing runs; cleared, the queue goes on and stops at the bad descriptor.
    s.l(VtdRegister.IQT, 0);
    s.l(VtdRegister.FSTS, VtdFaultStatus.IQE);
    entry(s.memory, QUEUE, 2n, 0n);
    entry(s.memory, QUEUE + 16, 0xfn, 0n);
    s.l(VtdRegister.IQT, 2 << 4);
    expect(s.unit.read(VtdRegister.FSTS, 4) & VtdFaultStatus.IQE).toBe(VtdFaultStatus.IQE);
    expect(s.unit.read(VtdRegister.IQH, 4)).toBe(1 << 4);
  });

  it('a queue or wait status outside RAM is a queue error, not a host error', () => {
    const s = setup();
    s.q(VtdRegister.IQA, 0xf000_0000n);
    s.command(VtdGlobal.QIE);
    s.l(VtdRegister.IQT, 1 << 4);
    expect(s.unit.read(VtdRegister.FSTS, 4) & VtdFaultStatus.IQE).toBe(VtdFaultStatus.IQE);
    const t = setup();
    entry(t.memory, QUEUE, 5n | (1n << 5n), 0x7_0000_0000n);
    t.q(VtdRegister.IQA, BigInt(QUEUE));
    t.command(VtdGlobal.QIE);
    t.l(VtdRegister.IQT, 1 << 4);
    expect(t.unit.read(VtdRegister.FSTS, 4) & VtdFaultStatus.IQE).toBe(VtdFaultStatus.IQE);
  });

  it('garbage root, context and page tables (outside RAM, all ones) are faults', () => {
    const { memory, unit, q, command, l } = setup();
    const reason = () => Number((unit.read64(VtdRegister.FRCD + 8) >> 32n) & 0xffn);
    const clear = () => l(VtdRegister.FRCD + 12, 1 << 31);
    q(VtdRegister.RTADDR, 0xfff0_0000n); // past RAM
    command(VtdGlobal.SRTP);
    command(VtdGlobal.TE);
    expect(unit.translate(SID, 0, 'read').ok).toBe(false);
    expect(reason()).toBe(FaultReason.ROOT_TABLE_INVALID);
    clear();
    memory.fill(ROOT, 0x1000, 0xff);
    q(VtdRegister.RTADDR, BigInt(ROOT));
    command(VtdGlobal.SRTP);
    expect(unit.translate(SID, 0, 'read').ok).toBe(false);
    expect(reason()).toBe(FaultReason.ROOT_RESERVED);
    clear();
    entry(memory, ROOT, 0x7fff_f000n | 1n, 0n); // a context table past RAM
    expect(unit.translate(SID, 0, 'read').ok).toBe(false);
    expect(reason()).toBe(FaultReason.TABLE_UNREADABLE);
    clear();
    mapFourLevels(memory, { table: 0x7fff_f000n }); // a page table past RAM
    expect(unit.translate(SID, 0, 'read').ok).toBe(false);
    expect(reason()).toBe(FaultReason.TABLE_UNREADABLE);
  });

  it('a DMA whose translation leads outside RAM, or faults half-way, moves nothing', () => {
    const { memory, unit, q, command } = setup();
    mapFourLevels(memory, { aw: 1n, table: BigInt(PDPT) });
    memory.writeU64(PDPT, BigInt(PD) | 3n);
    memory.writeU64(PD, BigInt(PT) | 3n);
    memory.writeU64(PT, 0x5000n | 3n);
    memory.writeU64(PT + 8, 0xfff0_0000n | 3n); // IOVA 0x1000 → not RAM
    q(VtdRegister.RTADDR, BigInt(ROOT));
    command(VtdGlobal.SRTP);
    command(VtdGlobal.TE);
    const dma = new RemappedDma(unit, SID, memory);
    memory.fill(0x5000, 0x1000, 0xaa);
    expect(dma.write(0xff0, new Uint8Array(0x20))).toBe(false);
    expect(memory.readU32(0x5ff0)).toBe(0xaaaa_aaaa);
    expect(dma.read(0x1ff0, 0x20)).toBeNull(); // IOVA 0x2000 is not mapped: a fault
    expect(dma.write(0x10, Uint8Array.of(1, 2, 3, 4))).toBe(true);
    expect(memory.readU32(0x5010)).toBe(0x0403_0201);
    expect(dma.aborted).toBe(2);
  });
});
