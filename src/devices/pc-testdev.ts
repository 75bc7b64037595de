// QEMU's pc-testdev (hw/misc/pc-testdev.c): the test device kvm-unit-tests
// drives on x86. It has five windows, each its own BusDevice here:
//
//   port 0xe0, 4 ports   a 32-bit scratch register: an access of N bytes at
//                        offset o reads or writes bytes o..o+N-1 of it
//                        (the emulator test's string and `in`/`out` checks)
//   port 0xe4, 4 ports   "flush page": a 32-bit write of a guest-physical
//                        address makes the host drop its mapping of that page,
//                        so the guest's next touch of it faults in the host
//                        (eventinj uses it to inject exceptions mid-fault)
//   port 0xe8, 4 ports   the same scratch register, served a byte at a time
//   port 0x2000, 24      one port per interrupt line: a byte write drives
//                        ISA IRQ/GSI `offset` to (value != 0) (the ioapic
//                        test); a wider write is split into bytes, as QEMU's
//                        memory core splits it (valid.max_access_size 1), so
//                        realmode's `outl 1, 0x200b` raises IRQ 11 and lowers 12-14
//   MMIO 0xff000000, 64 KiB  a RAM-like buffer that every access exits for
//                        (tests of instructions the emulator must do on MMIO)
//
// Where the windows sit is the machine's (src/layout.ts); the device knows
// offsets only. The scratch register and the buffer are the device's state.
import type { BusDevice } from '../bus/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from './device-state.ts';
import type { InterruptLine } from './interrupt-line.ts';

export const PC_TESTDEV_IOPORT_COUNT = 4;
export const PC_TESTDEV_FLUSH_COUNT = 4;
export const PC_TESTDEV_IRQ_COUNT = 24;
export const PC_TESTDEV_IOMEM_SIZE = 0x1_0000;

export const PC_TESTDEV_STATE = new DeviceStateLayout('pc-testdev', 1, {
  /** The scratch register behind ports 0xe0 and 0xe8. */
  ioport: ['u32', 1],
  /** The MMIO buffer. */
  iomem: ['u8', PC_TESTDEV_IOMEM_SIZE],
});

export interface PcTestdevWiring {
  /** Interrupt line `n` (0..23) of the machine's interrupt controllers. */
  irqLine(line: number): InterruptLine;
  /** Makes the host drop its mapping of the guest page at `guestAddress` (page-aligned). */
  flushPage(guestAddress: number): void;
}

export class PcTestdev implements StatefulDevice {
  readonly state: SharedArrayBuffer;
  /** Port 0xe0: the scratch register, accessed at the access's own width. */
  readonly ioport: BusDevice;
  /** Port 0xe8: the scratch register, one byte at a time (QEMU's impl.max_access_size 1). */
  readonly ioportByte: BusDevice;
  readonly flush: BusDevice;
  readonly irq: BusDevice;
  readonly iomem: BusDevice;

  static createState(): SharedArrayBuffer {
    return PC_TESTDEV_STATE.create();
  }

  constructor(wiring: PcTestdevWiring, state?: SharedArrayBuffer) {
    this.state = state ?? PcTestdev.createState();
    const { ioport, iomem } = PC_TESTDEV_STATE.views(this.state);
    const readScratch = (offset: number, size: number) => {
      const shift = (offset & 3) * 8;
      return ((ioport[0]! & scratchMask(offset, size)) >>> shift) >>> 0;
    };
    const writeScratch = (offset: number, size: number, value: number) => {
      const mask = scratchMask(offset, size);
      ioport[0] = ((ioport[0]! & ~mask) | ((value << ((offset & 3) * 8)) & mask)) >>> 0;
    };
    this.ioport = { name: 'pc-testdev ioport', read: readScratch, write: writeScratch };
    this.ioportByte = { name: 'pc-testdev ioport-byte', byteWide: true, read: readScratch, write: writeScratch };

    this.flush = {
      name: 'pc-testdev flush-page',
      read: () => 0,
      write: (_offset, size, value) => {
        // QEMU accepts 4-byte writes only and ignores the rest.
        if (size === 4) wiring.flushPage((value & ~0xfff) >>> 0);
      },
    };

    const lines: (InterruptLine | undefined)[] = [];
    this.irq = {
      name: 'pc-testdev irq-line',
      byteWide: true,
      read: () => 0,
      write: (offset, _size, value) => {
        (lines[offset] ??= wiring.irqLine(offset)).setLevel((value & 0xff) !== 0);
      },
    };

    this.iomem = {
      name: 'pc-testdev iomem',
      read: (offset, size) => {
        let value = 0;
        for (let i = size - 1; i >= 0; i--) value = value * 256 + (iomem[offset + i] ?? 0);
        return value;
      },
      write: (offset, size, value) => {
        for (let i = 0; i < size; i++) iomem[offset + i] = Math.floor(value / 256 ** i) & 0xff;
      },
      read64: (offset) => {
        let value = 0n;
        for (let i = 7; i >= 0; i--) value = (value << 8n) | BigInt(iomem[offset + i] ?? 0);
        return value;
      },
      write64: (offset, value) => {
        for (let i = 0; i < 8; i++) iomem[offset + i] = Number((value >> BigInt(8 * i)) & 0xffn);
      },
    };
  }

  saveState(): SavedDeviceState {
    return PC_TESTDEV_STATE.save(this.state);
  }

  restoreState(saved: SavedDeviceState): void {
    PC_TESTDEV_STATE.restore(saved, this.state);
  }
}

/** The bits of the 32-bit scratch register that an access of `size` bytes at `offset` covers. */
function scratchMask(offset: number, size: number): number {
  return ((0xffff_ffff >>> (32 - size * 8)) << ((offset & 3) * 8)) >>> 0;
}
