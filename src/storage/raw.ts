// A raw image: the virtual disk is the file, byte for byte. Reads and writes
// go straight between the caller's buffer and the file.
import type { BlockBackend, BlockStatus } from './block-backend.ts';
import { InputError } from '../errors.ts';
import { HostFile } from './host-file.ts';

const SECTOR_SIZE = 512;

export class RawDisk implements BlockBackend {
  readonly size: number;
  readonly readOnly: boolean;
  readonly description: string;
  private readonly file: HostFile;

  constructor(path: string, options: { readOnly?: boolean } = {}) {
    this.readOnly = options.readOnly ?? false;
    this.file = HostFile.open(path, this.readOnly);
    this.description = `${path} (raw)`;
    this.size = this.file.size();
    if (this.size % SECTOR_SIZE !== 0) {
      this.file.close();
      throw new InputError(`${path}: a raw image must be a whole number of 512-byte sectors; it is ${this.size} bytes`);
    }
  }

  read(offset: number, buffer: Uint8Array): void {
    // The size is the file's length, so only a file truncated under us reads short.
    this.file.readExactAt(buffer, offset, `read of ${buffer.length} bytes`);
  }

  write(offset: number, data: Uint8Array): void {
    if (this.readOnly) throw new InputError(`${this.description}: the disk is read-only`);
    this.file.writeAt(data, offset);
  }

  /**
   * All data: Node has no lseek(SEEK_DATA/SEEK_HOLE), so the holes of a
   * sparse file cannot be found without reading them. A copy that skips
   * zeros finds them by reading, as it does now.
   */
  blockStatus(offset: number, length: number): BlockStatus {
    if (offset < 0 || length <= 0 || offset + length > this.size) {
      throw new InputError(`${this.description}: block status of ${length} bytes at ${offset} is outside the disk (${this.size} bytes)`);
    }
    return { kind: 'data', length };
  }

  flush(): void {
    if (!this.readOnly) this.file.datasync();
  }

  close(): void {
    this.file.close();
  }
}

/** Creates a sparse raw image of `size` bytes (replacing any file at `path`). */
export function createRaw(path: string, size: number): void {
  const file = HostFile.create(path);
  try {
    file.truncate(size);
  } finally {
    file.close();
  }
}
