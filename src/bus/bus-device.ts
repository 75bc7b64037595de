// What a device looks like to a bus: a register file at offsets 0..length-1.

/**
 * A device's handler for one address range. `offset` is relative to the
 * range's base, so one class serves COM1..COM4 at different ports.
 * Accesses of 1, 2 and 4 bytes carry their value as an unsigned number.
 */
export interface BusDevice {
  /** Short name for traces and error messages ("serial COM1"). */
  readonly name: string;
  read(offset: number, size: number): number;
  write(offset: number, size: number, value: number): void;
  /**
   * 8-byte MMIO accesses. A device without them gets two 4-byte accesses,
   * low half first (what QEMU does for devices with max_access_size 4).
   */
  read64?(offset: number): bigint;
  /**
   * True for a device of 8-bit registers on the ISA bus (UART, CMOS, i8042):
   * a wider access is split into byte accesses on consecutive addresses, low
   * byte first, as a PC's bus does (`out 0x70, ax` writes AL to 0x70 and AH
   * to 0x71).
   */
  readonly byteWide?: boolean;
  write64?(offset: number, value: bigint): void;
}
