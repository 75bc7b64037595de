// The other VMMs the benchmarks compare with, when this machine has them.
//
//   kvmtool  $TSVMM_KVMTOOL, else `lkvm` on PATH, else the copy that
//            bench/peers/build-kvmtool.sh builds into
//            $XDG_CACHE_HOME/tsvmm/peers/kvmtool/lkvm (~/.cache/...)
//   QEMU     $TSVMM_QEMU, else `qemu-system-x86_64` on PATH (Debian:
//            apt-get install qemu-system-x86)
//
// TSVMM_KVMTOOL=none or TSVMM_QEMU=none leaves a peer out, as on a machine
// without it. A peer that is absent is reported as "not installed"; one that
// fails (a QEMU that aborts on this host's CPU) as "QEMU failed: <why>" and is
// not run again in that suite. Either way the benchmark goes on for the rest.
import { accessSync, constants, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

export type PeerName = 'kvmtool' | 'qemu';

export interface Peer {
  name: PeerName;
  /** What tables and charts call it. */
  label: string;
  /** The executable, or null when absent. */
  path: string | null;
  /** Its version line, when it has one. */
  version: string | null;
  /** Why it is absent, or how it was found. */
  note: string;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && executable(join(dir, name))) return join(dir, name);
  }
  return null;
}

export function peerCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tsvmm', 'peers');
}

function fromEnv(variable: string): { path: string | null; note: string } | null {
  const value = process.env[variable];
  if (value === undefined || value === '') return null;
  if (value === 'none') return { path: null, note: `not installed (${variable}=none)` };
  if (!executable(value)) return { path: null, note: `not installed (${variable}=${value} is not an executable)` };
  return { path: value, note: `${variable}` };
}

export function findKvmtool(): Peer {
  const peer = { name: 'kvmtool' as const, label: 'kvmtool' };
  const env = fromEnv('TSVMM_KVMTOOL');
  if (env) return { ...peer, ...env, version: env.path ? kvmtoolVersion(env.path) : null };
  const inPath = onPath('lkvm');
  if (inPath) return { ...peer, path: inPath, version: kvmtoolVersion(inPath), note: 'PATH' };
  const cached = join(peerCacheDir(), 'kvmtool', 'lkvm');
  if (executable(cached)) return { ...peer, path: cached, version: kvmtoolVersion(cached), note: 'built by bench/peers/build-kvmtool.sh' };
  return { ...peer, path: null, version: null, note: 'not installed (bench/peers/build-kvmtool.sh builds it)' };
}

function kvmtoolVersion(path: string): string | null {
  // The build script records the commit beside the binary; `lkvm version` says "kvm tool <version>".
  try {
    return `kvmtool ${readFileSync(join(path, '..', 'VERSION'), 'utf8').trim()}`;
  } catch {
    const r = spawnSync(path, ['version'], { encoding: 'utf8', timeout: 5000 });
    return r.stdout?.trim().split('\n')[0] || null;
  }
}

export function findQemu(): Peer {
  const peer = { name: 'qemu' as const, label: 'QEMU' };
  const env = fromEnv('TSVMM_QEMU');
  const path = env ? env.path : onPath('qemu-system-x86_64');
  if (!path) return { ...peer, path: null, version: null, note: env?.note ?? 'not installed (apt-get install qemu-system-x86)' };
  const r = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 5000 });
  return { ...peer, path, version: r.stdout?.split('\n')[0]?.trim() || null, note: env ? env.note : 'PATH' };
}

export function findPeers(): Record<PeerName, Peer> {
  return { kvmtool: findKvmtool(), qemu: findQemu() };
}

/** kvmtool running a flat binary: one vCPU, no implicit devices. */
export function kvmtoolArgs(flat: string, memMiB: number): string[] {
  return ['run', '-k', flat, '-m', String(memMiB), '-c', '1', '--nodefaults'];
}

/**
 * QEMU running a flat binary wrapped as its BIOS (bench/lib/flat-rom.ts):
 * microvm, the smallest machine, with COM1 on stdout, isa-debug-exit at 0x501
 * as tsvmm has it, and -no-reboot so that a reset ends it. The CPU is the
 * host's without ARCH_CAPABILITIES: QEMU 7.2 aborts at start on an AMD PVM
 * host when it tries to set that MSR (docs/pvm.md); no guest here reads it.
 */
export function qemuArgs(rom: string, memMiB: number): string[] {
  return [
    '-M', 'microvm', '-accel', 'kvm', '-cpu', 'host,-arch-capabilities', '-m', `${memMiB}M`, '-nodefaults', '-display', 'none', '-no-reboot',
    '-bios', rom, '-serial', 'stdio', '-device', 'isa-debug-exit,iobase=0x501,iosize=1',
  ];
}

/**
 * A peer's run that went wrong: the suite shows `message` in the peer's row
 * ("QEMU failed: <its last line on stderr>") instead of figures, and goes on.
 */
export class PeerFailure extends Error {
  constructor(peer: string, reason: string) {
    super(`${peer} failed: ${reason}`);
    this.name = 'PeerFailure';
  }

  /** Any error from a peer's run, as its row's note. */
  static of(peer: string, error: unknown): PeerFailure {
    if (error instanceof PeerFailure) return error;
    return new PeerFailure(peer, error instanceof Error ? error.message : String(error));
  }
}
