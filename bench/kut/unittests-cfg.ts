// The test list of kvm-unit-tests (x86/unittests.cfg), read the way the suite's
// scripts/common.bash reads it: `[name]` starts a test, `key = value` lines
// follow, and qemu_params/extra_params may span lines inside """ quotes.

export interface KutTest {
  name: string;
  /** The binary, relative to the suite's x86/ folder (e.g. apic.flat). */
  file: string;
  smp: number;
  /** The guest's command line (test_args), or '' for none. */
  args: string;
  /** QEMU options the test asks for (qemu_params or extra_params), split into words. */
  qemuParams: string[];
  arch: string | null;
  groups: string[];
  /** Seconds, from `timeout = 90s` style values; null when the test sets none. */
  timeoutSeconds: number | null;
  /** `path=value` pairs that must hold on the host for the test to run. */
  checks: string[];
  accel: string | null;
}

/** The tests in a unittests.cfg text, in file order. */
export function parseUnittestsCfg(text: string): KutTest[] {
  const tests: KutTest[] = [];
  let current: KutTest | null = null;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const section = /^\[(.*)\]$/.exec(line);
    if (section) {
      current = {
        name: section[1]!, file: '', smp: 1, args: '', qemuParams: [], arch: null,
        groups: [], timeoutSeconds: null, checks: [], accel: null,
      };
      tests.push(current);
      continue;
    }
    const entry = /^(\w+)\s*=\s*(.*)$/.exec(line);
    if (!entry || !current) continue;
    const key = entry[1]!;
    let value = entry[2]!;
    if (value.startsWith('"""')) {
      // A multi-line value runs to the closing """; a trailing backslash joins lines.
      value = value.slice(3);
      while (!value.includes('"""') && i + 1 < lines.length) value += '\n' + lines[++i]!;
      value = value.replace(/"""\s*$/, '').replace(/\\\n/g, '');
    }
    switch (key) {
      case 'file': current.file = value; break;
      case 'smp': current.smp = Number(value); break;
      case 'test_args': current.args = unquote(value); break;
      case 'qemu_params': case 'extra_params': current.qemuParams = splitWords(value); break;
      case 'arch': current.arch = value; break;
      case 'groups': current.groups = value.split(/\s+/).filter(Boolean); break;
      case 'timeout': current.timeoutSeconds = parseDuration(value); break;
      case 'check': current.checks = value.split(/\s+/).filter(Boolean); break;
      case 'accel': current.accel = value; break;
    }
  }
  return tests;
}

/** `timeout`'s duration syntax: a number with an optional s/m/h suffix. */
function parseDuration(value: string): number | null {
  const match = /^(\d+(?:\.\d+)?)([smh]?)$/.exec(value);
  if (!match) return null;
  const scale = match[2] === 'm' ? 60 : match[2] === 'h' ? 3600 : 1;
  return Number(match[1]) * scale;
}

/** Shell words: whitespace-separated, with '…' and "…" quoting. */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  const pattern = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    words.push(match[1] ?? match[2] ?? match[3]!);
  }
  return words;
}

function unquote(value: string): string {
  return splitWords(value).join(' ');
}
