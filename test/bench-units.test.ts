// The benchmark's pure parts: statistics, tables, the chart, the ROM wrapper
// for QEMU, and the parsers of /proc/PID/smaps and the PIT guest's line.
import { describe, expect, it } from 'vitest';
import { escapeXml, formatTick, formatValue, niceStep, renderChart } from '../bench/lib/chart.ts';
import { flatToRom, MAX_PAYLOAD, ROM_SIZE } from '../bench/lib/flat-rom.ts';
import { markdownTables, summarize, table } from '../bench/lib/stats.ts';
import type { ChartPanel } from '../bench/lib/suite.ts';
import { chartMemory, formatMemory, parseSmaps, type MemoryResult } from '../bench/memory.ts';
import { formatStartup, type StartupResult } from '../bench/startup.ts';
import { parsePitLine } from '../bench/pit.ts';
import { formatExits, chartExits, type ExitsRow } from '../bench/exits.ts';
import { formatSerialFlood, chartSerialFlood, type FloodResult } from '../bench/serial-flood.ts';

describe('statistics', () => {
  it('median, min and max of odd and even counts, samples kept in their order', () => {
    expect(summarize([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, samples: [3, 1, 2] });
    expect(summarize([4, 1, 3, 2])).toMatchObject({ median: 2.5, min: 1, max: 4 });
    expect(summarize([7])).toMatchObject({ median: 7, min: 7, max: 7 });
  });

  it('tables align: the first column left, the others right', () => {
    const text = table(['name', 'value'], [['a', '1'], ['longer', '12345']]);
    expect(text.split('\n')).toEqual([
      'name    value',
      '------  -----',
      'a           1',
      'longer  12345',
    ]);
  });

  it('text tables become Markdown tables, with the text around them kept', () => {
    const text = `${table(['exit', 'note'], [['PIO out', 'a | b'], ['MMIO read', '']])}\n\ngoal met.`;
    expect(markdownTables(text)).toBe('| exit | note |\n|---|---|\n| PIO out | a \\| b |\n| MMIO read |  |\n\ngoal met.');
  });
});

const s = (median: number, min = median, max = median) => ({ median, min, max, samples: [median] });

describe('suite output', () => {
  const exits: ExitsRow[] = [
    { op: 'PIO out', cpl: 3, iterations: 100, c: s(60000, 59000, 61000), tsvmm: s(61000), ratio: 61000 / 60000 },
    { op: 'PIO out', cpl: 0, iterations: 100, c: s(8000), tsvmm: s(9000), ratio: 9 / 8 },
  ];
  const flood: FloodResult = {
    bytes: 1000, runs: 1,
    rows: [
      { vmm: 'tsvmm', console: 'pipe', bytesPerSecond: s(120_000), tsvmmOver: 1, note: '' },
      { vmm: 'kvmtool', console: 'pipe', bytesPerSecond: null, tsvmmOver: null, note: 'not installed (TSVMM_KVMTOOL=none)' },
      { vmm: 'QEMU', console: 'pipe', bytesPerSecond: s(100_000), tsvmmOver: 1.2, note: 'QEMU 7.2' },
    ],
  };

  it('the exits table gives the ratio and whether the 1.05x goal is met', () => {
    const text = formatExits(exits);
    expect(text).toMatch(/PIO out\s+3\s+60000 \(59000–61000\)\s+61000 \(61000–61000\)\s+1\.017×\s+met/);
    expect(text).toMatch(/1\.125×\s+not met/);
  });

  it('an absent peer is a "not installed" row and a note in the chart, not a failure', () => {
    expect(formatSerialFlood(flood)).toMatch(/kvmtool\s+pipe \(\| wc -c\)\s+not installed/);
    const bars = chartSerialFlood(flood)[0]!.groups[0]!.bars;
    expect(bars.find((b) => b.series === 'kvmtool')).toMatchObject({ missing: 'not installed' });
    expect(chartExits(exits).map((p) => p.title)).toEqual([expect.stringMatching(/ring 3/), expect.stringMatching(/ring 0/)]);
  });

  it('a peer that failed is a row saying why, in the tables and the charts', () => {
    const failed = 'QEMU failed: qemu-system-x86_64: failed to set MSR 0x10a';
    const floodFailed: FloodResult = { ...flood, rows: flood.rows.map((r) => (r.vmm === 'QEMU' ? { ...r, bytesPerSecond: null, tsvmmOver: null, failed } : r)) };
    expect(formatSerialFlood(floodFailed)).toMatch(/QEMU\s+pipe \(\| wc -c\)\s+failed\s+—\s+—\s+QEMU failed: qemu-system-x86_64: failed to set MSR 0x10a/);
    expect(chartSerialFlood(floodFailed)[0]!.groups[0]!.bars.find((b) => b.series === 'QEMU')).toMatchObject({ missing: 'failed' });
    const startup: StartupResult = {
      runs: 1, tsvmmOverNodeMs: 5, goalMs: 20, tsvmmMarks: { bin: 1 },
      rows: [
        { what: 'tsvmm', firstKvmRunMs: s(10), firstByteMs: s(11), exitMs: s(12), note: '' },
        { what: 'QEMU', firstKvmRunMs: null, firstByteMs: null, exitMs: null, note: 'QEMU 7.2', failed },
      ],
    };
    expect(formatStartup(startup)).toMatch(/QEMU\s+failed\s+—\s+—\s+QEMU failed: qemu/);
    const memory: MemoryResult = {
      guestMiB: 64, runs: 1,
      rows: [
        { vmm: 'tsvmm', rssBeyondGuest: s(40), pssBeyondGuest: s(20), privateBeyondGuest: s(15), anonymousBeyondGuest: s(14), guestResident: 0.1, note: '' },
        { vmm: 'QEMU', rssBeyondGuest: null, pssBeyondGuest: null, privateBeyondGuest: null, anonymousBeyondGuest: null, guestResident: null, note: 'QEMU 7.2', failed },
      ],
    };
    expect(formatMemory(memory)).toMatch(/tsvmm\s+40\.0 \(40\.0–40\.0\)\s+20\.0 \(20\.0–20\.0\)\s+15\.0 \(15\.0–15\.0\)\s+14\.0 \(14\.0–14\.0\)\s+0\.10/);
    expect(formatMemory(memory)).toMatch(/QEMU\s+failed\s+—\s+—\s+—\s+—\s+QEMU failed: qemu/);
    expect(chartMemory(memory)[0]!.groups[1]!.bars).toEqual([{ series: 'RSS', value: 0, missing: 'failed' }]);
  });

  it('results survive JSON as they are', () => {
    expect(JSON.parse(JSON.stringify(flood))).toEqual(flood);
  });
});

describe('the SVG chart', () => {
  const panels: ChartPanel[] = [{
    title: 'exits <ring 0> & more',
    unit: 'µs per exit',
    better: 'lower',
    groups: [
      { label: 'PIO out', bars: [{ series: 'C baseline', value: 8.2, min: 8, max: 8.6 }, { series: 'tsvmm', value: 9.1, min: 9, max: 9.5 }] },
      { label: 'peer', bars: [{ series: 'QEMU', value: 0, missing: 'not installed' }] },
    ],
  }];
  const svg = renderChart(panels, { title: 'tsvmm bench', subtitle: ['PVM host', '2026-11-21'] });

  it('is one well-formed svg element with escaped text', () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('exits &lt;ring 0&gt; &amp; more');
    expect(svg).not.toMatch(/<ring/);
    // Every opened text/title element is closed.
    expect((svg.match(/<text /g) ?? []).length).toBe((svg.match(/<\/text>/g) ?? []).length);
    expect((svg.match(/<title>/g) ?? []).length).toBe((svg.match(/<\/title>/g) ?? []).length);
  });

  it('draws a bar per present series, one colour per series, and names the missing one', () => {
    expect((svg.match(/<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="14"/g) ?? []).length).toBe(2);
    expect(svg).toContain('QEMU: not installed');
    expect(svg).toContain('fill="#2563eb"'); // tsvmm's colour
  });

  it('round axis steps and readable numbers', () => {
    expect(niceStep(9.5)).toBe(2);
    expect(niceStep(69.5)).toBe(20);
    expect(niceStep(0.9)).toBe(0.2);
    expect(niceStep(0)).toBe(1);
    expect(formatValue(66051)).toBe('66,051');
    expect(formatValue(9.07)).toBe('9.07');
    expect(formatValue(0.5331)).toBe('0.533');
    expect(formatTick(20, 20)).toBe('20');
    expect(formatTick(0.4, 0.2)).toBe('0.4');
    expect(escapeXml('"a"<b>&')).toBe('&quot;a&quot;&lt;b&gt;&amp;');
  });
});

