// The counter guest (firmware/multiboot/counter.S) as the tests and the
// lifecycle bench use it: its command lines under tsvmm and QEMU, and its
// output read back as numbers.
import { multibootFirmwarePath } from '../../firmware/firmware.ts';

/** The guest's exit statuses: debug-exit v becomes (v << 1) | 1, under tsvmm and QEMU alike. */
export const CounterStatus = {
  DONE: 1,
  BAD_SLOT: 3,
  BAD_INPUT: 5,
  EXCEPTION: 7,
  DISK_FAILED: 9,
} as const;

export interface CounterSettings {
  /** Buffer pages the guest dirties (default 4096 = 16 MiB). */
  pages?: number;
  /** Steps per `count` line (default 8192). */
  every?: number;
  /** Steps before it ends with status 1 (default: never). */
  limit?: number;
  /** Count the PIT's 100 Hz interrupts and print them on each line. */
  ticks?: boolean;
  /** At the limit, power off through ACPI or report a panic through pvpanic before the debug-exit. */
  end?: 'poweroff' | 'panic';
  /** Before each count line, write its N into a sector of the first virtio-mmio disk (tsvmm only). */
  disk?: boolean;
}

export function counterKernel(): string {
  return multibootFirmwarePath('counter');
}

/** The guest's command line (tsvmm's -p, QEMU's -append). */
export function counterCmdline(settings: CounterSettings): string {
  const words: string[] = [];
  if (settings.pages !== undefined) words.push(`pages=${settings.pages}`);
  if (settings.every !== undefined) words.push(`every=${settings.every}`);
  if (settings.limit !== undefined) words.push(`limit=${settings.limit}`);
  if (settings.ticks) words.push('ticks');
  if (settings.end) words.push(settings.end);
  if (settings.disk) words.push('disk');
  return words.join(' ');
}

/**
 * What the `disk` word left in sector `sector` of a disk image's bytes: the N
 * of a count line, or null when the sector is not one the guest wrote (all 64
 * u64s must agree).
 */
export function diskSectorValue(image: Uint8Array, sector: number): bigint | null {
  const view = new DataView(image.buffer, image.byteOffset + sector * 512, 512);
  const first = view.getBigUint64(0, true);
  for (let at = 8; at < 512; at += 8) if (view.getBigUint64(at, true) !== first) return null;
  return first;
}

/** `tsvmm run` arguments for the counter guest. */
export function tsvmmCounterArgs(settings: CounterSettings, memMiB = 64): string[] {
  return ['run', '-k', counterKernel(), '-p', counterCmdline(settings), '--mem', `${memMiB}M`];
}

/**
 * QEMU running the same file through its multiboot loader (the pc machine's
 * option ROM), COM1 on stdout and isa-debug-exit at 0x501 as tsvmm has it.
 * Under KVM the CPU is the host's without ARCH_CAPABILITIES, which QEMU 7.2
 * fails to set on a PVM host (see bench/lib/peers.ts).
 */
export function qemuCounterArgs(settings: CounterSettings, options: { memMiB?: number; accel?: 'kvm' | 'tcg' } = {}): string[] {
  const accel = options.accel ?? 'kvm';
  return [
    '-accel', accel, ...(accel === 'kvm' ? ['-cpu', 'host,-arch-capabilities'] : []),
    '-m', `${options.memMiB ?? 64}M`, '-nodefaults', '-display', 'none', '-no-reboot',
    '-serial', 'stdio', '-device', 'isa-debug-exit,iobase=0x501,iosize=2',
    '-kernel', counterKernel(), '-append', counterCmdline(settings),
  ];
}

export interface CountLine {
  /** Steps done. */
  n: number;
  /** IRQ0 interrupts taken, with `ticks`. */
  ticks?: number;
}

const COUNT_LINE = /^count (\d+)(?: ticks (\d+))?$/;

/** A `count <N>` or `count <N> ticks <T>` line, or null for any other line. */
export function parseCountLine(line: string): CountLine | null {
  const match = COUNT_LINE.exec(line);
  if (!match) return null;
  return match[2] === undefined ? { n: Number(match[1]) } : { n: Number(match[1]), ticks: Number(match[2]) };
}

/** Every count line of an output, in order. */
export function countLines(output: string): CountLine[] {
  return output.split('\n').map(parseCountLine).filter((c): c is CountLine => c !== null);
}
