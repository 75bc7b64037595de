// What a VM is made of, as plain data: the CLI builds it, the main thread
// creates the VM from it, and the vCPU thread receives a copy.
import type { CpuModel } from '../vcpu/index.ts';

export interface MachineConfig {
  /** Guest RAM in bytes. */
  memoryBytes: number;
  /** vCPUs (default 1). More than one needs, and implies, the in-kernel irqchip. */
  cpus?: number;
  /** The CPU model and feature changes (`--cpu host,+x2apic,-pcid`); default: host. */
  cpu?: CpuModel;
  /** A flat real-mode binary (see src/boot/flat.ts). */
  flat?: { path: string };
  /**
   * A kernel (`--kernel`): a Linux bzImage or vmlinux (src/boot/linux.ts) or a
   * multiboot v1 kernel (src/boot/multiboot.ts), which the builder tells apart
   * by the file's headers. `cmdline` is a Linux kernel's whole command line;
   * `args` is the user's own part of it alone, which a multiboot kernel gets
   * after its file name, without tsvmm's Linux console settings.
   */
  linux?: { kernel: string; initrd?: string; cmdline: string; args?: string; systemMap?: string };
  /**
   * Create the in-kernel interrupt controllers (PIC, IOAPIC, local APIC).
   * Always on for Linux; off by default for flat guests, so that a flat guest
   * that halts with nothing to wake it returns to tsvmm (KVM_EXIT_HLT).
   */
  irqchip?: boolean;
  /**
   * Who emulates the i8254 PIT: tsvmm's TypeScript model (default) or KVM
   * (KVM_CREATE_PIT2); or no PIT at all (QEMU's -machine pit=off, which
   * kvm-unit-tests' vmexit_ipi asks for), and then no port 0x61 either.
   */
  pit?: 'tsvmm' | 'kernel' | 'off';
  /** `--trace exits`: print every exit and a table of counts at the end. */
  traceExits?: boolean;
  /**
   * Extra device modules loaded into the vCPU thread (tests, benchmarks):
   * absolute paths of modules exporting `attach(platform: PlatformContext)`.
   */
  deviceModules?: string[];
  /** Where the isa-debug-exit device sits (default: src/layout.ts's DEBUG_EXIT, 2 ports). */
  debugExit?: { port: number; size: number };
  /** QEMU's pc-testdev, the test device of kvm-unit-tests (`--device pc-testdev`). */
  pcTestdev?: boolean;
  /** QEMU's educational PCI device (`--device edu`), behind the PCI host bridge. */
  edu?: boolean;
  /**
   * An Intel VT-d unit at q35's 0xFED90000 (`--device intel-iommu`): DMA
   * remapping for the PCI functions, and interrupt remapping with
   * `interruptRemapping` (QEMU's intremap=on).
   */
  iommu?: { interruptRemapping: boolean };
  /** QEMU's pvpanic at port 0x505 (`--device pvpanic`): the guest reports its panics there. */
  pvpanic?: boolean;
  /** Files the guest finds in fw_cfg's directory (`--fw-cfg name=opt/NAME,file=PATH|string=S`). */
  fwCfgFiles?: FwCfgFileConfig[];
  /** Where guest console output goes (default: stdout). */
  consoleFd?: number;
  /** Where traces go (default: stderr). */
  traceFd?: number;
  /** virtio devices, in the order the guest finds them. */
  virtio?: VirtioDeviceConfig[];
  /** The transport of devices that do not name one (default mmio). */
  virtioTransport?: VirtioTransportKind;
  /**
   * Queue notifications through KVM_IOEVENTFD and interrupts through
   * KVM_IRQFD (default: on where KVM has them). Off, a notification exits to the vCPU thread and
   * an interrupt is a KVM_IRQ_LINE ioctl: slower, and what the benchmark compares.
   */
  ioeventfd?: boolean;
  irqfd?: boolean;
  /** Where host input goes and which console Linux uses: COM1 (default) or the virtio console (hvc0). */
  console?: 'serial' | 'virtio';
}

/** One fw_cfg file: its contents from a host file, or a string (without a NUL), as QEMU's -fw_cfg. */
export type FwCfgFileConfig = { name: string } & ({ file: string } | { string: string });

export type VirtioTransportKind = 'mmio' | 'pci';

/** A virtio device on the machine (`--disk`, `--net`, `--device`). */
export type VirtioDeviceConfig = { transport?: VirtioTransportKind } & (
  | { kind: 'blk'; path: string; format?: 'raw' | 'qcow2'; readOnly?: boolean; serial?: string }
  | { kind: 'rng' }
  | { kind: 'console' }
  /**
   * `tap` names the TAP (a "%d" in it is a template); with `bridge`, the TAP
   * joins that host bridge, up. `tapFd` is filled in by the machine once it
   * opened the TAP device. With `user`, frames go to passt instead (user
   * networking, no root needed): whoever starts the machine starts passt
   * (src/network/passt.ts) and gives its socket as `streamFd`, which it
   * keeps and closes itself.
   */
  | { kind: 'net'; tap?: string; bridge?: string; mac?: string; tapFd?: number; user?: UserNetworkConfig; streamFd?: number }
);

/** A port forwarded from the host into the guest: QEMU's hostfwd=tcp|udp:[ADDRESS]:HOSTPORT-:GUESTPORT. */
export interface HostForward {
  protocol: 'tcp' | 'udp';
  /** The host address to listen on; every address when absent. */
  address?: string;
  hostPort: number;
  guestPort: number;
}

/** `--net user`: the guest's network is passt's, addressed by its DHCP server, with these ports forwarded in. */
export interface UserNetworkConfig {
  hostForwards: HostForward[];
}

export const MIB = 1024 * 1024;
export const DEFAULT_MEMORY = 256 * MIB;
export const MIN_MEMORY = 1 * MIB;
