// human-monitor-command's text against what QEMU 7.2's HMP prints for the
// same state (captured from Debian's qemu-system-x86_64 7.2).

import { describe, expect, it } from 'vitest';
import { runHmpCommand } from '../src/qmp/hmp.ts';
import { formatRegisters, qemuSegmentFlags } from '../src/qmp/registers-dump.ts';
import type { BlockInfo, CpuRegisters } from '../src/qmp/target.ts';
import { FakeMachine, RESET_REGISTERS } from './helpers/qmp-fake-machine.ts';

const hmp = (machine: FakeMachine, line: string, cpu = 0) => runHmpCommand(machine, line, cpu);

describe('info status', () => {
  it('prints QEMU\'s line for each run state', async () => {
    const machine = new FakeMachine();
    expect(await hmp(machine, 'info status')).toBe('VM status: paused (prelaunch)\r\n');
    machine.state = 'running';
    expect(await hmp(machine, 'info status')).toBe('VM status: running\r\n');
    machine.state = 'paused';
    expect(await hmp(machine, '  info   status  ')).toBe('VM status: paused\r\n');
    machine.state = 'postmigrate';
    expect(await hmp(machine, 'info status')).toBe('VM status: paused (postmigrate)\r\n');
  });
});

describe('HMP parsing', () => {
  it('answers unknown commands, extra words and an empty line as QEMU does', async () => {
    const machine = new FakeMachine();
    expect(await hmp(machine, 'nonesuch')).toBe("unknown command: 'nonesuch'\r\n");
    expect(await hmp(machine, 'info nonesuch')).toBe("unknown command: 'info nonesuch'\r\n");
    expect(await hmp(machine, 'info status foo')).toBe('status: extraneous characters at the end of line\r\nTry "help info status" for more information\r\n');
    expect(await hmp(machine, '')).toBe('');
  });

  it('`info` alone lists the info commands in QEMU\'s help format', async () => {
    const text = await hmp(new FakeMachine(), 'info');
    expect(text).toContain('info status  -- show the current VM status (running|paused)\r\n');
    expect(text).toContain('info block [-n] [-v] [device] -- show info of one block device or all block devices');
    expect(text.endsWith('\r\n')).toBe(true);
  });
});

describe('info cpus, name, uuid, version, kvm', () => {
  it('marks HMP\'s current vCPU with *', async () => {
    const machine = new FakeMachine({ cpus: [{ index: 0, threadId: 9019 }, { index: 1, threadId: 9020 }] });
    expect(await hmp(machine, 'info cpus')).toBe('* CPU #0: thread_id=9019\r\n  CPU #1: thread_id=9020\r\n');
    expect(await hmp(machine, 'info cpus', 1)).toBe('  CPU #0: thread_id=9019\r\n* CPU #1: thread_id=9020\r\n');
  });

  it('prints the name (nothing without one), the uuid, the version and KVM', async () => {
    expect(await hmp(new FakeMachine(), 'info name')).toBe('');
    expect(await hmp(new FakeMachine({ name: 'vm1' }), 'info name')).toBe('vm1\r\n');
    expect(await hmp(new FakeMachine(), 'info uuid')).toBe('00000000-0000-0000-0000-000000000000\r\n');
    expect(await hmp(new FakeMachine(), 'info version')).toMatch(/^7\.2\.0tsvmm \S+\r\n$/);
    expect(await hmp(new FakeMachine(), 'info kvm')).toBe('kvm support: enabled\r\n');
  });
});

