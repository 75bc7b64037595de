// The transmit side of the 16550A, register by register (PC16550D datasheet).
import { describe, expect, it } from 'vitest';
import { MemorySink } from '../src/devices/char-sink.ts';
import { Reg, Serial16550 } from '../src/devices/serial16550.ts';

function uart() {
  const sink = new MemorySink();
  return { sink, dev: new Serial16550('COM1', sink) };
}

describe('16550A transmit path', () => {
  it('THR writes reach the output', () => {
    const { sink, dev } = uart();
    for (const c of 'hi\n') dev.write(Reg.RBR_THR_DLL, 1, c.charCodeAt(0));
    expect(sink.text()).toBe('hi\n');
  });

  it('LSR shows THRE and TEMT: the transmitter is always ready', () => {
    const { dev } = uart();
    expect(dev.read(Reg.LSR, 1) & 0x60).toBe(0x60);
  });

  it('DLAB switches offsets 0 and 1 to the divisor latch, and THR writes stop', () => {
    const { sink, dev } = uart();
    dev.write(Reg.LCR, 1, 0x83);
    dev.write(Reg.RBR_THR_DLL, 1, 0x01);
    dev.write(Reg.IER_DLM, 1, 0x00);
    expect(dev.read(Reg.RBR_THR_DLL, 1)).toBe(0x01);
    expect(dev.read(Reg.IER_DLM, 1)).toBe(0x00);
    dev.write(Reg.LCR, 1, 0x03);
    expect(dev.read(Reg.LCR, 1)).toBe(0x03);
    expect(sink.text()).toBe('');
  });

  it('IER keeps its low four bits; SCR is a plain scratch byte', () => {
    const { dev } = uart();
    dev.write(Reg.IER_DLM, 1, 0xff);
    expect(dev.read(Reg.IER_DLM, 1)).toBe(0x0f);
    dev.write(Reg.SCR, 1, 0x5a);
    expect(dev.read(Reg.SCR, 1)).toBe(0x5a);
  });

  it('IIR reports no interrupt pending, and the FIFO bits once FCR enables them', () => {
    const { dev } = uart();
    expect(dev.read(Reg.IIR_FCR, 1)).toBe(0x01);
    dev.write(Reg.IIR_FCR, 1, 0x01);
    expect(dev.read(Reg.IIR_FCR, 1)).toBe(0xc1);
  });

  it('loopback: MCR outputs appear on MSR inputs and nothing is transmitted', () => {
    const { sink, dev } = uart();
    dev.write(Reg.MCR, 1, 0x10 | 0x01); // LOOP + DTR
    expect(dev.read(Reg.MSR, 1)).toBe(0x20); // DSR
    dev.write(Reg.MCR, 1, 0x10 | 0x02 | 0x08); // RTS + OUT2
    expect(dev.read(Reg.MSR, 1)).toBe(0x10 | 0x80); // CTS + DCD
    dev.write(Reg.RBR_THR_DLL, 1, 0x41);
    expect(sink.text()).toBe('');
  });
});
