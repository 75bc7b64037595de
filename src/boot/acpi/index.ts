// ACPI tables for a tsvmm PC, laid out in one image for one place in guest
// memory: RSDP → XSDT → { FADT → { DSDT, FACS }, MADT, DMAR (with a VT-d unit) }. The guest finds the RSDP
// through boot_params.acpi_rsdp_addr, the PVH start_info's rsdp_paddr, or by
// scanning 0xe0000-0xfffff for its signature.
import { InputError } from '../../errors.ts';
import { buildDmar } from './dmar.ts';
import { buildDsdt } from './dsdt.ts';
import { checkPlatform, type AcpiPlatform } from './platform.ts';
import { SDT_HEADER_SIZE } from './sdt.ts';
import { buildFacs, buildFadt, buildMadt, buildRsdp, buildXsdt, FACS_ALIGNMENT, FACS_SIZE, FADT_SIZE, RSDP_SIZE } from './tables.ts';

export { AcpiLayout, acpiPlatform, type AcpiPciInterrupt, type AcpiPlatform, type AcpiVirtioMmio, type IsaInterruptOverride } from './platform.ts';

export interface AcpiTables {
  /** Guest-physical address of `image`'s first byte, which is the RSDP. */
  rsdpAddress: number;
  /** The bytes to copy to guest memory at `rsdpAddress`. */
  image: Uint8Array;
  /** Where each table went (for tests and traces). */
  tables: { signature: string; address: number; length: number }[];
}

/** Tables start on 8-byte boundaries (the XSDT's entries are 64-bit). */
const TABLE_ALIGNMENT = 8;
/** The RSDP must sit on a 16-byte boundary to be found by a scan (§5.2.5.1). */
const RSDP_ALIGNMENT = 16;

function align(value: number, to: number): number {
  return Math.ceil(value / to) * to;
}

/**
 * Builds the tables for `platform` to live at guest-physical `address`
 * (16-byte aligned), in at most `maxSize` bytes.
 */
export function buildAcpiTables(platform: AcpiPlatform, address: number, maxSize: number): AcpiTables {
  checkPlatform(platform);
  if (!Number.isInteger(address) || address < 0 || address % RSDP_ALIGNMENT !== 0) {
    throw new InputError(`ACPI tables at 0x${address.toString(16)}: the RSDP needs a 16-byte aligned address`);
  }
  const dsdt = buildDsdt(platform);
  const madt = buildMadt(platform);
  const dmar = platform.iommu ? buildDmar(platform.iommu, platform.ioapic.id) : null;
  const xsdtSize = SDT_HEADER_SIZE + 8 * (dmar ? 3 : 2); // FADT, MADT and the DMAR

  const facsAt = align(address + RSDP_SIZE, FACS_ALIGNMENT);
  const xsdtAt = align(facsAt + FACS_SIZE, TABLE_ALIGNMENT);
  const fadtAt = align(xsdtAt + xsdtSize, TABLE_ALIGNMENT);
  const madtAt = align(fadtAt + FADT_SIZE, TABLE_ALIGNMENT);
  const dsdtAt = align(madtAt + madt.length, TABLE_ALIGNMENT);
  const dmarAt = align(dsdtAt + dsdt.length, TABLE_ALIGNMENT);
  const end = dmar ? dmarAt + dmar.length : dsdtAt + dsdt.length;
  if (end - address > maxSize) {
    throw new InputError(`ACPI tables need ${end - address} bytes; ${maxSize} are set aside for them`);
  }

  const placed = [
    { signature: 'RSD PTR ', address, bytes: buildRsdp(xsdtAt) },
    { signature: 'FACS', address: facsAt, bytes: buildFacs() },
    { signature: 'XSDT', address: xsdtAt, bytes: buildXsdt(dmar ? [fadtAt, madtAt, dmarAt] : [fadtAt, madtAt]) },
    { signature: 'FACP', address: fadtAt, bytes: buildFadt(platform, dsdtAt, facsAt) },
    { signature: 'APIC', address: madtAt, bytes: madt },
    { signature: 'DSDT', address: dsdtAt, bytes: dsdt },
    ...(dmar ? [{ signature: 'DMAR', address: dmarAt, bytes: dmar }] : []),
  ];
  const image = new Uint8Array(end - address);
  for (const table of placed) image.set(table.bytes, table.address - address);
  return {
    rsdpAddress: address,
    image,
    tables: placed.map((t) => ({ signature: t.signature, address: t.address, length: t.bytes.length })),
  };
}
