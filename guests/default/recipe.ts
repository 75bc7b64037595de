// The default tsvmm guest: Linux 6.1 from Debian's linux-source-6.1 with the
// config fragment and patches in this folder, and an uncompressed initramfs of
// busybox-static plus ./init and ./rootfs, packed by tsvmm's own cpio writer.
//
//   npx tsx guests/default/recipe.ts     (or: tsvmm guest build)
//
// The result is cached in $XDG_CACHE_HOME/tsvmm/guests (default
// ~/.cache/tsvmm/guests), in two steps so that changing /init does not rebuild
// the kernel:
//   kernel-<hash>/   vmlinux, bzImage, System.map, config
//                    hash of: kernel.config, patches/*, the linux-source-6.1 version, KERNEL_STEPS
//   default-<hash>/  the kernel files (hard links), initramfs.cpio, manifest.json
//                    hash of: the kernel hash, init, rootfs/**, src/boot/cpio.ts,
//                    the busybox-static version, INITRAMFS_STEPS
// Each is built in a work directory beside it and renamed into place when
// complete, so an interrupted build leaves nothing that looks finished.
// See guests/README.md.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CpioWriter } from '../../src/boot/cpio.ts';
import { PROJECT_ROOT } from '../../src/project-root.ts';

// From the project root, so that the compiled copy in dist/ finds the same files.
const HERE = join(PROJECT_ROOT, 'guests', 'default');
const CPIO_SOURCE = join(PROJECT_ROOT, 'src', 'boot', 'cpio.ts');

/** Bump when the way the kernel is built changes (not for comments or logging). */
const KERNEL_STEPS = 1;
/** Bump when the way the initramfs is assembled changes. */
const INITRAMFS_STEPS = 1;

const KERNEL_PACKAGE = 'linux-source-6.1';
const BUSYBOX_PACKAGE = 'busybox-static';
const ARCH = 'x86_64';

/**
 * Kernel parameters the guest needs on a PVM host, on top of the console
 * settings: "pvm_host" enables patches 0002/0003; the rest keeps the kernel off
 * instructions the emulator lacks when the VMM still advertises them in CPUID
 * (tsvmm hides them; QEMU -cpu host does not).
 */
export const PVM_GUEST_PARAMETERS = 'pvm_host noxsave clearcpuid=cx16,popcnt,smap';

/** A command line that boots the default guest with its console on COM1. */
export function defaultGuestCmdline(options: { pvm: boolean }): string {
  const base = 'console=ttyS0 earlyprintk=ttyS0 panic=-1';
  return options.pvm ? `${base} ${PVM_GUEST_PARAMETERS}` : base;
}

export interface BuildDefaultGuestOptions {
  /** Cache root (default $XDG_CACHE_HOME/tsvmm or ~/.cache/tsvmm). */
  cacheDir?: string;
  /** Progress lines (no trailing newline). */
  log?: (line: string) => void;
  /** make -j (default: the number of CPUs). */
  jobs?: number;
  /** Keep the kernel source/object tree of a fresh build (kernel-<hash>/linux); it is ~1.5 GB. */
  keepKernelTree?: boolean;
}

export interface DefaultGuest {
  /** The guest's cache directory. */
  dir: string;
  /** The uncompressed kernel, an ELF with a PVH entry note. */
  kernel: string;
  bzImage?: string;
  /** Uncompressed newc initramfs. */
  initrd: string;
  systemMap: string;
  /** The kernel's full .config. */
  config: string;
  manifest: string;
  /** True when nothing had to be built. */
  cached: boolean;
}

export class GuestBuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestBuildError';
  }
}

export function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tsvmm');
}

// ---------------------------------------------------------------------------
// Inputs and hashes

