// The domain manager through real tsvmm processes, as a virsh user drives
// it: define → start → list → console → suspend/resume → kill -9 → list and
// start again → two racing starts → destroy → undefine; save/restore and
// snapshots; clone; autostart; and the definitions it refuses. The domains
// run the counter guest (firmware/multiboot/counter.S), which boots at once.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runLockHeld } from '../src/domain/index.ts';
import { counterKernel } from '../bench/lib/counter-guest.ts';
import { hasKvm, TSVMM, tsvmm, type CliResult } from './helpers/kvm.ts';

const stateDir = mkdtempSync(join(tmpdir(), 'tsvmm-domains-'));
const COUNTER = counterKernel();

/** A tsvmm domain verb against this test's state folder. */
function virsh(...args: string[]): CliResult {
  return tsvmm([...args, '--state-dir', stateDir], { timeoutMs: 120_000 });
}

/** The verb's stdout, failing the test (with its stderr) unless it succeeded. */
function ok(...args: string[]): string {
  const result = virsh(...args);
  expect(result.status, `tsvmm ${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result.stdout;
}

/** The one line a refused command prints, after checking it exits 2 and prints only that. */
function refused(...args: string[]): string {
  const result = virsh(...args);
  expect(result.status, result.stdout).toBe(2);
  expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  return result.stderr.trim();
}

function counterDomain(name: string, devices = '', extra = ''): string {
  const file = join(stateDir, `${name}.xml`);
  writeFileSync(file, `<domain type='kvm'>
  <name>${name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>${COUNTER}</kernel>
    <cmdline>pages=16 every=4096</cmdline>
  </os>${extra}
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>${devices}
  </devices>
</domain>
`);
  return file;
}

const runFolder = (name: string) => join(stateDir, 'run', name);
const pidOf = (name: string) => Number(readFileSync(join(runFolder(name), 'pid'), 'utf8'));

/** `list --all` as [id, name, state] rows. */
function listAll(): string[][] {
  return ok('list', '--all').split('\n').slice(2).filter((line) => line.trim()).map((line) => line.trim().split(/\s{3,}/));
}

/** Polls `test` every 20 ms until it holds, failing after `ms`. */
async function until(what: string, test: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const lastCount = (name: string) => Number(/count (\d+)\s*$/.exec(readFileSync(join(runFolder(name), 'console.log'), 'utf8'))?.[1] ?? -1);

/** Kills whatever domain a failed test left running, so the next test starts from shut off. */
async function killLeftovers(): Promise<void> {
  for (const name of existsSync(join(stateDir, 'run')) ? readdirSync(join(stateDir, 'run')) : []) {
    const lock = join(runFolder(name), 'lock');
    if (!existsSync(lock) || !runLockHeld(lock)) continue;
    try {
      process.kill(pidOf(name), 'SIGKILL');
    } catch {
      // gone already
    }
    await until(`domain ${name}'s process to end`, () => !runLockHeld(lock));
  }
}

afterEach(killLeftovers);
afterAll(async () => {
  await killLeftovers();
  rmSync(stateDir, { recursive: true, force: true });
});

/** Each test runs a dozen tsvmm commands (a second or more each on a loaded host) and boots the guest. */
const LIFE_MS = 300_000;

describe('definitions tsvmm refuses: one line, exit 2, nothing defined', () => {
  it('malformed XML, an unknown element, a missing disk, a kernel that is not there, on_poweroff restart', () => {
    const bad = join(stateDir, 'bad.xml');
    writeFileSync(bad, '<domain type=\'kvm\'><name>x</name>');
    expect(refused('define', bad)).toMatch(/bad\.xml/);
    writeFileSync(bad, readFileSync(counterDomain('bad'), 'utf8').replace('<vcpu>', '<hugepages/><vcpu>'));
    expect(refused('define', bad)).toMatch(/hugepages/);
    expect(refused('define', counterDomain('bad', "<disk type='file' device='disk'><source file='/nonexistent/disk.img'/><target dev='vda' bus='virtio'/></disk>")))
      .toMatch(/\/nonexistent\/disk\.img: no such file/);
    writeFileSync(bad, readFileSync(counterDomain('bad'), 'utf8').replace(COUNTER, '/nonexistent/kernel'));
    expect(refused('define', bad)).toMatch(/<kernel> \/nonexistent\/kernel: no such file/);
    expect(refused('define', counterDomain('bad', '', '\n  <on_poweroff>restart</on_poweroff>'))).toMatch(/on_poweroff.*without a daemon/);
    expect(refused('define', join(stateDir, 'absent.xml'))).toMatch(/absent\.xml: cannot read/);
    expect(listAll()).toEqual([]);
    expect(refused('start', 'bad')).toBe("tsvmm: failed to get domain 'bad'");
  });
});

describe.skipIf(!hasKvm)('a domain\'s life', () => {
  it('define → start → list → console → suspend/resume → destroy', async () => {
    const file = counterDomain('c1');
    expect(ok('define', file)).toBe(`Domain 'c1' defined from ${file}\n\n`);
    expect(listAll()).toEqual([['-', 'c1', 'shut off']]);
    expect(ok('list')).toBe(' Id   Name   State\n--------------------\n\n');
    expect(ok('start', 'c1')).toBe("Domain 'c1' started\n\n");
    expect(ok('list')).toBe(' Id   Name   State\n----------------------\n 1    c1     running\n\n');
    expect(ok('domstate', 'c1')).toBe('running\n\n');
    expect(ok('domid', 'c1')).toBe('1\n\n');
    const uuid = ok('domuuid', '1').trim();
    expect(ok('dumpxml', uuid)).toContain('<name>c1</name>');
    expect(ok('dominfo', 'c1')).toMatch(/^Id: {13}1\nName: {11}c1\nUUID: {11}[0-9a-f-]{36}\nOS Type: {8}hvm\nState: {10}running\nCPU\(s\): {9}1\nCPU time: {7}[\d.]+s\nMax memory: {5}32768 KiB\n/);
    expect(refused('start', 'c1')).toBe("tsvmm: cannot start domain 'c1': it is already active");

    // The console: the guest's output arrives, a typed line goes in, Ctrl-] detaches and the guest runs on.
    const console = spawn(process.execPath, [TSVMM, 'console', 'c1', '--state-dir', stateDir], { stdio: ['pipe', 'pipe', 'pipe'] });
    let seen = '';
    console.stdout.setEncoding('utf8').on('data', (text: string) => (seen += text));
    const consoleExit = new Promise<number | null>((resolve) => console.on('exit', resolve));
    await until('console output', () => /Escape character is \^\] \(Ctrl \+ \]\)\n[^]*count \d+\n/.test(seen), 60_000);
    expect(seen.startsWith("Connected to domain 'c1'\n")).toBe(true);
    console.stdin.write('a line for the guest\n\x1d');
    expect(await consoleExit).toBe(0);
    expect(ok('domstate', 'c1')).toBe('running\n\n');

    expect(ok('suspend', 'c1')).toBe("Domain 'c1' suspended\n\n");
    expect(ok('domstate', 'c1')).toBe('paused\n\n');
    const frozen = lastCount('c1');
    expect(ok('resume', 'c1')).toBe("Domain 'c1' resumed\n\n");
    await until('the guest to count on after resume', () => lastCount('c1') > frozen);
    expect(ok('destroy', 'c1')).toBe("Domain 'c1' destroyed\n\n");
    expect(listAll()).toEqual([['-', 'c1', 'shut off']]);
    expect(refused('destroy', 'c1')).toBe("tsvmm: domain 'c1' is not running");
  }, LIFE_MS);

  it('after kill -9 of its tsvmm the domain shows shut off, its stale files are cleared, and it starts again', async () => {
    ok('start', 'c1');
    const pid = pidOf('c1');
    process.kill(pid, 'SIGKILL');
    await until('the killed process to go', () => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z'));
    expect(listAll()).toEqual([['-', 'c1', 'shut off']]);
    expect(readdirSync(runFolder('c1')).sort()).toEqual(['console.log', 'lock', 'tsvmm.log']);
    ok('start', 'c1');
    expect(ok('domstate', 'c1')).toBe('running\n\n');
    ok('destroy', 'c1');
  }, LIFE_MS);

  it('of two racing starts exactly one wins', async () => {
    const start = () => new Promise<{ status: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [TSVMM, 'start', 'c1', '--state-dir', stateDir], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
      child.on('exit', (status) => resolve({ status, stderr }));
    });
    const results = await Promise.all([start(), start()]);
    expect(results.map((r) => r.status).sort()).toEqual([0, 2]);
    expect(results.find((r) => r.status === 2)!.stderr).toBe("tsvmm: cannot start domain 'c1': it is already active\n");
    expect(listAll().map((row) => row.slice(1))).toEqual([['c1', 'running']]);
    ok('destroy', 'c1');
  }, LIFE_MS);

  it('start --paused, then resume; undefine refuses a running domain, and removes a stopped one', () => {
    ok('start', 'c1', '--paused');
    expect(ok('domstate', 'c1')).toBe('paused\n\n');
    expect(refused('undefine', 'c1')).toMatch(/it is running/);
    ok('resume', 'c1');
    ok('destroy', 'c1');
    expect(ok('undefine', 'c1')).toBe("Domain 'c1' has been undefined\n\n");
    expect(listAll()).toEqual([]);
  }, LIFE_MS);
});
