// `tsvmm bench` from the command line: usage errors are one line and status 2
// before anything runs; then small suite configurations through real KVM,
// with kvmtool and QEMU hidden (their rows say "not installed").
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { selectSuites } from '../bench/command.ts';
import { InputError } from '../src/errors.ts';
import { SUITES } from '../bench/index.ts';
import { benchExits } from '../bench/exits.ts';
import { hasKvm, TSVMM } from './helpers/kvm.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-bench-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function bench(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000) {
  const r = spawnSync(process.execPath, [TSVMM, 'bench', ...args], {
    encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, NODE_NO_WARNINGS: '1', ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('tsvmm bench: arguments', () => {
  it('an unknown suite is one line on stderr and status 2', () => {
    const r = bench(['exits', 'nope']);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`tsvmm: unknown bench suite "nope" (known: ${SUITES.map((s) => s.name).join(', ')})\n`);
    expect(r.stdout).toBe('');
  });

  it('bad numbers and an output file in a missing directory are refused before anything runs', () => {
    for (const args of [['pit', '--runs', '0'], ['pit', '--iterations', 'x'], ['pit', '--bytes', '-5'], ['pit', '--chart', join(scratch, 'no', 'such', 'c.svg')]]) {
      const r = bench(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
  });

  it('--list names every suite of the registry', () => {
    const r = bench(['--list']);
    expect(r.status).toBe(0);
    for (const suite of SUITES) expect(r.stdout).toContain(suite.name);
  });

  it('suites run in registry order whatever order they are named in; none named is all but the Linux boots', () => {
    expect(selectSuites(['memory', 'exits'])).toEqual(['exits', 'memory']);
    // Suites that boot Linux (minutes a run) only when named.
    expect(selectSuites([])).toEqual(SUITES.filter((s) => !['boot', 'blk-guest'].includes(s.name)).map((s) => s.name));
    expect(selectSuites(['boot', 'exits'])).toEqual(['exits', 'boot']);
    expect(() => selectSuites(['blkk'])).toThrow(InputError);
  });
});

describe.skipIf(!hasKvm)('tsvmm bench through real KVM', () => {
  it('exit and ioeventfd loops in C and tsvmm count the same exits', async () => {
    const rows = await benchExits({ runs: 1, iterations: 3000, ops: ['OUT8', 'IOEVENTFD'], cpls: [0] });
    expect(rows.map((r) => r.op)).toEqual(['PIO out', 'PIO out → ioeventfd']);
    for (const r of rows) {
      expect(r.c.median).toBeGreaterThan(0);
      expect(r.tsvmm.median).toBeGreaterThan(0);
    }
    // An ioeventfd write completes inside KVM: far cheaper than an exit to either loop.
    expect(rows[1]!.tsvmm.median).toBeLessThan(rows[0]!.tsvmm.median);
  });

  it('serial-flood and pit with the peers absent: tables, JSON and a chart', () => {
    const json = join(scratch, 'bench.json');
    const chart = join(scratch, 'bench.svg');
    const r = bench(['pit', 'serial-flood', '--runs', '1', '--bytes', '300', '--json', json, '--chart', chart], { TSVMM_KVMTOOL: 'none', TSVMM_QEMU: 'none' });
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/## serial-flood/);
    expect(r.stdout).toMatch(/kvmtool\s+pipe \(\| wc -c\)\s+not installed/);
    expect(r.stdout).toMatch(/QEMU\s+file\s+not installed/);
    expect(r.stdout).toMatch(/tsvmm \(TypeScript\)/);
    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report.options.suites).toEqual(['serial-flood', 'pit']);
    expect(report.results['serial-flood'].rows.find((row: { vmm: string }) => row.vmm === 'tsvmm').bytesPerSecond.median).toBeGreaterThan(0);
    expect(report.results.pit).toHaveLength(2);
    const svg = readFileSync(chart, 'utf8');
    expect(svg).toMatch(/^<svg /);
    expect(svg).toContain('kvmtool: not installed');
  });

  it('a peer that fails is a row saying why in every suite that runs peers, and the run goes on', () => {
    // A QEMU that aborts at start as Debian's does with -cpu host on an AMD PVM
    // host, and a kvmtool that refuses the host: both after printing why.
    const fakeQemu = join(scratch, 'fake-qemu');
    writeFileSync(fakeQemu, [
      '#!/bin/sh',
      'if [ "$1" = --version ]; then echo "QEMU emulator version 0.0 (fake)"; exit 0; fi',
      'echo "qemu-system-x86_64: warning: host doesn\'t support requested feature" >&2',
      'echo "qemu-system-x86_64: kvm_buf_set_msrs: Assertion failed (fake)" >&2',
      'kill -ABRT $$',
      '',
    ].join('\n'));
    const fakeKvmtool = join(scratch, 'fake-lkvm');
    writeFileSync(fakeKvmtool, '#!/bin/sh\nif [ "$1" = version ]; then echo "kvm tool 0.0 (fake)"; exit 0; fi\necho "  Error: no vmx" >&2\nexit 1\n');
    chmodSync(fakeQemu, 0o755);
    chmodSync(fakeKvmtool, 0o755);
    const json = join(scratch, 'failing-peers.json');
    const r = bench(['serial-flood', 'startup', 'memory', '--runs', '2', '--bytes', '200', '--json', json], { TSVMM_QEMU: fakeQemu, TSVMM_KVMTOOL: fakeKvmtool }, 280_000);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.status).toBe(0);
    const qemuFailed = 'QEMU failed: qemu-system-x86_64: kvm_buf_set_msrs: Assertion failed (fake)';
    const kvmtoolFailed = 'kvmtool failed: Error: no vmx';
    expect(r.stdout).toMatch(/## serial-flood[^]*## startup[^]*## memory/);
    for (const suite of ['serial-flood', 'startup', 'memory']) {
      const section = r.stdout.split(`## ${suite} `)[1]!.split('\n## ')[0]!;
      expect(section, suite).toContain(qemuFailed);
      expect(section, suite).toContain(kvmtoolFailed);
    }
    // Each failing peer is tried once per suite, then left out.
    expect(r.stderr.split('\n').filter((line) => line.includes(qemuFailed))).toHaveLength(3);
    const report = JSON.parse(readFileSync(json, 'utf8'));
    const tsvmmFlood = report.results['serial-flood'].rows.find((row: { vmm: string }) => row.vmm === 'tsvmm');
    expect(tsvmmFlood.bytesPerSecond.samples).toHaveLength(2);
    const memoryRows = report.results.memory.rows as { vmm: string; pssBeyondGuest: { median: number } | null; failed?: string }[];
    expect(memoryRows.find((row) => row.vmm === 'QEMU')!.failed).toBe(qemuFailed);
    for (const vmm of ['tsvmm', 'tsvmm --cpus 2', 'tsvmm + virtio']) expect(memoryRows.find((row) => row.vmm === vmm)!.pssBeyondGuest!.median, vmm).toBeGreaterThan(0);
  }, 300_000);
});
