// virsh's output layouts, so that what a libvirt user reads (and the scripts
// that parse it) look the same under tsvmm: its tables (libvirt's
// vsh-table.c: a leading space, columns three spaces apart, the last one
// unpadded, a dash rule as wide as the columns plus three per column) and its
// "Key:           value" lists.

/** A table as `virsh list` prints it, followed by virsh's empty line. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) => ` ${cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!))).join('   ')}`;
  const rule = '-'.repeat(widths.reduce((sum, width) => sum + width + 3, 0));
  return [line(headers), rule, ...rows.map(line), '', ''].join('\n');
}

/** Keys padded to 15 columns, as `virsh dominfo` prints them, followed by virsh's empty line. */
export function formatKeyValues(pairs: [string, string][]): string {
  return [...pairs.map(([key, value]) => `${`${key}:`.padEnd(15)} ${value}`), '', ''].join('\n');
}

/** The state names virsh prints (virshDomainStateToString). */
export type DomainStateName = 'running' | 'paused' | 'in shutdown' | 'shut off' | 'crashed' | 'no state';

/** A QMP run state (QEMU's qapi/run-state.json) as libvirt reports the domain. */
export function stateOfRunState(runState: string): DomainStateName {
  switch (runState) {
    case 'running':
      return 'running';
    case 'paused': case 'prelaunch': case 'inmigrate': case 'postmigrate': case 'finish-migrate': case 'save-vm': case 'restore-vm': case 'suspended':
      return 'paused';
    case 'shutdown':
      return 'in shutdown';
    case 'internal-error': case 'guest-panicked':
      return 'crashed';
    default:
      return 'no state';
  }
}
