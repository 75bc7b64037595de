// The exits-kut suite: kvm-unit-tests' own exit microbenchmarks (x86/vmexit.c,
// the vmexit_* tests of x86/unittests.cfg: CPUID, CR8 reads and writes, PM
// timer reads, IPIs, TSC deadline, ...) run by tsvmm and by QEMU on the same
// binaries, alternately, with the options the suite's x86/run gives QEMU. Each
// test prints the guest's TSC cycles per iteration of what it exercises; the
// table puts the two VMMs side by side with their ratio.
//
// The suite is not in this repository: KUT_DIR names a built kvm-unit-tests
// tree (./configure && make), as for `npm run test:kut`. Without it the suite
// says so in one line and measures nothing.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuCommand, tsvmmCommand, tsvmmFeatures } from './kut/commands.ts';
import { parseUnittestsCfg, type KutTest } from './kut/unittests-cfg.ts';
import { findQemu } from './lib/peers.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import { defineSuite, type BenchOptions, type ChartPanel } from './lib/suite.ts';

export type ExitsKutVmm = 'tsvmm' | 'qemu';

export interface ExitsKutRow {
  /** The unittests.cfg name, e.g. vmexit_cpuid. */
  test: string;
  /** Cycles per iteration, by VMM; null when no run printed a figure. */
  cycles: Record<ExitsKutVmm, Summary | null>;
  /** Why a VMM has no figure (its last failure), by VMM. */
  notes: Partial<Record<ExitsKutVmm, string>>;
}

export type ExitsKutResult = { skipped: string } | { kutDir: string; qemu: string | null; rows: ExitsKutRow[] };

/** A run that prints nothing within this long is not going to (vmexit_vmcall on PVM, say). */
const DEFAULT_TIMEOUT_SECONDS = 60;

/** The vmexit_* tests of a unittests.cfg, in file order. */
export function vmexitTests(cfgText: string): KutTest[] {
  return parseUnittestsCfg(cfgText).filter((t) => t.name.startsWith('vmexit_') && t.file === 'vmexit.flat');
}

/**
 * The cycles a vmexit test printed for its benchmark: x86/vmexit.c prints
 * "<name> <cycles>" per test it runs, its name the test's argument
 * (unittests.cfg's test_args). Null when that line is absent.
 */
export function parseCycles(output: string, name: string): number | null {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${escaped} (\\d+)\\r?$`, 'm').exec(output);
  return m ? Number(m[1]) : null;
}

function runToEnd(command: string[], timeoutSeconds: number): Promise<{ status: number | null; stdout: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => { stdout = (stdout + chunk.toString()).slice(-65536); });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutSeconds * 1000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, timedOut });
    });
  });
}

export async function benchExitsKut(options: Pick<BenchOptions, 'runs' | 'log'>, env: NodeJS.ProcessEnv = process.env): Promise<ExitsKutResult> {
  const kutDir = env.KUT_DIR;
  if (!kutDir) return { skipped: 'skipped: set KUT_DIR to a built kvm-unit-tests tree (./configure && make) to run its vmexit tests' };
  const cfgPath = join(kutDir, 'x86', 'unittests.cfg');
  if (!existsSync(cfgPath) || !existsSync(join(kutDir, 'x86', 'vmexit.flat'))) {
    return { skipped: `skipped: KUT_DIR=${kutDir} has no x86/unittests.cfg and x86/vmexit.flat (build the suite there first)` };
  }
  const qemu = findQemu();
  const has = tsvmmFeatures();
  const rows: ExitsKutRow[] = [];
  for (const test of vmexitTests(readFileSync(cfgPath, 'utf8'))) {
    const samples: Record<ExitsKutVmm, number[]> = { tsvmm: [], qemu: [] };
    const notes: ExitsKutRow['notes'] = {};
    const commands: Record<ExitsKutVmm, string[] | null> = {
      tsvmm: null,
      qemu: qemu.path ? qemuCommand(test, kutDir, qemu.path) : null,
    };
    const tsvmm = tsvmmCommand(test, kutDir, has);
    if (Array.isArray(tsvmm)) commands.tsvmm = tsvmm;
    else notes.tsvmm = `tsvmm has no equivalent of QEMU's ${tsvmm.untranslatable}`;
    if (!qemu.path) notes.qemu = qemu.note;
    for (let run = 0; run < options.runs; run++) {
      // Alternate which VMM goes first, so a drift in the host's load falls on both.
      for (const vmm of (run % 2 ? ['qemu', 'tsvmm'] : ['tsvmm', 'qemu']) as ExitsKutVmm[]) {
        const command = commands[vmm];
        if (!command) continue;
        const result = await runToEnd(command, test.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS);
        const cycles = parseCycles(result.stdout, test.args);
        if (cycles !== null && result.status === 1) {
          samples[vmm].push(cycles);
        } else {
          notes[vmm] = result.timedOut ? `no result within ${test.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS} s` : `exit status ${result.status}, no "${test.args} <cycles>" line`;
          commands[vmm] = null; // it will not do better on the next run
        }
      }
    }
    const cycles = {
      tsvmm: samples.tsvmm.length ? summarize(samples.tsvmm) : null,
      qemu: samples.qemu.length ? summarize(samples.qemu) : null,
    };
    options.log(`  ${test.name}: tsvmm ${cycles.tsvmm?.median ?? '—'}, QEMU ${cycles.qemu?.median ?? '—'} cycles`);
    rows.push({ test: test.name, cycles, notes });
  }
  return { kutDir, qemu: qemu.path, rows };
}

const cyclesText = (s: Summary | null) => (s ? `${Math.round(s.median)} (${Math.round(s.min)}–${Math.round(s.max)})` : '—');

export function formatExitsKut(result: ExitsKutResult): string {
  if ('skipped' in result) return result.skipped;
  const rows = result.rows.map((r) => {
    const { tsvmm, qemu } = r.cycles;
    const ratio = tsvmm && qemu ? `${(tsvmm.median / qemu.median).toFixed(2)}` : '—';
    const note = [r.notes.tsvmm && `tsvmm: ${r.notes.tsvmm}`, r.notes.qemu && `QEMU: ${r.notes.qemu}`].filter(Boolean).join('; ');
    return [r.test, cyclesText(tsvmm), cyclesText(qemu), ratio, note];
  });
  return [
    `kvm-unit-tests x86/vmexit.flat from ${result.kutDir}: guest TSC cycles per iteration, median (min–max); tsvmm/QEMU below 1 is tsvmm faster`,
    table(['test', 'tsvmm cycles', 'QEMU cycles', 'tsvmm/QEMU', 'note'], rows),
  ].join('\n');
}

export function chartExitsKut(result: ExitsKutResult): ChartPanel[] {
  if ('skipped' in result) return [];
  const bar = (series: string, s: Summary | null) =>
    (s ? { series, value: s.median, min: s.min, max: s.max } : { series, value: 0, missing: 'no result' });
  return [{
    title: 'kvm-unit-tests vmexit_*: cycles per iteration, tsvmm and QEMU',
    unit: 'guest TSC cycles',
    better: 'lower',
    groups: result.rows.map((r) => ({ label: r.test, bars: [bar('tsvmm', r.cycles.tsvmm), bar('QEMU', r.cycles.qemu)] })),
  }];
}

export const exitsKutSuite = defineSuite({
  name: 'exits-kut',
  description: "kvm-unit-tests' vmexit_* exit microbenchmarks (KUT_DIR), cycles per exit under tsvmm and QEMU on the same binaries",
  run: (options) => benchExitsKut(options),
  format: formatExitsKut,
  chart: chartExitsKut,
});
