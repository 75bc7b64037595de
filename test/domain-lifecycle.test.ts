// The domain manager through real tsvmm processes, as a virsh user drives
// it: define → start → list → console → suspend/resume → kill -9 → list and
// start again → two racing starts → destroy → undefine; save/restore and
// snapshots; clone; autostart; and the definitions it refuses. The domains
// run the counter guest (firmware/multiboot/counter.S), which boots at once.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runLockHeld } from '../src/domain/index.ts';
import { counterKernel } from '../bench/lib/counter-guest.ts';
import { hasKvm, TSVMM, tsvmm, type CliResult } from './helpers/kvm.ts';
import { hasValidator, validateXml, warnIfNoValidator } from './helpers/libvirt-schema.ts';
import { hasQemu, qemuImg, qemuIo } from './storage/helpers/images.ts';

const stateDir = mkdtempSync(join(tmpdir(), 'tsvmm-domains-'));
const COUNTER = counterKernel();

warnIfNoValidator('domain-lifecycle tests');

/** Checks `xml` against libvirt's schema for `kind` (domain, domainsnapshot) where the validator is installed. */
function expectValid(xml: string, kind: string): void {
  if (!hasValidator) return;
  const result = validateXml(xml, kind);
  expect(result.status, result.output).toBe(0);
}

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

/** The count of the last whole `count N` line in the domain's console log, or -1. */
const lastCount = (name: string) => countsSince(name, 0).at(-1) ?? -1;

