// What a saved machine must share with the one it is restored into
// (src/control/machine-shape.ts), and the line that says what differs.
import { describe, expect, it } from 'vitest';
import { describeShapeMismatch, machineShape } from '../../src/control/machine-shape.ts';
import type { MachineConfig } from '../../src/machine/config.ts';

const MIB = 2 ** 20;
const kernel: MachineConfig = { memoryBytes: 64 * MIB, linux: { kernel: '/guests/counter.elf', cmdline: 'pages=16' } };
const flat: MachineConfig = { memoryBytes: 1 * MIB, flat: { path: '/guests/hello.bin' } };

/** The header a stream carries: the shape as JSON, read back. */
const saved = (config: MachineConfig): unknown => JSON.parse(JSON.stringify(machineShape(config)));

describe('machineShape', () => {
  it('fills in the defaults: one vCPU, the host CPU model, the TypeScript PIT, a serial console, the default isa-debug-exit, no pc-testdev, no pvpanic', () => {
    expect(machineShape(kernel)).toEqual({
      memoryBytes: 64 * MIB, cpus: 1, cpu: JSON.stringify({ name: 'host', features: {} }), guest: 'kernel', irqchip: true, pit: 'tsvmm', console: 'serial',
      debugExit: 'default', pcTestdev: false, pvpanic: false, fwCfgFiles: [], virtio: [],
    });
    expect(machineShape(flat)).toMatchObject({ guest: 'flat', irqchip: false });
  });

  it('has the irqchip wherever the builder makes one: a kernel, --irqchip, --pit kernel, more than one vCPU', () => {
    expect(machineShape({ ...flat, irqchip: true }).irqchip).toBe(true);
    expect(machineShape({ ...flat, pit: 'kernel' }).irqchip).toBe(true);
    expect(machineShape({ ...flat, cpus: 2 }).irqchip).toBe(true);
  });

  it('names each virtio device by kind and transport, a read-only disk as such, and no file path', () => {
    const config: MachineConfig = {
      ...kernel, virtioTransport: 'pci',
      virtio: [{ kind: 'blk', path: '/a.img', readOnly: true }, { kind: 'blk', path: '/b.qcow2', transport: 'mmio' }, { kind: 'rng' }],
    };
    expect(machineShape(config).virtio).toEqual(['blk:pci:ro', 'blk:mmio', 'rng:pci']);
    expect(JSON.stringify(machineShape(config))).not.toMatch(/a\.img|b\.qcow2/);
  });
});

describe('describeShapeMismatch', () => {
  it('takes a shape saved before pvpanic existed as one without it', () => {
    const older: Record<string, unknown> = { ...machineShape(kernel) };
    delete older.pvpanic;
    expect(describeShapeMismatch(JSON.parse(JSON.stringify(older)), machineShape(kernel))).toBeNull();
    expect(describeShapeMismatch(JSON.parse(JSON.stringify(older)), machineShape({ ...kernel, pvpanic: true })))
      .toBe('the saved machine does not match this one: pvpanic false there, true here');
  });

  it('passes the same machine, with its disk at another path and another guest command line', () => {
    const here: MachineConfig = { ...kernel, virtio: [{ kind: 'blk', path: '/here/disk.img' }] };
    const there: MachineConfig = { ...kernel, linux: { kernel: '/elsewhere/counter.elf', cmdline: 'other' }, virtio: [{ kind: 'blk', path: '/there/disk.img' }] };
    expect(describeShapeMismatch(saved(there), machineShape(here))).toBeNull();
  });

  it('names the first difference, with both values', () => {
    expect(describeShapeMismatch(saved(kernel), machineShape({ ...kernel, memoryBytes: 128 * MIB })))
      .toBe(`the saved machine does not match this one: RAM bytes ${64 * MIB} there, ${128 * MIB} here`);
    expect(describeShapeMismatch(saved({ ...kernel, cpus: 2 }), machineShape(kernel)))
      .toBe('the saved machine does not match this one: vCPUs 2 there, 1 here');
    expect(describeShapeMismatch(saved(kernel), machineShape(flat)))
      .toMatch(/^the saved machine does not match this one: RAM bytes /);
    expect(describeShapeMismatch(saved({ ...kernel, pit: 'kernel' }), machineShape(kernel)))
      .toBe('the saved machine does not match this one: PIT "kernel" there, "tsvmm" here');
    expect(describeShapeMismatch(saved({ ...kernel, virtio: [{ kind: 'blk', path: '/d', readOnly: true }] }), machineShape({ ...kernel, virtio: [{ kind: 'blk', path: '/d' }] })))
      .toBe('the saved machine does not match this one: virtio devices ["blk:mmio:ro"] there, ["blk:mmio"] here');
    expect(describeShapeMismatch(saved({ ...kernel, debugExit: { port: 0xf4, size: 4 } }), machineShape(kernel)))
      .toBe('the saved machine does not match this one: isa-debug-exit "244/4" there, "default" here');
    expect(describeShapeMismatch(saved(kernel), machineShape({ ...kernel, pvpanic: true })))
      .toBe('the saved machine does not match this one: pvpanic false there, true here');
  });

  it('says "missing" for a member the saved header lacks, and refuses a header with no machine', () => {
    const withoutConsole: Partial<ReturnType<typeof machineShape>> = machineShape(kernel);
    delete withoutConsole.console;
    expect(describeShapeMismatch(withoutConsole, machineShape(kernel)))
      .toBe('the saved machine does not match this one: console missing there, "serial" here');
    for (const header of [undefined, null, 'a machine', 42]) {
      expect(describeShapeMismatch(header, machineShape(kernel))).toBe('the stream names no machine (damaged header)');
    }
  });
});
