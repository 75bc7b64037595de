// The split virtqueue (virtio 1.2, 2.7) from the device side, with the driver's
// half written by hand into guest memory: descriptor table, available ring,
// used ring. Most cases are a hostile driver.
import { describe, expect, it } from 'vitest';
import { DirtyPageLog, PAGE_SIZE } from '../src/memory/dirty-pages.ts';
import { GuestMemory } from '../src/memory/index.ts';
import { Virtqueue, VirtqueueError, gather, scatter, type QueueAddresses } from '../src/devices/virtio/queue.ts';
import { DescriptorFlag } from '../src/devices/virtio/spec.ts';

const RAM = 1 << 20;
const SIZE = 8;
const DESC = 0x1000;
const AVAIL = 0x2000;
const USED = 0x3000;
const INDIRECT_TABLE = 0x4000;
const BUF = 0x10000;
const { NEXT, WRITE, INDIRECT } = DescriptorFlag;

function setup(features = { eventIndex: false, indirectDescriptors: true }, addresses: Partial<QueueAddresses> = {}, dirty: DirtyPageLog | null = null) {
  const memory = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: RAM }]);
  const queue = new Virtqueue(memory, { size: SIZE, descriptors: DESC, available: AVAIL, used: USED, ...addresses }, features, undefined, dirty);
  let availIndex = 0;
  const descriptor = (index: number, address: number, length: number, flags = 0, next = 0, table = DESC) => {
    const at = table + 16 * index;
    memory.writeU64(at, BigInt(address));
    memory.writeU32(at + 8, length);
    memory.writeU16(at + 12, flags);
    memory.writeU16(at + 14, next);
  };
  const offer = (head: number) => {
    memory.writeU16(AVAIL + 4 + 2 * (availIndex % SIZE), head);
    availIndex = (availIndex + 1) & 0xffff;
    memory.writeU16(AVAIL + 2, availIndex);
  };
  const usedIndex = () => memory.readU16(USED + 2);
  const usedElement = (slot: number) => ({ id: memory.readU32(USED + 4 + 8 * slot), len: memory.readU32(USED + 8 + 8 * slot) });
  return { memory, queue, descriptor, offer, usedIndex, usedElement };
}

