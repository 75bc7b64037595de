// The guest-physical map of a tsvmm PC: every address, I/O port and
// interrupt line the machine puts something at, in one place. The builder
// (src/machine/builder.ts) places devices here, the boot code writes its
// structures here, and the ACPI tables and MP table describe the same numbers
// to the guest. Devices themselves only know register offsets.
//
//   0x0000_0000  RAM (low): boot structures below 1 MiB, the kernel from 1 MiB
//   0x0009_0000    multiboot information (a multiboot kernel's, up to the EBDA)
//   0x000e_0000    ACPI tables (BIOS area, reserved in e820)
//   0x000f_0000    real-mode interrupt handlers (a multiboot kernel's)
//   0xd000_0000  MMIO gap start: no RAM from here to 4 GiB
//   0xd100_0000    virtio-mmio windows, one page each
//   0xe000_0000    PCI BAR window (virtio-pci functions, then edu at 0xe010_0000)
//   0xfea0_0000    ACPI Generic Event Device
//   0xfec0_0000    IOAPIC (KVM)
//   0xfed9_0000    Intel VT-d registers (--device intel-iommu)
//   0xfee0_0000    local APICs (KVM)
//   0xff00_0000    pc-testdev's 64 KiB buffer (--device pc-testdev)
//   0xfffb_c000    KVM's identity map page and TSS (VT-x real mode)
//   0x1_0000_0000 RAM (high): what did not fit below the gap

/** Where RAM may not go: the 32-bit MMIO window (same gap as kvmtool and Firecracker). */
export const MMIO_GAP_START = 0xd000_0000;
export const MMIO_GAP_END = 0x1_0000_0000;

export interface RamLayoutEntry {
  guestAddress: number;
  size: number;
}

/** The RAM ranges of a guest with `memoryBytes` of RAM: from 0, and the rest above 4 GiB. */
export function ramLayout(memoryBytes: number): RamLayoutEntry[] {
  if (memoryBytes <= MMIO_GAP_START) return [{ guestAddress: 0, size: memoryBytes }];
  return [
    { guestAddress: 0, size: MMIO_GAP_START },
    { guestAddress: MMIO_GAP_END, size: memoryBytes - MMIO_GAP_START },
  ];
}

/** Structures the VMM writes into low RAM before a guest starts (Firecracker's x86_64 layout). */
export const BootLayout = {
  /** GDT for the 64-bit and 32-bit entries (4 descriptors). */
  GDT: 0x500,
  /** An empty IDT: the kernel installs its own before enabling interrupts. */
  IDT: 0x520,
  /** PVH hvm_start_info, its module list and its memory map. */
  PVH_START_INFO: 0x6000,
  PVH_MODLIST: 0x6040,
  PVH_MEMMAP: 0x6100,
  /** boot_params, "the zero page" of the Linux boot protocol. */
  ZERO_PAGE: 0x7000,
  /** Identity page tables for the 64-bit entry: PML4, PDPT, then 4 page directories. */
  PML4: 0x9000,
  PDPT: 0xa000,
  PAGE_DIRECTORIES: 0xb000,
  /** A flat guest's image is copied here and started at CS:IP = 0x1000:0 (kvmtool's convention). */
  FLAT_IMAGE: 0x1_0000,
  /** Kernel command line (NUL-terminated). */
  CMDLINE: 0x2_0000,
  CMDLINE_MAX: 0x1_0000,
  /**
   * A multiboot kernel's information structure (src/boot/multiboot.ts), its
   * module list, its memory map, then its strings (command line, module
   * names) up to the EBDA. High in conventional memory, because
   * kvm-unit-tests reuses page 0 for its AP trampoline and links
   * realmode.flat at 0x8000; a kernel segment may not overlap it.
   */
  MULTIBOOT_INFO: 0x9_0000,
  MULTIBOOT_MODULES: 0x9_0080,
  MULTIBOOT_MMAP: 0x9_0100,
  MULTIBOOT_STRINGS: 0x9_0800,
  /**
   * End of conventional memory: the EBDA from here to 640 KiB and the BIOS
   * area above are reserved in e820. The MP table lives at its start, where
   * Linux looks first (the first KiB of the EBDA).
   */
  EBDA_START: 0x9_fc00,
  MP_TABLE: 0x9_fc00,
  /**
   * The ACPI tables, RSDP first, in the BIOS area, where Linux also scans
   * for "RSD PTR " when neither boot_params nor PVH start_info points at it.
   * They need ~1 KiB; 64 KiB is theirs.
   */
  ACPI_TABLES: 0xe_0000,
  ACPI_TABLES_MAX_SIZE: 0x1_0000,
  /**
   * The real-mode interrupt handlers a multiboot kernel finds behind its IVT
   * (boot/legacy-bios.ts), at the start of the system BIOS segment F000.
   */
  BIOS_HANDLERS: 0xf_0000,
  /** The protected-mode kernel loads here (1 MiB) unless it asks otherwise. */
  HIGH_MEMORY: 0x10_0000,
} as const;

