// The benchmark chart: plain SVG written by hand, no library. Panels stack
// top to bottom; each is a set of labelled groups of horizontal bars on one
// axis from 0, a bar per series (one colour per series name everywhere), the
// median as the bar and min–max as a whisker over it. It renders the same in
// a browser and on GitHub (no script, no external font, no CSS file).
import type { ChartBar, ChartPanel } from './suite.ts';

const WIDTH = 820;
const MARGIN = 16;
const LABEL_WIDTH = 170;
const VALUE_WIDTH = 110;
const BAR_HEIGHT = 14;
const BAR_GAP = 3;
const GROUP_GAP = 10;
const FONT = 'system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif';

/** Fixed colours for the series the suites use; others take the palette in order. */
const SERIES_COLOURS: Record<string, string> = {
  tsvmm: '#2563eb',
  'C baseline': '#6b7280',
  QEMU: '#d97706',
  kvmtool: '#059669',
  KVM: '#7c3aed',
  'first KVM_RUN': '#2563eb',
  'first serial byte': '#0891b2',
  exit: '#94a3b8',
  RSS: '#2563eb',
  'private (USS)': '#93c5fd',
};
const PALETTE = ['#db2777', '#65a30d', '#0d9488', '#9333ea', '#ea580c', '#475569'];

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A round axis step: 1, 2 or 5 times a power of ten, giving about `target` ticks. */
export function niceStep(max: number, target = 5): number {
  if (!(max > 0)) return 1;
  const raw = max / target;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

/** A number as people read it on a chart: 3 significant digits, thousands separated. */
export function formatValue(value: number): string {
  if (value === 0) return '0';
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** An axis tick with as many decimals as its step needs. */
export function formatTick(value: number, step: number): string {
  const decimals = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step) - 1e-9));
  return value.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

export interface ChartOptions {
  title: string;
  /** Lines under the title: the machine, the date, the command. */
  subtitle?: string[];
}

function colourMap(panels: ChartPanel[]): Map<string, string> {
  const colours = new Map<string, string>();
  let next = 0;
  for (const panel of panels) {
    for (const group of panel.groups) {
      for (const bar of group.bars) {
        if (!colours.has(bar.series)) colours.set(bar.series, SERIES_COLOURS[bar.series] ?? PALETTE[next++ % PALETTE.length]!);
      }
    }
  }
  return colours;
}

