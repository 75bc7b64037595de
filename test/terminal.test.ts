// The console's escape keys, as QEMU's -nographic users know them.
import { describe, expect, it } from 'vitest';
import { EscapeParser } from '../src/cli/terminal.ts';

function parser() {
  const sent: number[] = [];
  const said: string[] = [];
  let quits = 0;
  const p = new EscapeParser({ sendInput: (b) => sent.push(...b), quit: () => quits++ }, (t) => said.push(t));
  return { p, sent, said, quits: () => quits };
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

  it('Ctrl-A h prints the escapes; Ctrl-A Ctrl-A sends one Ctrl-A; an escape may span two reads', () => {
    const { p, sent, said } = parser();
    p.feed(Buffer.from('\x01'));
    p.feed(Buffer.from('h'));
    expect(said.join('')).toMatch(/Ctrl-A x +quit tsvmm/);
    p.feed(Buffer.from('\x01\x01z'));
    expect(sent).toEqual([0x01, 0x7a]);
  });
});