/** Every file under dir, sorted, as [path relative to dir, absolute path]. */
function listFiles(dir: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const full = join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else out.push([relative(dir, full), full]);
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

function isExecutable(path: string): boolean {
  return (statSync(path).mode & 0o111) !== 0;
}

function hashParts(parts: Array<string | Uint8Array>): string {
  const h = createHash('sha256');
  for (const part of parts) {
    const bytes = typeof part === 'string' ? Buffer.from(part) : part;
    h.update(`${bytes.length}:`);
    h.update(bytes);
  }
  return h.digest('hex').slice(0, 16);
}

function patchFiles(): Array<[string, string]> {
  return listFiles(join(HERE, 'patches')).filter(([name]) => name.endsWith('.patch'));
}

/**
 * The candidate version of each package in one `apt-cache policy` output
 * (null where apt has none: no apt lists, or an unknown package).
 */
export function parseAptPolicy(output: string, packages: readonly string[]): { [pkg: string]: string | null } {
  const found: { [pkg: string]: string | null } = Object.fromEntries(packages.map((p) => [p, null]));
  let current: string | null = null;
  for (const line of output.split('\n')) {
    const heading = /^(\S+):$/.exec(line);
    if (heading) current = heading[1]!;
    const candidate = /^\s+Candidate:\s*(\S+)/.exec(line)?.[1];
    if (current !== null && current in found && candidate && candidate !== '(none)') found[current] = candidate;
  }
  return found;
}

/** What apt's candidates follow: its lists, sources, pins and dpkg's status (name, size and mtime of each). */
export function aptInputsFingerprint(): string {
  const parts: string[] = [];
  const add = (path: string) => {
    try {
      const st = statSync(path);
      if (st.isDirectory()) for (const name of readdirSync(path).sort()) add(join(path, name));
      else parts.push(`${path} ${st.size} ${st.mtimeMs}`);
    } catch {
      parts.push(`${path} absent`);
    }
  };
  for (const path of ['/var/lib/apt/lists', '/etc/apt/sources.list', '/etc/apt/sources.list.d', '/etc/apt/preferences', '/etc/apt/preferences.d', '/var/lib/dpkg/status']) add(path);
  return hashParts(parts);
}

/**
 * The candidate versions apt would download. `apt-cache policy` takes ~0.8 s
 * where apt keeps no binary cache (Debian's container images), and every
 * `tsvmm run` of the default guest asks: the answer is kept in `memoFile`
 * with the fingerprint of apt's inputs, and asked again only when they change.
 */
export function aptCandidates(
  packages: readonly string[],
  memoFile: string,
  query: (pkgs: readonly string[]) => string = (pkgs) =>
    spawnSync('apt-cache', ['policy', ...pkgs], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } }).stdout ?? '',
  fingerprint: () => string = aptInputsFingerprint,
): { [pkg: string]: string | null } {
  const key = `${fingerprint()} ${packages.join(' ')}`;
  try {
    const memo = JSON.parse(readFileSync(memoFile, 'utf8')) as { key?: unknown; versions?: { [pkg: string]: unknown } | null };
    const versions = memo.versions;
    if (memo.key === key && typeof versions === 'object' && versions !== null && packages.every((p) => typeof versions[p] === 'string')) {
      return Object.fromEntries(packages.map((p) => [p, versions[p] as string]));
    }
  } catch {
    // no memo yet, or not ours: ask apt
  }
  const versions = parseAptPolicy(query(packages), packages);
  if (Object.values(versions).every((v) => v !== null)) {
    try {
      mkdirSync(dirname(memoFile), { recursive: true });
      const tmp = `${memoFile}.${process.pid}`;
      writeFileSync(tmp, JSON.stringify({ key, versions }));
      renameSync(tmp, memoFile);
    } catch {
      // a read-only cache only costs the next run the same query
    }
  }
  return versions;
}

export interface RecipeHashes {
  /** Names kernel-<hash>/. */
  kernel: string;
  /** Names default-<hash>/: "the recipe's hash". */
  guest: string;
  /** The hash of this folder's files and cpio.ts alone, without package versions. */
  files: string;
  versions: { [pkg: string]: string };
}

