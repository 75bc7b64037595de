// Another host through `tsvmm -c tsvmm+ssh://...`, as libvirt's qemu+ssh:
// the verb runs there through the ssh client and its output and status come
// back as if it had run here; and a live migration of a running domain there
// and back through the same connection, the guest's counter going on without
// a gap. The two hosts are network namespaces on this machine, each with its
// own sshd and state folder (helpers/ssh-hosts.ts); disks are shared storage
// (the same paths on both), which this machine's one file system makes so,
// except under the hosts' `storage` folder, which is each host's own: there
// a migration must copy its disks (--copy-storage-all).
import { spawn, spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { counterKernel, countLines, diskSectorValue } from '../bench/lib/counter-guest.ts';
import { hasKvm, TSVMM } from './helpers/kvm.ts';
import { netnsUnavailable } from './helpers/netns.ts';
import { SshHosts, sshHostsUnavailable, type SshHost } from './helpers/ssh-hosts.ts';

const unavailable = hasKvm ? sshHostsUnavailable(netnsUnavailable) : 'no KVM';
if (unavailable) console.warn(`domain-remote tests: ${unavailable}`);

let hosts: SshHosts;
let here: SshHost;
let there: SshHost;

interface Result { status: number | null; stdout: string; stderr: string }

/** `tsvmm ARGS` on host `at` (inside its namespace, with its state folder), stdin `input`. */
function tsvmmAt(at: SshHost, args: string[], input = ''): Result {
  const [file, argv] = at.ns.wrap([process.execPath, TSVMM, ...args]);
  const r = spawnSync(file, argv, { input, encoding: 'utf8', timeout: 180_000, env: { ...process.env, NODE_NO_WARNINGS: '1', TSVMM_STATE_DIR: at.stateDir } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(at: SshHost, ...args: string[]): string {
  const r = tsvmmAt(at, args);
  expect(r.status, `tsvmm ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

const consoleLog = (at: SshHost, name: string) => readFileSync(join(at.stateDir, 'run', name, 'console.log'), 'latin1');

/** A counter domain that writes each count line's N into its raw disk (the counter's `disk` word). */
function diskDomainXml(name: string, disk: string): string {
  return `<domain type='kvm'>
  <name>${name}</name>
  <memory unit='MiB'>32</memory>
  <os>
    <type>hvm</type>
    <kernel>${counterKernel()}</kernel>
    <cmdline>pages=64 every=4096 disk</cmdline>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='${disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'/>
    <console type='pty'/>
  </devices>
</domain>
`;
}

beforeAll(async () => {
  if (unavailable) return;
  hosts = await SshHosts.create();
  [here, there] = hosts.hosts;
}, 120_000);

afterAll(() => {
  if (unavailable) return;
  for (const host of hosts.hosts) {
    for (const line of tsvmmAt(host, ['list']).stdout.split('\n').slice(2)) {
      const name = line.trim().split(/\s+/)[1];
      if (name) tsvmmAt(host, ['destroy', name]);
    }
  }
  hosts.remove();
});

describe.skipIf(unavailable !== null)('tsvmm -c tsvmm+ssh://HOST/system', () => {
  it('list, define, start and dominfo run on the other host; output and exit status as if local', () => {
    const xml = join(hosts.dir, 'c1.xml');
    writeFileSync(xml, `<domain type='kvm'>
  <name>c1</name>
  <memory unit='MiB'>32</memory>
  <os>
    <type>hvm</type>
    <kernel>${counterKernel()}</kernel>
    <cmdline>pages=64 every=4096</cmdline>
  </os>
  <devices>
    <serial type='pty'/>
    <console type='pty'/>
  </devices>
</domain>
`);
    expect(ok(here, '-c', there.uri, 'list', '--all')).toBe(' Id   Name   State\n--------------------\n\n');
    expect(ok(here, '-c', there.uri, 'define', xml)).toBe(`Domain 'c1' defined from ${xml}\n\n`);
    // Defined there, not here.
    expect(ok(here, 'list', '--all')).toBe(' Id   Name   State\n--------------------\n\n');
    expect(ok(here, '-c', there.uri, 'start', 'c1')).toBe("Domain 'c1' started\n\n");
    expect(ok(here, '-c', there.uri, 'list')).toMatch(/^ Id {3}Name {3}State\n-+\n 1 {4}c1 {5}running\n\n$/);
    expect(ok(here, '-c', there.uri, 'domstate', 'c1')).toBe('running\n\n');
    // A refusal there is the same one line and status 2 here.
    const refused = tsvmmAt(here, ['-c', there.uri, 'start', 'c1']);
    expect([refused.status, refused.stderr]).toEqual([2, "tsvmm: cannot start domain 'c1': it is already active\n"]);
  }, 300_000);

  it('console works through it: the guest\'s output arrives and Ctrl-] detaches, leaving it running', async () => {
    const [file, argv] = here.ns.wrap([process.execPath, TSVMM, '-c', there.uri, 'console', 'c1']);
    const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TSVMM_STATE_DIR: here.stateDir } });
    let seen = '';
    child.stdout.setEncoding('latin1').on('data', (t: string) => (seen += t));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const deadline = Date.now() + 60_000;
    while (!/Escape character is \^\][^]*count \d+\n/.test(seen) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(seen).toMatch(/^Connected to domain 'c1'\n/);
    expect(seen).toMatch(/count \d+\n/);
    child.stdin.write('\x1d');
    expect(await exited).toBe(0);
    expect(ok(here, '-c', there.uri, 'domstate', 'c1')).toBe('running\n\n');
  }, 300_000);

  it('a URI it cannot use, or a host it cannot reach, is one line and status 2', () => {
    for (const [uri, message] of [
      ['qemu:///system', 'tsvmm: qemu:///system: tsvmm connects through tsvmm:/// (this host) or tsvmm+ssh:// (another host)\n'],
      ['tsvmm:///nowhere', 'tsvmm: tsvmm:///nowhere: the path is /system or /session\n'],
      [there.uri.replace('keyfile=', 'keyfil='), expect.stringMatching(/unknown parameter "keyfil"/)],
    ] as const) {
      const r = tsvmmAt(here, ['-c', uri, 'list']);
      expect([r.status, r.stderr]).toEqual([2, message]);
    }
    // 10.77.0.3 is on the namespaces' subnet but nobody has it: ssh gives up, and says why.
    const unreachable = tsvmmAt(here, ['-c', there.uri.replace('10.77.0.2', '10.77.0.3').replace('/system?', '/system?no_verify=1&'), 'list']);
    expect(unreachable.status).toBe(2);
    expect(unreachable.stderr.trim().split('\n')).toHaveLength(1);
    expect(unreachable.stderr).toMatch(/^tsvmm: 10\.77\.0\.3: ssh: connect to host 10\.77\.0\.3 port 22: /);
  }, 300_000);

  it('migrate --live there and back: the domain moves with its definition, and its counter goes on without a gap', () => {
    // Each leg's console log, kept by a hard link: --undefinesource removes the source's run folder.
    const keep = (at: SshHost, leg: string) => {
      const copy = join(hosts.dir, `${leg}.log`);
      linkSync(join(at.stateDir, 'run', 'c1', 'console.log'), copy);
      return () => readFileSync(copy, 'latin1');
    };
    const countsOf = (log: string) => countLines(log).map((c) => c.n);
    const waitForCounts = (log: () => string, n: number) => {
      const deadline = Date.now() + 30_000;
      while (countsOf(log()).length < n && Date.now() < deadline) spawnSync('sleep', ['0.1']);
      expect(countsOf(log()).length).toBeGreaterThanOrEqual(n);
    };
    // c1 runs on `there` (the tests above): move it here, driven from there...
    const firstLeg = keep(there, 'first');
    expect(ok(there, 'migrate', '--live', '--persistent', '--undefinesource', 'c1', here.uri)).toBe('');
    expect(ok(here, 'list')).toMatch(/ c1 +running\n/);
    expect(ok(there, 'list', '--all')).toBe(' Id   Name   State\n--------------------\n\n');
    // ... then back, driven from here through -c, after it counted here for a while.
    const secondLeg = keep(here, 'second');
    waitForCounts(secondLeg, 3);
    expect(ok(here, '-c', there.uri, 'list', '--all')).toBe(' Id   Name   State\n--------------------\n\n');
    expect(ok(here, 'migrate', '--live', '--undefinesource', 'c1', there.uri)).toBe('');
    const thirdLeg = () => consoleLog(there, 'c1');
    waitForCounts(thirdLeg, 3);
    expect(ok(there, 'domstate', 'c1')).toBe('running\n\n');
    expect(ok(here, 'list', '--all')).toBe(' Id   Name   State\n--------------------\n\n');
    // Every count the guest printed steps by 4096 from the first: none lost, none repeated. The legs'
    // logs are joined as text first: a line the guest was writing at a switch-over ends on the next host.
    const counts = countsOf(firstLeg() + secondLeg() + thirdLeg());
    counts.forEach((n, i) => expect(n, `count ${i}`).toBe(counts[0]! + i * 4096));
  }, 600_000);

  it('migrate --live --copy-storage-all to a host with its own storage: the disk is created there and copied while the guest writes it', () => {
    const MiB = 1 << 20;
    const diskSize = 3 * MiB;
    // A folder here that the other host does not have (yet): its storage is its own.
    mkdirSync(join(here.storage, 'vms'));
    const disk = join(here.storage, 'vms', 'd1.raw');
    // Here, the image holds something besides what the guest writes: the copy must bring it along.
    const image = Buffer.alloc(diskSize);
    image.fill(0x5a, 2 * MiB, 2 * MiB + 4096);
    writeFileSync(disk, image);
    const xml = join(hosts.dir, 'd1.xml');
    writeFileSync(xml, diskDomainXml('d1', disk));
    ok(here, 'define', xml);
    ok(here, 'start', 'd1');
    const sourceLog = join(hosts.dir, 'd1-source.log');
    linkSync(join(here.stateDir, 'run', 'd1', 'console.log'), sourceLog);
    const countsOf = (log: string) => countLines(log).map((c) => c.n);
    const waitForCounts = (log: () => string, n: number) => {
      const deadline = Date.now() + 30_000;
      while (countsOf(log()).length < n && Date.now() < deadline) spawnSync('sleep', ['0.1']);
      expect(countsOf(log()).length).toBeGreaterThanOrEqual(n);
    };

    // Refused before anything starts there, the guest running on here: the folder missing there, then an image of another size there.
    const noFolder = tsvmmAt(here, ['migrate', '--live', '--copy-storage-all', 'd1', there.uri]);
    expect([noFolder.status, noFolder.stderr]).toEqual([2, `tsvmm: --copy-storage-all: cannot create ${disk} (virtio0) at ${there.uri}: ${disk}: cannot create: ENOENT: no such file or directory\n`]);
    const thereFile = join(there.storageFiles, 'vms', 'd1.raw');
    mkdirSync(join(there.storageFiles, 'vms'));
    writeFileSync(thereFile, Buffer.alloc(MiB));
    const wrongSize = tsvmmAt(here, ['migrate', '--live', '--copy-storage-all', 'd1', there.uri]);
    expect([wrongSize.status, wrongSize.stderr]).toEqual([2, `tsvmm: --copy-storage-all: ${disk} (virtio0) is ${MiB} bytes at ${there.uri} and ${diskSize} bytes here: a copy needs the same virtual size\n`]);
    rmSync(thereFile);
    expect(ok(here, 'domstate', 'd1')).toBe('running\n\n');

    expect(ok(here, 'migrate', '--live', '--copy-storage-all', '--undefinesource', 'd1', there.uri)).toBe('');
    expect(ok(there, 'list')).toMatch(/ d1 +running\n/);
    const destinationLog = () => consoleLog(there, 'd1');
    waitForCounts(destinationLog, 2);
    ok(there, 'destroy', 'd1');
    const counts = countsOf(readFileSync(sourceLog, 'latin1') + destinationLog());
    counts.forEach((n, i) => expect(n, `count ${i}`).toBe(counts[0]! + i * 4096));
    const lastHere = countsOf(readFileSync(sourceLog, 'latin1')).at(-1)!;

    // The copy (there's own file, created by the migration) holds everything the source's disk held
    // at the switch-over: a sector differs only where the guest wrote it there afterwards, a later count.
    const source = readFileSync(disk);
    const copy = readFileSync(thereFile);
    expect(copy.length).toBe(diskSize);
    expect(copy.subarray(2 * MiB, 2 * MiB + 4096).every((b) => b === 0x5a)).toBe(true);
    let same = 0;
    for (let sector = 0; sector < diskSize / 512; sector++) {
      const a = source.subarray(sector * 512, sector * 512 + 512);
      const b = copy.subarray(sector * 512, sector * 512 + 512);
      if (a.equals(b)) {
        same++;
        continue;
      }
      expect(Number(diskSectorValue(copy, sector)), `sector ${sector}`).toBeGreaterThan(lastHere);
    }
    expect(same).toBeGreaterThan(0);
    expect(diskSectorValue(source, 0)).toBe(4096n);
  }, 600_000);
});
