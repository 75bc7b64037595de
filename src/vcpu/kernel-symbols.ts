// Kernel symbols from a System.map, so a report can say where in the kernel
// the guest stopped ("fpu__drop+0x2a") rather than only a raw address.
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** KernelSymbols in the form a worker thread is handed (see toTransferable). */
export interface TransferableSymbols {
  addresses: BigUint64Array;
  names: string;
}

export class KernelSymbols {
  private constructor(private readonly addresses: bigint[], private readonly names: string[]) {}

  static parse(text: string): KernelSymbols {
    const entries: [bigint, string][] = [];
    for (const line of text.split('\n')) {
      const m = /^([0-9a-fA-F]{8,16}) ([tTwW]) (\S+)/.exec(line);
      if (m) entries.push([BigInt(`0x${m[1]}`), m[3]!]);
    }
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return new KernelSymbols(entries.map((e) => e[0]), entries.map((e) => e[1]));
  }

  /**
   * The table as another thread receives it: addresses in one typed array and
   * the names in one string, so it is cloned in two copies, not one per symbol.
   */
  toTransferable(): TransferableSymbols {
    return { addresses: BigUint64Array.from(this.addresses), names: this.names.join('\n') };
  }

  static fromTransferable(data: TransferableSymbols): KernelSymbols {
    return new KernelSymbols([...data.addresses], data.addresses.length ? data.names.split('\n') : []);
  }

  get size(): number {
    return this.addresses.length;
  }

  /** "name+0x1c" for an address inside the kernel's text, or null. */
  lookup(address: bigint): string | null {
    let lo = 0;
    let hi = this.addresses.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.addresses[mid]! <= address) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0) return null;
    const offset = address - this.addresses[found]!;
    // Past the last symbol by more than a plausible function size: not kernel text.
    if (found === this.addresses.length - 1 && offset > 0x10000n) return null;
    return offset === 0n ? this.names[found]! : `${this.names[found]}+0x${offset.toString(16)}`;
  }
}

/**
 * A System.map beside a kernel: "System.map" in the same folder, or
 * "System.map-VERSION" for a kernel named "vmlinuz-VERSION"/"vmlinux-VERSION".
 */
export function findSystemMap(kernelPath: string): string | null {
  const dir = dirname(kernelPath);
  const name = basename(kernelPath);
  const candidates = [join(dir, 'System.map')];
  const versioned = /^(?:vmlinuz|vmlinux|bzImage)-(.+)$/.exec(name);
  if (versioned) candidates.unshift(join(dir, `System.map-${versioned[1]}`));
  for (const candidate of candidates) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  return null;
}
