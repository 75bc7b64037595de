// How the CLI ends: one line on stderr, exit status 2 for bad usage or input,
// 4 when tsvmm, KVM or the host failed the VM. No stack traces for anything a
// user can cause. (1 and every other odd status are a guest's debug-exit
// writes: src/vcpu/stop.ts says why a failure must never be one of them.)
import { InputError } from '../errors.ts';
import { KvmError } from '../kvm/index.ts';
import { ImageIoError } from '../storage/block-backend.ts';
import { VM_FAILURE_STATUS } from '../vcpu/index.ts';

export const EXIT_USAGE = 2;
export const EXIT_FAILURE = VM_FAILURE_STATUS;

/**
 * The errors that end tsvmm with their message as it is, and the status each
 * ends with. Anything else is a bug in tsvmm: an "internal error".
 */
const EXPECTED_ERRORS: readonly { type: new (...args: never[]) => Error; status: number }[] = [
  { type: InputError, status: EXIT_USAGE },    // an option, guest, disk image or configuration tsvmm cannot use
  { type: KvmError, status: EXIT_FAILURE },    // a system call on KVM (or a TAP device) failed
  { type: ImageIoError, status: EXIT_FAILURE }, // the host failed a read or write of an image file
];

/** The exit status for an expected error, or null for a bug. */
export function exitStatusOf(e: unknown): number | null {
  return EXPECTED_ERRORS.find(({ type }) => e instanceof type)?.status ?? null;
}
