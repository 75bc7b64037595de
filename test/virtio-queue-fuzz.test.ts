// A seeded random fuzz target for the split virtqueue and the request
// handling of every virtio device (blk, net, rng, console). Each case is a
// hostile driver in a small guest memory with a hole in it: random queue
// layouts and sizes, descriptor tables, indirect tables, available rings,
// indexes, flags and addresses, random request headers, notifications,
// host events and resets. Invariants, checked after every step:
// - nothing is thrown out of the runner (the I/O thread would die);
// - no access is ever attempted outside guest RAM (a recording memory), and
//   the guard bytes around each RAM range are never written;
// - the used ring stays consistent: never more new elements than the queue
//   size, each naming a head the driver made available, in order, with a
//   length no larger than the chain's writable bytes (0 for a malformed one);
// - a request queue either completes everything made available or the device
//   is in DEVICE_NEEDS_RESET.
//
// TSVMM_FUZZ_CASES sets the number of cases (default 2000), TSVMM_FUZZ_SEED
// the seed (default 1, so CI runs the same cases every time; "random" for a
// new one, printed with any failure so it can be replayed).
import { closeSync, openSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { GuestMemory, type RamRange } from '../src/memory/index.ts';
import { BlkRequest, VirtioBlk } from '../src/devices/virtio/blk.ts';
import { ConsoleQueue, VirtioConsole, type ConsoleHostIo } from '../src/devices/virtio/console.ts';
import type { VirtioDevice } from '../src/devices/virtio/device.ts';
import { NetQueue, VirtioNet } from '../src/devices/virtio/net.ts';
import { VirtioRng } from '../src/devices/virtio/rng.ts';
import { DescriptorFlag, Feature, featureBit, Status } from '../src/devices/virtio/spec.ts';
import { MemoryDisk } from './helpers/memory-disk.ts';
import { closeFd } from '../src/kvm/index.ts';
import { VirtioTestDriver, type QueueLayout } from './helpers/virtio-driver.ts';
import { netnsUnavailable, TestNetns } from './helpers/netns.ts';

const CASES = Number(process.env.TSVMM_FUZZ_CASES ?? 2000);
const SEED_SETTING = process.env.TSVMM_FUZZ_SEED ?? '1';
const SEED = SEED_SETTING === 'random' ? Math.floor(Math.random() * 2 ** 32) : Number(SEED_SETTING);

/** Two RAM ranges with a hole between them, each with guard bytes on both sides in its host buffer. */
const RAM_LAYOUT = [{ guestAddress: 0, size: 0x8000 }, { guestAddress: 0x10000, size: 0x8000 }] as const;
const GUARD = 4096;
const GUARD_BYTE = 0x5a;

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function random(seed: number) {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (below: number): number => Math.floor(next() * below);
  return {
    int,
    chance: (p: number): boolean => next() < p,
    pick: <T>(items: readonly T[]): T => items[int(items.length)]!,
    u16: (): number => int(0x10000),
    u32: (): number => int(2 ** 32),
  };
}
type Random = ReturnType<typeof random>;

/**
 * Guest memory that notes every access the device attempts: one outside RAM
 * is a defect even though the bounds check would stop it.
 */
/** Two host chunks per range, so chains and rings also cross a chunk boundary (issue 10, item 5). */
function splitInTwo(bytes: Uint8Array): Uint8Array[] {
  const half = (bytes.length >> 1) + 3;  // off any natural alignment: values straddle the cut
  return [bytes.subarray(0, half), bytes.subarray(half)];
}

class RecordingMemory extends GuestMemory {
  outside: string[] = [];
  private readonly hosts: Uint8Array[];

  constructor() {
    const hosts = RAM_LAYOUT.map(({ size }) => new Uint8Array(GUARD + size + GUARD).fill(GUARD_BYTE));
    const ranges: RamRange[] = RAM_LAYOUT.map(({ guestAddress, size }, i) => ({ guestAddress, size, chunks: splitInTwo(hosts[i]!.subarray(GUARD, GUARD + size)) }));
    super(ranges);
    this.hosts = hosts;
  }

  private note(what: string, address: number, length: number): void {
    if (!this.contains(address, length)) this.outside.push(`${what} at 0x${address.toString(16)}+${length}`);
  }

  /** Whether any byte around a RAM range changed. */
  guardsIntact(): boolean {
    return this.hosts.every((host) => {
      for (let i = 0; i < GUARD; i++) if (host[i] !== GUARD_BYTE || host[host.length - 1 - i] !== GUARD_BYTE) return false;
      return true;
    });
  }

  override readU8(a: number): number { this.note('readU8', a, 1); return super.readU8(a); }
  override readU16(a: number): number { this.note('readU16', a, 2); return super.readU16(a); }
  override readU32(a: number): number { this.note('readU32', a, 4); return super.readU32(a); }
  override readU64(a: number): bigint { this.note('readU64', a, 8); return super.readU64(a); }
  override writeU8(a: number, v: number): void { this.note('writeU8', a, 1); super.writeU8(a, v); }
  override writeU16(a: number, v: number): void { this.note('writeU16', a, 2); super.writeU16(a, v); }
  override writeU32(a: number, v: number): void { this.note('writeU32', a, 4); super.writeU32(a, v); }
  override writeU64(a: number, v: bigint): void { this.note('writeU64', a, 8); super.writeU64(a, v); }
  override slices(a: number, l: number): Uint8Array[] { this.note('slices', a, l); return super.slices(a, l); }
  override read(a: number, l: number): Uint8Array { this.note('read', a, l); return super.read(a, l); }
  override write(a: number, d: Uint8Array): void { this.note('write', a, d.length); super.write(a, d); }
  override fill(a: number, l: number, v: number): void { this.note('fill', a, l); super.fill(a, l, v); }
}

/** A TAP that is down in a namespace of our own (reads: EAGAIN, writes: EIO), or /dev/null where there is none. */
let ns: TestNetns | null = null;
let tapFd: number;
if (netnsUnavailable === null) {
  ns = TestNetns.create();
  tapFd = ns.openTap().fd;
} else {
  tapFd = openSync('/dev/null', 'r+');
}
afterAll(() => {
  if (ns) {
    closeFd(tapFd);
    ns.remove();
  } else {
    closeSync(tapFd);
  }
});

interface DeviceKind {
  name: string;
  make(rng: Random): VirtioDevice;
  /** Queues the device completes as soon as it is notified (the others wait for host input). */
  requestQueues: readonly number[];
  /** A host event the I/O thread would deliver (TAP readable, console input). */
  hostEvent?(device: VirtioDevice, rng: Random): void;
}

/** Host input waiting for each console device. */
const consoleInput = new WeakMap<VirtioDevice, number[]>();

const DEVICE_KINDS: DeviceKind[] = [
  { name: 'blk', make: () => new VirtioBlk(MemoryDisk.filled(32), { name: 'blk0', serial: 'fuzz' }), requestQueues: [0] },
  { name: 'rng', make: () => new VirtioRng({ name: 'rng0' }), requestQueues: [0] },
  {
    name: 'net',
    make: () => new VirtioNet({ name: 'net0', tapFd, mac: Uint8Array.of(0x52, 0x54, 0, 0, 0, 2) }),
    requestQueues: [NetQueue.TRANSMIT],
    hostEvent: (device) => device.onReadable?.(tapFd),
  },
  {
    name: 'console',
    make: (rng) => {
      const pending: number[] = [];
      const io: ConsoleHostIo = {
        write: () => {},
        read: (max) => (pending.length ? Uint8Array.from(pending.splice(0, Math.max(1, rng.int(max + 1)))) : null),
      };
      const device = new VirtioConsole({ name: 'console0', io });
      consoleInput.set(device, pending);
      return device;
    },
    requestQueues: [ConsoleQueue.TRANSMIT],
    hostEvent: (device, rng) => {
      const pending = consoleInput.get(device)!;
      for (let i = rng.int(300); i > 0; i--) pending.push(rng.int(256));
      (device as VirtioConsole).receiveHostInput();
    },
  },
];

/**
 * Where things go. The rings and indirect tables of queue q live in its own
 * 8 KiB slot of the first RAM range; buffers live in the second. A driver
 * that points a writable buffer at its own rings is allowed (and tried, now
 * and then), but then the used ring cannot be checked: the case says so.
 */
const RING_SLOT = 0x2000;
const BUFFERS = RAM_LAYOUT[1];

/** Anywhere but where it belongs: the hole, past RAM, 64-bit, or straddling the end of RAM. */
function strayAddress(rng: Random, length: number): number {
  switch (rng.int(4)) {
    case 0: return 0x8000 + rng.int(0x8000); // the hole
    case 1: return BUFFERS.guestAddress + BUFFERS.size - rng.int(Math.min(length, 0x1000) + 1);
    case 2: return rng.u32();
    default: return rng.u32() * 2 ** 32 + rng.u32();
  }
}

function inSlot(rng: Random, queue: number, from: number, span: number, alignment: number): number {
  const at = queue * RING_SLOT + from + rng.int(span);
  return rng.chance(0.97) ? at - (at % alignment) : at;
}

function queueLayout(rng: Random, queue: number, maxSize: number): QueueLayout {
  const size = rng.chance(0.9) ? 2 ** rng.int(Math.log2(Math.min(maxSize, 64)) + 1) : rng.u16();
  const known = Math.min(size, 64) || 1;
  const stray = (at: number, length: number) => (rng.chance(0.03) ? strayAddress(rng, length) : at);
  return {
    size,
    descriptors: stray(inSlot(rng, queue, 0, 0x200, 16), 16 * known),
    available: stray(inSlot(rng, queue, 0x600, 0x80, 2), 6 + 2 * known),
    used: stray(inSlot(rng, queue, 0x800, 0x200, 4), 6 + 8 * known),
  };
}

/** What one case's driver wrote, beyond the rings. */
interface CaseState {
  queue: number;
  /** A writable buffer points into the rings' range: the used ring may be overwritten by request data. */
  buffersOverRings: boolean;
}

const { NEXT, WRITE, INDIRECT } = DescriptorFlag;
const FLAG_CHOICES = [0, NEXT, WRITE, NEXT | WRITE, INDIRECT, INDIRECT | NEXT, INDIRECT | WRITE, 0xffff];
const BLK_TYPES = [BlkRequest.IN, BlkRequest.OUT, BlkRequest.FLUSH, BlkRequest.GET_ID, 99, 0xffff_ffff];

/** Writes `count` random descriptors at `table`, where RAM allows it; some name indirect tables (nested at most once). */
function writeDescriptors(memory: GuestMemory, rng: Random, state: CaseState, table: number, count: number, tableSize: number, depth = 0): void {
  for (let i = 0; i < count; i++) {
    const at = table + 16 * i;
    if (!memory.contains(at, 16)) return;
    const length = rng.pick([0, 1, 12, 16, 17, 64, 512, 513, 4096, rng.int(2000), rng.u32()]);
    let flags = rng.pick(FLAG_CHOICES);
    let target: number;
    if (flags & INDIRECT && depth < 2 && rng.chance(0.7)) {
      const entries = 1 + rng.int(tableSize + 2);
      target = rng.chance(0.95) ? inSlot(rng, state.queue, 0xc00, 0x1400 - 16 * entries, 16) : strayAddress(rng, 16 * entries);
      writeDescriptors(memory, rng, state, target, entries, entries, depth + 1);
      memory.writeU32(at + 8, rng.chance(0.8) ? 16 * entries : rng.int(200));
    } else {
      const roll = rng.int(100);
      if (roll < 85) target = BUFFERS.guestAddress + rng.int(BUFFERS.size);
      else if (roll < 97) target = strayAddress(rng, length);
      else {
        target = rng.int(RAM_LAYOUT[0].size);
        state.buffersOverRings = true;
      }
      memory.writeU32(at + 8, length);
      // Request-shaped bytes where the buffer starts: a blk header, a net header.
      if (target >= BUFFERS.guestAddress && memory.contains(target, 16) && rng.chance(0.5)) {
        memory.writeU32(target, rng.pick(BLK_TYPES));
        memory.writeU32(target + 4, rng.u32());
        memory.writeU64(target + 8, BigInt(rng.chance(0.8) ? rng.int(40) : rng.u32()));
      }
    }
    if (rng.chance(0.05)) flags = rng.u16();
    memory.writeU32(at, target % 2 ** 32);
    memory.writeU32(at + 4, Math.floor(target / 2 ** 32));
    memory.writeU16(at + 12, flags);
    memory.writeU16(at + 14, rng.chance(0.9) ? rng.int(tableSize) : rng.u16());
  }
}

/**
 * The writable bytes of the chain at `head`, walked independently of the
 * queue code, or null when the chain is malformed (the device must then use
 * none of it).
 */
function referenceWritableBytes(memory: GuestMemory, layout: QueueLayout, head: number, indirectAllowed: boolean): number | null {
  let table = layout.descriptors;
  let tableSize = layout.size;
  let index = head;
  let writable = 0;
  let total = 0;
  let seenWritable = false;
  let inIndirect = false;
  let count = 0;
  for (let steps = 0; steps <= 2 * layout.size + 2; steps++) {
    const at = table + 16 * index;
    if (!memory.contains(at, 16)) return null;
    const addressValue = memory.readU32(at + 4) * 2 ** 32 + memory.readU32(at);
    const length = memory.readU32(at + 8);
    const flags = memory.readU16(at + 12);
    const next = memory.readU16(at + 14);
    if (flags & INDIRECT) {
      if (inIndirect || !indirectAllowed || flags & NEXT || count > 0) return null;
      if (length === 0 || length % 16 !== 0 || length / 16 > layout.size || !memory.contains(addressValue, length)) return null;
      table = addressValue;
      tableSize = length / 16;
      index = 0;
      inIndirect = true;
      count = 0;
      continue;
    }
    if (length === 0 || !memory.contains(addressValue, length)) return null;
    if (flags & WRITE) {
      seenWritable = true;
      writable += length;
    } else if (seenWritable) {
      return null;
    }
    total += length;
    count++;
    if (count > tableSize || total > 0xffff_ffff) return null;
    if (!(flags & NEXT)) return writable;
    if (next >= tableSize) return null;
    index = next;
  }
  return null;
}

/** What the test knows of one queue, to check the used ring the device writes. */
interface QueueShadow {
  index: number;
  layout: QueueLayout;
  /** Whether its layout is one the device must accept (else it is refused at DRIVER_OK). */
  valid: boolean;
  nextAvailable: number;
  lastUsed: number;
  /** Heads made available and not yet seen used, in order, with their writable bytes at the time. */
  outstanding: { head: number; writable: number | null }[];
}

function validLayout(memory: GuestMemory, layout: QueueLayout, maxSize: number): boolean {
  const { size } = layout;
  return size >= 1 && size <= maxSize && (size & (size - 1)) === 0
    && layout.descriptors % 16 === 0 && memory.contains(layout.descriptors, 16 * size)
    && layout.available % 2 === 0 && memory.contains(layout.available, 6 + 2 * size)
    && layout.used % 4 === 0 && memory.contains(layout.used, 6 + 8 * size);
}

/** One fuzz case; throws (an assertion) when an invariant breaks. */
function runCase(seed: number): void {
  const rng = random(seed);
  const kind = rng.pick(DEVICE_KINDS);
  const memory = new RecordingMemory();
  const device = kind.make(rng);
  const driver = new VirtioTestDriver(device, { memory });
  const indirectAllowed = rng.chance(0.7);
  const written: CaseState = { queue: 0, buffersOverRings: false };
  const check = (where: string) => {
    expect(memory.outside, `${kind.name}: ${where}: accesses outside guest RAM`).toEqual([]);
    expect(memory.guardsIntact(), `${kind.name}: ${where}: guard bytes written`).toBe(true);
  };

  for (let life = 0; life < 1 + rng.int(2); life++) {
    driver.negotiate((offered) => {
      let accepted = featureBit(Feature.VERSION_1) | (offered & ~(featureBit(Feature.RING_INDIRECT_DESC) | featureBit(Feature.RING_EVENT_IDX)));
      if (indirectAllowed) accepted |= featureBit(Feature.RING_INDIRECT_DESC);
      if (rng.chance(0.5)) accepted |= featureBit(Feature.RING_EVENT_IDX);
      return accepted;
    });
    const shadows: QueueShadow[] = [];
    device.info.queueMaxSizes.forEach((maxSize, index) => {
      if (rng.chance(0.1)) return; // left disabled
      const layout = queueLayout(rng, index, maxSize);
      driver.programQueue(index, layout);
      const valid = validLayout(memory, layout, maxSize);
      if (valid) {
        // The driver zeroes its rings before use; so does this one.
        memory.fill(layout.available, 6 + 2 * layout.size, 0);
        memory.fill(layout.used, 6 + 8 * layout.size, 0);
      }
      shadows.push({ index, layout, valid, nextAvailable: 0, lastUsed: 0, outstanding: [] });
    });
    memory.outside.length = 0; // the driver's own setup writes are not the device's
    driver.driverOk();
    check('DRIVER_OK');
    if (shadows.some((s) => !s.valid)) expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET);

    for (let step = 0; step < 1 + rng.int(6); step++) {
      const shadow = rng.pick(shadows.length ? shadows : [null]);
      if (shadow?.valid && rng.chance(0.9)) {
        const { layout } = shadow;
        // The driver's side of a round: descriptors, available entries, the index (sometimes a lie).
        // Descriptors of chains still waiting (receive buffers) stay as they were: the device read them already.
        written.queue = shadow.index;
        if (shadow.outstanding.length === 0) writeDescriptors(memory, rng, written, layout.descriptors, layout.size, layout.size);
        const offered = rng.chance(0.9) ? rng.int(layout.size + 1) : rng.u16();
        const available = (shadow.nextAvailable + offered) & 0xffff;
        const honest = offered <= layout.size - shadow.outstanding.length;
        for (let i = 0; i < Math.min(offered, layout.size); i++) {
          const slot = (shadow.nextAvailable + i) % layout.size;
          const head = rng.chance(0.95) ? rng.int(layout.size) : rng.u16();
          memory.writeU16(layout.available + 4 + 2 * slot, head);
          if (honest) shadow.outstanding.push({ head, writable: head < layout.size ? referenceWritableBytes(memory, layout, head, indirectAllowed) : null });
        }
        memory.writeU16(layout.available, rng.chance(0.2) ? 1 : 0);
        memory.writeU16(layout.available + 4 + 2 * layout.size, rng.u16());
        memory.writeU16(layout.available + 2, available);
        shadow.nextAvailable = available;
        memory.outside.length = 0;
        if (!honest) shadow.outstanding.length = 0;

        const brokenBefore = (driver.status & Status.DEVICE_NEEDS_RESET) !== 0;
        driver.notify(shadow.index);
        check(`notify ${shadow.index}`);
        if (!written.buffersOverRings) checkUsed(driver, memory, shadow, kind.requestQueues.includes(shadow.index), honest, brokenBefore);
        if (!honest) shadow.valid = false; // the device may have stopped this queue; stop checking it
      } else if (rng.chance(0.5) && kind.hostEvent) {
        driver.runner.hostEvent((d) => kind.hostEvent!(d, rng));
        check('host event');
        if (!written.buffersOverRings) for (const s of shadows) if (s.valid) checkUsed(driver, memory, s, false, true, true);
      } else {
        driver.notify(rng.pick([0, 1, 2, 3, 0xffff]));
        check('notify of any queue');
      }
    }
  }
  driver.reset();
  check('reset');
}

