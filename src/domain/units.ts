// libvirt's memory units (formatdomain, "Memory Allocation"): b or bytes;
// k, KiB (powers of 1024) and KB (powers of 1000), likewise M, G, T, P, E.
// As in libvirt the letters' case does not matter, and no unit means KiB.

const UNIT = /^(?:(b|bytes?)|([kmgtpe])(i?b)?)$/i;
const POWER: Record<string, number> = { k: 1, m: 2, g: 3, t: 4, p: 5, e: 6 };

/** Bytes of `value` in `unit` (default KiB), or why it is not a size. */
export function memoryBytes(value: string, unit = 'KiB'): number | string {
  const match = UNIT.exec(unit);
  if (!match) return `unit='${unit}': not one of libvirt's units (b, bytes, KB, k, KiB, MB, M, MiB, GB, G, GiB, TB, T, TiB, ...)`;
  const [, bytes, prefix, suffix] = match;
  const base = suffix?.toLowerCase() === 'b' ? 1000 : 1024;
  const scale = bytes ? 1 : base ** POWER[prefix!.toLowerCase()]!;
  if (!/^\d+$/.test(value)) return `"${value}" is not a whole number`;
  const total = Number(value) * scale;
  if (!Number.isSafeInteger(total)) return `${value} ${unit} is too large`;
  return total;
}
