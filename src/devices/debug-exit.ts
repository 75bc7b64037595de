// QEMU's isa-debug-exit: a guest ends the VM by writing a value to a port, and
// the VMM exits with status (value << 1) | 1. Test guests use it to report a
// result without needing a shutdown path. Default port 0x501, two bytes wide.
//
// It has no state: a write is passed on at once and a read is always 0, so
// it is not a StatefulDevice and has no DeviceStateLayout. An empty layout
// would only add a record to every snapshot and a version to keep for
// nothing; the machine saves the devices that implement StatefulDevice and
// leaves the stateless ones (this one, the bus) out of that list.
import type { BusDevice } from '../bus/index.ts';

export const DEBUG_EXIT_WIDTH = 2;

export class DebugExit implements BusDevice {
  readonly name = 'debug-exit';

  /** `exit` receives the process exit status the write asks for. */
  constructor(private readonly exit: (status: number, value: number) => void) {}

  read(): number {
    return 0;
  }

  write(offset: number, size: number, value: number): void {
    // A byte write to the second port carries the high byte, as on QEMU's device.
    const v = offset === 1 && size === 1 ? value << 8 : value;
    // A process exit status has 8 bits; keep what the OS would keep.
    this.exit(((v << 1) | 1) & 0xff, v);
  }
}
