// Virtual networks as libvirt defines them: network XML, the definitions and
// the state of active networks, and building them on the host (a bridge, an
// nftables table, dnsmasq).
export type { DhcpDefinition, ForwardMode, NetworkDefinition } from './definition.ts';
export { DEFAULT_NETWORK } from './definition.ts';
export { parseNetworkXml } from './parse.ts';
export { networkToXml } from './serialize.ts';
export { NetworkStore, readNetworkFile, type NetworkRunFiles } from './network-store.ts';
export { defaultNetworkDefinition, ensureDefaultNetwork } from './default-network.ts';
export { activeNetwork, destroyNetwork, startNetwork } from './lifecycle.ts';
export { readLeases, type DhcpLease } from './dnsmasq.ts';
export { networkBridges, startAutostartedNetworks } from './domain-networks.ts';
export { formatIpv4, prefixMask } from './ipv4.ts';