/** Device windows in the MMIO gap. */
export const MmioLayout = {
  /** virtio-mmio devices: one 4 KiB window each, in the order given. */
  VIRTIO_MMIO_BASE: 0xd100_0000,
  VIRTIO_MMIO_STRIDE: 0x1000,
  /**
   * Where virtio-pci functions' BARs start, as firmware would assign them;
   * the host bridge forwards this window up to the GED's page.
   */
  PCI_BAR_WINDOW_BASE: 0xe000_0000,
  PCI_BAR_WINDOW_END: 0xfe9f_ffff,
  /** Where firmware puts edu's 1 MiB BAR: past the virtio-pci functions' BARs (8 of 16 KiB at most). */
  EDU_BAR: 0xe010_0000,
  /** The ACPI Generic Event Device's status register page (QEMU's microvm puts its GED here too). */
  ACPI_GED: 0xfea0_0000,
  /** KVM's in-kernel IOAPIC (24 pins, ID 0 after reset). */
  IOAPIC: 0xfec0_0000,
  IOAPIC_SIZE: 0x1000,
  /** The VT-d remapping unit's register page: q35's address, which kvm-unit-tests hard-codes. */
  INTEL_IOMMU: 0xfed9_0000,
  /** The local APIC window every vCPU sees its own APIC through (KVM). */
  LOCAL_APIC: 0xfee0_0000,
  LOCAL_APIC_SIZE: 0x10_0000,
  /** pc-testdev's MMIO buffer (QEMU's address, which kvm-unit-tests' x86/ioram.h hard-codes). */
  PC_TESTDEV_IOMEM: 0xff00_0000,
  /** KVM_SET_IDENTITY_MAP_ADDR: one page VT-x needs for real mode, just below the TSS. */
  KVM_IDENTITY_MAP: 0xfffb_c000,
  /** KVM_SET_TSS_ADDR: three pages VT-x needs for real mode. */
  KVM_TSS: 0xfffb_d000,
  KVM_TSS_SIZE: 0x3000,
} as const;

/** I/O ports: the PC's standard assignments, and tsvmm's own devices where the PC has none. */
export const PortLayout = {
  /** i8254 PIT: counters 0-2 and the control word. */
  PIT: 0x40,
  PIT_COUNT: 4,
  /** i8042 data port; its status/command port is +4. */
  I8042_DATA: 0x60,
  I8042_COMMAND: 0x64,
  /** System control port B (PIT gate 2, speaker, refresh toggle), between the i8042's two ports. */
  SYSTEM_CONTROL_B: 0x61,
  /** CMOS RTC: index and data. */
  CMOS: 0x70,
  CMOS_COUNT: 2,
  /**
   * QEMU's isa-debug-exit defaults (iobase 0x501, iosize 2): a write of v ends
   * tsvmm with status (v << 1) | 1. `--device isa-debug-exit,iobase=,iosize=`
   * moves it (kvm-unit-tests puts it at 0xf4, 4 ports).
   */
  DEBUG_EXIT: 0x501,
  DEBUG_EXIT_COUNT: 2,
  /** QEMU's pvpanic (--device pvpanic), at its default ioport: the guest's panic notifier writes here. */
  PVPANIC: 0x505,
  PVPANIC_COUNT: 1,
  /**
   * QEMU's fw_cfg on a PC (docs/specs/fw_cfg.rst): selector and data, and the
   * DMA address register; kvm-unit-tests and Linux's qemu_fw_cfg look here.
   */
  FW_CFG: 0x510,
  FW_CFG_COUNT: 2,
  FW_CFG_DMA: 0x514,
  FW_CFG_DMA_COUNT: 8,
  /**
   * QEMU's pc-testdev (--device pc-testdev), where kvm-unit-tests expects it:
   * the scratch register, the flush-page port, the byte-wide scratch register,
   * and one port per interrupt line.
   */
  PC_TESTDEV_IOPORT: 0xe0,
  PC_TESTDEV_FLUSH: 0xe4,
  PC_TESTDEV_IOPORT_BYTE: 0xe8,
  PC_TESTDEV_IRQ: 0x2000,
  /** ACPI sleep control, sleep status and reset registers (where QEMU's PIIX4/ICH9 put their PM block). */
  ACPI_SLEEP: 0x600,
  ACPI_SLEEP_COUNT: 3,
  /**
   * The ACPI PM1a event block (status, enable) and control block, which
   * firmware-era software drives sleep states through (the FADT points at
   * them; an OS on tsvmm's hardware-reduced ACPI uses the sleep registers).
   */
  ACPI_PM1A_EVENT: 0x604,
  ACPI_PM1A_EVENT_COUNT: 4,
  ACPI_PM1A_CONTROL: 0x60c,
  ACPI_PM1A_CONTROL_COUNT: 2,
  /** The ACPI PM timer, where QEMU's PC puts it (its PM block's offset 8). */
  ACPI_PM_TIMER: 0x608,
  ACPI_PM_TIMER_COUNT: 4,
  /** PCI configuration mechanism #1: CONFIG_ADDRESS and CONFIG_DATA (fixed by the PCI spec; the host bridge decodes them itself). */
  PCI_CONFIG: 0xcf8,
  PCI_CONFIG_COUNT: 8,
  /** 16550A UARTs: 8 ports each. */
  COM1: 0x3f8,
  COM2: 0x2f8,
  COM3: 0x3e8,
  COM4: 0x2e8,
  UART_COUNT: 8,
} as const;

