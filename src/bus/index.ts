export { AddressSpace, BusError, type BusRange } from './address-space.ts';
export type { BusDevice } from './bus-device.ts';
