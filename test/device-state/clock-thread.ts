// A second thread's view of the guest clock (test/device-state/clock.test.ts):
// a MonotonicClock over the buffer the test thread hands in, answering
// 'now' with its reading and 'pause' by pausing the shared clock.
import { parentPort, workerData } from 'node:worker_threads';
import { MonotonicClock } from '../../src/devices/clock.ts';

const clock = new MonotonicClock(workerData as SharedArrayBuffer);
parentPort!.on('message', (request: 'now' | 'pause' | 'exit') => {
  if (request === 'exit') return parentPort!.close();
  if (request === 'pause') clock.pause();
  parentPort!.postMessage(clock.nowNs());
});
