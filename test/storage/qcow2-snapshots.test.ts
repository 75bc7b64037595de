// qcow2 internal snapshots (`tsvmm img snapshot -c|-l|-a|-d`), against a
// shadow copy of the disk and against Debian's qemu-img both ways: what
// tsvmm takes, qemu-img lists and applies; what qemu-img takes, tsvmm lists,
// applies and deletes; `qemu-img check` stays clean throughout.
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, readFileSync, type writevSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { fileURLToPath } from 'node:url';
import { imgInfo, imgSnapshot } from '../../src/cli/img.ts';
import { ofdByteLocks } from '../../src/kvm/index.ts';
import { openDisk } from '../../src/storage/block-backend.ts';
import {
  applyInternalSnapshot, createInternalSnapshot, deleteInternalSnapshot, listInternalSnapshots,
} from '../../src/storage/internal-snapshots.ts';
import { checkExitStatus, checkQcow2 } from '../../src/storage/qcow2/check.ts';
import { createQcow2 } from '../../src/storage/qcow2/create.ts';
import { expectClean, expectSame, hasQemu, pattern, qemuImg, qemuIo, randomInt, readImage, run, scratchDir, seededRandom } from './helpers/images.ts';

const TSVMM = fileURLToPath(new URL('../../src/cli/tsvmm.mjs', import.meta.url));
const scratch = scratchDir();
afterAll(() => scratch.remove());
const MiB = 2 ** 20;

const tsvmm = (args: string[]) => run(process.execPath, [TSVMM, ...args]);


/** Random writes through tsvmm's qcow2 write path, mirrored into `shadow`. */
function writeRandomly(path: string, shadow: Uint8Array, count: number, seed: number): void {
  const disk = openDisk(path);
  const random = seededRandom(seed);
  try {
    for (let i = 0; i < count; i++) {
      const length = 512 * (1 + randomInt(random, 24));
      const offset = 512 * randomInt(random, (disk.size - length) / 512 + 1);
      const data = pattern(length, seed * 1000 + i);
      disk.write(offset, data);
      shadow.set(data, offset);
    }
    disk.flush();
  } finally {
    disk.close();
  }
}


/** The disk as QEMU reads it after `qemu-img snapshot -a` on a copy. */
function qemuAppliedCopy(path: string, snapshot: string): Uint8Array {
  const copy = `${path}.qemu-applied.qcow2`;
  copyFileSync(path, copy);
  qemuImg(['snapshot', '-a', snapshot, copy]);
  const raw = `${copy}.raw`;
  qemuImg(['convert', '-O', 'raw', copy, raw]);
  return new Uint8Array(readFileSync(raw));
}

describe('qcow2 internal snapshots against a shadow copy of the disk', () => {
  for (const clusterSize of [512, 65536]) {
    it(`${clusterSize}-byte clusters: writes after a snapshot leave it alone; apply brings each back; delete frees everything`, () => {
      const path = scratch.path(`shadow-${clusterSize}.qcow2`);
      const size = 4 * MiB;
      createQcow2(path, { size, clusterSize });
      const shadow = new Uint8Array(size);
      writeRandomly(path, shadow, 200, 1);
      createInternalSnapshot(path, 'first');
      const first = shadow.slice();
      expectClean(path);

      writeRandomly(path, shadow, 200, 2);
      expectSame(readImage(path), shadow);
      createInternalSnapshot(path, 'second');
      const second = shadow.slice();
      writeRandomly(path, shadow, 100, 3);
      expectClean(path);

      applyInternalSnapshot(path, 'first');
      expectSame(readImage(path), first);
      expectClean(path);
      writeRandomly(path, first.slice(), 100, 4);  // writing on the applied state does not touch the snapshot
      applyInternalSnapshot(path, 'first');
      expectSame(readImage(path), first);
      applyInternalSnapshot(path, '2');  // by id
      expectSame(readImage(path), second);
      expectClean(path);

      expect(deleteInternalSnapshot(path, 'first').id).toBe('1');
      expectClean(path);
      expectSame(readImage(path), second);
      deleteInternalSnapshot(path, 'second');
      expect(listInternalSnapshots(path)).toEqual([]);
      expectClean(path);
      expectSame(readImage(path), second);
      // Nothing is held by the snapshots any more: writes go in place again, and the image still checks clean.
      writeRandomly(path, second, 50, 5);
      expectSame(readImage(path), second);
      expectClean(path);
    });
  }

  it('over a backing file, and with no data written at all', () => {
    const base = scratch.path('base.qcow2');
    createQcow2(base, { size: 2 * MiB, clusterSize: 4096 });
    const shadow = new Uint8Array(2 * MiB);
    writeRandomly(base, shadow, 50, 6);
    const overlay = scratch.path('overlay.qcow2');
    createQcow2(overlay, { size: 2 * MiB, clusterSize: 4096, backingFile: 'base.qcow2', backingFormat: 'qcow2' });
    createInternalSnapshot(overlay, 'empty');
    const before = shadow.slice();
    writeRandomly(overlay, shadow, 50, 7);
    applyInternalSnapshot(overlay, 'empty');
    expectSame(readImage(overlay), before);
    expectClean(overlay);
  });
});

