// The error for an image whose metadata contradicts itself (QEMU's
// qcow2_signal_corruption): found while serving a request, it makes the image
// refuse all further requests and, where the format can say so, marks it
// corrupt on disk, so no later writer trusts it until it is repaired.
import { InputError } from '../../errors.ts';

export class Qcow2CorruptionError extends InputError {
  constructor(readonly path: string, readonly reason: string) {
    super(`${path}: corrupt qcow2 image: ${reason}`);
    this.name = 'Qcow2CorruptionError';
  }
}

/** What repairs an image marked corrupt, for the messages that refuse it. */
export const REPAIR_HINT = 'repair it with "tsvmm img check -r all" (or "qemu-img check -r all")';
