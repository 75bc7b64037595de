// The console's escape keys, as QEMU's -nographic users know them.
import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { EscapeParser, TerminalConsole } from '../src/cli/terminal.ts';

function parser() {
  const sent: number[] = [];
  const said: string[] = [];
  let quits = 0;
  let presses = 0;
  const p = new EscapeParser({ sendInput: (b) => sent.push(...b), quit: () => quits++, powerButton: () => presses++ }, (t) => said.push(t));
  return { p, sent, said, quits: () => quits, presses: () => presses };
}

describe('terminal escapes', () => {
  it('passes ordinary keys through, Ctrl-C included (it belongs to the guest)', () => {
    const { p, sent } = parser();
    p.feed(Buffer.from('ls\r\x03'));
    expect(Buffer.from(sent).toString('latin1')).toBe('ls\r\x03');
  });

  it('Ctrl-A x quits, and nothing after it reaches the guest', () => {
    const { p, sent, quits } = parser();
    p.feed(Buffer.from('ab\x01xcd'));
    expect(Buffer.from(sent).toString('latin1')).toBe('ab');
    expect(quits()).toBe(1);
  });

  it('Ctrl-A p presses the power button and the keys around it still reach the guest', () => {
    const { p, sent, quits, presses } = parser();
    p.feed(Buffer.from('a\x01pb'));
    expect(presses()).toBe(1);
    expect(quits()).toBe(0);
    expect(Buffer.from(sent).toString('latin1')).toBe('ab');
  });

  it('Ctrl-A h prints the escapes; Ctrl-A Ctrl-A sends one Ctrl-A; an escape may span two reads', () => {
    const { p, sent, said } = parser();
    p.feed(Buffer.from('\x01'));
    p.feed(Buffer.from('h'));
    expect(said.join('')).toMatch(/Ctrl-A x +quit tsvmm/);
    expect(said.join('')).toMatch(/Ctrl-A p +press the ACPI power button/);
    p.feed(Buffer.from('\x01\x01z'));
    expect(sent).toEqual([0x01, 0x7a]);
  });
});

describe('the terminal as a console, when it fails', () => {
  const target = { sendInput: () => {}, quit: () => {}, powerButton: () => {} };

  it('a read error on stdin (a terminal gone: EIO) ends the input without throwing', () => {
    const stdin = new PassThrough() as unknown as NodeJS.ReadStream;
    const terminal = new TerminalConsole(target, stdin);
    terminal.start();
    expect(() => stdin.emit('error', Object.assign(new Error('read EIO'), { code: 'EIO' }))).not.toThrow();
    expect(stdin.listenerCount('data')).toBe(0);
    terminal.stop();
  });

  it('a terminal whose mode can no longer be set does not make stop() throw', () => {
    const stdin = Object.assign(new PassThrough(), {
      isTTY: true,
      setRawMode(raw: boolean) {
        if (!raw) throw new Error('setRawMode EIO');
        return this;
      },
    }) as unknown as NodeJS.ReadStream;
    const terminal = new TerminalConsole(target, stdin);
    terminal.start();
    expect(() => terminal.stop()).not.toThrow();
  });
});
