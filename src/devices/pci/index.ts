// PCI: the host bridge with configuration mechanism #1, type-0 configuration
// spaces, memory BARs that follow what the guest programs, MSI, bus-master
// DMA, and QEMU's edu device.
export type { PciFunction, PciBarListener } from './function.ts';
export { PciHostBridge, PCI_HOST_BRIDGE_STATE, CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, SLOT_COUNT } from './host-bridge.ts';
export {
  PciConfigSpace, PciConfig, PciCommand, PciStatus, PciCapabilityId, CAPABILITY_START, BAR_COUNT, PCI_CONFIG_SIZE,
  type PciHeader,
} from './config-space.ts';
export { MemoryBar, type ForbiddenRange, type MemoryBarOptions } from './memory-bar.ts';
export { MsiCapability, MSI_CAPABILITY_ID, MsiField } from './msi-capability.ts';
export { GuestRamDma, type DmaSpace } from './dma.ts';
export { Edu, EDU_STATE, EDU_BAR_SIZE, type EduWiring } from './edu.ts';
