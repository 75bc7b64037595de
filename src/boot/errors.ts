// A guest image tsvmm cannot boot is an input error (src/errors.ts): exit
// status 2. The old name stays, as the same class, until the files that
// still say BootError (src/boot/linux.ts, src/boot/acpi/) are rewritten.
export { InputError as BootError } from '../errors.ts';
