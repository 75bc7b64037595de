// What domains need of networks: the bridge a domain's <interface
// type='network'> joins when it starts, and the autostart networks that
// start-autostarted brings up before the domains (libvirtd does both at its
// own start; tsvmm has no daemon, so a domain's start does the first).
import { InputError } from '../errors.ts';
import type { NetworkBridgeLookup } from '../domain/index.ts';
import { ensureDefaultNetwork } from './default-network.ts';
import { activeNetwork, startNetwork } from './lifecycle.ts';
import type { NetworkStore } from './network-store.ts';

/**
 * The lookup a domain's start uses. The `default` network is defined on
 * first use; a network marked autostart that is not active is started (as
 * libvirtd would have at boot); any other inactive network is refused, as
 * libvirt refuses it.
 */
export function networkBridges(store: NetworkStore): NetworkBridgeLookup {
  return (name) => {
    ensureDefaultNetwork(store);
    const definition = store.find(name);
    const running = activeNetwork(store, definition.name);
    if (running) return running.bridge.name;
    if (!store.autostart(definition.name)) throw new InputError(`network '${definition.name}' is not active (start it with net-start ${definition.name})`);
    try {
      startNetwork(store, definition);
    } catch (e) {
      // Another start of a domain on it may have won the race: it is active either way.
      const started = activeNetwork(store, definition.name);
      if (started) return started.bridge.name;
      throw e;
    }
    return definition.bridge.name;
  };
}

/**
 * Starts every autostart network that is not active; what failed, each with
 * its one-line reason. Only defined networks: a host where no network was
 * ever used gets no bridge from a boot-time start-autostarted.
 */
export function startAutostartedNetworks(store: NetworkStore): { started: string[]; failed: Error[] } {
  const started: string[] = [];
  const failed: Error[] = [];
  for (const definition of store.all().filter((n) => store.autostart(n.name))) {
    if (activeNetwork(store, definition.name)) continue;
    try {
      startNetwork(store, definition);
      started.push(definition.name);
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      failed.push(e);
    }
  }
  return { started, failed };
}
