// `npm run test:kut`: kvm-unit-tests under tsvmm and under QEMU, side by side.
//
// KUT_DIR is a built kvm-unit-tests tree (./configure && make). Every x86_64
// test of its x86/unittests.cfg runs under both VMMs the way the suite's own
// x86/run starts QEMU (pc-testdev, isa-debug-exit at 0xf4, the test's smp,
// -append and qemu_params), and the runner prints one PASS/FAIL/SKIP/TIMEOUT
// line per test per VMM, then a markdown table and a summary.
//
//   KUT_DIR      the suite's build directory (required)
//   KUT_TESTS    only these tests (comma-separated names)
//   KUT_VMMS     which VMMs (default tsvmm,qemu)
//   KUT_TIMEOUT  seconds per run, overriding the tests' own (default: theirs, else 90)
//   KUT_ALL=1    also the tests in the nodefault group
//   KUT_LOGS     where each run's output goes (default KUT_DIR/logs-vmm)
//   TSVMM_QEMU   the QEMU binary (default qemu-system-x86_64)
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuCommand, tsvmmCommand, tsvmmFeatures } from './commands.ts';
import { parseUnittestsCfg, type KutTest } from './unittests-cfg.ts';

type Verdict = 'PASS' | 'FAIL' | 'SKIP' | 'TIMEOUT';
type VmmName = 'tsvmm' | 'qemu';

interface Outcome {
  verdict: Verdict;
  /** The test's SUMMARY line, or why it did not run or did not pass. */
  note: string;
}

const DEFAULT_TIMEOUT_SECONDS = 90;

function fail(message: string): never {
  process.stderr.write(`test:kut: ${message}\n`);
  process.exit(2);
}

const kutDir = process.env.KUT_DIR ?? fail('set KUT_DIR to a built kvm-unit-tests directory (./configure && make)');
const cfgPath = join(kutDir, 'x86', 'unittests.cfg');
if (!existsSync(cfgPath)) fail(`${cfgPath} not found: KUT_DIR must be a kvm-unit-tests tree`);
const only = process.env.KUT_TESTS ? new Set(process.env.KUT_TESTS.split(',')) : null;
const vmms = (process.env.KUT_VMMS ?? 'tsvmm,qemu').split(',') as VmmName[];
for (const vmm of vmms) if (vmm !== 'tsvmm' && vmm !== 'qemu') fail(`KUT_VMMS: unknown VMM "${String(vmm)}" (tsvmm, qemu)`);
const timeoutOverride = process.env.KUT_TIMEOUT ? Number(process.env.KUT_TIMEOUT) : null;
const logDir = process.env.KUT_LOGS ?? join(kutDir, 'logs-vmm');
const qemuBin = process.env.TSVMM_QEMU ?? 'qemu-system-x86_64';
mkdirSync(logDir, { recursive: true });

// Like x86/run probing QEMU for pc-testdev: use the devices and options this tsvmm has.
const tsvmmHas = tsvmmFeatures();

/** Why the suite would not run this test here, or null. */
function skipReason(test: KutTest): string | null {
  if (test.arch && test.arch !== 'x86_64') return `${test.arch} only`;
  if (test.groups.includes('nodefault') && process.env.KUT_ALL !== '1') return 'test marked as manual run only';
  if (test.accel && test.accel !== 'kvm') return `${test.accel} only`;
  for (const check of test.checks) {
    const [path, value] = check.split('=') as [string, string];
    if (!existsSync(path) || readFileSync(path, 'utf8').trim() !== value) return `${path} not equal to ${value}`;
  }
  if (!existsSync(join(kutDir, 'x86', test.file))) return `test file ${test.file} not found`;
  return null;
}

/** Runs one command to its end or its timeout, its output into `logPath`. */
function runOnce(command: string[], timeoutSeconds: number, logPath: string):
  Promise<{ status: number | null; timedOut: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const log = createWriteStream(logPath);
    log.write(`$ ${command.map((w) => (/[\s,]/.test(w) ? `'${w}'` : w)).join(' ')}\n`);
    const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => { stdout = (stdout + chunk.toString()).slice(-65536); log.write(chunk); });
    child.stderr.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-65536); log.write(chunk); });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutSeconds * 1000);
    child.on('close', (status) => {
      clearTimeout(timer);
      log.end(`\n[exit status ${status}${timedOut ? `, killed after ${timeoutSeconds} s` : ''}]\n`);
      resolve({ status, timedOut, stdout, stderr });
    });
  });
}

