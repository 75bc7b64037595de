// The Intel VT-d remapping unit: its register file and services, DMA
// remapping, interrupt remapping, and a PCI function's remapped DMA.
export { IntelVtd, VTD_STATE, type IoapicRoute, type VtdOptions, type VtdWiring } from './intel-vtd.ts';
export { RemappedDma } from './remapped-dma.ts';
export { VTD_REGISTER_SIZE, VTD_HOST_ADDRESS_WIDTH, VtdRegister, VtdGlobal, VtdFaultStatus, FaultReason } from './vtd-registers.ts';
export { translateDma, type DmaAccess, type TableMemory, type Translation, type VtdEntry } from './vtd-translation.ts';
export { remapIndex, remappableIndex, ioapicEntryIndex, type MsiMessage, type Remapped } from './vtd-interrupts.ts';
