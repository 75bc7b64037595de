// Crash consistency: a child process writing random clusters to a qcow2 image
// is killed with SIGKILL mid-way, several times over the same image. After
// each kill tsvmm's own check and `qemu-img check` must find no corruption
// (exit status 0, or 3 for leaked clusters) and agree, and every sector must
// read back as a whole sector written at that place.
//
// What qemu-img check prints after a kill: "N leaked clusters were found on
// the image. This means waste of disk space, but no harm to data." with exit
// status 3 (the unused rest of the allocator's reserved batch, up to 2 MiB),
// or "No errors were found on the image." with 0 when those clusters lie past
// the end of the file, where qemu-img check does not look.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openDisk } from '../../src/storage/block-backend.ts';
import { checkExitStatus, checkQcow2 } from '../../src/storage/qcow2/check.ts';
import { createQcow2 } from '../../src/storage/qcow2/create.ts';
import { fillSectors, findBadSector } from './helpers/crash-sectors.ts';
import { hasQemu, qemuImg, scratchDir } from './helpers/images.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const WRITER = fileURLToPath(new URL('./helpers/random-writer.ts', import.meta.url));
const scratch = scratchDir();
afterAll(() => scratch.remove());
const MiB = 2 ** 20;

/** Starts the writer and kills it `afterMs` after it has started writing. */
function killWhileWriting(image: string, seed: number, afterMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, image, String(seed)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.stdout.once('data', () => setTimeout(() => child.kill('SIGKILL'), afterMs));
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`the writer exited by itself (status ${code}): ${stderr}`));
    });
  });
}

function expectConsistent(image: string, round: string): void {
  const ours = checkExitStatus(checkQcow2(image));
  expect([0, 3]).toContain(ours);
  if (!hasQemu) return;
  const qemu = qemuImg(['check', image], { allowFailure: true });
  const leakLines = qemu.stderr.split('\n').filter((line) => line.startsWith('Leaked cluster')).length;
  console.log(`qemu-img check after ${round}: exit ${qemu.status} (${leakLines} "Leaked cluster" lines on stderr)\n${qemu.stdout.trim()}`);
  expect(qemu.status).toBe(ours);
}

function expectWholeSectors(image: string, allowZero: boolean): void {
  const disk = openDisk(image, { readOnly: true });
  const bytes = new Uint8Array(disk.size);
  disk.read(0, bytes);
  disk.close();
  expect(findBadSector(bytes, 0, allowZero)).toBeNull();
}

describe('qcow2 images killed with SIGKILL while writing (checked by qemu-img check where it is installed)', () => {
  it('512-byte clusters (refcount blocks, L2 tables and the refcount table allocated all the time): at most leaks', async () => {
    const image = scratch.path('killed-512.qcow2');
    createQcow2(image, { size: 8 * MiB, clusterSize: 512 });
    for (const [round, delay] of [[1, 150], [2, 400], [3, 250]] as const) {
      await killWhileWriting(image, round, delay);
      expectConsistent(image, `kill ${round} (512-byte clusters)`);
      expectWholeSectors(image, true);
    }
    // tsvmm writes on over whatever the kills left: still no corruption.
    const disk = openDisk(image);
    disk.write(0, new Uint8Array(MiB));
    disk.close();
    expectConsistent(image, 'a clean session after the kills');
  });

  it('64K clusters over a backing file (copy-on-write of partial clusters): at most leaks', async () => {
    const base = scratch.path('killed-base.img');
    const image = scratch.path('killed-64k.qcow2');
    const baseBytes = new Uint8Array(32 * MiB);
    fillSectors(baseBytes, 0, 0);
    writeFileSync(base, baseBytes);
    createQcow2(image, { size: 32 * MiB, clusterSize: 65536, backingFile: 'killed-base.img', backingFormat: 'raw' });
    for (const [round, delay] of [[4, 200], [5, 350]] as const) {
      await killWhileWriting(image, round, delay);
      expectConsistent(image, `kill ${round} (64K clusters, raw backing file)`);
      expectWholeSectors(image, false);
    }
  });
});