function kernelFileParts(): Array<string | Uint8Array> {
  return [
    'kernel.config', readFileSync(join(HERE, 'kernel.config')),
    ...patchFiles().flatMap(([name, full]) => [name, readFileSync(full)]),
  ];
}

function initramfsFileParts(): Array<string | Uint8Array> {
  return [
    'init', readFileSync(join(HERE, 'init')),
    'cpio.ts', readFileSync(CPIO_SOURCE),
    ...listFiles(join(HERE, 'rootfs')).flatMap(([name, full]) => [`${name} ${isExecutable(full) ? 755 : 644}`, readFileSync(full)]),
  ];
}

/** The hashes that name the cache directories; without apt lists only the files hash and the package apt does not know. */
export function recipeHashes(cacheRoot: string): RecipeHashes | { files: string; unknownPackage: string } {
  const files = hashParts([`kernel-steps ${KERNEL_STEPS}`, `initramfs-steps ${INITRAMFS_STEPS}`, ...kernelFileParts(), ...initramfsFileParts()]);
  const candidates = aptCandidates([KERNEL_PACKAGE, BUSYBOX_PACKAGE], join(cacheRoot, 'apt-candidates.json'));
  const kernelVersion = candidates[KERNEL_PACKAGE];
  const busyboxVersion = candidates[BUSYBOX_PACKAGE];
  if (!kernelVersion || !busyboxVersion) return { files, unknownPackage: !kernelVersion ? KERNEL_PACKAGE : BUSYBOX_PACKAGE };
  const kernel = hashParts([`kernel-steps ${KERNEL_STEPS}`, `${KERNEL_PACKAGE} ${kernelVersion}`, ...kernelFileParts()]);
  const guest = hashParts([`initramfs-steps ${INITRAMFS_STEPS}`, `kernel ${kernel}`, `${BUSYBOX_PACKAGE} ${busyboxVersion}`, ...initramfsFileParts()]);
  return { kernel, guest, files, versions: { [KERNEL_PACKAGE]: kernelVersion, [BUSYBOX_PACKAGE]: busyboxVersion } };
}

/** Without apt lists: the newest complete build of these very files, if there is one. */
function findBuildOfFiles(root: string, files: string): string | null {
  if (!existsSync(root)) return null;
  let best: { dir: string; at: string } | null = null;
  for (const name of readdirSync(root)) {
    const dir = join(root, name);
    if (!name.startsWith('default-') || !complete(dir, GUEST_FILES)) continue;
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Partial<Manifest>;
      if (manifest.filesHash === files && (!best || (manifest.builtAt ?? '') > best.at)) best = { dir, at: manifest.builtAt ?? '' };
    } catch {
      // not ours, or half-written by something else: ignore
    }
  }
  return best?.dir ?? null;
}

// ---------------------------------------------------------------------------
// Tools

interface ToolCheck { what: string; present: () => boolean; pkg: string }

const onPath = (cmd: string) => () => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

const TOOLS: ToolCheck[] = [
  { what: 'gcc', present: onPath('gcc'), pkg: 'gcc' },
  { what: 'make', present: onPath('make'), pkg: 'make' },
  { what: 'ld/as', present: () => onPath('ld')() && onPath('as')(), pkg: 'binutils' },
  { what: 'flex', present: onPath('flex'), pkg: 'flex' },
  { what: 'bison', present: onPath('bison'), pkg: 'bison' },
  { what: 'bc', present: onPath('bc'), pkg: 'bc' },
  { what: 'perl', present: onPath('perl'), pkg: 'perl' },
  { what: 'xz', present: onPath('xz'), pkg: 'xz-utils' },
  { what: 'tar', present: onPath('tar'), pkg: 'tar' },
  { what: 'gzip (bzImage)', present: onPath('gzip'), pkg: 'gzip' },
  { what: 'patch', present: onPath('patch'), pkg: 'patch' },
  { what: 'libelf headers (objtool)', present: () => existsSync('/usr/include/gelf.h') || existsSync('/usr/include/libelf/gelf.h'), pkg: 'libelf-dev' },
  { what: 'apt-get, dpkg-deb', present: () => onPath('apt-get')() && onPath('dpkg-deb')(), pkg: 'apt' },
];

