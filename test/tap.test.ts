// openTap: a real TAP interface from /dev/net/tun, the fd flags virtio-net
// relies on, the errors a user can act on, and one ARP exchange with the
// kernel through the fd, 12-byte virtio-net header included. Every interface
// is made inside a network namespace of this file's own (helpers/netns.ts).
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readvSync, realpathSync, rmSync, writeFileSync, writevSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import ts from 'typescript';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { closeFd, ReadableWaiter, TapError, type Tap } from '../src/kvm/index.ts';
import { ROOT } from '../bench/lib/artifacts.ts';
import { ARP_FRAME_SIZE, ARP_REPLY, arpRequest, parseArp } from './helpers/arp-frames.ts';
import { netnsUnavailable, removeStaleNamespaces, TestNetns } from './helpers/netns.ts';

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const O_ACCMODE = 0o3;
const O_RDWR = 0o2;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;

const NOBODY = 65534;

/**
 * src/kvm as plain JavaScript, with koffi, in a folder `nobody` can read: the
 * clone itself may sit under a folder only its owner can enter (mktemp -d, a
 * home directory), where an unprivileged process could not load it.
 */
function kvmModulesForNobody(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-nobody-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'kvm'));
  for (const file of readdirSync(join(ROOT, 'src', 'kvm')).filter((f) => f.endsWith('.ts'))) {
    const { outputText } = ts.transpileModule(readFileSync(join(ROOT, 'src', 'kvm', file), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, rewriteRelativeImportExtensions: true },
    });
    writeFileSync(join(dir, 'kvm', file.replace(/\.ts$/, '.js')), outputText);
  }
  // koffi and its native part for this platform, which it finds beside itself.
  let koffi = realpathSync(createRequire(join(ROOT, 'package.json')).resolve('koffi'));
  for (let up = 0; up < 4 && !existsSync(join(koffi, 'package.json')); up++) koffi = dirname(koffi);
  cpSync(koffi, join(dir, 'node_modules', 'koffi'), { recursive: true, dereference: true });
  const native = `@koromix/koffi-${process.platform}-${process.arch}`;
  cpSync(realpathSync(join(koffi, '..', native)), join(dir, 'node_modules', native), { recursive: true, dereference: true });
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  return dir;
}

