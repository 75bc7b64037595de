// The body of the virtio I/O thread: it owns the machine's virtio devices and processes
// their queues. It sleeps in poll(2) on one eventfd per queue (signalled by
// KVM through an ioeventfd, or by the vCPU thread after a notify exit), on
// the devices' own host fds (a TAP device), and on a control eventfd the
// other threads use to say "the driver changed status", "host input", "stop".
// A device's interrupt is an irqfd write (or a KVM_IRQ_LINE pulse).
//
// The main thread also sends it requests (virtio-io-thread.ts) over a message
// port, with a control-eventfd signal to wake it: pause (stop serving the
// devices' host fds, so nothing writes guest RAM), resume, save (each
// device's state, taken quiesced, its disk flushed), restore, and read-disk
// (a chunk of a disk for a block migration, read here because this thread's
// qcow2 metadata cache is the current one; answered between requests).
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { SavedDeviceState } from '../devices/device-state.ts';
import { VirtioBlk } from '../devices/virtio/blk.ts';
import type { VirtioDevice } from '../devices/virtio/device.ts';
import { VirtioDeviceRunner, type InterruptTrigger } from '../devices/virtio/runner.ts';
import { VirtioSharedState } from '../devices/virtio/shared-state.ts';
import { drainEventFd, ReadableWaiter, signalEventFd, VmFd } from '../kvm/index.ts';
import { DirtyPageLog } from '../memory/dirty-pages.ts';
import { HostRam, type RamDescriptor } from '../memory/host-ram.ts';
import { ConsoleRingWriter, InputRing, type ConsoleRingBuffers } from './byte-rings.ts';
import { postToParent, runThreadBody } from './threads.ts';
import { openVirtioDevice } from './virtio-devices.ts';
import type { PlannedVirtioDevice } from './virtio-plan.ts';

export interface VirtioThreadInit {
  ram: RamDescriptor[];
  vmFd: number;
  devices: PlannedVirtioDevice[];
  controlFd: number;
  /** Word 0: set to 1 to stop the thread. */
  control: SharedArrayBuffer;
  /** The virtio console's output ring (to stdout) and input ring (from stdin). */
  consoleOutput: ConsoleRingBuffers;
  consoleInput: ConsoleRingBuffers;
  /** Where the main thread's requests arrive (VirtioThreadRequest), and their replies go. */
  requests: MessagePort;
  /** Where the queues log the guest pages they write during a migration (memory/dirty-pages.ts). */
  dirtyLog: SharedArrayBuffer;
  /** Where each disk marks the chunks it writes during a block migration (storage/dirty-chunks.ts), in the disks' order. */
  diskDirtyLogs: SharedArrayBuffer[];
  /** Device states to start from (a snapshot or migration), one per device in order; null: a fresh machine. */
  restore: SavedDeviceState[] | null;
  /** Start paused: serve nothing until a resume request. */
  paused: boolean;
}

/** A request from the main thread; every one is answered with a VirtioThreadReply of the same id. */
export type VirtioThreadRequest =
  | { id: number; op: 'pause' | 'resume' | 'save' }
  | { id: number; op: 'restore'; states: SavedDeviceState[] }
  /** `length` bytes of disk `disk` (its index among the disks) at `offset`. */
  | { id: number; op: 'read-disk'; disk: number; offset: number; length: number };

export type VirtioThreadReply =
  /** read-disk: `data` is null when the bytes read as zeros. */
  | { id: number; ok: true; states?: SavedDeviceState[]; data?: Uint8Array | null }
  | { id: number; ok: false; message: string };

/** What the thread hands back when it stops: what each device counted. */
export interface VirtioThreadStopped {
  reports: Record<string, unknown>[];
}

const post = postToParent<object, VirtioThreadStopped>;

class EventFdTrigger implements InterruptTrigger {
  constructor(private readonly fd: number) {}
  trigger(): void {
    signalEventFd(this.fd);
  }
}

/** Without irqfd: a pulse on the PIC input, an edge the PIC latches. */
class IrqLinePulse implements InterruptTrigger {
  constructor(private readonly vm: VmFd, private readonly irq: number) {}
  trigger(): void {
    this.vm.setIrqLine(this.irq, true);
    this.vm.setIrqLine(this.irq, false);
  }
}

