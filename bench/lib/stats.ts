// Medians and tables for benchmark output.

export interface Summary {
  median: number;
  min: number;
  max: number;
  samples: number[];
}

export function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, samples };
}

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/**
 * The text tables of table() as Markdown tables, the rest of the text as it
 * is: a table is found by its line of dashes, whose runs give each column's
 * exact width.
 */
export function markdownTables(text: string): string {
  const lines = text.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const dashes = lines[i + 1];
    if (dashes === undefined || !/^-+( {2}-+)*$/.test(dashes)) {
      out.push(lines[i]!);
      continue;
    }
    const columns: [number, number][] = [];
    for (const m of dashes.matchAll(/-+/g)) columns.push([m.index!, m.index! + m[0].length]);
    const cells = (line: string) => columns.map(([a, b]) => line.slice(a, b).trim().replace(/\|/g, '\\|'));
    out.push(`| ${cells(lines[i]!).join(' | ')} |`, `|${columns.map(() => '---').join('|')}|`);
    let row = i + 2;
    for (; row < lines.length && lines[row]!.trim() !== ''; row++) out.push(`| ${cells(lines[row]!).join(' | ')} |`);
    i = row - 1;
  }
  return out.join('\n');
}