/** The console log's size now: what the domain prints from here on is read with `countsSince`. */
const consoleLogSize = (name: string) => readFileSync(join(runFolder(name), 'console.log')).length;
/** The counts of whole `count N` lines the domain printed after `offset` in its console log. */
const countsSince = (name: string, offset: number) => readFileSync(join(runFolder(name), 'console.log')).subarray(offset).toString('latin1')
  .split('\n').flatMap((line) => /^count (\d+)$/.exec(line) ? [Number(/^count (\d+)$/.exec(line)![1])] : []);

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
  it('malformed XML, an unknown element, a missing disk, a kernel that is not there, on_crash restart without a panic device', () => {
    const bad = join(stateDir, 'bad.xml');
    writeFileSync(bad, '<domain type=\'kvm\'><name>x</name>');
    expect(refused('define', bad)).toMatch(/bad\.xml/);
    writeFileSync(bad, readFileSync(counterDomain('bad'), 'utf8').replace('<vcpu>', '<hugepages/><vcpu>'));
    expect(refused('define', bad)).toMatch(/hugepages/);
    expect(refused('define', counterDomain('bad', "<disk type='file' device='disk'><source file='/nonexistent/disk.img'/><target dev='vda' bus='virtio'/></disk>")))
      .toMatch(/\/nonexistent\/disk\.img: no such file/);
    writeFileSync(bad, readFileSync(counterDomain('bad'), 'utf8').replace(COUNTER, '/nonexistent/kernel'));
    expect(refused('define', bad)).toMatch(/<kernel> \/nonexistent\/kernel: no such file/);
    expect(refused('define', counterDomain('bad', '', '\n  <on_crash>restart</on_crash>'))).toMatch(/<on_crash>restart<\/on_crash> needs a <panic model='isa'\/> device/);
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
    const running = ok('dumpxml', uuid);
    expect(running).toMatch(/^<domain type='kvm' id='1'>\n  <name>c1<\/name>\n/);
    expectValid(running, 'domain');
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

    // The counter guest has no ACPI: the power button press reaches the machine, and the guest runs on.
    expect(ok('shutdown', 'c1')).toBe("Domain 'c1' is being shutdown\n\n");
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

  it('console on a terminal: raw mode while attached, Ctrl-] detaches, and the terminal is left as it was', async () => {
    ok('define', counterDomain('tty'));
    ok('start', 'tty');
    // script(1) gives the console a pseudo-terminal; once it detaches, stty shows that terminal's modes.
    const child = spawn('script', ['-qec', `${process.execPath} ${TSVMM} console tty --state-dir ${stateDir}; stty -a`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let seen = '';
    child.stdout.setEncoding('latin1').on('data', (text: string) => (seen += text));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await until('the console to attach and the guest to count', () => /Escape character is \^\][^]*count \d+\r?\n/.test(seen), 60_000);
    // Raw mode: with no newline after them, a cooked terminal would hold these bytes back and Ctrl-] would never arrive.
    child.stdin.write('x');
    child.stdin.write('\x1d');
    await until('stty to report the terminal', () => /speed \d+ baud/.test(seen), 60_000);
    child.stdin.end();
    expect(await exited).toBe(0);
    const modes = seen.slice(seen.search(/speed \d+ baud/));
    expect(modes).toMatch(/(^|\s)icanon(\s|$)/);
    expect(modes).toMatch(/(^|\s)echo(\s|$)/);
    expect(ok('domstate', 'tty')).toBe('running\n\n');
    ok('destroy', 'tty');
    ok('undefine', 'tty');
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

  it('start --console attaches once the domain runs; start --paused, then resume; undefine refuses a running domain, and removes a stopped one', async () => {
    const starter = spawn(process.execPath, [TSVMM, 'start', 'c1', '--console', '--state-dir', stateDir], { stdio: ['pipe', 'pipe', 'pipe'] });
    let seen = '';
    starter.stdout.setEncoding('utf8').on('data', (text: string) => (seen += text));
    const exited = new Promise<number | null>((resolve) => starter.on('exit', resolve));
    await until('the console after start', () => /^Domain 'c1' started\n\nConnected to domain 'c1'\n[^]*count \d+\n/.test(seen), 60_000);
    starter.stdin.write('\x1d');
    expect(await exited).toBe(0);
    expect(ok('domstate', 'c1')).toBe('running\n\n');
    ok('destroy', 'c1');

    ok('start', 'c1', '--paused');
    expect(ok('domstate', 'c1')).toBe('paused\n\n');
    expect(refused('undefine', 'c1')).toMatch(/it is running/);
    ok('resume', 'c1');
    ok('destroy', 'c1');
    expect(ok('undefine', 'c1')).toBe("Domain 'c1' has been undefined\n\n");
    expect(listAll()).toEqual([]);
  }, LIFE_MS);
});

describe.skipIf(!hasKvm)('save, restore, snapshots, reboot', () => {
  it('save ends the domain and writes FILE and FILE.xml; restore brings it back counting on from there', async () => {
    ok('define', counterDomain('s1'));
    ok('start', 's1');
    await until('a count', () => lastCount('s1') > 0);
    const file = join(stateDir, 's1.save');
    expect(ok('save', 's1', file)).toBe(`\nDomain 's1' saved to ${file}\n\n`);
    const saved = lastCount('s1');
    expect(listAll()).toEqual([['-', 's1', 'shut off']]);
    expect(readFileSync(`${file}.xml`, 'utf8')).toBe(ok('dumpxml', 's1'));
    const offset = consoleLogSize('s1');
    expect(ok('restore', file)).toBe(`Domain restored from ${file}\n\n`);
    expect(ok('domstate', 's1')).toBe('running\n\n');
    await until('counts after the restore', () => countsSince('s1', offset).length > 0);
    // The next line, or the one after when the save cut a line in two (its first half is in the log already).
    expect([saved + 4096, saved + 2 * 4096]).toContain(countsSince('s1', offset)[0]);
    expect(readFileSync(join(runFolder('s1'), 'console.log'), 'utf8')).not.toMatch(/BAD/);
    expect(refused('restore', join(stateDir, 's1.xml'))).toMatch(/not a file tsvmm save wrote/);
  }, LIFE_MS);

  it('snapshot-create-as on a paused domain; snapshot-revert brings back its memory (the count goes back) and its state', async () => {
    ok('start', 's1');
    await until('a count', () => lastCount('s1') > 0);
    ok('suspend', 's1');
    const atSnapshot = lastCount('s1');
    expect(ok('snapshot-create-as', 's1', 'before')).toBe('Domain snapshot before created\n');
    expect(ok('domstate', 's1')).toBe('paused\n\n');
    ok('resume', 's1');
    await until('the guest to count past the snapshot', () => lastCount('s1') >= atSnapshot + 3 * 4096);
    expect(ok('snapshot-create-as', 's1', 'later')).toBe('Domain snapshot later created\n');
    expect(ok('domstate', 's1')).toBe('running\n\n');
    const table = ok('snapshot-list', 's1').split('\n');
    expect(table.slice(0, 2)).toEqual([' Name     Creation Time               State', '-'.repeat(6 + 25 + 7 + 3 * 3)]);
    expect(table[2]).toMatch(/^ before {3}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} {3}paused$/);
    expect(table[3]).toMatch(/^ later {4}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} {3}running$/);
    const snapshotXml = ok('snapshot-dumpxml', 's1', 'before');
    expect(snapshotXml).toMatch(/^<domainsnapshot>\n  <name>before<\/name>\n  <state>paused<\/state>\n  <creationTime>\d+<\/creationTime>\n  <memory snapshot='external' file='[^']+before\.state'\/>\n  <domain type='kvm'>\n/);
    expectValid(snapshotXml, 'domainsnapshot');

    expect(ok('snapshot-revert', 's1', 'before')).toBe('Domain snapshot before reverted\n\n');
    const beforeRevert = lastCount('s1'); // the old process has ended: its output is all in the log
    const offset = consoleLogSize('s1');
    expect(ok('domstate', 's1')).toBe('paused\n\n');
    ok('resume', 's1');
    await until('counts after the revert', () => countsSince('s1', offset).length > 0);
    // The count goes back to where the snapshot was taken (a line or two of it may have been in flight when `lastCount` read it).
    const afterRevert = countsSince('s1', offset)[0]!;
    expect(afterRevert).toBeGreaterThan(atSnapshot);
    expect(afterRevert).toBeLessThan(beforeRevert - 4096);
    expect(readFileSync(join(runFolder('s1'), 'console.log'), 'utf8')).not.toMatch(/BAD/);

    expect(ok('snapshot-delete', 's1', 'before')).toBe('Domain snapshot before deleted\n\n');
    expect(ok('snapshot-list', 's1')).toMatch(/^ Name {4}Creation Time {15}State\n-+\n later {3}/);
    expect(refused('snapshot-revert', 's1', 'before')).toBe("tsvmm: domain 's1' has no snapshot 'before'");
    ok('destroy', 's1');
  }, LIFE_MS);

  it('a guest that ends by itself (on_poweroff destroy) leaves its domain shut off, and it starts again', async () => {
    const file = counterDomain('short');
    writeFileSync(file, readFileSync(file, 'utf8').replace('every=4096', 'every=4096 limit=40960'));
    ok('define', file);
    ok('start', 'short', '--paused'); // so that the guest cannot end before start has seen it answer
    ok('resume', 'short');
    await until('the guest to end', () => !runLockHeld(join(runFolder('short'), 'lock')), 60_000);
    expect(readFileSync(join(runFolder('short'), 'console.log'), 'utf8')).toMatch(/counter done n=40960\n$/);
    expect(ok('domstate', 'short')).toBe('shut off\n\n');
    expect(readdirSync(runFolder('short')).sort()).toEqual(['console.log', 'lock', 'tsvmm.log']);
    ok('start', 'short', '--paused');
    ok('destroy', 'short');
    ok('undefine', 'short');
  }, LIFE_MS);

  it('on_poweroff restart: a guest that powers off boots again and its domain keeps running; with <panic>, on_crash destroy ends it', async () => {
    const starts = (name: string) => readFileSync(join(runFolder(name), 'console.log'), 'utf8').split('\n').filter((l) => l.startsWith('counter pages=')).length;
    const again = counterDomain('again', '', '\n  <on_poweroff>restart</on_poweroff>');
    writeFileSync(again, readFileSync(again, 'utf8').replace('every=4096', 'every=4096 limit=8192 poweroff'));
    ok('define', again);
    ok('start', 'again');
    await until('the guest to power off twice and start a third time', () => starts('again') >= 3, 60_000);
    expect(ok('domstate', 'again')).toBe('running\n\n');
    expect(readFileSync(join(runFolder('again'), 'tsvmm.log'), 'utf8')).toContain('tsvmm: guest powered off: starting it again (--poweroff restart)');
    ok('destroy', 'again');
    ok('undefine', 'again');

    const crash = counterDomain('crash', "\n    <panic model='isa'/>");
    writeFileSync(crash, readFileSync(crash, 'utf8').replace('every=4096', 'every=4096 limit=8192 panic'));
    ok('define', crash);
    expect(ok('dumpxml', 'crash')).toContain("<panic model='isa'>");
    ok('start', 'crash', '--paused');
    ok('resume', 'crash');
    await until('the crashed guest to end', () => !runLockHeld(join(runFolder('crash'), 'lock')), 60_000);
    expect(ok('domstate', 'crash')).toBe('shut off\n\n');
    expect(readFileSync(join(runFolder('crash'), 'tsvmm.log'), 'utf8')).toContain('tsvmm: guest panicked (it said so through pvpanic)');
    ok('undefine', 'crash');
  }, LIFE_MS);

  it('reboot --mode reset resets the machine (the guest starts over); with on_reboot destroy it ends the domain', async () => {
    ok('start', 's1');
    await until('a count', () => lastCount('s1') > 0);
    const offset = consoleLogSize('s1');
    expect(ok('reboot', 's1', '--mode', 'reset')).toBe("Domain 's1' is being rebooted\n\n");
    await until('the guest to start over', () => readFileSync(join(runFolder('s1'), 'console.log')).subarray(offset).includes('counter pages=16'));
    expect(ok('domstate', 's1')).toBe('running\n\n');
    ok('destroy', 's1');
    ok('undefine', 's1');
    ok('define', counterDomain('s1', '', '\n  <on_reboot>destroy</on_reboot>'));
    ok('start', 's1');
    expect(ok('reboot', 's1')).toBe("Domain 's1' is being rebooted\n\n");
    expect(ok('domstate', 's1')).toBe('shut off\n\n');
    expect(refused('reboot', 's1', '--mode', 'agent')).toBe('tsvmm: reboot --mode agent: tsvmm reboots through ACPI (acpi, the default) or by a reset (reset)');
    ok('undefine', 's1');
  }, LIFE_MS);

  it('reboot (ACPI) presses the power button; the power-off that follows boots the guest again, once', async () => {
    // The counter ignores the button and powers off at its limit: that power-off is the reboot's.
    const file = counterDomain('acpi');
    writeFileSync(file, readFileSync(file, 'utf8').replace('every=4096', 'every=4096 limit=8192 poweroff'));
    ok('define', file);
    ok('start', 'acpi', '--paused');
    expect(ok('reboot', 'acpi')).toBe("Domain 'acpi' is being rebooted\n\n");
    ok('resume', 'acpi');
    await until('the guest to power off twice', () => !runLockHeld(join(runFolder('acpi'), 'lock')), 60_000);
    const log = readFileSync(join(runFolder('acpi'), 'console.log'), 'utf8');
    expect(log.split('\n').filter((l) => l.startsWith('counter done n=8192'))).toHaveLength(2);
    expect(readFileSync(join(runFolder('acpi'), 'tsvmm.log'), 'utf8')).toContain('tsvmm: guest powered off: starting it again (a reboot through the power button)');
    expect(ok('domstate', 'acpi')).toBe('shut off\n\n');
    ok('undefine', 'acpi');
  }, LIFE_MS);
});

describe.skipIf(!hasKvm)('disks: snapshots refused, clone, undefine --remove-all-storage, autostart', () => {
  const disks = join(stateDir, 'disks');
  const disk = (file: string) => join(disks, file);
  /** `tsvmm img` (which has no --state-dir). */
  const img = (...args: string[]) => {
    const result = tsvmm(['img', ...args]);
    expect(result.status, result.stderr).toBe(0);
    return result.stdout;
  };
  const diskXml = (file: string, format: string, target: string, readOnly = false) =>
    `\n    <disk type='file' device='disk'><driver name='qemu' type='${format}'/><source file='${disk(file)}'/><target dev='${target}' bus='virtio'/>${readOnly ? '<readonly/>' : ''}</disk>`;

  it('a snapshot of a domain with a raw disk is refused in one line', () => {
    mkdirSync(disks);
    img('create', '-f', 'raw', disk('r.raw'), '1M');
    ok('define', counterDomain('raw1', diskXml('r.raw', 'raw', 'vda')));
    expect(refused('snapshot-create-as', 'raw1', 'x')).toMatch(/disk vda is a raw image, which cannot take a snapshot/);
    ok('undefine', 'raw1');
    rmSync(disk('r.raw'));
  });

  it.skipIf(!hasQemu)('a running domain\'s snapshot keeps its qcow2 disk too (internal snapshot, as qemu-img sees it); revert brings the disk back', () => {
    img('create', '-f', 'qcow2', disk('q.qcow2'), '1M');
    qemuIo(disk('q.qcow2'), ['write -P 0x11 0 64k']);
    ok('define', counterDomain('q1', diskXml('q.qcow2', 'qcow2', 'vda')));
    ok('start', 'q1');
    const id = ok('domid', 'q1');
    expect(ok('snapshot-create-as', 'q1', 'with-disk')).toBe('Domain snapshot with-disk created\n');
    // The domain went on from where it was, in a new process, under its id.
    expect(ok('domstate', 'q1')).toBe('running\n\n');
    expect(ok('domid', 'q1')).toBe(id);
    ok('destroy', 'q1');
    expect(qemuImg(['snapshot', '-l', disk('q.qcow2')]).stdout).toMatch(/\bwith-disk\b/);

    qemuIo(disk('q.qcow2'), ['write -P 0x22 0 64k']);
    expect(ok('snapshot-revert', 'q1', 'with-disk')).toBe('Domain snapshot with-disk reverted\n\n');
    expect(ok('domstate', 'q1')).toBe('running\n\n');
    ok('destroy', 'q1');
    qemuIo(disk('q.qcow2'), ['read -P 0x11 0 64k']);
    expect(qemuImg(['check', disk('q.qcow2')]).stdout).toMatch(/No errors were found/);

    ok('snapshot-create-as', 'q1', 'shut-off');
    expect(qemuImg(['snapshot', '-l', disk('q.qcow2')]).stdout).toMatch(/\bshut-off\b/);
    expect(ok('snapshot-delete', 'q1', 'with-disk')).toBe('Domain snapshot with-disk deleted\n\n');
    ok('snapshot-delete', 'q1', 'shut-off');
    expect(qemuImg(['snapshot', '-l', disk('q.qcow2')]).stdout).not.toMatch(/with-disk|shut-off/);
    ok('undefine', 'q1', '--remove-all-storage');
  }, LIFE_MS);

  it('clone: refused while the original runs; --linked makes qcow2 overlays, a plain clone copies; both get new UUIDs and run beside each other', () => {
    img('create', '-f', 'qcow2', disk('base.qcow2'), '1M');
    img('create', '-f', 'raw', disk('shared.raw'), '1M');
    ok('define', counterDomain('orig', diskXml('base.qcow2', 'qcow2', 'vda') + diskXml('shared.raw', 'raw', 'vdb', true)));
    ok('start', 'orig');
    expect(refused('clone', '--original', 'orig', '--name', 'thin', '--linked')).toBe("tsvmm: cannot clone domain 'orig' while it is running");
    ok('destroy', 'orig');

    expect(ok('clone', '--original', 'orig', '--name', 'thin', '--linked')).toBe(`Allocating '${disk('thin-vda.qcow2')}'\n\nClone 'thin' created successfully.\n`);
    expect(ok('clone', '--original', 'orig', '--name', 'full')).toBe(`Allocating '${disk('full-vda.qcow2')}'\n\nClone 'full' created successfully.\n`);
    expect(refused('clone', '--original', 'orig', '--name', 'full')).toBe("tsvmm: domain 'full' is already defined");
    const thinXml = ok('dumpxml', 'thin');
    expect(thinXml).toContain(`<source file='${disk('thin-vda.qcow2')}'/>`);
    expect(thinXml).toContain(`<source file='${disk('shared.raw')}'/>`);
    const uuids = ['orig', 'thin', 'full'].map((name) => ok('domuuid', name).trim());
    expect(new Set(uuids).size).toBe(3);
    expect(img('info', disk('thin-vda.qcow2'))).toContain(`backing file: ${disk('base.qcow2')}`);
    expect(img('info', disk('full-vda.qcow2'))).not.toContain('backing file');

    ok('start', 'thin');
    ok('start', 'full');
    expect(listAll().map((row) => row.slice(1)).sort()).toEqual([['full', 'running'], ['orig', 'shut off'], ['thin', 'running']]);
    ok('destroy', 'thin');
    ok('destroy', 'full');

    expect(ok('undefine', 'thin', '--remove-all-storage')).toBe(`Domain 'thin' has been undefined\nVolume 'vda'(${disk('thin-vda.qcow2')}) removed.\n\n`);
    expect(existsSync(disk('thin-vda.qcow2'))).toBe(false);
    expect(existsSync(disk('shared.raw'))).toBe(true); // read-only: shared with the original
    ok('undefine', 'full', '--remove-all-storage');
    expect(readdirSync(disks).sort()).toEqual(['base.qcow2', 'shared.raw']);
  }, LIFE_MS);

  it('autostart marks a domain; start-autostarted starts the marked ones that are not running', () => {
    expect(ok('autostart', 'orig')).toBe("Domain 'orig' marked as autostarted\n\n");
    expect(ok('dominfo', 'orig')).toMatch(/\nAutostart: {6}enable\n/);
    expect(ok('start-autostarted')).toBe("Domain 'orig' started\n");
    expect(ok('start-autostarted')).toBe('');
    expect(ok('domstate', 'orig')).toBe('running\n\n');
    ok('destroy', 'orig');
    expect(ok('autostart', 'orig', '--disable')).toBe("Domain 'orig' unmarked as autostarted\n\n");
    expect(ok('start-autostarted')).toBe('');
    expect(ok('domstate', 'orig')).toBe('shut off\n\n');
    ok('undefine', 'orig', '--remove-all-storage');
    expect(existsSync(disk('base.qcow2'))).toBe(false);
  }, LIFE_MS);
});
