// Image locking (src/storage/image-lock.ts): one writer per image, whatever
// its name, inside one tsvmm, across two tsvmm processes, and against QEMU;
// and non-regular files refused before open(2) can block on them.
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { closeSync, linkSync, openSync, statSync, symlinkSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { firmwarePath } from '../../bench/lib/artifacts.ts';
import { imgConvert, imgInfo } from '../../src/cli/img.ts';
import { ofdByteLocks } from '../../src/kvm/index.ts';
import { openDisk, type BlockBackend } from '../../src/storage/block-backend.ts';
import { hasKvm, TSVMM, tsvmm } from '../helpers/kvm.ts';
import { hasQemu, qemuImg, run, scratchDir } from './helpers/images.ts';

const scratch = scratchDir();
afterAll(() => scratch.remove());
const locking = { locks: ofdByteLocks };

function rawImage(name: string): string {
  const path = scratch.path(name);
  execFileSync('truncate', ['-s', '1M', path]);
  return path;
}

/** Opens with locks, closes at the end of `body` (also when it throws). */
function holding<T>(disks: (() => BlockBackend)[], body: () => T): T {
  const open: BlockBackend[] = [];
  try {
    for (const openOne of disks) open.push(openOne());
    return body();
  } finally {
    for (const disk of open) disk.close();
  }
}

/** The OFD lock ranges /proc/locks shows on `path` ("100-101", ...), whoever holds them (it does not say). */
function lockedBytes(path: string): string[] {
  const { dev, ino } = statSync(path);
  const devText = `${(Number(dev) >> 8).toString(16).padStart(2, '0')}:${(Number(dev) & 0xff).toString(16).padStart(2, '0')}:${ino}`;
  return run('cat', ['/proc/locks']).stdout.split('\n')
    .filter((line) => line.includes(` ${devText} `))
    .map((line) => line.trim().split(/\s+/).slice(-2).join('-'));
}

/** Waits (bounded: 60 s) until someone holds the write permission byte of `path`. */
async function untilWriteLocked(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (lockedBytes(path).some((range) => { const [start, end] = range.split('-').map(Number); return start! <= 101 && 101 <= end!; })) return;
    if (child.exitCode !== null) throw new Error(`the lock holder exited with status ${child.exitCode}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${path} was not locked within 60 s`);
}

describe('image locks inside one tsvmm', () => {
  it('two writers of one file conflict, under any of its names', () => {
    const path = rawImage('one.img');
    const hard = scratch.path('one-hard.img');
    const soft = scratch.path('one-soft.img');
    linkSync(path, hard);
    symlinkSync(path, soft);
    holding([() => openDisk(path, { format: 'raw', locking })], () => {
      for (const other of [path, hard, soft]) {
        expect(() => openDisk(other, { format: 'raw', locking })).toThrow(`${other}: Failed to get "write" lock: this tsvmm already has it open`);
        expect(() => openDisk(other, { format: 'raw', readOnly: true, locking })).toThrow('Failed to get shared "write" lock');
      }
      // /proc/self/fd/N: another open file description of the same file, so it conflicts too.
      const fd = openSync(path, 'r');
      try {
        expect(() => openDisk(`/proc/self/fd/${fd}`, { format: 'raw', locking })).toThrow('Failed to get "write" lock');
      } finally {
        closeSync(fd);
      }
      // A reader that accepts changing content (-U) may look.
      holding([() => openDisk(hard, { format: 'raw', readOnly: true, locking: { ...locking, forceShare: true } })], () => {});
    });
    // Closing the writer drops its locks.
    holding([() => openDisk(hard, { format: 'raw', locking })], () => {});
  });

  it('readers share; the backing chain is locked for reading', () => {
    const base = scratch.path('chain-base.qcow2');
    const top = scratch.path('chain-top.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', base, '1M']);
    qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
    holding([() => openDisk(top, { locking }), () => openDisk(base, { readOnly: true, locking })], () => {
      // The bytes qemu-io locks on a writable qcow2 image (the kernel merges neighbours).
      expect(lockedBytes(top).sort()).toEqual(['100-101', '103-103', '201-201', '203-203']);
      expect(() => openDisk(base, { locking })).toThrow(`${base}: Failed to get "write" lock: this tsvmm already has it open (read-only)`);
    });
  });
});

