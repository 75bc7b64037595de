// Storage pools and their volumes (libvirt's directory pools): definitions in
// the state folder, volumes as image files in the pool's folder.
export type { FolderPermissions, PoolDefinition, PoolUsage, Volume } from './pool-definition.ts';
export { parsePoolXml, poolToXml, trimSlashes } from './pool-xml.ts';
export { parseVolumeXml, volumeToXml } from './volume-xml.ts';
export { PoolStore } from './pool-store.ts';
export { buildPoolFolder, checkPoolFolder, checkVolumeName, createVolume, deleteVolume, findVolume, listVolumes, lookupVolume, poolUsage, volumeAt, type NewVolume } from './dir-pool.ts';
export { poolVolumeLookup } from './volume-lookup.ts';
