// The tsvmm snapshot stream, shared by a snapshot file and live migration
// (docs/snapshot-format.md has the byte-by-byte description):
//
//   "TSVMMSNP"  u32 format version
//   record*     u32 type, u32 payload length, payload, u32 CRC32
//
// Every number is little-endian. The first record is the machine config, the
// last is `end`: a stream without it was cut short. The CRC32 (zlib's, as in
// gzip and PNG) covers the record's type and length as well as its payload, so
// a damaged byte anywhere in a record is caught before the type is believed.

/** The first 8 bytes of every stream. */
export const MAGIC = Buffer.from('TSVMMSNP', 'latin1');
/** The layout of records described here; a reader refuses any other. */
export const FORMAT_VERSION = 1;
/** Magic plus version. */
export const PREAMBLE_BYTES = MAGIC.length + 4;

export const RecordType = {
  /** The machine config as UTF-8 JSON: always the first record. */
  config: 1,
  /** A batch of guest RAM pages (RAM_ENTRY_* below). */
  ram: 2,
  /** A named blob for the machine: u16 name length, UTF-8 name, then the bytes. */
  section: 3,
  /** The stream is complete. Empty payload. */
  end: 4,
  /** A chunk of a disk, in a block migration (DISK_* below). */
  disk: 5,
} as const;
export type RecordTypeName = keyof typeof RecordType;

/** The name of a record type, or undefined for a number no tsvmm writes. */
export function recordTypeName(type: number): RecordTypeName | undefined {
  return (Object.keys(RecordType) as RecordTypeName[]).find((name) => RecordType[name] === type);
}

/** Type and length. */
export const RECORD_HEADER_BYTES = 8;
export const RECORD_CRC_BYTES = 4;
/**
 * The largest payload a reader accepts. It bounds what a damaged length field
 * can make the reader allocate; a writer splits RAM into far smaller records.
 */
export const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;

export const PAGE_SIZE = 4096;
/**
 * A RAM record is a run of page entries, each a u64: the page's guest-physical
 * address with flags in its low 12 bits (always zero in an address), followed
 * by PAGE_SIZE bytes of data unless the page is a zero page.
 */
export const RAM_ENTRY_HEADER_BYTES = 8;
/** The page is all zeroes; no data follows its address. */
export const RAM_FLAG_ZERO = 1;
export const RAM_FLAGS_MASK = PAGE_SIZE - 1;
/** Entries per RAM record: about 1 MiB of payload when every page has data. */
export const RAM_PAGES_PER_RECORD = 256;

/** Section names are at most this many UTF-8 bytes (their length is a u16). */
export const MAX_SECTION_NAME_BYTES = 0xffff;

/** The largest RAM record on the wire: a full batch of pages, each with its data. */
export const RAM_RECORD_MAX_BYTES = RECORD_HEADER_BYTES + RAM_PAGES_PER_RECORD * (RAM_ENTRY_HEADER_BYTES + PAGE_SIZE) + RECORD_CRC_BYTES;

/**
 * A disk record carries one chunk of a virtual disk (a block migration):
 *   u32 disk (its index among the machine's disks), u32 flags,
 *   u64 offset, u32 length, then `length` bytes unless DISK_FLAG_ZERO.
 */
export const DISK_HEADER_BYTES = 20;
/** The chunk reads as zeros; no data follows. */
export const DISK_FLAG_ZERO = 1;
/** The longest chunk a disk record carries (a writer sends 1 MiB). */
export const DISK_MAX_CHUNK_BYTES = 16 * 1024 * 1024;
