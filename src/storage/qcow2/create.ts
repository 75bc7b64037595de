// Creates an empty qcow2 image: cluster 0 (header, extensions, backing file
// name), the refcount table, the refcount blocks that count the metadata, and
// an all-zero L1 table, in that order from the start of the file. The L1
// table is left as a hole: it reads as zeros.
import { InputError } from '../../errors.ts';
import { HostFile } from '../host-file.ts';
import { encodeHeader, l1EntriesFor, MAX_CLUSTER_BITS, MIN_CLUSTER_BITS } from './header.ts';
import { setU64 } from './layout.ts';

export const DEFAULT_CLUSTER_SIZE = 65536;
const REFCOUNT_BITS = 16;

export interface Qcow2CreateOptions {
  /** Virtual size in bytes, a multiple of 512. */
  size: number;
  clusterSize?: number;
  /** 3 (QEMU's compat=1.1, the default) or 2 (compat=0.10). */
  version?: 2 | 3;
  /** The backing file's name as it is stored: relative names are relative to the new image's directory. */
  backingFile?: string;
  backingFormat?: 'raw' | 'qcow2';
}

export function checkClusterSize(clusterSize: number): number {
  const bits = Math.log2(clusterSize);
  if (!Number.isInteger(bits) || bits < MIN_CLUSTER_BITS || bits > MAX_CLUSTER_BITS) {
    throw new InputError(`cluster size ${clusterSize} is not a power of two from ${2 ** MIN_CLUSTER_BITS} to ${2 ** MAX_CLUSTER_BITS}`);
  }
  return bits;
}

export function createQcow2(path: string, options: Qcow2CreateOptions): void {
  const clusterSize = options.clusterSize ?? DEFAULT_CLUSTER_SIZE;
  const clusterBits = checkClusterSize(clusterSize);
  if (options.size % 512 !== 0 || options.size < 0) throw new InputError(`${path}: size ${options.size} is not a multiple of 512`);
  const l1Size = l1EntriesFor(options.size, clusterBits);
  const l1Clusters = Math.ceil((l1Size * 8) / clusterSize);
  const refcountsPerBlock = (clusterSize * 8) / REFCOUNT_BITS;

  // The refcount blocks count every metadata cluster, themselves included.
  let tableClusters = 1;
  let blocks = 1;
  for (;;) {
    const total = 1 + tableClusters + blocks + l1Clusters;
    const neededBlocks = Math.ceil(total / refcountsPerBlock);
    const neededTable = Math.max(1, Math.ceil((neededBlocks * 8) / clusterSize));
    if (neededBlocks === blocks && neededTable === tableClusters) break;
    blocks = neededBlocks;
    tableClusters = neededTable;
  }
  const tableOffset = clusterSize;
  const blocksOffset = tableOffset + tableClusters * clusterSize;
  const l1Offset = blocksOffset + blocks * clusterSize;
  const totalClusters = 1 + tableClusters + blocks + l1Clusters;

  const cluster0 = encodeHeader({
    version: options.version ?? 3,
    clusterBits,
    size: options.size,
    l1Size,
    l1TableOffset: l1Offset,
    refcountTableOffset: tableOffset,
    refcountTableClusters: tableClusters,
    ...(options.backingFile ? { backingFile: options.backingFile } : {}),
    ...(options.backingFormat ? { backingFormat: options.backingFormat } : {}),
  });
  const table = new Uint8Array(blocks * 8);
  const tableView = new DataView(table.buffer);
  for (let b = 0; b < blocks; b++) setU64(tableView, b * 8, blocksOffset + b * clusterSize);
  const refcounts = new Uint8Array(totalClusters * 2);
  const refcountView = new DataView(refcounts.buffer);
  for (let c = 0; c < totalClusters; c++) refcountView.setUint16(c * 2, 1);

  const file = HostFile.create(path);
  try {
    file.writeAt(cluster0, 0);
    file.writeAt(table, tableOffset);
    file.writeAt(refcounts, blocksOffset);
    file.truncate(totalClusters * clusterSize);
    file.datasync();
  } finally {
    file.close();
  }
}
