// A virsh user's session with the default Linux guest, in one boot:
// define → start → console (type a command, detach) → snapshot-create-as →
// write a file and a disk sector in the guest → snapshot-revert (the file is
// gone, the sector holds its old bytes, the shell answers) → shutdown (ACPI:
// Linux powers off) → two linked clones running at once, each with its own
// UUID and MAC, while the original, whose disk backs them, may not start →
// destroy → undefine --remove-all-storage leaves no file behind.
//
// The guest's interface is on a bridge inside a network namespace this test
// creates (helpers/netns.ts); every tsvmm command runs in it.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultLinuxGuest } from '../src/cli/guest.ts';
import { runLockHeld } from '../src/domain/index.ts';
import { createQcow2 } from '../src/storage/qcow2/create.ts';
import { GuestConsole } from './helpers/guest-console.ts';
import { hasKvm, TSVMM } from './helpers/kvm.ts';
import { netnsUnavailable, TestNetns } from './helpers/netns.ts';
import { hasQemu, qemuImg } from './storage/helpers/images.ts';

const stateDir = mkdtempSync(join(tmpdir(), 'tsvmm-domain-linux-'));
const disks = mkdtempSync(join(tmpdir(), 'tsvmm-domain-linux-disks-'));
const DISK = join(disks, 'linux1.qcow2');
const BRIDGE = 'tsvbr-test';
/** A boot, a snapshot and a revert of 256 MiB, an ACPI power-off, on a PVM host that may be loaded. */
const SESSION_MS = 20 * 60_000;
/** The default guest reaches its shell in 25-65 s on a quiet PVM host, minutes on a busy one. */
const BOOT_MS = 15 * 60_000;

let ns: TestNetns | null = null;

/** Runs `tsvmm ARGS --state-dir` (inside the test's namespace when there is one). */
function command(args: string[]): [string, string[]] {
  const argv = [process.execPath, TSVMM, ...args, '--state-dir', stateDir];
  return ns ? ns.wrap(argv) : [argv[0]!, argv.slice(1)];
}

interface Result { status: number | null; stdout: string; stderr: string }

function virsh(...args: string[]): Promise<Result> {
  const [file, argv] = command(args);
  return new Promise((resolve) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t));
    child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

