// The default Linux guest (guests/default) as the suites that boot it run it:
// under tsvmm as a user does (`tsvmm run`, which boots that guest on its
// default machine), and under QEMU's microvm with the same vmlinux, initramfs
// and kernel command line. bench/boot.ts times the boot; bench/blk-guest.ts
// runs disk loads inside the booted guest.
import { existsSync } from 'node:fs';
import { BASE_CMDLINE } from '../../src/cli/run.ts';
import { PVM_KERNEL_PARAMETERS } from '../../src/vcpu/index.ts';
import { TSVMM_BIN } from './artifacts.ts';

export interface DefaultGuestFiles {
  kernel: string;
  initrd: string;
}

/** Builds the default guest when it is not cached (minutes, once), and says where it is. */
export async function defaultGuestFiles(): Promise<DefaultGuestFiles> {
  const { defaultLinuxGuest } = await import('../../src/cli/guest.ts');
  const guest = await defaultLinuxGuest({ quiet: false });
  return { kernel: guest.kernel, initrd: guest.initrd };
}

const IS_PVM = existsSync('/sys/module/kvm_pvm');

/** The command line `tsvmm run` gives the default guest on this host (src/cli/run.ts). */
export function tsvmmGuestCmdline(): string {
  return IS_PVM ? `${BASE_CMDLINE} ${PVM_KERNEL_PARAMETERS}` : BASE_CMDLINE;
}

/** A virtio-blk disk on virtio-mmio; the guest finds it by its serial (/sys/block/vdX/serial). */
export interface GuestDisk {
  path: string;
  format: 'raw' | 'qcow2';
  serial: string;
  /** Attached read-only: several VMMs may then have the same image open at once. */
  readonly?: boolean;
}

export const GUEST_MEM_MIB = 256;

/** `tsvmm run` with the default guest (its defaults: 256 MiB, 1 vCPU) and these disks. */
export function tsvmmGuestArgs(disks: readonly GuestDisk[]): string[] {
  return [TSVMM_BIN, 'run', ...disks.flatMap((d) => ['--disk', `${d.path},format=${d.format},serial=${d.serial}${d.readonly ? ',readonly' : ''}`])];
}

/**
 * QEMU's CPU for this guest. QEMU 7.2 aborts at start on an AMD PVM host
 * unless ARCH_CAPABILITIES is off (docs/pvm.md); on PVM it also hides what
 * tsvmm's CPUID hides there (src/vcpu/cpuid.ts PVM_HIDDEN): CX16, which the
 * emulator fails on in SLUB, and the features the command line clears anyway.
 */
export function qemuGuestCpu(): string {
  return IS_PVM ? 'host,-arch-capabilities,-cx16,-popcnt,-smap,-xsave,kvm-pv-unhalt=off' : 'host,-arch-capabilities';
}

/**
 * QEMU -M microvm with the default guest: the same kernel, initramfs and
 * command line as tsvmm, 256 MiB, one vCPU, COM1 on stdio, the disks as
 * virtio-blk-device on virtio-mmio. `drive` is what -drive gets beyond the
 * file and format: "" for QEMU's default (cache=writeback, aio=threads), or
 * e.g. "cache=none,aio=threads".
 */
export function qemuGuestArgs(files: DefaultGuestFiles, disks: readonly GuestDisk[], drive = ''): string[] {
  return [
    '-M', 'microvm', '-accel', 'kvm', '-cpu', qemuGuestCpu(), '-m', `${GUEST_MEM_MIB}M`, '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot',
    '-kernel', files.kernel, '-initrd', files.initrd, '-append', tsvmmGuestCmdline(),
    ...disks.flatMap((d, i) => [
      '-drive', `if=none,id=disk${i},file=${d.path},format=${d.format}${d.readonly ? ',readonly=on' : ''}${drive ? `,${drive}` : ''}`,
      '-device', `virtio-blk-device,drive=disk${i},serial=${d.serial}`,
    ]),
  ];
}

/** The line /init prints first (guests/default/init): the guest reached user space. */
export const BANNER = /^tsvmm guest: Linux \S+/;
