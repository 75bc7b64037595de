// A guest's console as a test sees it: tsvmm's stdout collected as it comes,
// patterns awaited with a timeout, keystrokes typed into its stdin.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';

export class GuestConsole {
  output = '';
  private waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];

  constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.on('data', (d: Buffer) => {
      this.output += d.toString('latin1');
      this.waiters = this.waiters.filter((w) => {
        const m = this.output.match(w.pattern);
        if (m) w.resolve(m);
        return !m;
      });
    });
  }

  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const m = this.output.match(pattern);
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; console so far:\n${this.output.slice(-2000)}`)), timeoutMs);
      this.waiters.push({ pattern, resolve: (found) => { clearTimeout(timer); resolve(found); } });
    });
  }

  type(text: string): void {
    this.child.stdin.write(text);
  }
}
