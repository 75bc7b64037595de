// Parsers for what the default guest prints in the in-guest benchmarks: dd's
// record count, the lines of the timed shell commands and the disk list.
// (The guest's busybox dd prints no transfer rate: the commands time
// themselves with /proc/uptime.) Each
// takes the lines a command printed (the console also echoes the command
// itself, with its `$variables` unexpanded, which no parser here accepts).

/** dd's "1024+0 records in": whole and partial blocks read. */
export interface DdRecords {
  whole: number;
  partial: number;
}

export function parseDdRecordsIn(lines: readonly string[]): DdRecords | null {
  for (const line of lines) {
    const m = /^(\d+)\+(\d+) records in$/.exec(line.trim());
    if (m) return { whole: Number(m[1]), partial: Number(m[2]) };
  }
  return null;
}

/**
 * A timed command's result: `LABEL COUNT START END`, START and END the first
 * field of /proc/uptime (seconds since the guest's kernel started, 10 ms
 * resolution) read by the guest shell's builtin `read` before and after.
 */
export interface Timed {
  count: number;
  seconds: number;
}

export function parseTimed(lines: readonly string[], label: string): Timed | null {
  const pattern = new RegExp(`^${label} (\\d+) (\\d+\\.\\d+) (\\d+\\.\\d+)$`);
  for (const line of lines) {
    const m = pattern.exec(line.trim());
    if (m) return { count: Number(m[1]), seconds: Number(m[3]) - Number(m[2]) };
  }
  return null;
}

/** `disk SERIAL NAME` lines: which /dev/vdX has which virtio-blk serial. */
export function parseDiskList(lines: readonly string[]): Map<string, string> {
  const disks = new Map<string, string>();
  for (const line of lines) {
    const m = /^disk (\S+) (vd[a-z]+)$/.exec(line.trim());
    if (m) disks.set(m[1]!, m[2]!);
  }
  return disks;
}
