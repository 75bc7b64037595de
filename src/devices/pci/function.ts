// What the host bridge sees of a PCI function, and what a machine hears when
// a function's BAR starts or stops decoding.

/**
 * One function on bus 0. Configuration accesses arrive with the byte offset
 * of the register and a size of 1, 2 or 4 that never crosses a dword.
 */
export interface PciFunction {
  readonly name: string;
  readConfig(offset: number, size: number): number;
  writeConfig(offset: number, size: number, value: number): void;
}

export interface PciBarListener {
  /** BAR `bar` of a function now decodes [address, address+length) (null: no longer decoded). */
  barMapped(bar: number, address: number | null, length: number): void;
}