describe('a flat binary as a QEMU BIOS image', () => {
  it('keeps the payload at the start, jumps from the reset vector to a stub that copies it to 1000:0000', () => {
    const flat = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
    const rom = flatToRom(flat);
    expect(rom.length).toBe(ROM_SIZE);
    expect([...rom.subarray(0, 300)]).toEqual([...flat]);
    // F000:FFF0 → jmp far F000:FF00
    expect([...rom.subarray(0xfff0, 0xfff5)]).toEqual([0xea, 0x00, 0xff, 0x00, 0xf0]);
    const stub = rom.subarray(0xff00, 0xff00 + 26);
    expect([...stub.subarray(16, 19)]).toEqual([0xb9, 300 & 0xff, 300 >> 8]); // mov cx, 300
    expect([...stub.subarray(19, 21)]).toEqual([0xf3, 0xa4]); // rep movsb
    expect([...stub.subarray(21, 26)]).toEqual([0xea, 0x00, 0x00, 0x00, 0x10]); // jmp far 1000:0000
    expect(() => flatToRom(new Uint8Array(MAX_PAYLOAD + 1))).toThrow(/ROM payload/);
    expect(() => flatToRom(new Uint8Array(0))).toThrow(/ROM payload/);
  });
});

describe('parsers', () => {
  const smaps = [
    '55d0c0000000-55d0c0100000 r-xp 00000000 08:01 1234 /usr/bin/qemu-system-x86_64',
    'Size:               1024 kB',
    'Rss:                 800 kB',
    'Pss:                 200 kB',
    'Private_Clean:         0 kB',
    'Private_Dirty:         0 kB',
    '7f0000000000-7f0004000000 rw-p 00000000 00:00 0 ',
    'Size:              65536 kB',
    'Rss:                2048 kB',
    'Pss:                2048 kB',
    'Private_Clean:         0 kB',
    'Private_Dirty:      2048 kB',
    'Anonymous:          2048 kB',
    '7f1000000000-7f1000021000 rw-p 00000000 00:00 0 ',
    'Rss:                 132 kB',
    'Pss:                 132 kB',
    'Private_Dirty:       132 kB',
    'Anonymous:           132 kB',
  ].join('\n');

  it('smaps: the guest RAM mapping is the anonymous rw mapping of its size', () => {
    expect(parseSmaps(smaps, 64 << 20)).toEqual({
      rss: 2980, pss: 2380, private: 2180, anonymous: 2180, guestRss: 2048, guestPss: 2048, guestPrivate: 2048, guestAnonymous: 2048, guestFound: true,
    });
    expect(parseSmaps(smaps, 32 << 20).guestFound).toBe(false);
  });

  it('smaps: a guest mapping the kernel merged with a small neighbour still counts', () => {
    const merged = smaps.replace('7f0000000000-7f0004000000', '7f0000000000-7f000402c000');
    expect(parseSmaps(merged, 64 << 20)).toMatchObject({ guestRss: 2048, guestFound: true });
  });

  it('the PIT guest line', () => {
    expect(parsePitLine('pit 25ms=00000000004C4B40 50ms=0000000000989680 polls=000010A2\n')).toEqual({ tsc25: 5_000_000, tsc50: 10_000_000, polls: 0x10a2 });
    expect(() => parsePitLine('garbage')).toThrow(/no result line/);
  });
});
