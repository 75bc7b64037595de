// How a domain's <disk type='volume'> finds its image: the volume's file and
// format in an active pool (domain/parse.ts asks through a VolumeLookup, so
// the domain layer knows nothing of pools).
import type { VolumeLookup } from '../domain/definition.ts';
import type { StateFolders } from '../domain/state-folders.ts';
import { lookupVolume } from './dir-pool.ts';
import { PoolStore } from './pool-store.ts';

export function poolVolumeLookup(folders: StateFolders): VolumeLookup {
  const store = new PoolStore(folders);
  return (poolName, volumeName) => {
    const pool = store.lookup(poolName);
    if (!pool) return `storage pool '${poolName}' is not defined`;
    if (!store.isActive(pool.name)) return `storage pool '${poolName}' is not active (pool-start it)`;
    const volume = lookupVolume(pool, volumeName);
    if (!volume) return `storage pool '${poolName}' has no volume '${volumeName}'`;
    return { path: volume.path, format: volume.format };
  };
}
