// tsvmm run by an unprivileged user, as a member of the `kvm` group runs it on
// a desktop: uid and gid nobody, no capabilities, no new privileges, and
// /dev/kvm usable. On these hosts /dev/kvm is root's alone (0600), so the
// process gets a view of its own: a private mount namespace (unshare -m)
// where a second node for the same device, mode 0666, is bind-mounted over
// /dev/kvm, and the project is bind-mounted into a folder nobody can enter
// (CI clones it into one only root can read). Nothing outside that
// namespace changes: the host's /dev/kvm keeps its owner and mode.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { ROOT } from '../../bench/lib/artifacts.ts';

export const NOBODY = 65534;
/** /dev/kvm's device number (Documentation/admin-guide/devices.txt: misc 232). */
const KVM_MAJOR = 10;
const KVM_MINOR = 232;

/** Why unprivileged runs cannot be made here, or null when they can. */
export const unprivilegedUnavailable: string | null = (() => {
  if (process.getuid?.() !== 0) return 'not root (the test needs a mount namespace to give nobody /dev/kvm)';
  try {
    const kvm = statSync('/dev/kvm');
    if (!kvm.isCharacterDevice()) return '/dev/kvm is not a device';
  } catch {
    return 'no /dev/kvm';
  }
  return null;
})();

/** The uid and effective capabilities /proc says a process has. */
export function processCredentials(pid: number): { uid: number; capEff: bigint } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
  const capEff = BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
  return { uid, capEff };
}

/** The pids whose parent is `pid`. */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export class UnprivilegedTsvmm {
  /** A folder nobody can read (0755), holding the device node, the project's view, its home and the files given to it. */
  readonly dir = mkdtempSync(join(tmpdir(), 'tsvmm-unprivileged-'));
  private readonly kvmNode = join(this.dir, 'kvm');
  private readonly view = join(this.dir, 'tsvmm');
  private readonly home = join(this.dir, 'home');

  constructor() {
    chmodSync(this.dir, 0o755);
    mkdirSync(this.view);
    mkdirSync(this.home);
    chownSync(this.home, NOBODY, NOBODY);
    const made = spawnMknod(this.kvmNode);
    if (made !== null) throw new Error(`mknod ${this.kvmNode}: ${made}`);
    chmodSync(this.kvmNode, 0o666);
  }

  /** A copy of `path` that nobody can read (a guest's kernel lives in root's cache). */
  share(path: string): string {
    const copy = join(this.dir, basename(path));
    copyFileSync(path, copy);
    chmodSync(copy, 0o644);
    return copy;
  }

  /** `tsvmm ARGS` as nobody; the returned process is tsvmm's own (unshare, sh and setpriv exec it in turn). */
  spawn(args: string[]): ChildProcessWithoutNullStreams {
    const script = 'mount --bind "$1" /dev/kvm && mount --bind "$2" "$3" && shift 3 && exec setpriv '
      + `--reuid=${NOBODY} --regid=${NOBODY} --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs "$@"`;
    return spawn('unshare', [
      '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', this.kvmNode, ROOT, this.view,
      'env', '-i', `HOME=${this.home}`, `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`,
      process.execPath, join(this.view, 'src', 'cli', 'tsvmm.mjs'), ...args,
    ], { stdio: ['pipe', 'pipe', 'pipe'] });
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** mknod(1) for /dev/kvm's device at `path`: null, or why it failed. */
function spawnMknod(path: string): string | null {
  const result = spawnSync('mknod', [path, 'c', String(KVM_MAJOR), String(KVM_MINOR)], { encoding: 'utf8' });
  if (result.error) return result.error.message;
  return result.status === 0 ? null : result.stderr.trim() || `status ${result.status}`;
}
