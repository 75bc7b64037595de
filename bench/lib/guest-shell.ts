// Drives the default guest's shell on a VMM's serial console (the VMM's
// stdin and stdout): waits for the prompt, types a command, and collects
// what it printed up to an end marker that carries the command's status.
//
// The marker is `echo "<<$?>>"` typed after the command: the console echoes
// the typed line with `$?` unexpanded, so only the shell's own output can
// match /^<<\d+>>$/. Output lines are taken as they come; a caller's parser
// picks out the lines it knows (the echoed command line is among them).
import type { StampedLine, VmmProcess } from './vmm-process.ts';

/** busybox ash's prompt in the default guest (guests/default/rootfs/etc/profile). */
export const SHELL_PROMPT = 'tsvmm:/# ';

const END_MARKER = /^<<(\d+)>>$/;

export interface CommandResult {
  /** The lines between typing the command and its end marker. */
  lines: string[];
  status: number;
}

export class GuestShell {
  constructor(private readonly vmm: VmmProcess) {}

  /**
   * Waits until the console's unfinished last line holds the prompt; returns
   * when that was, ns after spawn. Not "ends with": ash's line editing may
   * follow the prompt with a terminal query (ESC [6n).
   */
  async waitForPrompt(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (!this.vmm.pendingText.includes(SHELL_PROMPT)) {
      if (this.vmm.describeExit() !== 'running') throw this.vmm.failure(`ended (${this.vmm.describeExit()}) before the shell prompt`);
      if (Date.now() > deadline) throw this.vmm.failure(`showed no shell prompt within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.vmm.now();
  }

  /** Runs one command line at the prompt; rejects on a non-zero status or after `timeoutMs`. */
  async run(command: string, timeoutMs: number): Promise<CommandResult> {
    const from = this.vmm.lines.length;
    this.vmm.type(`${command}; echo "<<$?>>"\n`);
    const end: StampedLine = await this.vmm.waitForLine((line) => END_MARKER.test(line), timeoutMs, from, `end of "${command}"`);
    const lines = this.vmm.lines.slice(from, end.index).map((l) => l.text);
    const status = Number(END_MARKER.exec(end.text)![1]);
    if (status !== 0) throw new Error(`the guest's "${command}" ended with status ${status}: ${lines.slice(-3).join(' / ')}`);
    await this.waitForPrompt(timeoutMs);
    return { lines, status };
  }
}
