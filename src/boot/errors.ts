// A guest image tsvmm cannot boot: reported as one line, exit status 2.
export class BootError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootError';
  }
}