/** Throws one line naming the apt-get command that installs whatever is missing. */
export function checkBuildTools(): void {
  const missing = TOOLS.filter((t) => !t.present());
  if (missing.length > 0) {
    throw new GuestBuildError(`missing build tools (${missing.map((t) => t.what).join(', ')}): run apt-get install ${[...new Set(missing.map((t) => t.pkg))].join(' ')}`);
  }
}

// ---------------------------------------------------------------------------
// Running commands

interface RunOptions { cwd: string; env?: NodeJS.ProcessEnv; onLine?: (line: string) => void }

/** Runs a command; on failure throws with its last lines of output. */
function run(cmd: string, args: string[], options: RunOptions): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: { ...process.env, LC_ALL: 'C', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    let out = '';
    const feed = (stream: NodeJS.ReadableStream, keep: boolean) => {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        if (keep && out.length < 1 << 20) out += chunk;
        const lines = (partial + chunk).split('\n');
        partial = lines.pop()!;
        for (const line of lines) {
          tail.push(line);
          if (tail.length > 40) tail.shift();
          options.onLine?.(line);
        }
      });
    };
    feed(child.stdout!, true);
    feed(child.stderr!, false);
    child.on('error', (e) => reject(new GuestBuildError(`${cmd}: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolvePromise(out);
      else reject(new GuestBuildError(`${cmd} ${args.join(' ')} failed (${signal ?? `status ${code}`}) in ${options.cwd}:\n${tail.join('\n')}`));
    });
  });
}

// ---------------------------------------------------------------------------
// Packages

async function fetchPackage(pkg: string, work: string): Promise<string> {
  const debs = join(work, 'debs');
  mkdirSync(debs, { recursive: true });
  try {
    await run('apt-get', ['download', pkg], { cwd: debs });
  } catch (e) {
    const message = (e as Error).message;
    if (/Unable to locate|has no installation candidate|Couldn't find/i.test(message)) {
      throw new GuestBuildError(`apt-get download ${pkg}: apt does not know it: run apt-get update (as root) first`);
    }
    throw e;
  }
  const deb = readdirSync(debs).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb) throw new GuestBuildError(`apt-get download ${pkg} left no .deb in ${debs}`);
  const root = join(work, `pkg-${pkg}`);
  await run('dpkg-deb', ['-x', join(debs, deb), root], { cwd: work });
  return root;
}

// ---------------------------------------------------------------------------
// The kernel

/** Config lines of the fragment: CONFIG_X=value, or null for "# CONFIG_X is not set". */
export function parseFragment(text: string): Map<string, string | null> {
  const wanted = new Map<string, string | null>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    let m = /^(CONFIG_\w+)=(.*)$/.exec(line);
    if (m) { wanted.set(m[1]!, m[2]!); continue; }
    m = /^# (CONFIG_\w+) is not set$/.exec(line);
    if (m) wanted.set(m[1]!, null);
  }
  return wanted;
}

/** The options Kconfig did not set as the fragment asked, as "CONFIG_X=want (got ...)". */
export function configMismatches(fragment: string, dotConfig: string): string[] {
  const have = parseFragment(dotConfig);
  const problems: string[] = [];
  for (const [name, want] of parseFragment(fragment)) {
    const got = have.get(name) ?? null;
    if (got !== want) problems.push(`${name}=${want ?? 'n'} (got ${got ?? 'n'})`);
  }
  return problems;
}

async function buildKernel(dir: string, work: string, jobs: number, log: (line: string) => void, keepTree: boolean): Promise<void> {
  log(`fetching ${KERNEL_PACKAGE} (apt-get download)`);
  const pkg = await fetchPackage(KERNEL_PACKAGE, work);
  const tarball = join(pkg, 'usr/src', `${KERNEL_PACKAGE}.tar.xz`);
  if (!existsSync(tarball)) throw new GuestBuildError(`${KERNEL_PACKAGE} has no ${relative(pkg, tarball)}`);
  log(`unpacking ${relative(pkg, tarball)}`);
  await run('tar', ['-xf', tarball, '-C', work], { cwd: work });
  rmSync(pkg, { recursive: true, force: true });
  const tree = join(work, KERNEL_PACKAGE);
  if (!existsSync(join(tree, 'Makefile'))) throw new GuestBuildError(`${tarball} did not unpack to ${tree}`);

  for (const [name, full] of patchFiles()) {
    log(`applying patches/${name}`);
    await run('patch', ['-p1', '--forward', '--batch', '--no-backup-if-mismatch', '-i', full], { cwd: tree });
  }

  const make = (targets: string[], extra: string[] = [], onLine?: (line: string) => void) =>
    run('make', [`ARCH=${ARCH}`, ...extra, ...targets], {
      cwd: tree,
      env: { KBUILD_BUILD_USER: 'tsvmm', KBUILD_BUILD_HOST: 'tsvmm', KBUILD_BUILD_TIMESTAMP: 'Thu Jan  1 00:00:00 UTC 2026' },
      ...(onLine ? { onLine } : {}),
    });
  const fragmentPath = join(HERE, 'kernel.config');
  log('configuring: allnoconfig + kernel.config, then olddefconfig');
  await make(['allnoconfig'], [`KCONFIG_ALLCONFIG=${fragmentPath}`]);
  await make(['olddefconfig']);
  const problems = configMismatches(readFileSync(fragmentPath, 'utf8'), readFileSync(join(tree, '.config'), 'utf8'));
  if (problems.length > 0) {
    throw new GuestBuildError(`Kconfig did not keep ${problems.length} option(s) of guests/default/kernel.config: ${problems.join(', ')}`);
  }

  log(`compiling vmlinux and bzImage (make -j${jobs})`);
  let compiled = 0;
  let lastReport = Date.now();
  const started = Date.now();
  await make(['vmlinux', 'bzImage'], [`-j${jobs}`], (line) => {
    const m = /^\s+(CC|AS|LD|AR|OBJTOOL|HOSTCC)\s+(\S+)/.exec(line);
    if (!m) return;
    if (m[1] === 'CC' || m[1] === 'AS') compiled++;
    if (Date.now() - lastReport >= 10_000) {
      lastReport = Date.now();
      log(`  ${compiled} files compiled, ${Math.round((Date.now() - started) / 1000)} s (${m[1]} ${m[2]})`);
    }
  });
  log(`compiled ${compiled} files in ${Math.round((Date.now() - started) / 1000)} s`);

  mkdirSync(dir, { recursive: true });
  copyFileSync(join(tree, 'vmlinux'), join(dir, 'vmlinux'));
  copyFileSync(join(tree, 'arch/x86/boot/bzImage'), join(dir, 'bzImage'));
  copyFileSync(join(tree, 'System.map'), join(dir, 'System.map'));
  copyFileSync(join(tree, '.config'), join(dir, 'config'));
  const release = readFileSync(join(tree, 'include/config/kernel.release'), 'utf8').trim();
  writeFileSync(join(dir, 'release'), `${release}\n`);
  if (keepTree) renameSync(tree, join(dir, 'linux'));
}

// ---------------------------------------------------------------------------
// The initramfs

/** Directories every guest has (mount points and the like). */
const ROOT_DIRS: Array<[string, number]> = [
  ['bin', 0o755], ['sbin', 0o755], ['usr', 0o755], ['usr/bin', 0o755], ['usr/sbin', 0o755],
  ['etc', 0o755], ['proc', 0o555], ['sys', 0o555], ['dev', 0o755], ['tmp', 0o1777],
  ['root', 0o700], ['run', 0o755], ['mnt', 0o755], ['var', 0o755],
];

/** Builds the initramfs from busybox (the binary), guests/default/init and guests/default/rootfs. */
export function buildInitramfs(busybox: Uint8Array, applets: string[]): Uint8Array {
  const cpio = new CpioWriter();
  for (const [path, mode] of ROOT_DIRS) cpio.directory(path, mode);
  // /init's stdin/stdout/stderr: the kernel opens /dev/console before devtmpfs is mounted.
  cpio.charDevice('dev/console', 5, 1, 0o600);
  cpio.charDevice('dev/null', 1, 3, 0o666);
  cpio.file('init', readFileSync(join(HERE, 'init')), 0o755);
  const own = listFiles(join(HERE, 'rootfs'));
  for (const [name, full] of own) cpio.file(name, readFileSync(full), isExecutable(full) ? 0o755 : 0o644);
  cpio.file('bin/busybox', busybox, 0o755);
  // One symlink per applet, as `busybox --install -s` would make, except where rootfs/ has its own file.
  for (const applet of applets) {
    if (applet === 'bin/busybox' || cpio.has(applet)) continue;
    cpio.symlink(applet, '/bin/busybox');
  }
  return cpio.finish();
}

/** busybox --list-full, run on the build host (busybox-static is a static x86_64 binary). */
function busyboxApplets(busybox: string): string[] {
  const r = spawnSync(busybox, ['--list-full'], { encoding: 'utf8' });
  if (r.status !== 0) throw new GuestBuildError(`${busybox} --list-full failed: ${r.stderr || r.error?.message}`);
  return r.stdout.split('\n').map((l) => l.trim()).filter((l) => l && !l.includes('..') && !l.startsWith('/'));
}

// ---------------------------------------------------------------------------
// The build

interface Manifest {
  recipe: 'default';
  hash: string;
  kernelHash: string;
  filesHash: string;
  packages: { [pkg: string]: string };
  release: string;
  files: { vmlinux: string; bzImage: string; initrd: string; systemMap: string; config: string };
  initrdBytes: number;
  applets: number;
  builtAt: string;
  compiler: string;
  cmdline: { hardwareKvm: string; pvm: string };
}

function result(dir: string, cached: boolean): DefaultGuest {
  return {
    dir,
    kernel: join(dir, 'vmlinux'),
    bzImage: join(dir, 'bzImage'),
    initrd: join(dir, 'initramfs.cpio'),
    systemMap: join(dir, 'System.map'),
    config: join(dir, 'config'),
    manifest: join(dir, 'manifest.json'),
    cached,
  };
}

function complete(dir: string, files: string[]): boolean {
  return files.every((f) => existsSync(join(dir, f)));
}

const KERNEL_FILES = ['vmlinux', 'bzImage', 'System.map', 'config', 'release'];
const GUEST_FILES = ['vmlinux', 'bzImage', 'System.map', 'config', 'initramfs.cpio', 'manifest.json'];

/** Moves a finished work directory into place; if another build got there first, keeps theirs. */
function publish(work: string, dir: string): void {
  try {
    renameSync(work, dir);
  } catch (e) {
    if (!existsSync(dir)) throw e;
    rmSync(work, { recursive: true, force: true });
  }
}

function linkOrCopy(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

/**
 * Builds the default guest, or returns the cached build. Needs the build tools
 * (checked first, with the apt-get command that installs them) and apt lists
 * (apt-get update); no root.
 */
export async function buildDefaultGuest(options: BuildDefaultGuestOptions = {}): Promise<DefaultGuest> {
  const log = options.log ?? (() => {});
  const root = join(options.cacheDir ?? defaultCacheDir(), 'guests');
  const hashes = recipeHashes(root);
  if ('unknownPackage' in hashes) {
    // No apt lists (a fresh container, say): a build of exactly these files will do.
    const found = findBuildOfFiles(root, hashes.files);
    if (found) return result(found, true);
    throw new GuestBuildError(`apt does not know ${hashes.unknownPackage}: run apt-get update (as root) first`);
  }
  const dir = join(root, `default-${hashes.guest}`);
  if (complete(dir, GUEST_FILES)) return result(dir, true);

  checkBuildTools();
  mkdirSync(root, { recursive: true });
  const jobs = options.jobs ?? availableParallelism();

  const kernelDir = join(root, `kernel-${hashes.kernel}`);
  if (!complete(kernelDir, KERNEL_FILES)) {
    const started = Date.now();
    const work = join(root, `.work-kernel-${hashes.kernel}-${process.pid}`);
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    const out = join(work, 'out');
    try {
      await buildKernel(out, work, jobs, log, options.keepKernelTree ?? false);
      publish(out, kernelDir);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    log(`kernel built in ${Math.round((Date.now() - started) / 1000)} s: ${kernelDir}`);
  } else {
    log(`kernel: ${kernelDir} (cached)`);
  }

  const work = join(root, `.work-default-${hashes.guest}-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    log(`fetching ${BUSYBOX_PACKAGE} (apt-get download)`);
    const pkg = await fetchPackage(BUSYBOX_PACKAGE, work);
    const busyboxPath = join(pkg, 'bin/busybox');
    if (!existsSync(busyboxPath)) throw new GuestBuildError(`${BUSYBOX_PACKAGE} has no bin/busybox`);
    chmodSync(busyboxPath, 0o755);
    const applets = busyboxApplets(busyboxPath);
    log(`packing initramfs.cpio (busybox, ${applets.length} applets, init, rootfs/) with src/boot/cpio.ts, uncompressed`);
    const initrd = buildInitramfs(readFileSync(busyboxPath), applets);

    const out = join(work, 'out');
    mkdirSync(out);
    writeFileSync(join(out, 'initramfs.cpio'), initrd);
    for (const f of ['vmlinux', 'bzImage', 'System.map', 'config']) linkOrCopy(join(kernelDir, f), join(out, f));
    const release = readFileSync(join(kernelDir, 'release'), 'utf8').trim();
    const compiler = spawnSync('gcc', ['--version'], { encoding: 'utf8' }).stdout?.split('\n')[0] ?? '';
    const manifest: Manifest = {
      recipe: 'default',
      hash: hashes.guest,
      kernelHash: hashes.kernel,
      filesHash: hashes.files,
      packages: hashes.versions,
      release,
      files: { vmlinux: 'vmlinux', bzImage: 'bzImage', initrd: 'initramfs.cpio', systemMap: 'System.map', config: 'config' },
      initrdBytes: initrd.length,
      applets: applets.length,
      builtAt: new Date().toISOString(),
      compiler,
      cmdline: { hardwareKvm: defaultGuestCmdline({ pvm: false }), pvm: defaultGuestCmdline({ pvm: true }) },
    };
    writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    publish(out, dir);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  log(`guest: ${dir}`);
  return result(dir, false);
}

// npx tsx guests/default/recipe.ts [--jobs N] [--keep-kernel-tree]
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const jobsAt = args.indexOf('--jobs');
  const started = Date.now();
  buildDefaultGuest({
    log: (line) => process.stderr.write(`${line}\n`),
    ...(jobsAt >= 0 ? { jobs: Number(args[jobsAt + 1]) } : {}),
    keepKernelTree: args.includes('--keep-kernel-tree'),
  }).then((guest) => {
    process.stderr.write(`${guest.cached ? 'already built' : `built in ${Math.round((Date.now() - started) / 1000)} s`}\n`);
    process.stdout.write(`${guest.dir}\n  kernel:     ${guest.kernel}\n  bzImage:    ${guest.bzImage}\n  initrd:     ${guest.initrd}\n  System.map: ${guest.systemMap}\n`);
  }, (e: Error) => {
    process.stderr.write(`tsvmm guest build: ${e.message}\n`);
    process.exitCode = e instanceof GuestBuildError ? 1 : 2;
  });
}
