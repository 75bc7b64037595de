// A disk image tsvmm cannot use, or an I/O error on one. The message is one
// line and starts with the file's name, so the CLI can print it as it is.
export class StorageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageError';
  }
}
