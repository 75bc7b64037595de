// Flat guests from firmware/ run through real KVM exits: the tsvmm command as
// a user runs it, and the Machine API where a test needs its own device.
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exitLoopImage, ExitLoopOp, firmwarePath, ROOT } from '../bench/lib/artifacts.ts';
import { Machine } from '../src/machine/machine.ts';
import { detectVirtualization } from '../src/kvm/index.ts';
import { VM_FAILURE_STATUS } from '../src/vcpu/index.ts';
import { hasKvm, TSVMM, tsvmm } from './helpers/kvm.ts';
import { spawn } from 'node:child_process';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-test-'));

describe.skipIf(!hasKvm)('tsvmm run --flat', () => {
  it('hello: prints over COM1 and ends through debug-exit with status 1', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('hello')]);
    expect(r.stdout).toBe('Hello from tsvmm guest\n');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(1);
  });

  it('exitcode: a debug-exit write of 0x2a ends tsvmm with status (0x2a << 1) | 1 = 85', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('exitcode'), '--mem', '16M']);
    expect(r.stdout).toBe('bye\n');
    expect(r.status).toBe(85);
  });

  it('string I/O with a count above one delivers every item', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('stringio')]);
    expect(r.stdout).toContain('String I/O OK\n');
    expect(r.status).toBe(1);
  });

  it('--trace exits prints each exit and a table whose counts match the guest', () => {
    const iterations = 1000;
    const image = exitLoopImage({ iterations, op: ExitLoopOp.OUT8, value: 0x5a });
    const r = tsvmm(['run', '--flat', image, '--trace', 'exits']);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('exitloop done\n');
    const lines = r.stderr.split('\n');
    expect(lines.filter((l) => l === 'exit IO out port=0x0520 size=1 data=0x5a')).toHaveLength(iterations);
    // Table: every loop iteration, 14 bytes of "exitloop done\n", one debug-exit write.
    expect(r.stderr).toMatch(new RegExp(`^exits: ${iterations + 15}$`, 'm'));
    expect(r.stderr).toMatch(new RegExp(`^  IO +${iterations + 15}$`, 'm'));
    expect(r.stderr).toMatch(new RegExp(`^  IO out port 0x0520 +${iterations}$`, 'm'));
    expect(r.stderr).toMatch(/^ {2}IO out port 0x03f8 +14$/m);
    expect(r.stderr).toMatch(/^ {2}IO out port 0x0501 +1$/m);
  });

  it('a guest that halts with interrupts disabled ends tsvmm with a clear message and status 4, never a debug-exit status', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('halt')]);
    expect(r.status).toBe(VM_FAILURE_STATUS);
    expect(r.stderr).toMatch(/^tsvmm: guest halted at RIP 0x[0-9a-f]+ .* with interrupts disabled: nothing can wake it\n$/);
  });

  it('SIGINT (Ctrl-C) stops a guest that never exits by itself', async () => {
    const child = spawn(process.execPath, [TSVMM, 'run', '--flat', firmwarePath('spin')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    setTimeout(() => child.kill('SIGINT'), 3000);
    const status = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    expect(stderr).toBe('tsvmm: stopped\n');
    expect(status).toBe(130);
  });

  it('with an in-kernel irqchip (HLT stays in KVM), a halt with interrupts disabled is still found and reported', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('halt'), '--irqchip']);
    expect(r.status).toBe(VM_FAILURE_STATUS);
    expect(r.stderr).toMatch(/^tsvmm: guest halted at RIP 0x[0-9a-f]+ .* with interrupts disabled: nothing can wake it\n$/);
  });

  it('a triple fault is reported as such, with status 4', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('triplefault')]);
    expect(r.status).toBe(VM_FAILURE_STATUS);
    expect(r.stderr).toMatch(/^tsvmm: guest triple-faulted at RIP 0x[0-9a-f]+/);
  });
});

