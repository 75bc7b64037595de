// The MSI capability (PCI Local Bus 3.0, 6.8.1) in its 64-bit form with one
// vector and no per-vector masking, as QEMU's msi_init(dev, 0, 1, true,
// false) makes it: Message Control, Message Address (low, high) and Message
// Data. The guest writes the message; the function sends it (a write of Data
// to Address) instead of asserting INTx while MSI Enable is set.
import type { PciConfigSpace } from './config-space.ts';

export const MSI_CAPABILITY_ID = 0x05;

/** Offsets from the capability's first byte. */
export const MsiField = {
  CONTROL: 2,
  ADDRESS_LOW: 4,
  ADDRESS_HIGH: 8,
  DATA: 12,
} as const;

/** Message Control: MSI Enable (bit 0), 64-bit address capable (bit 7). */
const CONTROL_ENABLE = 0x0001;
const CONTROL_64BIT = 0x0080;

export class MsiCapability {
  /** Where the capability is in configuration space. */
  readonly offset: number;

  constructor(private readonly config: PciConfigSpace) {
    // Body: control, address low and high, data and its reserved upper half.
    const body = new Uint8Array(14);
    body[MsiField.CONTROL - 2] = CONTROL_64BIT;
    this.offset = config.addCapability(MSI_CAPABILITY_ID, body);
    // Multiple Message Enable stays 0 (one vector is all there is); only Enable is the guest's.
    config.setWritable(this.offset + MsiField.CONTROL, 2, CONTROL_ENABLE);
    config.setWritable(this.offset + MsiField.ADDRESS_LOW, 4, 0xffff_fffc);
    config.setWritable(this.offset + MsiField.ADDRESS_HIGH, 4, 0xffff_ffff);
    config.setWritable(this.offset + MsiField.DATA, 2, 0xffff);
  }

  get enabled(): boolean {
    return (this.config.read(this.offset + MsiField.CONTROL, 2) & CONTROL_ENABLE) !== 0;
  }

  /** The message the guest programmed: the address (up to 64 bits) and the 16-bit data. */
  message(): { address: number; data: number } {
    const low = this.config.u32(this.offset + MsiField.ADDRESS_LOW);
    const high = this.config.u32(this.offset + MsiField.ADDRESS_HIGH);
    return { address: high * 2 ** 32 + low, data: this.config.read(this.offset + MsiField.DATA, 2) };
  }
}
