// A stock Linux kernel for boot tests: Debian's linux-image package, its
// vmlinux unpacked from the bzImage (the bzImage's own decompressor would run
// for many minutes under PVM's instruction emulator). Cached across runs.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

const CACHE = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'tsvmm', 'stock-kernel');

export interface StockKernel {
  vmlinux: string;
  version: string;
}

/** The stock kernel, or a reason why it cannot be had here. */
export function stockKernel(): StockKernel | { unavailable: string } {
  const done = join(CACHE, 'vmlinux');
  if (existsSync(done)) return { vmlinux: done, version: readFileSync(join(CACHE, 'version'), 'utf8').trim() };
  const depends = spawnSync('apt-cache', ['depends', 'linux-image-amd64'], { encoding: 'utf8' });
  const pkg = /Depends: (linux-image-[\d.]+-\d+-amd64)\b/.exec(depends.stdout ?? '')?.[1];
  if (!pkg) return { unavailable: 'apt has no linux-image-amd64 (run apt-get update?)' };
  const work = join(CACHE, `work-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const download = spawnSync('apt-get', ['download', pkg], { cwd: work, encoding: 'utf8' });
  const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
  if (download.status !== 0 || !deb) return { unavailable: `apt-get download ${pkg} failed: ${download.stderr?.trim()}` };
  execFileSync('dpkg-deb', ['-x', join(work, deb), join(work, 'root')]);
  const boot = join(work, 'root', 'boot');
  const bzImageName = readdirSync(boot).find((f) => f.startsWith('vmlinuz-'))!;
  const bzImage = readFileSync(join(boot, bzImageName));
  // The compressed payload: setup_sects, payload_offset and payload_length from the setup header.
  const start = ((bzImage[0x1f1] || 4) + 1) * 512 + bzImage.readUInt32LE(0x248);
  const payload = bzImage.subarray(start, start + bzImage.readUInt32LE(0x24c));
  const unpacked = spawnSync('xz', ['-dc'], { input: payload, maxBuffer: 512 * 2 ** 20 });
  if (!unpacked.stdout?.length || unpacked.stdout.readUInt32BE(0) !== 0x7f454c46) {
    return { unavailable: `could not unpack the vmlinux from ${bzImageName} (needs xz; payload is ${payload.subarray(0, 4).toString('hex')})` };
  }
  writeFileSync(join(work, 'vmlinux'), unpacked.stdout);
  writeFileSync(join(CACHE, 'version'), bzImageName.slice('vmlinuz-'.length));
  renameSync(join(work, 'vmlinux'), done);
  return { vmlinux: done, version: bzImageName.slice('vmlinuz-'.length) };
}