describe('snapshot names and errors', () => {
  it('ids count up from the highest; names are unique; unknown names, raw images and empty names are refused in one line', () => {
    const path = scratch.path('names.qcow2');
    createQcow2(path, { size: MiB });
    expect(createInternalSnapshot(path, 'a', { date: { sec: 1_700_000_000, nsec: 5 }, vmClockNsec: 3_723_456_000_000 })).toMatchObject({
      id: '1', name: 'a', dateSec: 1_700_000_000, dateNsec: 5, vmClockNsec: 3_723_456_000_000, vmStateSize: 0, icount: -1,
    });
    createInternalSnapshot(path, 'b');
    deleteInternalSnapshot(path, '1');
    expect(createInternalSnapshot(path, 'c').id).toBe('3');
    expect(listInternalSnapshots(path).map((s) => `${s.id}:${s.name}`)).toEqual(['2:b', '3:c']);
    expect(() => createInternalSnapshot(path, 'b')).toThrow(/already has a snapshot named "b"/);
    expect(() => createInternalSnapshot(path, '')).toThrow(/a snapshot name must be 1 to 1024 bytes long/);
    expect(() => applyInternalSnapshot(path, 'nope')).toThrow(/has no snapshot "nope"/);
    expect(() => deleteInternalSnapshot(path, 'nope')).toThrow(/has no snapshot "nope"/);

    const raw = scratch.path('plain.img');
    expect(tsvmm(['img', 'create', raw, '1M']).status).toBe(0);
    for (const args of [['-c', 'x'], ['-l'], ['-a', 'x'], ['-d', 'x']]) {
      const result = tsvmm(['img', 'snapshot', ...args, raw]);
      expect(result.status).toBe(2);
      expect(result.stderr).toBe(`tsvmm: ${raw}: a raw image cannot have internal snapshots; only qcow2 images can\n`);
    }
    const unknown = tsvmm(['img', 'snapshot', '-a', 'nope', path]);
    expect([unknown.status, unknown.stderr]).toEqual([2, `tsvmm: ${path}: has no snapshot "nope"\n`]);
    expect(() => imgSnapshot(path, {})).toThrow(/exactly one of -l, -c NAME, -a NAME, -d NAME/);
    expect(() => imgSnapshot(path, { list: true, create: 'x' })).toThrow(/exactly one of/);
  });

  it('a disk in use by a writer is not snapshotted under it', () => {
    const path = scratch.path('busy.qcow2');
    createQcow2(path, { size: MiB });
    const disk = openDisk(path, { locking: { locks: ofdByteLocks } });
    try {
      expect(() => imgSnapshot(path, { create: 'x' }, ofdByteLocks)).toThrow(/Failed to get "write" lock: this tsvmm already has it open/);
    } finally {
      disk.close();
    }
    expect(imgSnapshot(path, { create: 'x' }, ofdByteLocks).status).toBe(0);
  });
});

