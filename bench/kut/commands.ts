// The command lines that start one kvm-unit-tests test under QEMU and under
// tsvmm, the way the suite's own x86/run starts QEMU (pc-testdev,
// isa-debug-exit at 0xf4, the test's smp, -append and qemu_params). Used by
// the test:kut runner (run.ts) and the exits-kut bench suite.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { TSVMM_BIN } from '../lib/artifacts.ts';
import type { KutTest } from './unittests-cfg.ts';

/** The options every QEMU run gets, as the suite's x86/run builds them. */
const QEMU_BASE = [
  '--no-reboot', '-nodefaults', '-global', 'kvm-pit.lost_tick_policy=discard',
  '-device', 'pc-testdev', '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x4',
  '-display', 'none', '-serial', 'stdio', '-device', 'pci-testdev', '-machine', 'accel=kvm',
  // On this kind of host QEMU 7.2 aborts at start when it passes ARCH_CAPABILITIES on.
  '-cpu', 'host,-arch-capabilities', '-m', '128',
];

export function qemuCommand(test: KutTest, kutDir: string, qemuBin: string): string[] {
  // The test's own -cpu comes last and wins; host and max need the same fix as the default.
  const params = test.qemuParams.map((word, i) =>
    test.qemuParams[i - 1] === '-cpu' && /^(host|max)(,|$)/.test(word) ? `${word},-arch-capabilities` : word);
  const append = test.args ? ['-append', test.args] : [];
  return [qemuBin, ...QEMU_BASE, '-kernel', join(kutDir, 'x86', test.file), '-smp', String(test.smp), ...append, ...params];
}

/** Which of the suite's devices and options this tsvmm has (as x86/run probes QEMU for pc-testdev). */
export interface TsvmmFeatures {
  pcTestdev: boolean;
  cpu: boolean;
}

export function tsvmmFeatures(): TsvmmFeatures {
  const help = spawnSync(process.execPath, [TSVMM_BIN, 'run', '--help'], { encoding: 'utf8' }).stdout;
  return { pcTestdev: help.includes('pc-testdev'), cpu: help.includes('--cpu ') };
}

/**
 * tsvmm's options for QEMU's -machine settings, or the one it cannot honour.
 * q35 is tsvmm's PC as it is (host bridge at 0xCF8, the VT-d unit at q35's
 * address); kernel-irqchip=split is what QEMU needs for interrupt remapping,
 * which tsvmm does beside KVM's own IOAPIC (src/machine/message-interrupts.ts).
 */
function machineOptions(value: string): { args: string[] } | { unsupported: string } {
  const args: string[] = [];
  for (const setting of value.split(',')) {
    if (setting === 'q35' || setting === 'accel=kvm' || setting === 'kernel-irqchip=split' || setting === 'kernel-irqchip=on') continue;
    if (setting === 'pit=off') args.push('--pit', 'off');
    else return { unsupported: setting };
  }
  return { args };
}

/** tsvmm's spelling of the test's QEMU options, or the first option it has none for. */
export function tsvmmCommand(test: KutTest, kutDir: string, has: TsvmmFeatures): string[] | { untranslatable: string } {
  const args = [process.execPath, TSVMM_BIN, 'run', '--kernel', join(kutDir, 'x86', test.file)];
  if (has.pcTestdev) args.push('--device', 'pc-testdev');
  args.push('--device', 'isa-debug-exit,iobase=0xf4,iosize=4', '-m', '128M', '--smp', String(test.smp));
  if (test.args) args.push('--append', test.args);
  const params = test.qemuParams;
  for (let i = 0; i < params.length; i++) {
    const option = params[i]!;
    const value = params[i + 1];
    if (option === '-enable-kvm') continue;
    if (option === '-m' && value) args.push('-m', /^\d+$/.test(value) ? `${value}M` : value);
    else if (option === '-smp' && value) args.push('--smp', value);
    else if (option === '-cpu' && value && has.cpu) args.push('--cpu', value);
    else if ((option === '-machine' || option === '-M') && value) {
      const machine = machineOptions(value);
      if ('unsupported' in machine) return { untranslatable: `${option} ${machine.unsupported}` };
      args.push(...machine.args);
    } else if (option === '-device' && value && /^(edu|intel-iommu)(,|$)/.test(value)) args.push('--device', value);
    else return { untranslatable: `${option}${value && !value.startsWith('-') ? ` ${value}` : ''}` };
    i++;
  }
  return args;
}