describe('a split virtqueue', () => {
  it('hands out a chain of readable then writable buffers, in order', () => {
    const { queue, descriptor, offer } = setup();
    descriptor(0, BUF, 16, NEXT, 1);
    descriptor(1, BUF + 0x100, 512, NEXT | WRITE, 2);
    descriptor(2, BUF + 0x400, 1, WRITE);
    offer(0);
    expect(queue.pending()).toBe(1);
    const chain = queue.pop()!;
    expect(chain.error).toBeNull();
    expect(chain.head).toBe(0);
    expect(chain.readable).toEqual([{ address: BUF, length: 16 }]);
    expect(chain.writable).toEqual([{ address: BUF + 0x100, length: 512 }, { address: BUF + 0x400, length: 1 }]);
    expect([chain.readableBytes, chain.writableBytes]).toEqual([16, 513]);
    expect(queue.pop()).toBeNull();
  });

  it('returns a used element (id, length); used.idx moves when the batch is published', () => {
    const { queue, descriptor, offer, usedIndex, usedElement } = setup();
    descriptor(3, BUF, 64, WRITE);
    offer(3);
    const chain = queue.pop()!;
    queue.pushUsed(chain.head, 64);
    expect(usedIndex()).toBe(0);
    queue.publishUsed();
    expect(usedIndex()).toBe(1);
    expect(usedElement(0)).toEqual({ id: 3, len: 64 });
  });

  it('follows an indirect table when VIRTIO_F_INDIRECT_DESC was negotiated', () => {
    const { queue, descriptor, offer } = setup();
    descriptor(0, BUF, 16, NEXT, 1, INDIRECT_TABLE);
    descriptor(1, BUF + 0x100, 4096, WRITE, 0, INDIRECT_TABLE);
    descriptor(5, INDIRECT_TABLE, 32, INDIRECT);
    offer(5);
    const chain = queue.pop()!;
    expect(chain.error).toBeNull();
    expect(chain.head).toBe(5);
    expect(chain.readable).toEqual([{ address: BUF, length: 16 }]);
    expect(chain.writable).toEqual([{ address: BUF + 0x100, length: 4096 }]);
  });

  it('gathers and scatters across the segments of a chain', () => {
    const { memory, queue, descriptor, offer } = setup();
    descriptor(0, BUF, 3, NEXT | WRITE, 1);
    descriptor(1, BUF + 0x100, 5, WRITE);
    offer(0);
    const chain = queue.pop()!;
    scatter(memory, chain.writable, 1, Uint8Array.of(1, 2, 3, 4, 5, 6));
    expect([...memory.read(BUF, 3)]).toEqual([0, 1, 2]);
    expect([...memory.read(BUF + 0x100, 5)]).toEqual([3, 4, 5, 6, 0]);
    expect([...gather(memory, chain.writable, 2, 3)]).toEqual([2, 3, 4]);
    expect(() => gather(memory, chain.writable, 6, 3)).toThrow(VirtqueueError);
  });

  describe('a hostile driver fails its request, not the queue', () => {
    const cases: [string, (d: ReturnType<typeof setup>['descriptor']) => void, RegExp][] = [
      ['a buffer outside guest RAM', (d) => d(0, RAM - 8, 16), /outside guest RAM/],
      ['a buffer at a 64-bit address', (d) => d(0, 2 ** 60, 16), /outside guest RAM/],
      ['a zero length', (d) => d(0, BUF, 0), /length 0/],
      ['a loop (0 -> 1 -> 0)', (d) => { d(0, BUF, 16, NEXT, 1); d(1, BUF, 16, NEXT, 0); }, /loops/],
      ['a chain that names a descriptor past the table', (d) => d(0, BUF, 16, NEXT, SIZE), /past the table/],
      ['a readable buffer after a writable one', (d) => { d(0, BUF, 16, WRITE | NEXT, 1); d(1, BUF, 16); }, /readable buffer after a writable/],
      ['an indirect table outside RAM', (d) => d(0, RAM - 16, 32, INDIRECT), /outside guest RAM/],
      ['an indirect table of a size that is not whole descriptors', (d) => d(0, INDIRECT_TABLE, 20, INDIRECT), /indirect table of 20 bytes/],
      ['an indirect descriptor with NEXT', (d) => d(0, INDIRECT_TABLE, 32, INDIRECT | NEXT, 1), /NEXT/],
      ['an indirect table longer than the queue', (d) => d(0, INDIRECT_TABLE, 16 * (SIZE + 1), INDIRECT), /9 descriptors, more than the queue size 8/],
      ['an indirect table that loops', (d) => {
        d(0, BUF, 16, NEXT, 1, INDIRECT_TABLE);
        d(1, BUF, 16, NEXT, 0, INDIRECT_TABLE);
        d(0, INDIRECT_TABLE, 32, INDIRECT);
      }, /loops/],
      ['an indirect table inside an indirect table', (d) => {
        d(0, INDIRECT_TABLE, 16, INDIRECT, 0, INDIRECT_TABLE);
        d(0, INDIRECT_TABLE, 16, INDIRECT);
      }, /another indirect table/],
    ];
    for (const [what, build, reason] of cases) {
      it(what, () => {
        const { queue, descriptor, offer } = setup();
        build(descriptor);
        offer(0);
        const chain = queue.pop()!;
        expect(chain.error).toMatch(reason);
        // The queue goes on: the next request is served.
        descriptor(2, BUF, 8, WRITE);
        offer(2);
        expect(queue.pop()!.error).toBeNull();
      });
    }

    it('an indirect descriptor the driver did not negotiate', () => {
      const { queue, descriptor, offer } = setup({ eventIndex: false, indirectDescriptors: false });
      descriptor(0, INDIRECT_TABLE, 32, INDIRECT);
      offer(0);
      expect(queue.pop()!.error).toMatch(/without VIRTIO_F_INDIRECT_DESC/);
    });
  });

  describe('a hostile driver breaks the queue', () => {
    it('an available index that jumps by more than the queue size', () => {
      const { memory, queue } = setup();
      memory.writeU16(AVAIL + 2, SIZE + 1);
      expect(() => queue.pop()).toThrow(/jumped by 9/);
    });

    it('an available ring entry that names a descriptor past the table', () => {
      const { queue, offer } = setup();
      offer(SIZE);
      expect(() => queue.pop()).toThrow(/names descriptor 8 of 8/);
    });

    it.each([
      ['a size that is not a power of 2', { size: 6 }, /power of 2/],
      ['a size of 0', { size: 0 }, /power of 2/],
      ['a descriptor table outside RAM', { descriptors: RAM - 64 }, /descriptor table .* outside guest RAM/],
      ['a misaligned used ring', { used: USED + 2 }, /used ring .* not 4-byte aligned/],
      ['an available ring past 4 GiB', { available: 2 ** 40 }, /available ring .* outside guest RAM/],
    ] as const)('%s', (_what, addresses, message) => {
      expect(() => setup(undefined, addresses)).toThrow(message);
    });
  });

  describe('interrupt suppression', () => {
    it('without EVENT_IDX: the driver\'s NO_INTERRUPT flag', () => {
      const { memory, queue, descriptor, offer } = setup();
      descriptor(0, BUF, 8, WRITE);
      offer(0);
      queue.pushUsed(queue.pop()!.head, 8);
      expect(queue.needsInterrupt()).toBe(true);
      memory.writeU16(AVAIL, 1);
      expect(queue.needsInterrupt()).toBe(false);
    });

    it('with EVENT_IDX: only when used.idx steps past used_event', () => {
      const { memory, queue, descriptor, offer } = setup({ eventIndex: true, indirectDescriptors: false });
      const usedEvent = (value: number) => memory.writeU16(AVAIL + 4 + 2 * SIZE, value);
      const complete = () => {
        descriptor(0, BUF, 8, WRITE);
        offer(0);
        queue.pushUsed(queue.pop()!.head, 8);
      };
      usedEvent(1); // "interrupt me when the used index passes 1"
      complete(); // used.idx = 1
      expect(queue.needsInterrupt()).toBe(false);
      complete(); // used.idx = 2: stepped over 1
      expect(queue.needsInterrupt()).toBe(true);
      complete(); // 3
      expect(queue.needsInterrupt()).toBe(false);
    });

    it('rearm publishes avail_event (EVENT_IDX) and reports buffers that raced in', () => {
      const { memory, queue, descriptor, offer } = setup({ eventIndex: true, indirectDescriptors: false });
      descriptor(0, BUF, 8, WRITE);
      offer(0);
      queue.pop();
      expect(queue.rearm()).toBe(false);
      expect(memory.readU16(USED + 4 + 8 * SIZE)).toBe(1);
      offer(0);
      expect(queue.rearm()).toBe(true);
    });
  });

  it('keeps counting across the 16-bit wrap of the ring indexes', () => {
    const { memory, queue, descriptor, usedIndex } = setup();
    descriptor(0, BUF, 8, WRITE);
    for (let i = 0; i < 70_000; i++) {
      memory.writeU16(AVAIL + 4 + 2 * (i % SIZE), 0);
      memory.writeU16(AVAIL + 2, (i + 1) & 0xffff);
      const chain = queue.pop()!;
      queue.pushUsed(chain.head, 8);
      queue.publishUsed();
    }
    expect(usedIndex()).toBe(70_000 & 0xffff);
  });
});