describe.skipIf(!hasQemu)('qcow2 internal snapshots against qemu-img', () => {
  it('tsvmm takes them: qemu-img lists them the same way, applies them to the same bytes, and checks the image clean', () => {
    const path = scratch.path('ours.qcow2');
    createQcow2(path, { size: 8 * MiB, clusterSize: 65536 });
    const shadow = new Uint8Array(8 * MiB);
    writeRandomly(path, shadow, 100, 10);
    expect(imgSnapshot(path, { create: 'before upgrade' }).status).toBe(0);
    const snapshot = shadow.slice();
    writeRandomly(path, shadow, 100, 11);
    expectClean(path);

    const ours = tsvmm(['img', 'snapshot', '-l', path]);
    const theirs = qemuImg(['snapshot', '-l', path]);
    expect(ours.stdout).toBe(theirs.stdout);
    expect(ours.stdout).toMatch(/^1 +before upgrade +0 B \d{4}-\d\d-\d\d \d\d:\d\d:\d\d 00:00:00\.000 +$/m);
    expectSame(qemuAppliedCopy(path, 'before upgrade'), snapshot);
    qemuIo(`${path}.qemu-applied.qcow2`, [`read -P 0x${snapshot[0]!.toString(16)} 0 1`]);

    // img info: the same snapshot list, in both output formats.
    const ourInfo = tsvmm(['img', 'info', path]).stdout;
    const qemuInfo = qemuImg(['info', path]).stdout;
    const section = (text: string) => text.slice(text.indexOf('Snapshot list:'), text.indexOf('Format specific information:'));
    expect(section(ourInfo)).toBe(section(qemuInfo));
    const json = (text: string) => (JSON.parse(text) as { snapshots: unknown }).snapshots;
    expect(json(imgInfo(path, { output: 'json' }).stdout)).toEqual(json(qemuImg(['info', '--output', 'json', path]).stdout));
  });

  it('qemu-img takes them: tsvmm lists, applies and deletes them, and qemu-img check finds no leaks', () => {
    const path = scratch.path('theirs.qcow2');
    qemuImg(['create', '-f', 'qcow2', '-o', 'cluster_size=4096', path, '4M']);
    qemuIo(path, ['write -P 0x11 0 1M', 'write -P 0x22 3M 64k']);
    qemuImg(['snapshot', '-c', 'one', path]);
    qemuIo(path, ['write -P 0x33 512k 1M', 'write -c -P 0x44 2M 4k']);  // a compressed cluster too
    qemuImg(['snapshot', '-c', 'two', path]);
    qemuIo(path, ['write -P 0x55 0 4M']);

    expect(tsvmm(['img', 'snapshot', '-l', path]).stdout).toBe(qemuImg(['snapshot', '-l', path]).stdout);
    expect(listInternalSnapshots(path).map((s) => s.name)).toEqual(['one', 'two']);

    const expected = new Uint8Array(4 * MiB);
    expected.fill(0x11, 0, MiB);
    expected.fill(0x22, 3 * MiB, 3 * MiB + 65536);
    applyInternalSnapshot(path, 'one');
    expectSame(readImage(path), expected);
    qemuIo(path, ['read -P 0x11 0 1M', 'read -P 0x22 3M 64k', 'read -P 0 1M 2M']);
    expectClean(path);

    expected.fill(0x33, 512 * 1024, 512 * 1024 + MiB);
    expected.fill(0x44, 2 * MiB, 2 * MiB + 4096);
    applyInternalSnapshot(path, 'two');
    expectSame(readImage(path), expected);
    // tsvmm writes over the compressed cluster and the shared ones; snapshot "two" keeps its bytes.
    const disk = openDisk(path);
    disk.write(2 * MiB + 512, new Uint8Array(512).fill(0x66));
    disk.write(0, new Uint8Array(8192).fill(0x77));
    disk.close();
    expectSame(qemuAppliedCopy(path, 'two'), expected);

    deleteInternalSnapshot(path, 'one');
    expectClean(path);
    deleteInternalSnapshot(path, 'two');
    expectClean(path);
    expect(qemuImg(['snapshot', '-l', path]).stdout).toBe('');
    qemuIo(path, ['read -P 0x77 0 8k', 'read -P 0x66 2097664 512', 'read -P 0x44 2M 512']);
  });
});

