// QEMU's isa-debug-exit: a guest ends the VM by writing a value to a port, and
// the VMM exits with status (value << 1) | 1. Test guests use it to report a
// result without needing a shutdown path. As in QEMU (hw/misc/debugexit.c),
// a write of 1 to 4 bytes at any port of the device's range carries the value
// as written: kvm-unit-tests' `outl(code, 0xf4)` with iosize=4 and a byte
// written to 0x502 both end with that value. Where it sits and how many ports
// it spans are the machine's (src/layout.ts, `--device isa-debug-exit,...`).
//
// It has no state: a write is passed on at once and a read is always 0, so
// it is not a StatefulDevice and has no DeviceStateLayout. An empty layout
// would only add a record to every snapshot and a version to keep for
// nothing; the machine saves the devices that implement StatefulDevice and
// leaves the stateless ones (this one, the bus) out of that list.
import type { BusDevice } from '../bus/index.ts';

export class DebugExit implements BusDevice {
  readonly name = 'debug-exit';

  /** `exit` receives the process exit status the write asks for, and the value written. */
  constructor(private readonly exit: (status: number, value: number) => void) {}

  read(): number {
    return 0;
  }

  write(_offset: number, _size: number, value: number): void {
    // A process exit status has 8 bits; keep what the OS would keep of QEMU's exit().
    this.exit(((value << 1) | 1) & 0xff, value);
  }
}
