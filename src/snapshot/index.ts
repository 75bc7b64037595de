export { FORMAT_VERSION, MAGIC, PAGE_SIZE } from './format.ts';
export { SnapshotWriter, type PageSelection, type RamPagesWritten } from './writer.ts';
export { SnapshotReader, DiskRecord, RamRecord, SectionRecord, type RamPage, type SnapshotRecord } from './reader.ts';
export { nonZeroPages, pagesInBitmap } from './ram-pages.ts';
export { openIncoming, openOutgoing, parseMigrationUri, type MigrationUri } from './uri.ts';
export type { IncomingChannel, IncomingOptions, OpenOptions, OutgoingChannel } from './channel.ts';
export { receiveSnapshot, sendSnapshot } from './transfer.ts';
export { mapRamFile, writeRamFile, type RamFileLayout } from './ram-file.ts';