describe('info registers', () => {
  // QEMU 7.2 `info registers` right after reset, from the RIP line's CPL on
  // (II/A20/SMM/HLT) and the FPU lines cut, which CpuRegisters does not carry.
  const qemuAtReset = [
    '', 'CPU#0',
    'EAX=00000000 EBX=00000000 ECX=00000000 EDX=00060fb1',
    'ESI=00000000 EDI=00000000 EBP=00000000 ESP=00000000',
    'EIP=0000fff0 EFL=00000002 [-------] CPL=0',
    'ES =0000 00000000 0000ffff 00009300',
    'CS =f000 ffff0000 0000ffff 00009b00',
    'SS =0000 00000000 0000ffff 00009300',
    'DS =0000 00000000 0000ffff 00009300',
    'FS =0000 00000000 0000ffff 00009300',
    'GS =0000 00000000 0000ffff 00009300',
    'LDT=0000 00000000 0000ffff 00008200',
    'TR =0000 00000000 0000ffff 00008b00',
    'GDT=     00000000 0000ffff',
    'IDT=     00000000 0000ffff',
    'CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000',
    'DR0=0000000000000000 DR1=0000000000000000 DR2=0000000000000000 DR3=0000000000000000 ',
    'DR6=00000000ffff0ff0 DR7=0000000000000400',
    'EFER=0000000000000000',
    '',
  ].join('\r\n');

  it('prints the reset state as QEMU does', async () => {
    expect(await hmp(new FakeMachine(), 'info registers')).toBe(qemuAtReset);
  });

  it('picks the vCPU: none (the current), a number, -a; an absent one is not available', async () => {
    const machine = new FakeMachine({ cpus: [{ index: 0, threadId: 1 }, { index: 1, threadId: 2 }] });
    expect(await hmp(machine, 'info registers', 1)).toMatch(/^\r\nCPU#1\r\n/);
    expect(await hmp(machine, 'info registers 0')).toMatch(/^\r\nCPU#0\r\n/);
    const all = await hmp(machine, 'info registers -a');
    expect(all.match(/CPU#\d/g)).toEqual(['CPU#0', 'CPU#1']);
    expect(await hmp(machine, 'info registers 3')).toBe('CPU#3 not available\r\n');
    expect(await hmp(machine, 'info registers x')).toBe('invalid char \'x\' in expression\r\nTry "help info registers" for more information\r\n');
    expect(await hmp(machine, 'info registers 1 2')).toBe('registers: extraneous characters at the end of line\r\nTry "help info registers" for more information\r\n');
    expect(machine.calls).toEqual(['registers 1', 'registers 0', 'registers 0', 'registers 1']);
  });

  it('uses the 64-bit layout in long mode, with QEMU\'s decoded segment types', () => {
    const code64 = qemuSegmentFlags({ type: 0xb, s: 1, dpl: 0, present: 1, avl: 0, l: 1, db: 0, g: 1 });
    const data = qemuSegmentFlags({ type: 0x3, s: 1, dpl: 0, present: 1, avl: 0, l: 0, db: 1, g: 1 });
    const tss = qemuSegmentFlags({ type: 0xb, s: 0, dpl: 0, present: 1, avl: 0, l: 0, db: 0, g: 0 });
    expect(code64).toBe(0xa09b00);
    expect(data).toBe(0xc09300);
    const regs: CpuRegisters = {
      general: { ...RESET_REGISTERS.general, RAX: 0x1122334455667788n, R8: 8n, RIP: 0xffffffff81000000n, RFL: 0x246n },
      segments: {
        ...RESET_REGISTERS.segments,
        CS: { selector: 0x10, base: 0n, limit: 0xffffffff, flags: code64 },
        SS: { selector: 0x18, base: 0n, limit: 0xffffffff, flags: data },
        DS: { selector: 0x18, base: 0n, limit: 0xffffffff, flags: data },
        TR: { selector: 0x28, base: 0xfffffe0000003000n, limit: 0x67, flags: tss },
      },
      control: { CR0: 0x80050033n, CR2: 0x7f0000001000n, CR3: 0x1000n, CR4: 0x20n, EFER: 0xd01n },
      descriptorTables: { GDT: { base: 0xfffffe0000001000n, limit: 0x7f }, IDT: { base: 0xfffffe0000000000n, limit: 0xfff } },
    };
    const lines = formatRegisters(regs).split('\n');
    expect(lines.slice(0, 5)).toEqual([
      'RAX=1122334455667788 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000060fb1',
      'RSI=0000000000000000 RDI=0000000000000000 RBP=0000000000000000 RSP=0000000000000000',
      'R8 =0000000000000008 R9 =0000000000000000 R10=0000000000000000 R11=0000000000000000',
      'R12=0000000000000000 R13=0000000000000000 R14=0000000000000000 R15=0000000000000000',
      'RIP=ffffffff81000000 RFL=00000246 [---Z-P-] CPL=0',
    ]);
    expect(lines).toContain('CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]');
    expect(lines).toContain('SS =0018 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]');
    expect(lines).toContain('TR =0028 fffffe0000003000 00000067 00008b00 DPL=0 TSS64-busy');
    expect(lines).toContain('GDT=     fffffe0000001000 0000007f');
    expect(lines).toContain('CR0=80050033 CR2=00007f0000001000 CR3=0000000000001000 CR4=00000020');
    expect(lines).toContain('EFER=0000000000000d01');
    expect(lines.some((line) => line.startsWith('DR'))).toBe(false);
  });
});

describe('info block', () => {
  const disks: BlockInfo[] = [
    { device: 'virtio0', qdev: '/machine/peripheral-anon/device[0]/virtio-backend', file: 'o.qcow2', format: 'qcow2', readOnly: false, virtualSize: 64 << 20, backingFile: 'd.qcow2' },
    { device: 'virtio1', qdev: '/machine/peripheral-anon/device[1]/virtio-backend', file: 'd.qcow2', format: 'qcow2', readOnly: true, virtualSize: 64 << 20, backingFile: null },
  ];

  it('prints QEMU\'s layout (without the node names tsvmm does not have)', async () => {
    const machine = new FakeMachine({ disks });
    expect(await hmp(machine, 'info block')).toBe(
      'virtio0: o.qcow2 (qcow2)\r\n'
      + '    Attached to:      /machine/peripheral-anon/device[0]/virtio-backend\r\n'
      + '    Cache mode:       writeback\r\n'
      + '    Backing file:     d.qcow2 (chain depth: 1)\r\n'
      + '\r\n'
      + 'virtio1: d.qcow2 (qcow2, read-only)\r\n'
      + '    Attached to:      /machine/peripheral-anon/device[1]/virtio-backend\r\n'
      + '    Cache mode:       writeback\r\n',
    );
    expect(await hmp(machine, 'info block -v virtio1')).toMatch(/^virtio1: d\.qcow2/);
    expect(await hmp(machine, 'info block virtio9')).toBe('');
  });
});
