// What the machine puts in fw_cfg (src/devices/fw-cfg.ts), as a PC under
// QEMU has it: the signature, the interfaces offered, the RAM size and CPU
// count that kvm-unit-tests and firmware read, the RAM map as etc/e820, and
// the user's `--fw-cfg` files. Built once by the builder; the device only
// serves the bytes.
import { InputError } from '../errors.ts';
import { encodeFwCfgContents, FwCfgFeature, FwCfgKey, FW_CFG_MAX_FILE_PATH, type FwCfgContents } from '../devices/fw-cfg.ts';
import { ramLayout } from '../layout.ts';
import type { FwCfgFileConfig } from './config.ts';

export interface FwCfgFile {
  name: string;
  data: Uint8Array;
}

/** Files tsvmm itself provides: a user's file may not take their names. */
const MACHINE_FILES = ['etc/e820'];
/** E820 type of usable RAM. */
const E820_RAM = 1;

/**
 * The contents of each `--fw-cfg` file, read now so that a missing file fails
 * before the VM is made. Names are checked as QEMU checks them: at most 55
 * bytes, each once; a name outside "opt/" gets a warning, as QEMU gives.
 */
export function readFwCfgFiles(
  files: readonly FwCfgFileConfig[],
  readFile: (path: string, what: string) => Uint8Array,
  warnings: string[],
): FwCfgFile[] {
  const seen = new Set<string>(MACHINE_FILES);
  return files.map((file) => {
    const length = new TextEncoder().encode(file.name).length;
    if (length === 0 || length >= FW_CFG_MAX_FILE_PATH) throw new InputError(`--fw-cfg name=${file.name}: a name is 1 to ${FW_CFG_MAX_FILE_PATH - 1} bytes`);
    if (seen.has(file.name)) throw new InputError(`--fw-cfg name=${file.name}: ${MACHINE_FILES.includes(file.name) ? 'tsvmm provides this file itself' : 'given twice'}`);
    seen.add(file.name);
    if (!file.name.startsWith('opt/')) warnings.push(`--fw-cfg name=${file.name}: names a user gives should start with "opt/" (QEMU's rule; "etc/" is the VMM's)`);
    const data = 'file' in file ? readFile(file.file, `fw_cfg file ${file.name} from`) : new TextEncoder().encode(file.string);
    return { name: file.name, data };
  });
}

/** Everything the guest finds in fw_cfg. */
export function machineFwCfg(machine: { cpus: number; memoryBytes: number }, userFiles: readonly FwCfgFile[]): FwCfgContents {
  const files = [{ name: 'etc/e820', data: e820Table(machine.memoryBytes) }, ...userFiles]
    // QEMU keeps its directory sorted by name; keys follow that order.
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return encodeFwCfgContents([
    { key: FwCfgKey.SIGNATURE, data: new TextEncoder().encode('QEMU') },
    { key: FwCfgKey.ID, data: littleEndian(FwCfgFeature.TRADITIONAL | FwCfgFeature.DMA, 4) },
    { key: FwCfgKey.UUID, data: new Uint8Array(16) },
    { key: FwCfgKey.RAM_SIZE, data: littleEndian(machine.memoryBytes, 8) },
    { key: FwCfgKey.NB_CPUS, data: littleEndian(machine.cpus, 2) },
    { key: FwCfgKey.MAX_CPUS, data: littleEndian(machine.cpus, 2) },
  ], files);
}

/** etc/e820: the RAM ranges as packed { u64 address; u64 length; u32 type } (QEMU's struct e820_entry). */
function e820Table(memoryBytes: number): Uint8Array {
  const ranges = ramLayout(memoryBytes);
  const table = new Uint8Array(20 * ranges.length);
  const view = new DataView(table.buffer);
  ranges.forEach((range, i) => {
    view.setBigUint64(20 * i, BigInt(range.guestAddress), true);
    view.setBigUint64(20 * i + 8, BigInt(range.size), true);
    view.setUint32(20 * i + 16, E820_RAM, true);
  });
  return table;
}

function littleEndian(value: number, bytes: 2 | 4 | 8): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(value), true);
  return out.subarray(0, bytes);
}
