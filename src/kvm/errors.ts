// Errors from the kernel interface: each names the call and the errno, and
// says what to do where the cause is a common, fixable one.
import { errnoMessage, errnoName } from './libc.ts';

const KVM_HINTS: Record<string, string> = {
  ENOENT: '/dev/kvm does not exist: enable KVM on this host (load kvm_intel, kvm_amd or kvm_pvm; in a VM, enable nested virtualization)',
  ENXIO: '/dev/kvm has no driver behind it: load kvm_intel, kvm_amd or kvm_pvm',
  EACCES: 'no permission on /dev/kvm; add the user to the kvm group (sudo usermod -aG kvm $USER) and log in again',
  EPERM: 'no permission on /dev/kvm; add the user to the kvm group (sudo usermod -aG kvm $USER) and log in again',
  ENOMEM: 'the host is out of memory: try a smaller --mem or free memory on the host',
  EMFILE: 'too many open files: raise the limit (ulimit -n)',
};

/** A failed system call: `KVM_CREATE_VM: EACCES — no permission on /dev/kvm; ...`. */
export class KvmError extends Error {
  readonly call: string;
  readonly errno: number;
  readonly code: string;

  constructor(call: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    const hint = KVM_HINTS[code] ?? errnoMessage(errno);
    super(`${call}: ${code} — ${detail ? `${detail}: ` : ''}${hint}`);
    this.name = 'KvmError';
    this.call = call;
    this.errno = errno;
    this.code = code;
  }
}