export function renderChart(panels: ChartPanel[], options: ChartOptions): string {
  const colours = colourMap(panels);
  const out: string[] = [];
  const text = (x: number, y: number, content: string, attrs = '') => out.push(`<text x="${x}" y="${y}" ${attrs}>${escapeXml(content)}</text>`);
  let y = MARGIN + 18;
  text(MARGIN, y, options.title, 'font-size="17" font-weight="600" fill="#111827"');
  for (const line of options.subtitle ?? []) {
    y += 17;
    text(MARGIN, y, line, 'font-size="12" fill="#4b5563"');
  }
  y += 14;

  // Wide enough for the longest group label (12 px text, ~7 px a character).
  const longestLabel = Math.max(0, ...panels.flatMap((p) => p.groups.map((g) => g.label.length)));
  const plotX = MARGIN + Math.max(LABEL_WIDTH, longestLabel * 7 + 16);
  const plotWidth = WIDTH - plotX - MARGIN - VALUE_WIDTH;
  for (const panel of panels) {
    y += 22;
    text(MARGIN, y, panel.title, 'font-size="14" font-weight="600" fill="#111827"');
    y += 16;
    text(MARGIN, y, `${panel.unit}, ${panel.better} is better; bar = median, whisker = min–max`, 'font-size="11" fill="#6b7280"');
    // Legend: the series of this panel.
    // In the order of the fullest group's bars, so the legend reads like the bars.
    const byFullness = [...panel.groups].sort((a, b) => b.bars.length - a.bars.length);
    const series = [...new Set(byFullness.flatMap((g) => g.bars.filter((b) => !b.missing).map((b) => b.series)))];
    let lx = WIDTH - MARGIN;
    for (const name of [...series].reverse()) {
      const width = 18 + name.length * 6.2;
      lx -= width + 10;
      out.push(`<rect x="${lx}" y="${y - 9}" width="10" height="10" rx="2" fill="${colours.get(name)}"/>`);
      text(lx + 14, y, name, 'font-size="11" fill="#374151"');
    }
    y += 10;

    const values = panel.groups.flatMap((g) => g.bars.filter((b) => !b.missing).map((b) => Math.max(b.value, b.max ?? 0)));
    const step = niceStep(Math.max(...values, 0));
    const axisMax = Math.max(step, Math.ceil(Math.max(...values, 0) / step) * step);
    const scale = (v: number) => plotX + (Math.max(0, v) / axisMax) * plotWidth;
    const plotTop = y;
    const barsHeight = panel.groups.reduce((h, g) => h + g.bars.length * (BAR_HEIGHT + BAR_GAP) - BAR_GAP + GROUP_GAP, 0);
    const plotBottom = plotTop + barsHeight;
    // Grid and tick labels.
    for (let v = 0; v <= axisMax + step / 2; v += step) {
      const x = scale(v);
      out.push(`<line x1="${x.toFixed(1)}" y1="${plotTop}" x2="${x.toFixed(1)}" y2="${plotBottom}" stroke="${v === 0 ? '#9ca3af' : '#e5e7eb'}" stroke-width="1"/>`);
      text(x, plotBottom + 13, formatTick(v, step), 'font-size="10" fill="#6b7280" text-anchor="middle"');
    }
    let gy = plotTop + GROUP_GAP / 2;
    for (const group of panel.groups) {
      const groupHeight = group.bars.length * (BAR_HEIGHT + BAR_GAP) - BAR_GAP;
      text(plotX - 8, gy + groupHeight / 2 + 4, group.label, 'font-size="12" fill="#111827" text-anchor="end"');
      for (const bar of group.bars) {
        drawBar(out, bar, gy, scale, colours, text);
        gy += BAR_HEIGHT + BAR_GAP;
      }
      gy += GROUP_GAP - BAR_GAP;
    }
    y = plotBottom + 18;
  }
  y += MARGIN;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${Math.ceil(y)}" viewBox="0 0 ${WIDTH} ${Math.ceil(y)}" font-family="${FONT}">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...out,
    '</svg>',
    '',
  ].join('\n');
}

function drawBar(
  out: string[], bar: ChartBar, top: number, scale: (v: number) => number, colours: Map<string, string>,
  text: (x: number, y: number, content: string, attrs?: string) => void,
): void {
  const x0 = scale(0);
  if (bar.missing) {
    text(x0 + 6, top + BAR_HEIGHT - 3, `${bar.series}: ${bar.missing}`, 'font-size="11" font-style="italic" fill="#9ca3af"');
    return;
  }
  const x1 = scale(bar.value);
  out.push(`<rect x="${x0}" y="${top}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${BAR_HEIGHT}" rx="2" fill="${colours.get(bar.series)}"><title>${escapeXml(`${bar.series}: ${formatValue(bar.value)}`)}</title></rect>`);
  let labelX = x1;
  if (bar.min !== undefined && bar.max !== undefined && bar.max > bar.min) {
    const a = scale(bar.min);
    const b = scale(bar.max);
    const mid = top + BAR_HEIGHT / 2;
    out.push(`<path d="M${a.toFixed(1)} ${mid}H${b.toFixed(1)}M${a.toFixed(1)} ${mid - 4}V${mid + 4}M${b.toFixed(1)} ${mid - 4}V${mid + 4}" stroke="#111827" stroke-width="1" fill="none"/>`);
    labelX = Math.max(labelX, b);
  }
  text(labelX + 5, top + BAR_HEIGHT - 3, formatValue(bar.value), 'font-size="11" fill="#111827"');
}