function main(init: VirtioThreadInit): void {
  const control = new Int32Array(init.control);
  const memory = HostRam.attach(init.ram).memory;
  const vm = VmFd.attach(init.vmFd);
  const consoleOutput = new ConsoleRingWriter(init.consoleOutput);
  const consoleInput = new InputRing(init.consoleInput);
  const host = {
    diskDirtyLogs: init.diskDirtyLogs,
    console: {
      write: (bytes: Uint8Array) => { for (const byte of bytes) consoleOutput.writeByte(byte); },
      read: (max: number) => {
        let taken: Uint8Array | null = null;
        consoleInput.deliver(max, (bytes) => {
          taken = bytes.slice();
          return bytes.length;
        });
        return taken;
      },
    },
  };

  const dirty = new DirtyPageLog(init.dirtyLog);
  const runners: VirtioDeviceRunner[] = [];
  /** What to do when an fd becomes readable. */
  const handlers = new Map<number, () => void>();
  /** What to do when a device's fd that it asked to be watched for writing becomes writable. */
  const writableHandlers = new Map<number, () => void>();
  for (const planned of init.devices) {
    const device: VirtioDevice = openVirtioDevice(planned.config, planned.index, host);
    const state = new VirtioSharedState(planned.state, planned.info.queueMaxSizes.length);
    const interrupt = planned.irqfd !== null ? new EventFdTrigger(planned.irqfd) : new IrqLinePulse(vm, planned.irq);
    const runner = new VirtioDeviceRunner(device, state, memory, interrupt, dirty);
    runners.push(runner);
    planned.notifyFds.forEach((fd, queue) => handlers.set(fd, () => {
      drainEventFd(fd);
      runner.notify(queue);
    }));
    for (const fd of device.pollFds ?? []) {
      handlers.set(fd, () => runner.hostEvent((d) => d.onReadable!(fd)));
      writableHandlers.set(fd, () => runner.hostEvent((d) => d.onWritable!(fd)));
    }
  }
  /** The disks, by their index among the disks (read-disk's `disk`). */
  const disks = runners.map((runner) => runner.device).filter((device) => device instanceof VirtioBlk);
  let paused = init.paused;
  const restoreAll = (states: SavedDeviceState[]) => {
    if (states.length !== runners.length) throw new Error(`${states.length} virtio device states for ${runners.length} devices`);
    // Each is checked before any is applied: a mismatch changes nothing.
    runners.forEach((runner, i) => runner.checkState(states[i]!));
    runners.forEach((runner, i) => runner.restoreState(states[i]!));
  };
  if (init.restore) restoreAll(init.restore);
  const serve = (request: VirtioThreadRequest): VirtioThreadReply => {
    try {
      switch (request.op) {
        case 'pause':
          paused = true;
          return { id: request.id, ok: true };
        case 'resume':
          // A notification that came just before the pause is still readable on its eventfd: it is served next.
          paused = false;
          return { id: request.id, ok: true };
        case 'save':
          for (const runner of runners) runner.device.flush?.();
          return { id: request.id, ok: true, states: runners.map((runner) => runner.saveState()) };
        case 'restore':
          restoreAll(request.states);
          return { id: request.id, ok: true };
        case 'read-disk': {
          const disk = disks[request.disk];
          if (!disk) throw new Error(`no disk ${request.disk} (the machine has ${disks.length})`);
          return { id: request.id, ok: true, data: disk.copyOut(request.offset, request.length) };
        }
      }
    } catch (e) {
      return { id: request.id, ok: false, message: e instanceof Error ? e.message : String(e) };
    }
  };
  // Another thread woke this one: a request, a driver changed status, or host
  // input waits for a device that takes it (the virtio console's input ring).
  handlers.set(init.controlFd, () => {
    drainEventFd(init.controlFd);
    for (let m = receiveMessageOnPort(init.requests); m; m = receiveMessageOnPort(init.requests)) {
      const reply = serve(m.message as VirtioThreadRequest);
      // A chunk's bytes move to the main thread instead of being copied.
      const data = reply.ok ? reply.data : null;
      init.requests.postMessage(reply, data ? [data.buffer as ArrayBuffer] : []);
    }
    if (paused) return;
    for (const runner of runners) {
      runner.sync();
      if (runner.device.receiveHostInput) runner.hostEvent((device) => device.receiveHostInput!());
    }
  });

  const notifyFds = [init.controlFd, ...init.devices.flatMap((d) => d.notifyFds)];
  const waiter = new ReadableWaiter();
  post({ kind: 'ready' });
  // A device's own fds (a TAP) are watched only while it can take what they
  // bring; without such devices the fd list never changes.
  const hostFdDevices = runners.map((r) => r.device).filter((d) => d.pollFds);
  while (Atomics.load(control, 0) === 0) {
    // Paused, only requests are served: no device may write guest RAM.
    let fds = paused ? [init.controlFd] : notifyFds;
    const writeFds: number[] = [];
    if (hostFdDevices.length && !paused) {
      fds = [...notifyFds];
      for (const device of hostFdDevices) {
        if (device.wantsPoll?.() !== false) fds.push(...device.pollFds!);
        if (device.wantsWritable?.() === true) writeFds.push(...device.pollFds!);
      }
    }
    const ready = waiter.waitReady(fds, writeFds, -1);
    for (const fd of ready.readable) {
      // A pause served just now holds for the rest of this round too: the main thread
      // was told nothing writes guest RAM or a disk any more. The notification stays
      // readable on its eventfd, for after resume (or for the restored device).
      if (paused && fd !== init.controlFd) continue;
      handlers.get(fd)!();
    }
    for (const fd of ready.writable) if (!paused) writableHandlers.get(fd)!();
  }
  // Closed first: a device may count one last error as it lets go of its host fd.
  for (const runner of runners) runner.device.close?.();
  const reports = runners.map((runner) => runner.report());
  post({ kind: 'stopped', reports });
}

runThreadBody(main);
