// The file descriptor of this process's VM, found in /proc/self/fd (KVM names
// it anon_inode:kvm-vm). The benchmarks use it to register an ioeventfd on a
// Machine from outside, without reaching into it; they run one VM at a time.
import { readdirSync, readlinkSync } from 'node:fs';

export function onlyVmFd(): number {
  const fds = readdirSync('/proc/self/fd').map(Number).filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:kvm-vm';
    } catch {
      return false;
    }
  });
  if (fds.length !== 1) throw new Error(`expected one KVM VM in this process, found ${fds.length}`);
  return fds[0]!;
}
