// The qcow2 header (the start of cluster 0), its extensions and the backing
// file name: parsed and checked once, when an image is opened, so that the
// rest of the code can trust what it says about the file's layout.
import { InputError } from '../../errors.ts';
import type { HostFile } from '../host-file.ts';
import { getU64, QCOW2_MAGIC, setU64 } from './layout.ts';

const V2_HEADER_LENGTH = 72;
const V3_HEADER_LENGTH = 112;  // through compression_type, padded to 8 bytes, as QEMU writes it
const V3_MIN_HEADER_LENGTH = 104;
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;  // QEMU cannot open larger clusters
const MAX_BACKING_NAME = 1023;
const MAX_L1_BYTES = 32 * 2 ** 20;        // QEMU's limits: larger tables are not images anyone wrote
const MAX_REFCOUNT_TABLE_BYTES = 8 * 2 ** 20;

/** Header field offsets that are rewritten in place. */
export const FIELD = {
  refcountTableOffset: 48,  // then refcount_table_clusters at 56
  incompatibleFeatures: 72,
  autoclearFeatures: 88,
} as const;

export const INCOMPATIBLE = {
  dirty: 1n << 0n,
  corrupt: 1n << 1n,
  externalDataFile: 1n << 2n,
  compressionType: 1n << 3n,
  extendedL2: 1n << 4n,
} as const;
const KNOWN_INCOMPATIBLE = Object.values(INCOMPATIBLE).reduce((a, b) => a | b);
export const COMPATIBLE_LAZY_REFCOUNTS = 1n;

const EXTENSION = {
  end: 0x00000000,
  backingFormat: 0xe2792aca,
  featureNames: 0x6803f857,
  bitmaps: 0x23852875,
  externalDataFile: 0x44415441,
} as const;

export interface BitmapsExtension {
  count: number;
  directorySize: number;
  directoryOffset: number;
}

export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  /** Virtual disk size in bytes. */
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  snapshotCount: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  /** 0 zlib, 1 zstd. */
  compressionType: number;
  backingFile?: string;
  backingFormat?: string;
  bitmaps?: BitmapsExtension;
}

/** Bytes one guest cluster covers, and how many of them one L2 table maps. */
export function clusterSizeOf(header: { clusterBits: number }): number {
  return 2 ** header.clusterBits;
}

export function l2EntriesOf(header: { clusterBits: number }): number {
  return clusterSizeOf(header) / 8;
}

/** The number of L1 entries a disk of `size` bytes needs. */
export function l1EntriesFor(size: number, clusterBits: number): number {
  return Math.ceil(size / (2 ** clusterBits * l2EntriesOf({ clusterBits })));
}

function fail(file: HostFile, message: string): never {
  throw new InputError(`${file.path}: ${message}`);
}

function corrupt(file: HostFile, message: string): never {
  fail(file, `corrupt qcow2 image: ${message}`);
}

/** Reads and checks the header; throws an InputError that says what is wrong with the file. */
export function readHeader(file: HostFile): Qcow2Header {
  const fileSize = file.size();
  if (fileSize < V2_HEADER_LENGTH) fail(file, `too short for a qcow2 image (${fileSize} bytes)`);
  const start = new Uint8Array(V3_MIN_HEADER_LENGTH);
  file.readAt(start, 0);
  let view = new DataView(start.buffer);
  if (view.getUint32(0) !== QCOW2_MAGIC) fail(file, 'not a qcow2 image (bad magic)');
  const version = view.getUint32(4);
  if (version !== 2 && version !== 3) fail(file, `qcow2 version ${version} is not supported (only 2 and 3)`);
  const clusterBits = view.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    corrupt(file, `cluster_bits ${clusterBits} is outside ${MIN_CLUSTER_BITS}-${MAX_CLUSTER_BITS}`);
  }
  const clusterSize = 2 ** clusterBits;

  // Cluster 0 holds the header, its extensions and the backing file name.
  const cluster0 = new Uint8Array(Math.min(clusterSize, fileSize));
  file.readAt(cluster0, 0);
  view = new DataView(cluster0.buffer);
  const u64 = (at: number, what: string) => getU64(view, at, what, file.path);
  const header: Qcow2Header = {
    version,
    clusterBits,
    size: u64(24, 'the virtual size'),
    cryptMethod: view.getUint32(32),
    l1Size: view.getUint32(36),
    l1TableOffset: u64(40, 'the L1 table offset'),
    refcountTableOffset: u64(48, 'the refcount table offset'),
    refcountTableClusters: view.getUint32(56),
    snapshotCount: view.getUint32(60),
    snapshotsOffset: u64(64, 'the snapshot table offset'),
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: V2_HEADER_LENGTH,
    compressionType: 0,
  };
  if (version === 3) {
    if (cluster0.length < V3_MIN_HEADER_LENGTH) fail(file, 'truncated qcow2 header');
    header.incompatibleFeatures = view.getBigUint64(72);
    header.compatibleFeatures = view.getBigUint64(80);
    header.autoclearFeatures = view.getBigUint64(88);
    header.refcountOrder = view.getUint32(96);
    header.headerLength = view.getUint32(100);
    if (header.headerLength < V3_MIN_HEADER_LENGTH || header.headerLength % 8 !== 0 || header.headerLength > cluster0.length) {
      corrupt(file, `header_length ${header.headerLength} is invalid`);
    }
    if (header.headerLength > 104) header.compressionType = cluster0[104]!;
  }
  const featureNames = readExtensions(file, header, cluster0);
  checkFeatures(file, header, featureNames);
  readBackingFileName(file, header, cluster0);
  checkLayout(file, header, fileSize);
  return header;
}

