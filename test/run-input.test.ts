// `tsvmm run` with bad input, through the real CLI: each mistake is one line
// on stderr and exit status 2, found on the main thread before a guest runs.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { firmwarePath } from '../bench/lib/artifacts.ts';
import { fakeVmlinux } from './helpers/fake-kernels.ts';
import { hasKvm, TSVMM } from './helpers/kvm.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-run-input-'));
const hello = firmwarePath('hello');
// A kernel tsvmm loads (ELF with a PVH entry); these tests never let it run.
const kernel = join(scratch, 'vmlinux');
writeFileSync(kernel, fakeVmlinux({ pvhEntry: 0x1000000 }));

/**
 * Runs tsvmm with no PATH and a scratch cache: were an input mistake taken for
 * "no guest given", the default guest's build would fail at once here instead
 * of downloading and compiling Linux.
 */
function run(args: string[]) {
  const r = spawnSync(process.execPath, [TSVMM, 'run', ...args], {
    encoding: 'utf8',
    input: '',
    timeout: 60_000,
    env: { ...process.env, NODE_NO_WARNINGS: '1', PATH: join(scratch, 'no-tools'), XDG_CACHE_HOME: join(scratch, 'cache') },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.replace(/^tsvmm: note: this host is PVM.*\n/m, '') };
}

function expectBadInput(args: string[], message: RegExp): void {
  const r = run(args);
  expect(r.stderr).toMatch(message);
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(r.stdout).toBe('');
  expect(r.status).toBe(2);
}

describe.skipIf(!hasKvm)('run: an empty value is an error, never "not given"', () => {
  const cases: [string, string[]][] = [
    ['--flat', ['--flat', '']],
    ['--kernel', ['-k', '']],
    ['--initrd', ['-k', kernel, '-i', '']],
    ['--system-map', ['-k', kernel, '--system-map', '']],
    ['--append', ['-k', kernel, '-p', '']],
    ['--mem', ['--flat', hello, '--mem', '']],
    ['--pit', ['--flat', hello, '--pit', '']],
    ['--disk', ['--flat', hello, '--irqchip', '--disk', '']],
    ['--net', ['--flat', hello, '--irqchip', '--net', '']],
    ['--device', ['--flat', hello, '--irqchip', '--device', '']],
    ['--console', ['--flat', hello, '--console', '']],
    ['--virtio-transport', ['--flat', hello, '--virtio-transport', '']],
    ['--shutdown-timeout', ['--flat', hello, '--shutdown-timeout', '']],
  ];
  for (const [flag, args] of cases) {
    it(`${flag} ''`, () => expectBadInput(args, new RegExp(`^tsvmm: ${flag}: empty value\n$`)));
  }
});

describe.skipIf(!hasKvm)('run: --shutdown-timeout takes seconds', () => {
  for (const bad of ['0', '-1', 'soon', '1e3', '90000']) {
    it(`--shutdown-timeout ${bad}`, () => expectBadInput(['--flat', hello, '--shutdown-timeout', bad], /^tsvmm: --shutdown-timeout .*: expected seconds, more than 0 and at most 86400\n$/));
  }
});

describe.skipIf(!hasKvm)('run: options that belong to a kernel, without one', () => {
  it('--initrd without --kernel (it would boot the default guest and drop the initrd)', () => {
    expectBadInput(['-i', hello], /^tsvmm: --initrd needs --kernel\n$/);
  });

  it('--system-map without --kernel', () => {
    expectBadInput(['--system-map', join(scratch, 'System.map')], /^tsvmm: --system-map needs --kernel\n$/);
  });

  it('--initrd or --append with --flat', () => {
    expectBadInput(['--flat', hello, '-i', hello], /^tsvmm: --initrd needs --kernel\n$/);
    expectBadInput(['--flat', hello, '-p', 'quiet'], /^tsvmm: --append needs --kernel/);
  });
});

describe.skipIf(!hasKvm)('run: a --system-map that is not one is bad input, checked before the guest starts', () => {
  const dir = join(scratch, 'a-directory');
  mkdirSync(dir);
  const garbage = join(scratch, 'garbage.map');
  writeFileSync(garbage, 'these are not the symbols you are looking for\n\x00\x01\x02');
  const empty = join(scratch, 'empty.map');
  writeFileSync(empty, '');

  it('a directory', () => expectBadInput(['-k', kernel, '--system-map', dir], /^tsvmm: System\.map .*a-directory is not a file\n$/));
  it('a missing file', () => expectBadInput(['-k', kernel, '--system-map', join(scratch, 'nope')], /^tsvmm: System\.map .*nope: no such file\n$/));
  it('an empty file', () => expectBadInput(['-k', kernel, '--system-map', empty], /^tsvmm: System\.map .*empty\.map is empty\n$/));
  it('garbage', () => expectBadInput(['-k', kernel, '--system-map', garbage], /^tsvmm: System\.map .*garbage\.map: no kernel text symbols in it/));
});