/**
 * The suite's reading of an exit status (scripts/arch-run.bash): the test's
 * exit code c comes out as (c << 1) | 1, so 1 is success, 77 is "skipped"
 * (the test exited with 77 >> 1), and a clean 1 with errors on stderr is the
 * VMM failing.
 */
function verdictOf(vmm: VmmName, run: Awaited<ReturnType<typeof runOnce>>, timeoutSeconds: number): Outcome {
  const summary = /^SUMMARY: (.*?)\r?$/m.exec(run.stdout.split('\n').slice(-6).join('\n'))?.[1] ?? '';
  const errors = run.stderr.split('\n').filter((line) =>
    line.trim() !== '' && !/warning/i.test(line) && !(vmm === 'tsvmm' && line.startsWith('tsvmm: note:')));
  const lastError = errors.at(-1)?.trim() ?? '';
  if (run.timedOut) return { verdict: 'TIMEOUT', note: `timeout; duration=${timeoutSeconds}s` };
  if (run.status === 1 && errors.length === 0) return { verdict: 'PASS', note: summary };
  if (run.status === 77) return { verdict: 'SKIP', note: summary };
  return { verdict: 'FAIL', note: [summary, `status ${run.status}`, lastError].filter(Boolean).join('; ') };
}

async function runTest(vmm: VmmName, test: KutTest): Promise<Outcome> {
  const command = vmm === 'qemu' ? qemuCommand(test, kutDir, qemuBin) : tsvmmCommand(test, kutDir, tsvmmHas);
  if (!Array.isArray(command)) return { verdict: 'FAIL', note: `tsvmm has no equivalent of QEMU's ${command.untranslatable}` };
  const timeoutSeconds = timeoutOverride ?? test.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
  const run = await runOnce(command, timeoutSeconds, join(logDir, `${test.name}.${vmm}.log`));
  return verdictOf(vmm, run, timeoutSeconds);
}

const tests = parseUnittestsCfg(readFileSync(cfgPath, 'utf8')).filter((test) => !only || only.has(test.name));
if (only) for (const name of only) if (!tests.some((test) => test.name === name)) fail(`KUT_TESTS: no test named "${name}"`);

const rows: { test: KutTest; ran: boolean; outcomes: Partial<Record<VmmName, Outcome>> }[] = [];
for (const test of tests) {
  const skip = skipReason(test);
  const outcomes: Partial<Record<VmmName, Outcome>> = {};
  for (const vmm of vmms) {
    const outcome = skip ? { verdict: 'SKIP' as const, note: skip } : await runTest(vmm, test);
    outcomes[vmm] = outcome;
    process.stdout.write(`${vmm.padEnd(5)} ${outcome.verdict.padEnd(7)} ${test.name}${outcome.note ? ` (${outcome.note})` : ''}\n`);
  }
  rows.push({ test, ran: skip === null, outcomes });
}

process.stdout.write(`\n| test | ${vmms.join(' | ')} |\n|---|${vmms.map(() => '---|').join('')}\n`);
for (const row of rows.filter((r) => r.ran)) process.stdout.write(`| ${row.test.name} | ${vmms.map((vmm) => row.outcomes[vmm]!.verdict).join(' | ')} |\n`);
process.stdout.write('\n');
for (const vmm of vmms) {
  const count = (verdict: Verdict) => rows.filter((row) => row.ran && row.outcomes[vmm]!.verdict === verdict).length;
  process.stdout.write(`${vmm}: ${count('PASS')} passed, ${count('FAIL')} failed, ${count('TIMEOUT')} timed out, ${count('SKIP')} skipped by the test itself` +
    ` (of ${rows.filter((row) => row.ran).length} run; ${rows.filter((row) => !row.ran).length} not run here)\n`);
}
if (vmms.includes('tsvmm') && vmms.includes('qemu')) {
  const behind = rows.filter((row) => row.outcomes.qemu!.verdict === 'PASS' && row.outcomes.tsvmm!.verdict !== 'PASS');
  process.stdout.write(`QEMU passes, tsvmm does not: ${behind.length === 0 ? 'none' : behind.map((row) => row.test.name).join(', ')}\n`);
}