/** Reads the header extensions; returns the feature name table ("0:4" → "extended L2 entries"). */
function readExtensions(file: HostFile, header: Qcow2Header, cluster0: Uint8Array): Map<string, string> {
  const view = new DataView(cluster0.buffer);
  const names = new Map<string, string>();
  const text = (at: number, length: number) => Buffer.from(cluster0.subarray(at, at + length)).toString('utf8');
  let at = header.headerLength;
  for (;;) {
    if (at + 8 > cluster0.length) corrupt(file, 'the header extensions run past the first cluster');
    const type = view.getUint32(at);
    const length = view.getUint32(at + 4);
    const data = at + 8;
    if (type === EXTENSION.end) return names;
    if (data + length > cluster0.length) corrupt(file, `header extension 0x${type.toString(16)} runs past the first cluster`);
    switch (type) {
      case EXTENSION.backingFormat:
        header.backingFormat = text(data, length);
        break;
      case EXTENSION.featureNames:
        for (let entry = data; entry + 48 <= data + length; entry += 48) {
          names.set(`${cluster0[entry]}:${cluster0[entry + 1]}`, text(entry + 2, 46).replace(/\0.*$/s, ''));
        }
        break;
      case EXTENSION.bitmaps:
        if (length >= 24) {
          header.bitmaps = {
            count: view.getUint32(data),
            directorySize: getU64(view, data + 8, 'the bitmap directory size', file.path),
            directoryOffset: getU64(view, data + 16, 'the bitmap directory offset', file.path),
          };
        }
        break;
      default:  // unknown extensions may be ignored
        break;
    }
    at = data + Math.ceil(length / 8) * 8;
  }
}

function featureName(names: Map<string, string>, bit: number): string {
  const known = ['dirty bit', 'corrupt bit', 'external data file', 'compression type', 'extended L2 entries'];
  return names.get(`0:${bit}`) ?? known[bit] ?? `incompatible feature bit ${bit}`;
}

/** Refuses features tsvmm cannot read correctly: better no disk than a wrong one. */
function checkFeatures(file: HostFile, header: Qcow2Header, names: Map<string, string>): void {
  if (header.cryptMethod !== 0) {
    fail(file, `encrypted qcow2 images (${header.cryptMethod === 1 ? 'AES' : 'LUKS'}) are not supported`);
  }
  const features = header.incompatibleFeatures;
  for (let bit = 0; bit < 64; bit++) {
    const mask = 1n << BigInt(bit);
    if (!(features & mask)) continue;
    const unsupported = !(KNOWN_INCOMPATIBLE & mask) || mask === INCOMPATIBLE.externalDataFile || mask === INCOMPATIBLE.extendedL2;
    if (unsupported) fail(file, `uses the qcow2 feature "${featureName(names, bit)}", which tsvmm does not support`);
  }
  if (header.compressionType !== 0 || (features & INCOMPATIBLE.compressionType)) {
    const type = header.compressionType === 1 ? 'zstd' : `type ${header.compressionType}`;
    fail(file, `uses ${type} compression; tsvmm reads only zlib-compressed clusters`);
  }
  if (header.refcountOrder > 6) corrupt(file, `refcount_order ${header.refcountOrder} is above 6`);
}