describe.skipIf(netnsUnavailable !== null)('openTap', () => {
  let ns: TestNetns;
  beforeAll(() => {
    ns = TestNetns.create();
  });
  afterAll(() => ns?.remove());

  const opened: Tap[] = [];
  const open = (name?: string): Tap => {
    const tap = ns.openTap(name);
    opened.push(tap);
    return tap;
  };
  afterEach(() => {
    for (const tap of opened.splice(0)) closeFd(tap.fd);
  });
  const interfaceExists = (name: string) => spawnSync('ip', ['-n', ns.name, 'link', 'show', 'dev', name]).status === 0;

  it('creates a TAP interface (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) named by the kernel', () => {
    const tap = open();
    expect(tap.name).toMatch(/^tap\d+$/);
    // `ip netns exec` mounts the namespace's own /sys.
    const flags = Number(ns.exec(['cat', `/sys/class/net/${tap.name}/tun_flags`]).trim());
    expect(flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)).toBe(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
  });

  it('gives a read/write fd that is non-blocking and close-on-exec', () => {
    const tap = open();
    const fdFlags = parseInt(/flags:\s*(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${tap.fd}`, 'utf8'))![1]!, 8);
    expect(fdFlags & O_ACCMODE).toBe(O_RDWR);
    expect(fdFlags & O_NONBLOCK).toBe(O_NONBLOCK);
    expect(fdFlags & O_CLOEXEC).toBe(O_CLOEXEC);
    // Nothing to read on an interface that is down: EAGAIN at once, never a wait.
    expect(() => readvSync(tap.fd, [new Uint8Array(2048)])).toThrow(expect.objectContaining({ code: 'EAGAIN' }));
  });

  it('takes the name it is given, and the interface goes away with its fd', () => {
    const name = `tsvmmt${process.pid % 100000}`;
    const tap = ns.openTap(name);
    expect(tap.name).toBe(name);
    expect(interfaceExists(name)).toBe(true);
    closeFd(tap.fd);
    expect(interfaceExists(name)).toBe(false);
  });

  it('says a name is in use (EBUSY) when another fd holds that TAP', () => {
    const tap = open();
    expect(() => open(tap.name)).toThrow(TapError);
    expect(() => open(tap.name)).toThrow(new RegExp(`TUNSETIFF: EBUSY — TAP interface ${tap.name}: the interface ${tap.name} is in use`));
  });

  it('says a name that belongs to another kind of interface is not a TAP (EINVAL)', () => {
    expect(() => open('lo')).toThrow(/TUNSETIFF: EINVAL — TAP interface lo: lo exists and is not a TAP interface/);
  });

  it('refuses a name longer than 15 bytes before asking the kernel', () => {
    expect(() => open('a-very-long-name0')).toThrow(/interface name "a-very-long-name0": a name has 1 to 15 bytes/);
  });

  it('tells an unprivileged user what it needs (run as nobody)', () => {
    const dir = kvmModulesForNobody();
    try {
      const script = `import { openTap } from './kvm/index.js';
        try { openTap(); console.log('opened'); } catch (e) { console.log(e.name + ': ' + e.message); }`;
      writeFileSync(join(dir, 'probe.js'), script);
      // Inside the namespace, so even a wrong answer ("opened") leaves nothing on the host.
      const [file, args] = ns.wrap(['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, join(dir, 'probe.js')]);
      const result = spawnSync(file, args, { cwd: dir, encoding: 'utf8', timeout: 30_000 });
      expect(result.stderr).toBe('');
      expect(result.stdout).toMatch(/TapError: (open: EACCES .*mode 0666|TUNSETIFF: EPERM .*CAP_NET_ADMIN)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('removes the namespace a killed test run left behind, and leaves those of live runs alone', () => {
    // A pid that has just ended stands for the killed run.
    const ended = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const deadPid = Number(ended.stdout.trim());
    const stale = `tsvmm-test-${deadPid}-0badf00d`;
    spawnSync('ip', ['netns', 'add', stale]);
    try {
      expect(spawnSync('ip', ['netns', 'exec', stale, 'true']).status).toBe(0);
      removeStaleNamespaces();
      expect(spawnSync('ip', ['netns', 'exec', stale, 'true']).status).not.toBe(0);
      // This run's own namespace is still there.
      expect(ns.exec(['true'])).toBe('');
    } finally {
      spawnSync('ip', ['netns', 'del', stale]);
    }
  });

  it('carries frames with a 12-byte virtio-net header: the namespace\'s kernel answers an ARP request', () => {
    const tap = ns.openAddressedTap();
    opened.push(tap);
    const mac = Uint8Array.of(0x52, 0x54, 0x00, 0xab, 0xcd, 0xef);
    const header = new Uint8Array(12);
    expect(writevSync(tap.fd, [header, arpRequest(mac, tap.guestIp, tap.hostIp)])).toBe(12 + ARP_FRAME_SIZE);

    const waiter = new ReadableWaiter();
    const deadline = Date.now() + 5000;
    let reply = null;
    while (!reply && Date.now() < deadline) {
      if (waiter.wait([tap.fd], 100).length === 0) continue;
      const buffer = new Uint8Array(2048).fill(0xcc);
      const length = readvSync(tap.fd, [buffer]);
      const arp = parseArp(buffer.subarray(12, length));
      if (arp?.operation === ARP_REPLY) {
        // The header: no offloads (flags, gso_type 0) and the num_buffers field in place (12 bytes, not 10).
        expect([...buffer.subarray(0, 2)]).toEqual([0, 0]);
        expect(length).toBe(12 + ARP_FRAME_SIZE);
        reply = arp;
      }
    }
    expect(reply).toEqual({
      destination: [...mac], operation: ARP_REPLY, senderMac: expect.any(Array), senderIp: tap.hostIp, targetMac: [...mac], targetIp: tap.guestIp,
    });
  });
});