// Live migration sends again every page written since the last round; KVM's
// dirty log does not see what the device writes from the host side, so the
// queue marks those pages in a DirtyPageLog while a migration runs.
describe('a split virtqueue under a migration\'s dirty page log', () => {
  const page = (address: number) => Math.floor(address / PAGE_SIZE);
  const USED_PAGE = page(USED);

  function logged(features = { eventIndex: false, indirectDescriptors: true }) {
    const log = new DirtyPageLog(DirtyPageLog.create(RAM));
    return { log, ...setup(features, {}, log) };
  }

  it('marks a completed chain\'s writable buffers, across page boundaries, and the used ring; not what it only read', () => {
    const { log, queue, descriptor, offer } = logged();
    log.start();
    descriptor(0, BUF, 64, NEXT, 1);
    descriptor(1, BUF + 0x1f00, 0x200, NEXT | WRITE, 2);
    descriptor(2, BUF + 0x5000, 1, WRITE);
    offer(0);
    const chain = queue.pop()!;
    expect(log.harvest()).toEqual([]);
    queue.pushUsed(chain.head, 0x201);
    queue.publishUsed();
    expect(log.harvest()).toEqual([USED_PAGE, page(BUF) + 1, page(BUF) + 2, page(BUF) + 5]);
  });

  it('marks nothing while not logging', () => {
    const { log, queue, descriptor, offer } = logged();
    descriptor(0, BUF, 64, WRITE);
    offer(0);
    queue.pushUsed(queue.pop()!.head, 64);
    queue.publishUsed();
    queue.rearm();
    log.start();
    expect(log.harvest()).toEqual([]);
  });

  it('marks the buffers of a chain taken before logging started and completed after', () => {
    const { log, queue, descriptor, offer } = logged();
    descriptor(0, BUF + 0x3000, 16, WRITE);
    offer(0);
    const chain = queue.pop()!;
    log.start();
    queue.pushUsed(chain.head, 16);
    expect(log.harvest()).toEqual([USED_PAGE, page(BUF) + 3]);
  });

  it('marks nothing once logging stopped', () => {
    const { log, queue, descriptor, offer } = logged();
    log.start();
    descriptor(0, BUF, 64, WRITE);
    offer(0);
    const chain = queue.pop()!;
    log.stop();
    queue.pushUsed(chain.head, 64);
    queue.publishUsed();
    log.start();
    expect(log.harvest()).toEqual([]);
  });

  it('marks the used ring when used.idx moves for elements pushed before logging started', () => {
    const { log, queue, descriptor, offer, usedIndex } = logged();
    descriptor(0, BUF, 64, WRITE);
    offer(0);
    queue.pushUsed(queue.pop()!.head, 64);
    log.start();
    queue.publishUsed();
    expect(usedIndex()).toBe(1);
    expect(log.harvest()).toEqual([USED_PAGE]);
  });

  it('marks the used ring when rearm writes avail_event (EVENT_IDX) or the flags', () => {
    for (const eventIndex of [true, false]) {
      const { log, queue } = logged({ eventIndex, indirectDescriptors: false });
      log.start();
      queue.rearm();
      expect(log.harvest(), `eventIndex ${eventIndex}`).toEqual([USED_PAGE]);
    }
  });
});