describe.skipIf(!hasKvm)('bad input: one line on stderr, exit status 2', () => {
  const empty = join(scratch, 'empty.bin');
  writeFileSync(empty, '');
  const cases: [string, string[], RegExp][] = [
    ['a missing file', ['run', '--flat', join(scratch, 'nope.bin')], /nope\.bin: no such file/],
    ['an empty file', ['run', '--flat', empty], /empty\.bin is empty/],
    ['a directory', ['run', '--flat', scratch], /is not a file/],
    ['--mem 0', ['run', '--flat', firmwarePath('hello'), '--mem', '0'], /--mem 0: a guest needs at least/],
    ['--mem 1T', ['run', '--flat', firmwarePath('hello'), '--mem', '1T'], /--mem 1T: more than this host's/],
    ['--mem nonsense', ['run', '--flat', firmwarePath('hello'), '--mem', 'lots'], /not a size/],
    ['an unknown trace kind', ['run', '--flat', firmwarePath('hello'), '--trace', 'everything'], /--trace everything: unknown/],
    ['an unknown option', ['run', '--flatt', 'x'], /unknown option/],
    ['an unknown command', ['runn'], /unknown command/],
  ];
  for (const [what, args, message] of cases) {
    it(what, () => {
      const r = tsvmm(args);
      expect(r.status).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trimEnd().split('\n').filter((l) => !/^\(Did you mean/.test(l))).toHaveLength(1);
    });
  }

  it('a file that is not a kernel, and a truncated kernel', () => {
    const junk = join(scratch, 'junk.bin');
    writeFileSync(junk, Buffer.alloc(300, 0x5a));
    let r = tsvmm(['run', '-k', junk]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`tsvmm: ${junk}: no bzImage header, no ELF header and no multiboot header in its first 8 KiB; tsvmm boots a Linux bzImage, a 64-bit ELF vmlinux, or a multiboot v1 kernel\n`);
    const truncated = join(scratch, 'truncated-vmlinux');
    const elf = Buffer.alloc(200);
    elf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
    elf.writeUInt16LE(62, 18);
    elf.writeBigUInt64LE(64n, 32);
    elf.writeUInt16LE(56, 54);
    elf.writeUInt16LE(4, 56); // four program headers: more than the file holds
    writeFileSync(truncated, elf);
    r = tsvmm(['run', '-k', truncated]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^tsvmm: .*truncated-vmlinux: truncated ELF file \(the program header table lies past its 200 bytes\)\n$/);
  });

  it('a file too large for guest RAM', () => {
    const big = join(scratch, 'big.bin');
    writeFileSync(big, Buffer.alloc(2 * 1024 * 1024, 0x90));
    const r = tsvmm(['run', '--flat', big, '--mem', '1M']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/does not fit in guest RAM/);
  });
});

describe.skipIf(!hasKvm)('Machine', () => {
  it('MMIO of 1, 2, 4 and 8 bytes reaches the device both ways', async () => {
    const consoleFile = join(scratch, 'mmio.out');
    const fd = openSync(consoleFile, 'w');
    const machine = Machine.create({
      memoryBytes: 32 << 20,
      flat: { path: firmwarePath('mmio') },
      deviceModules: [join(ROOT, 'test', 'devices', 'mmio-probe.ts')],
      consoleFd: fd,
    });
    const result = await machine.run();
    closeSync(fd);
    machine.close();
    expect(result.stop).toMatchObject({ cause: 'debug-exit', status: 1 });
    expect(result.reports[0]).toEqual(['1@0=11', '2@8=2233', '4@16=44556677', '8@24=8899aabbccddeeff']);
    expect(readFileSync(consoleFile, 'utf8')).toBe('mmio r1=A0 r2=B0D8 r4=C0C00030 r8=D1D2D3D400000038\n');
  });

  it('the main thread stops a vCPU that is running inside KVM_RUN', async () => {
    const machine = Machine.create({ memoryBytes: 16 << 20, flat: { path: firmwarePath('spin') } });
    const running = machine.run();
    await new Promise((r) => setTimeout(r, 300));
    machine.stop();
    const result = await running;
    machine.close();
    expect(result.stop.cause).toBe('stopped');
    // The guest spins in ring 3 without exits: only the kick made KVM_RUN return.
    expect(result.exits).toBeLessThanOrEqual(2);
  });

  it('unclaimed ports and MMIO are counted, read as all-ones and do not stop the guest', async () => {
    const image = exitLoopImage({ iterations: 50, op: ExitLoopOp.IN8, port: 0x600 });
    const machine = Machine.create({ memoryBytes: 16 << 20, flat: { path: image }, consoleFd: 2 });
    const result = await machine.run();
    machine.close();
    expect(result.stop).toMatchObject({ cause: 'debug-exit', status: 1 });
    expect(result.unclaimed.pio).toBe(50);
  });
});

describe.skipIf(!hasKvm)('guest CPUID', () => {
  it('the guest sees the hypervisor bit, and on PVM no CX16 (its emulator cannot run cmpxchg16b)', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('cpuid')]);
    expect(r.status).toBe(1);
    const m = /^cpuid\.1 ecx=([0-9A-F]{8}) edx=([0-9A-F]{8})$/m.exec(r.stdout);
    expect(m).not.toBeNull();
    const ecx = parseInt(m![1]!, 16);
    expect(ecx >>> 31).toBe(1);
    if (detectVirtualization().kind === 'pvm') expect((ecx >>> 13) & 1).toBe(0);
  });
});

describe.skipIf(!hasKvm)('tsvmm check', () => {
  it('names this host\'s virtualization and exits 0 when guests can run', () => {
    const r = tsvmm(['check']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\/dev\/kvm: present/m);
    expect(r.stdout).toMatch(/^KVM API version: 12$/m);
    expect(r.stdout).toMatch(/^virtualization: (PVM|VMX|SVM)/m);
    expect(r.stdout).toMatch(/KVM_CAP_IMMEDIATE_EXIT +yes \(required\)/);
  });
});
