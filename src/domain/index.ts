// libvirt domain XML: read it, write it back, and say what `tsvmm run` it
// means; and the state the domain manager keeps on the host.
export type { DiskDefinition, DomainDefinition, DomainDevices, DomainOs, InterfaceDefinition, LifecycleAction, VolumeLookup, VolumeSource } from './definition.ts';
export { parseDomainXml, withAvailableVolumes, withVolumesResolved } from './parse.ts';
export { domainToXml, XmlWriter } from './serialize.ts';
export { DEFAULT_TAP_NAME, domainRunOptions, runArguments, type DomainRunOptions, type InterfaceConnection, type NetworkBridgeLookup } from './run-options.ts';
export { stateFolders, type StateFolders } from './state-folders.ts';
export { localScope, parseConnectUri, remoteLocalUri, type Connection, type Scope } from './connection.ts';
export { writeFileAtomic, removeFileDurably } from './atomic-file.ts';
export { DomainStore, readDefinitionFile, type DomainRunFiles } from './domain-store.ts';
export { RunLock, runLockHeld } from './run-lock.ts';
export { takeDomainId } from './domain-ids.ts';
export { checkDefinition } from './definition-checks.ts';
export { formatKeyValues, formatTable, stateOfRunState, type DomainStateName } from './virsh-format.ts';
export { snapshotToXml, type SnapshotDescription } from './snapshot-xml.ts';
