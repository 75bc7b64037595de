// `--trace exits`: one line per exit, and a table of counts when the VM ends.
// The run loop calls this only when tracing is on.
import { IoDirection, exitReasonName, RunOffset, ExitReason } from '../kvm/index.ts';
import { hex } from '../hex.ts';

export interface TraceSink {
  line(text: string): void;
}

export class ExitTracer {
  private readonly byReason = new Map<string, number>();
  private readonly byTarget = new Map<string, number>();
  total = 0;

  constructor(private readonly sink: TraceSink) {}

  /** Called after the exit was handled, so reads show what the device returned. */
  record(run: DataView, reason: number): void {
    this.total++;
    const name = exitReasonName(reason);
    this.bump(this.byReason, name);
    if (reason === ExitReason.KVM_EXIT_IO) {
      const out = run.getUint8(RunOffset.ioDirection) === IoDirection.KVM_EXIT_IO_OUT;
      const size = run.getUint8(RunOffset.ioSize);
      const port = run.getUint16(RunOffset.ioPort, true);
      const count = run.getUint32(RunOffset.ioCount, true);
      const dataOffset = Number(run.getBigUint64(RunOffset.ioDataOffset, true));
      const values: string[] = [];
      for (let i = 0; i < Math.min(count, 16); i++) values.push(hex(readData(run, dataOffset + i * size, size), size * 2));
      const more = count > 16 ? ` …(${count} items)` : '';
      const dir = out ? 'out' : 'in';
      this.bump(this.byTarget, `IO ${dir.padEnd(3)} port ${hex(port, 4)}`);
      this.sink.line(`exit IO ${dir} port=${hex(port, 4)} size=${size}${count > 1 ? ` count=${count}` : ''} data=${values.join(',')}${more}`);
    } else if (reason === ExitReason.KVM_EXIT_MMIO) {
      const write = run.getUint8(RunOffset.mmioIsWrite) !== 0;
      const len = run.getUint32(RunOffset.mmioLen, true);
      const address = run.getBigUint64(RunOffset.mmioPhysAddr, true);
      const data: string[] = [];
      for (let i = len - 1; i >= 0; i--) data.push(run.getUint8(RunOffset.mmioData + i).toString(16).padStart(2, '0'));
      const dir = write ? 'write' : 'read';
      this.bump(this.byTarget, `MMIO ${dir.padEnd(5)} ${hex(address & ~0xfffn)} page`);
      this.sink.line(`exit MMIO ${dir} addr=${hex(address)} len=${len} data=0x${data.join('')}`);
    } else {
      this.sink.line(`exit ${name}`);
    }
  }

  /** The summary table: counts per exit reason, then per port / MMIO page. */
  summary(): string {
    const rows: string[] = [`exits: ${this.total}`];
    const table = (title: string, map: Map<string, number>) => {
      if (map.size === 0) return;
      rows.push(title);
      const width = Math.max(...[...map.keys()].map((k) => k.length));
      for (const [key, count] of [...map.entries()].sort((a, b) => b[1] - a[1])) {
        rows.push(`  ${key.padEnd(width)}  ${String(count).padStart(10)}`);
      }
    };
    table('by reason:', this.byReason);
    table('by port / address:', this.byTarget);
    return rows.join('\n');
  }

  private bump(map: Map<string, number>, key: string): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }
}

function readData(run: DataView, at: number, size: number): number {
  return size === 1 ? run.getUint8(at) : size === 2 ? run.getUint16(at, true) : run.getUint32(at, true);
}