describe('tsvmm img snapshot -l', () => {
  it('prints qemu-img\'s layout: ID, TAG, VM SIZE, DATE (local time), VM CLOCK, ICOUNT', () => {
    const path = scratch.path('layout.qcow2');
    createQcow2(path, { size: MiB });
    expect(imgSnapshot(path, { list: true }).stdout).toBe('');
    createInternalSnapshot(path, 'boot', { date: { sec: 1_700_000_000, nsec: 0 }, vmClockNsec: 3_723_456_000_000 });
    const date = new Date(1_700_000_000 * 1000);
    const two = (n: number) => String(n).padStart(2, '0');
    const local = `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
    expect(imgSnapshot(path, { list: true }).stdout).toBe([
      'Snapshot list:',
      'ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT',
      `1         boot                  0 B ${local} 01:02:03.456           `,
      '',
    ].join('\n'));
  });
});

describe('crash consistency: every write of create, apply and delete cut short (SIGKILL at that point)', () => {
  /** Writes beyond the first `allowed` fail, as if the process had been killed there: what was written stays. */
  function cutAfter(allowed: number, operation: () => unknown): { writes: number } {
    // The CommonJS object behind node:fs; syncBuiltinESMExports() makes the ESM bindings HostFile uses follow it.
    const fs = createRequire(import.meta.url)('node:fs') as { writevSync: typeof writevSync };
    const original = fs.writevSync;
    let writes = 0;
    fs.writevSync = ((fd: number, buffers: readonly NodeJS.ArrayBufferView[], position?: number) => {
      if (writes++ >= allowed) throw Object.assign(new Error('killed'), { code: 'EKILLED' });
      return original(fd, buffers, position);
    }) as typeof fs.writevSync;
    syncBuiltinESMExports();
    try {
      operation();
    } catch (e) {
      if (!/killed/.test(String(e))) throw e;
    } finally {
      fs.writevSync = original;
      syncBuiltinESMExports();
    }
    return { writes };
  }

  /** Where to cut: the first and last writes (allocation, commit, frees) each, and evenly spaced ones between. */
  function cutPoints(total: number): number[] {
    const points = new Set<number>();
    for (let i = 0; i < Math.min(6, total); i++) points.add(i);
    for (let i = Math.max(0, total - 12); i < total; i++) points.add(i);
    for (let i = 1; i < 24; i++) points.add(Math.floor((total * i) / 24));
    return [...points].sort((a, b) => a - b);
  }

  /** Leaks, and at most copied flags missing from clusters counted once (harmless, QEMU's window too): no other error. */
  function expectNoHarm(path: string): void {
    const report = checkQcow2(path);
    for (const error of report.errors) expect(error).toMatch(/^ERROR OFLAG_COPIED (data|L2) cluster: .* refcount=1$/);
    if (hasQemu) {
      const check = qemuImg(['check', path], { allowFailure: true });
      expect(check.status).toBe(checkExitStatus(report));
    }
  }

  it('the disk reads as before or (apply) as the snapshot, the snapshot stays intact, and check finds no harm', () => {
    const template = scratch.path('crash-template.qcow2');
    createQcow2(template, { size: MiB, clusterSize: 512 });
    const old = new Uint8Array(MiB);
    writeRandomly(template, old, 16, 20);
    createInternalSnapshot(template, 'kept');
    const kept = old.slice();
    writeRandomly(template, old, 16, 21);
    const current = old.slice();

    const operations = {
      create: (path: string) => createInternalSnapshot(path, 'new'),
      apply: (path: string) => applyInternalSnapshot(path, 'kept'),
      delete: (path: string) => deleteInternalSnapshot(path, 'kept'),
    };
    for (const [name, operation] of Object.entries(operations)) {
      const probe = scratch.path(`crash-${name}-all.qcow2`);
      copyFileSync(template, probe);
      const { writes: total } = cutAfter(Infinity, () => operation(probe));
      expect(total).toBeGreaterThan(10);
      for (const allowed of cutPoints(total)) {
        const path = scratch.path(`crash-${name}-${allowed}.qcow2`);
        copyFileSync(template, path);
        cutAfter(allowed, () => operation(path));
        if (name === 'apply') {
          const content = readImage(path);
          expect([current, kept].some((bytes) => Buffer.compare(Buffer.from(content), Buffer.from(bytes)) === 0), `after ${allowed} writes`).toBe(true);
          expect(checkQcow2(path).errors, `after ${allowed} writes`).toEqual([]);
        } else {
          expectSame(readImage(path), current);
          expectNoHarm(path);
        }
        // Whatever the cut left, the snapshot that was there still reads as it was taken (while it is still listed).
        if (listInternalSnapshots(path).some((s) => s.name === 'kept')) {
          applyInternalSnapshot(path, 'kept');
          expectSame(readImage(path), kept);
        }
      }
    }
  });
});
