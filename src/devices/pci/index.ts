// PCI: the host bridge with configuration mechanism #1, type-0 configuration
// spaces, and memory BARs that follow what the guest programs.
export type { PciFunction, PciBarListener } from './function.ts';
export { PciHostBridge, PCI_HOST_BRIDGE_STATE, CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, SLOT_COUNT } from './host-bridge.ts';
export {
  PciConfigSpace, PciConfig, PciCommand, PciStatus, PciCapabilityId, CAPABILITY_START, BAR_COUNT, PCI_CONFIG_SIZE,
  type PciHeader,
} from './config-space.ts';
export { MemoryBar, type ForbiddenRange, type MemoryBarOptions } from './memory-bar.ts';
