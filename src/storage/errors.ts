// A read, write, sync or resize of an image file that the host refused (EIO,
// ENOSPC, a vanished NFS server): not the user's input (an unusable or
// corrupt image is an InputError, src/errors.ts), so the CLI ends with status
// 1, as for any other failure. A running guest sees both alike, as a failed
// request. The message is one line and starts with the file's name.
export class ImageIoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageIoError';
  }
}
