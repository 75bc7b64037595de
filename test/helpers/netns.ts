// The one place where tests touch host networking: a network namespace each
// test creates (`ip netns add tsvmm-test-<pid>-<random>`) and removes. TAP
// interfaces are created inside it, addresses go on them only there, and
// tsvmm runs inside it with `ip netns exec`: no test ever puts an address on
// the host's own namespace or sends a frame outside the namespace it made.
//
// A TAP has to be created by a thread that is in the namespace (the kernel
// puts the interface in the namespace of the thread that opened
// /dev/net/tun). The test process enters it for the length of one
// openTap() call through setns(2) on the calling thread only, and returns;
// the fd keeps working from anywhere.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import koffi from 'koffi';
import { closeFd, openTap, TapError, type Tap } from '../../src/kvm/index.ts';

const NAME_PREFIX = 'tsvmm-test-';
const CLONE_NEWNET = 0x4000_0000;
const setns = koffi.load('libc.so.6').func('int setns(int fd, int nstype)');

/**
 * Removes the namespaces of test runs that are gone (killed before their
 * afterAll): the creating process's pid is in the name, and a namespace whose
 * process no longer exists is left over. Those of live runs (other worktrees'
 * tests, in parallel) are left alone.
 */
export function removeStaleNamespaces(): void {
  let names: string[];
  try {
    names = readdirSync('/run/netns');
  } catch {
    return;
  }
  for (const name of names) {
    const pid = new RegExp(`^${NAME_PREFIX}(\\d+)-[0-9a-f]+$`).exec(name)?.[1];
    if (!pid || processExists(Number(pid))) continue;
    spawnSync('ip', ['netns', 'del', name]);
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export type Ipv4 = [number, number, number, number];

export interface AddressedTap extends Tap {
  /** The namespace's address on the interface: its kernel answers ARP for it. */
  hostIp: Ipv4;
  /** An address in the same /24 for the guest's side. */
  guestIp: Ipv4;
}

export class TestNetns {
  private removed = false;

  private constructor(readonly name: string) {}

  /** A new namespace with only `lo` in it (up, so nothing leaves through it either). */
  static create(): TestNetns {
    const ns = new TestNetns(`${NAME_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
    execFileSync('ip', ['netns', 'add', ns.name], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      ns.ip('link', 'set', 'dev', 'lo', 'up');
    } catch (e) {
      ns.remove();
      throw e;
    }
    return ns;
  }

  /** The argument list that runs `command` inside the namespace: spawn(...ns.wrap([...])). */
  wrap(command: readonly string[]): [string, string[]] {
    return ['ip', ['netns', 'exec', this.name, ...command]];
  }

  /** Runs a command inside the namespace and returns its stdout; throws with its stderr when it fails. */
  exec(command: readonly string[]): string {
    const [file, args] = this.wrap(command);
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** `ip ARGS` inside the namespace. */
  ip(...args: string[]): string {
    return execFileSync('ip', ['-n', this.name, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** openTap() (src/kvm) with the calling thread inside the namespace, so the interface is created there. */
  openTap(name?: string): Tap {
    const own = openSync('/proc/thread-self/ns/net', 'r');
    const target = openSync(`/run/netns/${this.name}`, 'r');
    try {
      if (setns(target, CLONE_NEWNET) !== 0) throw new Error(`setns into ${this.name} failed`);
      try {
        return openTap(name);
      } finally {
        if (setns(own, CLONE_NEWNET) !== 0) throw new Error('setns back to the test\'s own network namespace failed');
      }
    } finally {
      closeSync(target);
      closeSync(own);
    }
  }

  /**
   * A TAP in the namespace with the namespace's address on it (10.0.2.1/24:
   * the namespace holds nothing else, so no subnet can clash) and up. IPv6 is
   * off on it, so the kernel does not chatter (router and multicast listener
   * messages) into the exchange.
   */
  openAddressedTap(): AddressedTap {
    const tap = this.openTap();
    try {
      this.exec(['sysctl', '-q', '-w', `net.ipv6.conf.${tap.name}.disable_ipv6=1`]);
      this.ip('addr', 'add', '10.0.2.1/24', 'dev', tap.name);
      this.ip('link', 'set', 'dev', tap.name, 'up');
      return { ...tap, hostIp: [10, 0, 2, 1], guestIp: [10, 0, 2, 2] };
    } catch (e) {
      closeFd(tap.fd);
      throw e;
    }
  }

  /** Kills every process still in the namespace (what a test started there: dnsmasq, domains, sshd). */
  killProcesses(): void {
    for (const pid of spawnSync('ip', ['netns', 'pids', this.name], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
  }

  /** Deletes the namespace and every interface in it. Safe to call twice. */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    spawnSync('ip', ['netns', 'del', this.name]);
  }
}

/** Why namespace tests cannot run here (not root, no iproute2, no TUN driver), or null when they can. */
export const netnsUnavailable: string | null = (() => {
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add)';
  if (spawnSync('ip', ['-V']).error) return '`ip` (iproute2) is not installed';
  removeStaleNamespaces();
  let ns: TestNetns | null = null;
  try {
    ns = TestNetns.create();
    closeFd(ns.openTap().fd);
    return null;
  } catch (e) {
    if (e instanceof TapError) return e.message;
    return `cannot create a network namespace: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`;
  } finally {
    ns?.remove();
  }
})();
if (netnsUnavailable) console.warn(`tsvmm tests: skipping the TAP tests: ${netnsUnavailable}`);