function readBackingFileName(file: HostFile, header: Qcow2Header, cluster0: Uint8Array): void {
  const view = new DataView(cluster0.buffer);
  const offset = getU64(view, 8, 'the backing file name offset', file.path);
  if (offset === 0) return;
  const length = view.getUint32(16);
  if (length > MAX_BACKING_NAME) corrupt(file, `the backing file name is ${length} bytes long (at most ${MAX_BACKING_NAME})`);
  if (offset + length > cluster0.length) corrupt(file, 'the backing file name lies outside the first cluster');
  header.backingFile = Buffer.from(cluster0.subarray(offset, offset + length)).toString('utf8');
  if (header.backingFile === '') corrupt(file, 'the backing file name is empty');
}

/** The tables the header points to must be aligned, of sane size, and inside the file. */
function checkLayout(file: HostFile, header: Qcow2Header, fileSize: number): void {
  const clusterSize = clusterSizeOf(header);
  const aligned = (offset: number) => offset % clusterSize === 0;
  if (header.size % 512 !== 0) fail(file, `the virtual size ${header.size} is not a multiple of 512`);
  const l1Bytes = header.l1Size * 8;
  if (header.l1Size < l1EntriesFor(header.size, header.clusterBits)) {
    corrupt(file, `the L1 table (${header.l1Size} entries) is too small for the virtual size ${header.size}`);
  }
  if (l1Bytes > MAX_L1_BYTES) corrupt(file, `the L1 table is too large (${header.l1Size} entries)`);
  if (header.l1Size > 0 && (!aligned(header.l1TableOffset) || header.l1TableOffset === 0)) {
    corrupt(file, `the L1 table offset 0x${header.l1TableOffset.toString(16)} is not a cluster boundary after the header`);
  }
  if (header.l1TableOffset + l1Bytes > fileSize) corrupt(file, 'the L1 table lies past the end of the file (truncated image?)');
  const refcountTableBytes = header.refcountTableClusters * clusterSize;
  if (header.refcountTableClusters === 0 || refcountTableBytes > MAX_REFCOUNT_TABLE_BYTES) {
    corrupt(file, `the refcount table size (${header.refcountTableClusters} clusters) is invalid`);
  }
  if (!aligned(header.refcountTableOffset) || header.refcountTableOffset === 0) {
    corrupt(file, `the refcount table offset 0x${header.refcountTableOffset.toString(16)} is not a cluster boundary after the header`);
  }
  if (header.refcountTableOffset + refcountTableBytes > fileSize) {
    corrupt(file, 'the refcount table lies past the end of the file (truncated image?)');
  }
  if (header.snapshotCount > 0 && !aligned(header.snapshotsOffset)) corrupt(file, 'the snapshot table is not cluster-aligned');
}

export interface NewHeader {
  version: 2 | 3;
  clusterBits: number;
  size: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  backingFile?: string;
  backingFormat?: string;
}

/** Cluster 0 of a new image: the header, a backing format extension, and the backing file name. */
export function encodeHeader(h: NewHeader): Uint8Array {
  const clusterSize = 2 ** h.clusterBits;
  const bytes = new Uint8Array(clusterSize);
  const view = new DataView(bytes.buffer);
  const headerLength = h.version === 3 ? V3_HEADER_LENGTH : V2_HEADER_LENGTH;
  view.setUint32(0, QCOW2_MAGIC);
  view.setUint32(4, h.version);
  view.setUint32(20, h.clusterBits);
  setU64(view, 24, h.size);
  view.setUint32(36, h.l1Size);
  setU64(view, 40, h.l1TableOffset);
  setU64(view, 48, h.refcountTableOffset);
  view.setUint32(56, h.refcountTableClusters);
  if (h.version === 3) {
    view.setUint32(96, 4);  // refcount_order: 16-bit refcounts
    view.setUint32(100, headerLength);
  }
  let at = headerLength;
  const ascii = (text: string) => Buffer.from(text, 'utf8');
  if (h.backingFormat) {
    const name = ascii(h.backingFormat);
    view.setUint32(at, EXTENSION.backingFormat);
    view.setUint32(at + 4, name.length);
    bytes.set(name, at + 8);
    at += 8 + Math.ceil(name.length / 8) * 8;
  }
  at += 8;  // the end-of-extensions marker: type 0, length 0
  if (h.backingFile) {
    const name = ascii(h.backingFile);
    if (name.length > MAX_BACKING_NAME) throw new InputError(`backing file name too long (${name.length} bytes; at most ${MAX_BACKING_NAME})`);
    if (at + name.length > clusterSize) throw new InputError(`backing file name does not fit in a ${clusterSize}-byte cluster`);
    setU64(view, 8, at);
    view.setUint32(16, name.length);
    bytes.set(name, at);
  }
  return bytes;
}
