// Placement option C: the device lives in its own thread; the vCPU thread
// hands each access over through a SharedArrayBuffer mailbox and blocks
// (Atomics.wait) until the device thread answers. Measures that round trip.
import { Worker } from 'node:worker_threads';
import type { BusDevice } from '../../src/bus/index.ts';
import type { PlatformContext } from '../../src/machine/bus-devices.ts';

const REQUEST = 0; // sequence number of the last request (vCPU → device)
const REPLY = 1; // sequence number of the last reply (device → vCPU)
const OFFSET = 2;
const VALUE = 3;

const DEVICE_THREAD = `
const { workerData } = require('node:worker_threads');
const box = new Int32Array(workerData);
let seen = 0;
let count = 0;
for (;;) {
  Atomics.wait(box, ${REQUEST}, seen);
  seen = Atomics.load(box, ${REQUEST});
  if (seen < 0) break;
  count += box[${VALUE}];            // the "device": a no-op that touches its state
  box[${VALUE}] = 0;
  Atomics.store(box, ${REPLY}, seen);
  Atomics.notify(box, ${REPLY});
}
`;

class RemoteNullDevice implements BusDevice {
  readonly name = 'bench device-thread proxy';
  private readonly box = new Int32Array(new SharedArrayBuffer(16));
  private seq = 0;
  readonly worker = new Worker(DEVICE_THREAD, { eval: true, workerData: this.box.buffer });

  private roundTrip(offset: number, value: number): number {
    const box = this.box;
    box[OFFSET] = offset;
    box[VALUE] = value;
    const seq = ++this.seq;
    Atomics.store(box, REQUEST, seq);
    Atomics.notify(box, REQUEST);
    while (Atomics.load(box, REPLY) !== seq) Atomics.wait(box, REPLY, seq - 1);
    return box[VALUE]!;
  }

  read(offset: number): number {
    return this.roundTrip(offset, 0);
  }

  write(offset: number, _size: number, value: number): void {
    this.roundTrip(offset, value);
  }
}

export function attach(platform: PlatformContext) {
  const device = new RemoteNullDevice();
  device.worker.unref();
  platform.pio.register(0x520, 4, device);
  platform.mmio.register(0xd000_0000, 0x1000, device);
  return {};
}