/** The used elements published since the last look must match what was made available. */
function checkUsed(driver: VirtioTestDriver, memory: GuestMemory, shadow: QueueShadow, requestQueue: boolean, honest: boolean, brokenBefore: boolean): void {
  const { layout } = shadow;
  const usedIndex = memory.readU16(layout.used + 2);
  const fresh = (usedIndex - shadow.lastUsed) & 0xffff;
  expect(fresh, `queue ${shadow.index}: used.idx moved by ${fresh}`).toBeLessThanOrEqual(layout.size);
  for (let i = 0; i < fresh; i++) {
    const slot = (shadow.lastUsed + i) % layout.size;
    const id = memory.readU32(layout.used + 4 + 8 * slot);
    const len = memory.readU32(layout.used + 8 + 8 * slot);
    expect(id, `queue ${shadow.index}: used id`).toBeLessThan(layout.size);
    if (!honest) continue;
    const expected = shadow.outstanding.shift();
    expect(expected, `queue ${shadow.index}: a used element nobody made available`).toBeDefined();
    expect(id, `queue ${shadow.index}: used element out of order`).toBe(expected!.head);
    if (expected!.writable === null) expect(len, `queue ${shadow.index}: a malformed chain came back with a length`).toBe(0);
    else expect(len, `queue ${shadow.index}: used length past the writable bytes`).toBeLessThanOrEqual(expected!.writable);
  }
  shadow.lastUsed = usedIndex;
  // A request queue serves everything made available, unless the device asked for a reset.
  const needsReset = (driver.status & Status.DEVICE_NEEDS_RESET) !== 0;
  if (requestQueue && honest && !needsReset && !brokenBefore) {
    expect(shadow.outstanding, `queue ${shadow.index}: requests left unserved without NEEDS_RESET`).toEqual([]);
  }
}

describe('virtqueue fuzz', () => {
  it(`${CASES} random hostile drivers against blk, net, rng and console (seed ${SEED})`, () => {
    const started = Date.now();
    for (let n = 0; n < CASES; n++) {
      const caseSeed = (SEED + Math.imul(n, 0x9e3779b1)) >>> 0;
      try {
        runCase(caseSeed);
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        throw new Error(`virtqueue fuzz: case ${n} failed (replay: TSVMM_FUZZ_SEED=${SEED}, case seed ${caseSeed}): ${message}`, { cause: e });
      }
    }
    console.log(`virtqueue fuzz: ${CASES} cases, seed ${SEED}, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }, 300_000);
});
