// Starting and destroying networks on the host, without a daemon: an active
// network is its bridge plus a status file in the run folder saying what was
// started (the definition at net-start), its nftables table and its dnsmasq.
// net-start builds them in that order and undoes what it built when a step
// fails; net-destroy takes down exactly what the status file names.
import { mkdirSync, rmSync } from 'node:fs';
import { InputError } from '../errors.ts';
import { RunLock, writeFileAtomic } from '../domain/index.ts';
import { checkSubnetFree, createBridge, deleteBridge, interfaceExists } from './bridge.ts';
import type { NetworkDefinition } from './definition.ts';
import { startDnsmasq, stopDnsmasq } from './dnsmasq.ts';
import { addTable, deleteTable } from './nftables.ts';
import type { NetworkStore } from './network-store.ts';
import { networkToXml } from './serialize.ts';

/** Another net-start or net-destroy of the same network finishes within this. */
const LOCK_TIMEOUT_MS = 60_000;
const POLL_MS = 20;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Runs `work` holding the network's lock (one start or destroy at a time), waiting a bounded time for it. */
function withNetworkLock<T>(store: NetworkStore, name: string, work: () => T): T {
  const path = store.runFiles(name).lock;
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  let lock: RunLock | null;
  while (!(lock = RunLock.tryAcquire(path))) {
    if (Date.now() > deadline) throw new InputError(`network '${name}': another tsvmm is starting or destroying it (for ${LOCK_TIMEOUT_MS / 1000} s now)`);
    sleepSync(POLL_MS);
  }
  try {
    return work();
  } finally {
    lock.close();
  }
}

/** The definition of the network as it runs, or null when it is not active. */
export function activeNetwork(store: NetworkStore, name: string): NetworkDefinition | null {
  const status = store.status(name);
  return status && interfaceExists(status.bridge.name) ? status : null;
}

/** Takes down what the network has on the host: dnsmasq, its table, its bridge, its run folder. Each step is skipped when there is nothing to undo. */
function takeDown(store: NetworkStore, definition: NetworkDefinition): void {
  const files = store.runFiles(definition.name);
  stopDnsmasq(files);
  deleteTable(definition.name);
  deleteBridge(definition.bridge.name);
  rmSync(files.folder, { recursive: true, force: true });
}

/** net-start: bridge, address, firewall table, dnsmasq, then the status file that makes it active. */
export function startNetwork(store: NetworkStore, definition: NetworkDefinition): void {
  withNetworkLock(store, definition.name, () => {
    if (activeNetwork(store, definition.name)) throw new InputError(`network '${definition.name}' is already active`);
    // What a network whose host went away (or a killed net-start) left behind.
    const stale = store.status(definition.name);
    if (stale) takeDown(store, stale);
    const files = store.runFiles(definition.name);
    checkSubnetFree(definition);
    mkdirSync(files.folder, { recursive: true });
    let bridgeMade = false;
    try {
      createBridge(definition);
      bridgeMade = true;
      addTable(definition);
      if (definition.ip) startDnsmasq(definition, files);
      writeFileAtomic(files.status, networkToXml(definition));
    } catch (e) {
      stopDnsmasq(files);
      deleteTable(definition.name);
      if (bridgeMade) deleteBridge(definition.bridge.name);
      rmSync(files.folder, { recursive: true, force: true });
      throw e;
    }
  });
}

/** net-destroy: ends an active network, taking down exactly what it was started with. */
export function destroyNetwork(store: NetworkStore, name: string): void {
  withNetworkLock(store, name, () => {
    const running = activeNetwork(store, name);
    if (!running) throw new InputError(`network '${name}' is not active`);
    takeDown(store, running);
  });
}
