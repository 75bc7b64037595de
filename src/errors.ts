// The one error for something the user gave tsvmm that it cannot use: an
// option, a guest image, a disk image, a configuration. Its message is one
// line that names what was given and what is wrong with it; the CLI prints it
// as it is and ends with exit status 2 (src/cli/errors.ts).
//
// It sits beside the layers, not in one, because every layer from src/storage
// up throws it (a corrupt image, an unbootable kernel, a bad --disk, a bad
// option) and each must be able to import it without importing a layer
// above it; eslint's layer zones cover the folders only.

export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}
