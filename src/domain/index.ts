// libvirt domain XML: read it, write it back, and say what `tsvmm run` it means.
export type { DiskDefinition, DomainDefinition, DomainDevices, DomainOs, InterfaceDefinition, LifecycleAction } from './definition.ts';
export { parseDomainXml } from './parse.ts';
export { domainToXml } from './serialize.ts';
export { domainRunOptions, runArguments, type DomainRunOptions } from './run-options.ts';