describe.skipIf(!hasQemu)('image locks against QEMU', () => {
  it('qemu-img and qemu-io honour tsvmm\'s write lock, and tsvmm theirs', async () => {
    const path = scratch.path('shared-with-qemu.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', path, '1M']);
    holding([() => openDisk(path, { locking })], () => {
      expect(qemuImg(['info', path], { allowFailure: true }).stderr).toMatch(/Failed to get shared "write" lock/);
      expect(qemuImg(['info', '-U', path], { allowFailure: true }).status).toBe(0);
      expect(run('qemu-io', ['-c', 'write 0 512', path]).stderr).toMatch(/Failed to get "write" lock/);
    });
    // qemu-io waiting for commands on stdin holds the image writable.
    const qemuIo = spawn('qemu-io', [path], { stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      await untilWriteLocked(path, qemuIo);
      expect(() => openDisk(path, { locking })).toThrow(`${path}: Failed to get "write" lock: another process (tsvmm or QEMU) is using the image`);
      await expect(imgConvert(path, scratch.path('from-busy.raw'), {})).rejects.toThrow('Failed to get shared "write" lock');
      expect((await imgConvert(path, scratch.path('from-busy.raw'), { forceShare: true })).status).toBe(0);
    } finally {
      qemuIo.kill('SIGKILL');
    }
  });
});

describe('non-regular files', () => {
  it('a FIFO is refused at once by --disk\'s open, img info and img convert', async () => {
    const fifo = scratch.path('disk.fifo');
    execFileSync('mkfifo', [fifo]);
    const refusal = `${fifo}: not a regular file or block device`;
    expect(() => openDisk(fifo, { locking })).toThrow(refusal);
    expect(() => openDisk(fifo, { format: 'raw', readOnly: true })).toThrow(refusal);
    expect(() => imgInfo(fifo, {})).toThrow(refusal);
    await expect(imgConvert(fifo, scratch.path('from-fifo.raw'), {})).rejects.toThrow(refusal);
    const cli = run(process.execPath, [TSVMM, 'img', 'info', fifo]);
    expect([cli.status, cli.stderr]).toEqual([2, `tsvmm: ${refusal}\n`]);
  });
});

describe.skipIf(!hasKvm)('image locks of a running VM', () => {
  const spinWithDisks = (...disks: string[]) => ['run', '--flat', firmwarePath('spin'), '--irqchip', ...disks.flatMap((d) => ['--disk', d])];

  it('--disk X twice, or under a second name, is refused before the guest starts', () => {
    const path = rawImage('twice.img');
    const hard = scratch.path('twice-hard.img');
    const soft = scratch.path('twice-soft.img');
    linkSync(path, hard);
    symlinkSync(path, soft);
    for (const other of [path, hard, soft]) {
      const r = tsvmm(spinWithDisks(path, other));
      expect([r.status, r.stderr]).toEqual([2, `tsvmm: ${other}: the same image is given twice (--disk ${path} and --disk ${other}); add readonly to both to share it\n`]);
    }
  });

  it('a second tsvmm (or img convert, or QEMU) on the image of a running one is refused; -U reads it', async () => {
    const path = rawImage('busy.img');
    const first = spawn(process.execPath, [TSVMM, ...spinWithDisks(`${path},format=raw`)], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      await untilWriteLocked(path, first);
      const second = tsvmm(spinWithDisks(`${path},format=raw`));
      expect([second.status, second.stderr]).toEqual([2, `tsvmm: ${path}: Failed to get "write" lock: another process (tsvmm or QEMU) is using the image\n`]);
      const readOnly = tsvmm(spinWithDisks(`${path},format=raw,readonly`));
      expect([readOnly.status, readOnly.stderr]).toEqual([2, `tsvmm: ${path}: Failed to get shared "write" lock: another process (tsvmm or QEMU) is using the image\n`]);
      const convert = run(process.execPath, [TSVMM, 'img', 'convert', '-f', 'raw', path, scratch.path('copy.raw')]);
      expect([convert.status, convert.stderr]).toEqual([2, `tsvmm: ${path}: Failed to get shared "write" lock: another process (tsvmm or QEMU) is using the image\n`]);
      expect(run(process.execPath, [TSVMM, 'img', 'convert', '-U', '-f', 'raw', path, scratch.path('copy.raw')]).status).toBe(0);
      if (hasQemu) expect(run('qemu-io', ['-f', 'raw', '-c', 'write 0 512', path]).stderr).toMatch(/Failed to get "write" lock/);
    } finally {
      first.kill('SIGKILL');
      await new Promise((resolve) => first.exitCode !== null || first.signalCode !== null ? resolve(null) : first.once('exit', resolve));
    }
    // A killed holder's locks go with its descriptors.
    holding([() => openDisk(path, { format: 'raw', locking })], () => {});
  });
});