/**
 * The port ranges of the machine's own devices, which a device the user
 * places (isa-debug-exit's iobase) may not overlap. Every UART is listed,
 * though only COM1 is populated, so that a guest's probe of COM2-4 stays
 * unclaimed.
 */
export const FIXED_PORT_RANGES: readonly { name: string; base: number; count: number }[] = [
  { name: 'the PIT', base: PortLayout.PIT, count: PortLayout.PIT_COUNT },
  { name: 'the i8042', base: PortLayout.I8042_DATA, count: 1 },
  { name: 'system control port B', base: PortLayout.SYSTEM_CONTROL_B, count: 1 },
  { name: 'the i8042', base: PortLayout.I8042_COMMAND, count: 1 },
  { name: 'the CMOS RTC', base: PortLayout.CMOS, count: PortLayout.CMOS_COUNT },
  { name: 'fw_cfg', base: PortLayout.FW_CFG, count: PortLayout.FW_CFG_COUNT },
  { name: 'fw_cfg DMA', base: PortLayout.FW_CFG_DMA, count: PortLayout.FW_CFG_DMA_COUNT },
  { name: 'ACPI sleep control', base: PortLayout.ACPI_SLEEP, count: PortLayout.ACPI_SLEEP_COUNT },
  { name: 'the ACPI PM1a event block', base: PortLayout.ACPI_PM1A_EVENT, count: PortLayout.ACPI_PM1A_EVENT_COUNT },
  { name: 'the ACPI PM1a control block', base: PortLayout.ACPI_PM1A_CONTROL, count: PortLayout.ACPI_PM1A_CONTROL_COUNT },
  { name: 'PCI configuration', base: PortLayout.PCI_CONFIG, count: PortLayout.PCI_CONFIG_COUNT },
  { name: 'COM1', base: PortLayout.COM1, count: PortLayout.UART_COUNT },
  { name: 'COM2', base: PortLayout.COM2, count: PortLayout.UART_COUNT },
  { name: 'COM3', base: PortLayout.COM3, count: PortLayout.UART_COUNT },
  { name: 'COM4', base: PortLayout.COM4, count: PortLayout.UART_COUNT },
];

/** Interrupt lines: ISA IRQs 0-15 (PIC and IOAPIC pins 0-15) and IOAPIC GSIs above. */
export const IrqLayout = {
  PIT: 0,
  KEYBOARD: 1,
  /** 2 is the slave PIC's cascade. */
  COM2_COM4: 3,
  COM1_COM3: 4,
  RTC: 8,
  MOUSE: 12,
  /**
   * The ISA lines left for virtio devices (13 is the FPU's): one each, since
   * an edge-triggered PIC line cannot be shared.
   */
  VIRTIO: [5, 6, 7, 9, 10, 11, 14, 15],
  /** edu's INTA#: the first IOAPIC pin above the ISA lines (no PIC input, so only the IOAPIC routes it). */
  EDU: 16,
  /** The ACPI GED: the IOAPIC's last pin, above the ISA lines, so nothing else is wired to it. */
  ACPI_GED: 23,
  IOAPIC_PINS: 24,
} as const;