async function ok(...args: string[]): Promise<string> {
  const result = await virsh(...args);
  expect(result.status, `tsvmm ${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result.stdout;
}

/** Polls `test` every 100 ms until it holds, failing after `ms`. */
async function until(what: string, test: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * `tsvmm console NAME`, attached for `body` and detached with Ctrl-] (the
 * guest runs on). `run` types a command and waits for the line its output
 * ends with; the marker is computed by the guest's shell, so the echo of
 * what was typed never matches it.
 */
async function withConsole(name: string, body: (run: (cmd: string, timeoutMs?: number) => Promise<string>) => Promise<void>): Promise<void> {
  const [file, argv] = command(['console', name]);
  const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const console = new GuestConsole(child);
  await console.waitFor(/Escape character is \^\] \(Ctrl \+ \]\)\n/, 60_000);
  let serial = 0;
  const run = async (cmd: string, timeoutMs = 120_000): Promise<string> => {
    const n = ++serial;
    const start = console.output.length;
    console.type(`${cmd}; echo "done-$((${n} * 1000 + 7))"\n`);
    const done = new RegExp(`\\ndone-${n * 1000 + 7}\\r?\\n`);
    await until(`"${cmd}" in the guest`, () => done.test(console.output.slice(start)), timeoutMs);
    const output = console.output.slice(start);
    return output.slice(0, output.search(done) + 1);
  };
  await body(run);
  console.type('\x1d');
  expect(await exited).toBe(0);
}

function domainXml(): string {
  return `<domain type='kvm'>
  <name>linux1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${DISK}'/>
      <target dev='vda' bus='virtio'/>
    </disk>${ns ? `
    <interface type='bridge'>
      <source bridge='${BRIDGE}'/>
      <model type='virtio'/>
    </interface>` : ''}
    <serial type='pty'/>
    <console type='pty'/>
    <panic model='isa'/>
  </devices>
</domain>
`;
}

const runFolder = (name: string) => join(stateDir, 'run', name);
const consoleLog = (name: string) => (existsSync(join(runFolder(name), 'console.log')) ? readFileSync(join(runFolder(name), 'console.log'), 'latin1') : '');
const running = (name: string) => existsSync(join(runFolder(name), 'lock')) && runLockHeld(join(runFolder(name), 'lock'));

beforeAll(async () => {
  await defaultLinuxGuest({ quiet: true });
  createQcow2(DISK, { size: 8 << 20 });
  if (netnsUnavailable === null) {
    ns = TestNetns.create();
    ns.ip('link', 'add', BRIDGE, 'type', 'bridge');
    ns.ip('link', 'set', 'dev', BRIDGE, 'up');
  } else {
    console.warn(`domain-linux: no interface: ${netnsUnavailable}`);
  }
}, 30 * 60_000);

afterAll(async () => {
  for (const name of existsSync(join(stateDir, 'run')) ? readdirSync(join(stateDir, 'run')) : []) {
    if (running(name)) await virsh('destroy', name);
  }
  ns?.remove();
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(disks, { recursive: true, force: true });
});

describe.skipIf(!hasKvm)('a Linux domain, the way a virsh user drives it', () => {
  it('define, start, console: a command typed in the guest answers, and Ctrl-] leaves it running', async () => {
    const file = join(stateDir, 'linux1.xml');
    writeFileSync(file, domainXml());
    expect(await ok('define', file)).toBe(`Domain 'linux1' defined from ${file}\n\n`);
    expect(await ok('start', 'linux1')).toBe("Domain 'linux1' started\n\n");
    // Keys typed before the shell opens the serial port are lost (the UART has no reader yet): wait for its prompt.
    await until('the guest\'s shell prompt', () => consoleLog('linux1').includes('tsvmm:/# '), BOOT_MS);
    await withConsole('linux1', async (run) => {
      expect(await run('echo "sum=$((6 * 7))"')).toMatch(/\nsum=42\r?\n/);
      expect(await run('cat /sys/class/net/eth0/address 2>/dev/null || echo no-eth0')).toContain(ns ? await mac('linux1') : 'no-eth0');
    });
    expect(await ok('domstate', 'linux1')).toBe('running\n\n');
  }, SESSION_MS);

  it('snapshot-revert brings back RAM and disk: a file and a sector written after the snapshot are gone, and the shell answers', async () => {
    await withConsole('linux1', async (run) => {
      await run('echo before > /tmp/sector && dd if=/tmp/sector of=/dev/vda bs=512 seek=20 conv=fsync 2>/dev/null');
    });
    expect(await ok('snapshot-create-as', 'linux1', 's1')).toBe('Domain snapshot s1 created\n');
    await withConsole('linux1', async (run) => {
      await run('echo after! > /tmp/sector && dd if=/tmp/sector of=/dev/vda bs=512 seek=20 conv=fsync 2>/dev/null && echo written > /root/marker');
      expect(await run('ls /root')).toContain('marker');
    });
    expect(await ok('snapshot-revert', 'linux1', 's1')).toBe('Domain snapshot s1 reverted\n\n');
    await withConsole('linux1', async (run) => {
      expect(await run('ls /root/marker 2>&1')).toMatch(/No such file or directory/);
      expect(await run('dd if=/dev/vda bs=512 skip=20 count=1 iflag=direct 2>/dev/null | head -c 6; echo')).toMatch(/\nbefore\r?\n/);
    });
  }, SESSION_MS);

  it('shutdown presses the ACPI power button: Linux powers off and the domain is shut off', async () => {
    expect(await ok('shutdown', 'linux1')).toBe("Domain 'linux1' is being shutdown\n\n");
    await until('Linux to power off', () => !running('linux1'), 5 * 60_000);
    expect(await ok('domstate', 'linux1')).toBe('shut off\n\n');
    expect(readFileSync(join(runFolder('linux1'), 'tsvmm.log'), 'utf8')).toContain('guest powered off');
    if (hasQemu) expect(qemuImg(['check', DISK]).status).toBe(0);
  }, SESSION_MS);

  it('two linked clones run at once, each with its own UUID and MAC; the original, whose disk backs theirs, may not start meanwhile', async () => {
    for (const name of ['clone1', 'clone2']) {
      expect(await ok('clone', '--original', 'linux1', '--name', name, '--linked')).toContain(`Clone '${name}' created successfully.`);
      expect(await ok('start', name)).toBe(`Domain '${name}' started\n\n`);
    }
    const list = await ok('list');
    expect(list).toMatch(/ clone1 +running\n/);
    expect(list).toMatch(/ clone2 +running\n/);
    const uuids = await Promise.all(['linux1', 'clone1', 'clone2'].map(async (name) => (await ok('domuuid', name)).trim()));
    expect(new Set(uuids).size).toBe(3);
    if (ns) expect(new Set(await Promise.all(['linux1', 'clone1', 'clone2'].map(mac))).size).toBe(3);
    const original = await virsh('start', 'linux1');
    expect(original.status).not.toBe(0);
    expect(original.stderr.trim().split('\n')).toHaveLength(1);
    expect(original.stderr).toMatch(/lock/);
  }, SESSION_MS);

  it('destroy; undefine --remove-all-storage removes each domain\'s disks and leaves no file behind', async () => {
    for (const name of ['clone1', 'clone2']) expect(await ok('destroy', name)).toBe(`Domain '${name}' destroyed\n\n`);
    for (const name of ['clone1', 'clone2', 'linux1']) expect(await ok('undefine', name, '--remove-all-storage')).toMatch(new RegExp(`Domain '${name}' has been undefined`));
    expect(readdirSync(disks)).toEqual([]);
    expect(await ok('list', '--all')).toBe(' Id   Name   State\n--------------------\n\n');
  }, SESSION_MS);
});

/** The MAC address of the domain's first interface, as dumpxml shows it. */
async function mac(name: string): Promise<string> {
  return /<mac address='([0-9a-f:]+)'\/>/.exec(await ok('dumpxml', name))![1]!;
}
