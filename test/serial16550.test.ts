// The 16550A UART register by register (National Semiconductor PC16550D
// datasheet; QEMU hw/char/serial.c where the datasheet is silent).
import { describe, expect, it } from 'vitest';
import { MemorySink } from '../src/devices/char-sink.ts';
import { RecordingLine } from '../src/devices/interrupt-line.ts';
import { Reg, Serial16550 } from '../src/devices/serial16550.ts';

// Register bits, named as in the datasheet.
const IER_ERBFI = 0x01, IER_ETBEI = 0x02, IER_ELSI = 0x04, IER_EDSSI = 0x08;
const IIR_NONE = 0x01, IIR_RLS = 0x06, IIR_RDA = 0x04, IIR_CTI = 0x0c, IIR_THRE = 0x02, IIR_MS = 0x00;
const IIR_FIFO = 0xc0;
const FCR_ENABLE = 0x01, FCR_CLEAR_RX = 0x02, FCR_CLEAR_TX = 0x04;
const LCR_DLAB = 0x80;
const MCR_DTR = 0x01, MCR_RTS = 0x02, MCR_OUT1 = 0x04, MCR_OUT2 = 0x08, MCR_LOOP = 0x10;
const LSR_DR = 0x01, LSR_OE = 0x02, LSR_BI = 0x10, LSR_THRE = 0x20, LSR_TEMT = 0x40, LSR_FIFO_ERR = 0x80;
const MSR_DCTS = 0x01, MSR_DDSR = 0x02, MSR_TERI = 0x04, MSR_DDCD = 0x08;
const MSR_CTS = 0x10, MSR_DSR = 0x20, MSR_RI = 0x40, MSR_DCD = 0x80;

function uart() {
  const sink = new MemorySink();
  const irq = new RecordingLine();
  const dev = new Serial16550('COM1', sink, irq);
  const r = (reg: number) => dev.read(reg, 1);
  const w = (reg: number, value: number) => dev.write(reg, 1, value);
  const iir = () => r(Reg.IIR_FCR) & 0x0f;
  return { sink, irq, dev, r, w, iir };
}

describe('THR: the transmitter', () => {
  it('sends THR writes to the sink at once', () => {
    const { sink, w } = uart();
    for (const c of 'hi\n') w(Reg.RBR_THR_DLL, c.charCodeAt(0));
    expect(sink.text()).toBe('hi\n');
  });

  it('LSR shows THRE and TEMT before and right after every write', () => {
    const { r, w } = uart();
    expect(r(Reg.LSR)).toBe(LSR_THRE | LSR_TEMT);
    w(Reg.RBR_THR_DLL, 0x41);
    expect(r(Reg.LSR)).toBe(LSR_THRE | LSR_TEMT);
  });

  it('works without an interrupt line (the two-argument constructor)', () => {
    const sink = new MemorySink();
    const dev = new Serial16550('COM1', sink);
    dev.write(Reg.IER_DLM, 1, IER_ETBEI);
    dev.write(Reg.RBR_THR_DLL, 1, 0x21);
    expect(sink.text()).toBe('!');
    expect(dev.read(Reg.IIR_FCR, 1)).toBe(IIR_THRE);
  });
});

describe('DLL/DLM: the divisor latch (LCR.DLAB)', () => {
  it('DLAB turns offsets 0 and 1 into DLL and DLM, and back', () => {
    const { sink, r, w } = uart();
    w(Reg.IER_DLM, 0x05);
    w(Reg.LCR, LCR_DLAB | 0x03);
    w(Reg.RBR_THR_DLL, 0x01);
    w(Reg.IER_DLM, 0x02);
    expect(r(Reg.RBR_THR_DLL)).toBe(0x01);
    expect(r(Reg.IER_DLM)).toBe(0x02);
    w(Reg.LCR, 0x03);
    expect(r(Reg.IER_DLM)).toBe(0x05); // IER was not touched
    expect(sink.text()).toBe(''); // nor was THR
  });

  it('reads 9600 baud (divisor 12) before the guest programs it', () => {
    const { r, w } = uart();
    w(Reg.LCR, LCR_DLAB);
    expect(r(Reg.RBR_THR_DLL) | (r(Reg.IER_DLM) << 8)).toBe(12);
  });

  it('RBR is not popped by a DLL read', () => {
    const { dev, r, w } = uart();
    dev.receive([0x61]);
    w(Reg.LCR, LCR_DLAB);
    r(Reg.RBR_THR_DLL);
    w(Reg.LCR, 0);
    expect(r(Reg.LSR) & LSR_DR).toBe(LSR_DR);
    expect(r(Reg.RBR_THR_DLL)).toBe(0x61);
  });
});

describe('IER, LCR, SCR', () => {
  it('IER keeps its low four bits (Linux tells an XScale UART by bit 6)', () => {
    const { r, w } = uart();
    w(Reg.IER_DLM, 0xff);
    expect(r(Reg.IER_DLM)).toBe(0x0f);
  });

  it('LCR reads back all eight bits and is 0 after reset', () => {
    const { r, w } = uart();
    expect(r(Reg.LCR)).toBe(0);
    w(Reg.LCR, 0x5b);
    expect(r(Reg.LCR)).toBe(0x5b);
  });

  it('SCR is a plain scratch byte', () => {
    const { r, w } = uart();
    w(Reg.SCR, 0x5a);
    expect(r(Reg.SCR)).toBe(0x5a);
  });

  it('MCR keeps bits 4:0 and has OUT2 set at reset, as on QEMU', () => {
    const { r, w } = uart();
    expect(r(Reg.MCR)).toBe(MCR_OUT2);
    w(Reg.MCR, 0xff);
    expect(r(Reg.MCR)).toBe(0x1f);
  });
});

describe('RBR: the receiver (LSR.DR)', () => {
  it('pops received bytes in order; DR follows the FIFO', () => {
    const { dev, r, w } = uart();
    w(Reg.IIR_FCR, FCR_ENABLE);
    expect(dev.receive(new Uint8Array([0x61, 0x62]))).toBe(2);
    expect(r(Reg.LSR) & LSR_DR).toBe(LSR_DR);
    expect(r(Reg.RBR_THR_DLL)).toBe(0x61);
    expect(r(Reg.RBR_THR_DLL)).toBe(0x62);
    expect(r(Reg.LSR) & LSR_DR).toBe(0);
  });

  it('an empty RBR reads the last byte again', () => {
    const { dev, r } = uart();
    expect(r(Reg.RBR_THR_DLL)).toBe(0);
    dev.receive([0x7a]);
    r(Reg.RBR_THR_DLL);
    expect(r(Reg.RBR_THR_DLL)).toBe(0x7a);
  });

  it('16450 mode (FIFOs off) holds one byte and refuses more, without overrun', () => {
    const { dev, r } = uart();
    expect(dev.canReceive()).toBe(1);
    expect(dev.receive([1, 2, 3])).toBe(1);
    expect(dev.canReceive()).toBe(0);
    expect(r(Reg.LSR)).toBe(LSR_DR | LSR_THRE | LSR_TEMT);
    expect(r(Reg.RBR_THR_DLL)).toBe(1);
    expect(dev.receive([2, 3])).toBe(1);
    expect(r(Reg.RBR_THR_DLL)).toBe(2);
  });

  it('FIFO mode takes 16 bytes and refuses the 17th, without overrun', () => {
    const { dev, r, w } = uart();
    w(Reg.IIR_FCR, FCR_ENABLE);
    expect(dev.canReceive()).toBe(16);
    const bytes = Array.from({ length: 20 }, (_, i) => 0x30 + i);
    expect(dev.receive(bytes)).toBe(16);
    expect(dev.canReceive()).toBe(0);
    expect(dev.receive([0x99])).toBe(0);
    expect(r(Reg.LSR) & LSR_OE).toBe(0);
    for (let i = 0; i < 16; i++) expect(r(Reg.RBR_THR_DLL)).toBe(0x30 + i);
    expect(dev.canReceive()).toBe(16);
  });

  it('calls onReceiveSpace once the guest frees room after a refusal', () => {
    const { dev, r } = uart();
    let calls = 0;
    dev.onReceiveSpace = () => calls++;
    dev.receive([1]);
    r(Reg.RBR_THR_DLL);
    expect(calls).toBe(0); // nothing was refused
    dev.receive([2, 3]);
    r(Reg.RBR_THR_DLL);
    expect(calls).toBe(1);
    r(Reg.RBR_THR_DLL);
    expect(calls).toBe(1);
  });
});

describe('FCR: FIFO control and IIR bits 7:6', () => {
  it('IIR bits 7:6 read 11 while FCR0 enables the FIFOs', () => {
    const { r, w } = uart();
    expect(r(Reg.IIR_FCR)).toBe(IIR_NONE);
    w(Reg.IIR_FCR, FCR_ENABLE);
    expect(r(Reg.IIR_FCR)).toBe(IIR_FIFO | IIR_NONE);
    w(Reg.IIR_FCR, 0);
    expect(r(Reg.IIR_FCR)).toBe(IIR_NONE);
  });

  it('IIR bit 5 stays 0 (Linux probes for a 16750 with FCR bit 5)', () => {
    const { r, w } = uart();
    w(Reg.IIR_FCR, 0x21);
    expect(r(Reg.IIR_FCR)).toBe(IIR_FIFO | IIR_NONE);
  });

  it('other FCR bits are not programmed while FCR0 is 0', () => {
    const { r, w } = uart();
    w(Reg.IIR_FCR, 0xc0);
    expect(r(Reg.IIR_FCR)).toBe(IIR_NONE);
  });

  it('FCR1 clears the RX FIFO; FCR2 (TX) has nothing to clear', () => {
    const { dev, r, w } = uart();
    w(Reg.IIR_FCR, FCR_ENABLE);
    dev.receive([1, 2, 3]);
    w(Reg.IIR_FCR, FCR_ENABLE | FCR_CLEAR_TX);
    expect(r(Reg.LSR) & LSR_DR).toBe(LSR_DR);
    w(Reg.IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
    expect(r(Reg.LSR)).toBe(LSR_THRE | LSR_TEMT);
    expect(dev.canReceive()).toBe(16);
  });

  it('entering or leaving FIFO mode empties the FIFOs', () => {
    const { dev, r, w } = uart();
    dev.receive([1]);
    w(Reg.IIR_FCR, FCR_ENABLE);
    expect(r(Reg.LSR) & LSR_DR).toBe(0);
    dev.receive([1, 2]);
    w(Reg.IIR_FCR, 0);
    expect(r(Reg.LSR) & LSR_DR).toBe(0);
    expect(dev.canReceive()).toBe(1);
  });

  it.each([
    [0x00, 1],
    [0x40, 4],
    [0x80, 8],
    [0xc0, 14],
  ])('RX trigger level (FCR 7:6 = %i): below it a character timeout, at it received data available', (bits, level) => {
    const { dev, iir, w } = uart();
    w(Reg.IIR_FCR, bits | FCR_ENABLE);
    w(Reg.IER_DLM, IER_ERBFI);
    dev.receive(new Array(level - 1).fill(0x41));
    expect(iir()).toBe(level === 1 ? IIR_NONE : IIR_CTI);
    dev.receive([0x41]);
    expect(iir()).toBe(IIR_RDA);
  });

  it('in 16450 mode any byte is "received data available", never a timeout', () => {
    const { dev, iir, w } = uart();
    w(Reg.IER_DLM, IER_ERBFI);
    dev.receive([0x41]);
    expect(iir()).toBe(IIR_RDA);
  });

  it('draining below the trigger level turns RDA into a character timeout, then none', () => {
    const { dev, r, iir, w } = uart();
    w(Reg.IIR_FCR, 0x40 | FCR_ENABLE); // trigger 4
    w(Reg.IER_DLM, IER_ERBFI);
    dev.receive([1, 2, 3, 4]);
    expect(iir()).toBe(IIR_RDA);
    r(Reg.RBR_THR_DLL);
    expect(iir()).toBe(IIR_CTI);
    for (let i = 0; i < 3; i++) r(Reg.RBR_THR_DLL);
    expect(iir()).toBe(IIR_NONE);
  });
});

describe('IIR: interrupt identification and priority', () => {
  it('reports none at reset', () => {
    const { r } = uart();
    expect(r(Reg.IIR_FCR)).toBe(IIR_NONE);
  });

  it('line status > received data > THR empty > modem status, each cleared the datasheet way', () => {
    const { r, iir, w, irq } = uart();
    w(Reg.IIR_FCR, FCR_ENABLE);
    w(Reg.MCR, MCR_LOOP | MCR_OUT2 | MCR_DTR); // CTS drops (RTS is off): a modem status delta
    for (let i = 0; i < 17; i++) w(Reg.RBR_THR_DLL, 0x40 + i); // 16 kept, the 17th overruns
    w(Reg.IER_DLM, IER_ERBFI | IER_ETBEI | IER_ELSI | IER_EDSSI);
    expect(irq.level).toBe(true);
    expect(iir()).toBe(IIR_RLS);
    expect(iir()).toBe(IIR_RLS); // reading IIR does not clear it...
    expect(r(Reg.LSR) & LSR_OE).toBe(LSR_OE); // ...reading LSR does
    expect(iir()).toBe(IIR_RDA);
    for (let i = 0; i < 16; i++) r(Reg.RBR_THR_DLL);
    expect(iir()).toBe(IIR_THRE); // this read clears THRE
    expect(iir()).toBe(IIR_MS);
    expect(r(Reg.MSR) & 0x0f).toBe(MSR_DCTS); // reading MSR clears it
    expect(iir()).toBe(IIR_NONE);
    expect(irq.level).toBe(false);
  });

  it('the character timeout ranks with received data, above THR empty', () => {
    const { dev, iir, w } = uart();
    w(Reg.IIR_FCR, 0xc0 | FCR_ENABLE);
    w(Reg.IER_DLM, IER_ERBFI | IER_ETBEI);
    dev.receive([1]);
    expect(iir()).toBe(IIR_CTI);
  });

  it('IER masks each source', () => {
    const { dev, iir, w } = uart();
    dev.receive([1]);
    w(Reg.MCR, MCR_OUT2 | MCR_LOOP);
    expect(iir()).toBe(IIR_NONE); // data, THRE and a modem delta are all there, none enabled
    w(Reg.IER_DLM, IER_EDSSI);
    expect(iir()).toBe(IIR_MS);
  });
});

describe('THRE interrupt', () => {
  it('enabling ETBEI while THR is empty raises it at once (Linux 8250 relies on this)', () => {
    const { iir, w, irq } = uart();
    w(Reg.IER_DLM, IER_ETBEI);
    expect(iir()).toBe(IIR_THRE);
    expect(irq.levels).toEqual([true, false]); // raised by IER, dropped by the IIR read
  });

  it('reading IIR clears THRE only when THRE is what it reports', () => {
    const { dev, r, iir, w } = uart();
    dev.receive([0x61]);
    w(Reg.IER_DLM, IER_ERBFI | IER_ETBEI);
    expect(iir()).toBe(IIR_RDA); // THRE is pending underneath, and stays
    r(Reg.RBR_THR_DLL);
    expect(iir()).toBe(IIR_THRE);
    expect(iir()).toBe(IIR_NONE);
  });

  it('writing THR clears THRE, and the instant transmit raises it again', () => {
    const { iir, w, irq } = uart();
    w(Reg.IER_DLM, IER_ETBEI);
    expect(iir()).toBe(IIR_THRE);
    expect(irq.level).toBe(false);
    w(Reg.RBR_THR_DLL, 0x41);
    expect(irq.level).toBe(true);
    expect(iir()).toBe(IIR_THRE);
  });

  it('rewriting IER with ETBEI already set does not raise it again; toggling does', () => {
    const { iir, w } = uart();
    w(Reg.IER_DLM, IER_ETBEI);
    iir();
    w(Reg.IER_DLM, IER_ETBEI);
    expect(iir()).toBe(IIR_NONE);
    w(Reg.IER_DLM, 0);
    w(Reg.IER_DLM, IER_ETBEI);
    expect(iir()).toBe(IIR_THRE);
  });

  it("passes Linux's UART_BUG_TXEN test: IER=THRI, read LSR and IIR", () => {
    const { r, w } = uart();
    w(Reg.IER_DLM, IER_ETBEI);
    const lsr = r(Reg.LSR);
    const iirValue = r(Reg.IIR_FCR);
    w(Reg.IER_DLM, 0);
    expect(lsr & LSR_TEMT).toBe(LSR_TEMT);
    expect(iirValue & IIR_NONE).toBe(0);
  });
});

describe('IRQ output: level, gated by MCR.OUT2', () => {
  it('stays low while OUT2 is clear, whatever is pending', () => {
    const { dev, w, irq } = uart();
    w(Reg.MCR, 0);
    w(Reg.IER_DLM, IER_ERBFI | IER_ETBEI);
    dev.receive([1]);
    expect(irq.levels).toEqual([]);
    w(Reg.MCR, MCR_OUT2);
    expect(irq.level).toBe(true);
    w(Reg.MCR, 0);
    expect(irq.level).toBe(false);
  });

  it('follows the pending interrupt and changes only on edges', () => {
    const { dev, r, w, irq } = uart();
    w(Reg.IER_DLM, IER_ERBFI);
    dev.receive([1]);
    dev.receive([]);
    r(Reg.LSR);
    r(Reg.RBR_THR_DLL);
    expect(irq.levels).toEqual([true, false]);
  });

  it('a THR write with THRE already pending does not pulse the line', () => {
    const { w, irq } = uart();
    w(Reg.IER_DLM, IER_ETBEI);
    for (let i = 0; i < 5; i++) w(Reg.RBR_THR_DLL, 0x41);
    expect(irq.levels).toEqual([true]);
  });
});

describe('MCR loopback', () => {
  it('THR goes to RBR, not to the sink, and the receive interrupt still works', () => {
    const { sink, r, iir, w, irq } = uart();
    w(Reg.MCR, MCR_LOOP | MCR_OUT2);
    w(Reg.IER_DLM, IER_ERBFI);
    w(Reg.RBR_THR_DLL, 0x55);
    expect(sink.text()).toBe('');
    expect(r(Reg.LSR)).toBe(LSR_DR | LSR_THRE | LSR_TEMT);
    expect(iir()).toBe(IIR_RDA);
    expect(irq.level).toBe(true);
    expect(r(Reg.RBR_THR_DLL)).toBe(0x55);
    expect(irq.level).toBe(false);
  });

  it('MCR outputs drive MSR inputs: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD', () => {
    const { r, w } = uart();
    const inputs = (mcr: number) => {
      w(Reg.MCR, MCR_LOOP | mcr);
      return r(Reg.MSR) & 0xf0;
    };
    expect(inputs(0)).toBe(0);
    expect(inputs(MCR_DTR)).toBe(MSR_DSR);
    expect(inputs(MCR_RTS)).toBe(MSR_CTS);
    expect(inputs(MCR_OUT1)).toBe(MSR_RI);
    expect(inputs(MCR_OUT2)).toBe(MSR_DCD);
    expect(inputs(MCR_OUT2 | MCR_RTS)).toBe(0x90); // what Linux's 8250 probe checks for
  });

  it('host input is refused: the serial input is disconnected', () => {
    const { dev, w } = uart();
    w(Reg.MCR, MCR_LOOP);
    expect(dev.canReceive()).toBe(0);
    expect(dev.receive([1])).toBe(0);
    w(Reg.MCR, MCR_OUT2);
    expect(dev.receive([1])).toBe(1);
  });

  it('16450 mode: a second byte overruns (OE) and replaces the first', () => {
    const { r, w } = uart();
    w(Reg.MCR, MCR_LOOP);
    w(Reg.RBR_THR_DLL, 1);
    w(Reg.RBR_THR_DLL, 2);
    expect(r(Reg.LSR)).toBe(LSR_DR | LSR_OE | LSR_THRE | LSR_TEMT);
    expect(r(Reg.LSR) & LSR_OE).toBe(0); // cleared by the read
    expect(r(Reg.RBR_THR_DLL)).toBe(2);
  });

  it('FIFO mode: the 17th byte overruns and is lost; the FIFO keeps the first 16', () => {
    const { r, w } = uart();
    w(Reg.IIR_FCR, FCR_ENABLE);
    w(Reg.MCR, MCR_LOOP);
    for (let i = 0; i < 17; i++) w(Reg.RBR_THR_DLL, i);
    expect(r(Reg.LSR) & LSR_OE).toBe(LSR_OE);
    const got = Array.from({ length: 16 }, () => r(Reg.RBR_THR_DLL));
    expect(got).toEqual(Array.from({ length: 16 }, (_, i) => i));
    expect(r(Reg.LSR) & LSR_DR).toBe(0);
  });
});

describe('MSR: modem status', () => {
  it('an idle host line shows DCD, DSR and CTS with no deltas', () => {
    const { r } = uart();
    expect(r(Reg.MSR)).toBe(MSR_DCD | MSR_DSR | MSR_CTS);
  });

  it('delta bits record changes and are cleared by reading MSR', () => {
    const { r, w } = uart();
    w(Reg.MCR, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT2); // from the host lines: only DSR/CTS/DCD kept
    expect(r(Reg.MSR)).toBe(MSR_DCD | MSR_DSR | MSR_CTS);
    w(Reg.MCR, MCR_LOOP);
    expect(r(Reg.MSR)).toBe(MSR_DCTS | MSR_DDSR | MSR_DDCD);
    expect(r(Reg.MSR)).toBe(0);
  });

  it('TERI is set on the trailing edge of RI only', () => {
    const { r, w } = uart();
    w(Reg.MCR, MCR_LOOP);
    r(Reg.MSR);
    w(Reg.MCR, MCR_LOOP | MCR_OUT1); // RI rises
    expect(r(Reg.MSR)).toBe(MSR_RI);
    w(Reg.MCR, MCR_LOOP); // RI falls
    expect(r(Reg.MSR)).toBe(MSR_TERI);
  });

  it('a delta raises the modem status interrupt when EDSSI is set', () => {
    const { r, iir, w, irq } = uart();
    w(Reg.IER_DLM, IER_EDSSI);
    w(Reg.MCR, MCR_LOOP | MCR_OUT2 | MCR_RTS);
    expect(iir()).toBe(IIR_MS);
    expect(irq.level).toBe(true);
    r(Reg.MSR);
    expect(irq.level).toBe(false);
  });
});

describe('LSR: error bits', () => {
  it('a break arrives as a NUL byte with BI, a line status interrupt, cleared by reading LSR', () => {
    const { dev, r, iir, w } = uart();
    w(Reg.IER_DLM, IER_ELSI | IER_ERBFI);
    expect(dev.receiveBreak()).toBe(true);
    expect(iir()).toBe(IIR_RLS);
    expect(r(Reg.LSR)).toBe(LSR_DR | LSR_BI | LSR_THRE | LSR_TEMT);
    expect(r(Reg.LSR)).toBe(LSR_DR | LSR_THRE | LSR_TEMT);
    expect(iir()).toBe(IIR_RDA);
    expect(r(Reg.RBR_THR_DLL)).toBe(0);
  });

  it('a break is refused like any byte when the receiver is full', () => {
    const { dev } = uart();
    dev.receive([1]);
    expect(dev.receiveBreak()).toBe(false);
  });

  it('FIFO mode: BI shows when its byte reaches the top; bit 7 while an error is in the FIFO', () => {
    const { dev, r, w } = uart();
    w(Reg.IIR_FCR, FCR_ENABLE);
    dev.receive([0x61]);
    dev.receiveBreak();
    expect(r(Reg.LSR)).toBe(LSR_FIFO_ERR | LSR_DR | LSR_THRE | LSR_TEMT); // not BI yet
    expect(r(Reg.RBR_THR_DLL)).toBe(0x61);
    expect(r(Reg.LSR)).toBe(LSR_FIFO_ERR | LSR_BI | LSR_DR | LSR_THRE | LSR_TEMT);
    expect(r(Reg.RBR_THR_DLL)).toBe(0);
    expect(r(Reg.LSR)).toBe(LSR_FIFO_ERR | LSR_THRE | LSR_TEMT); // cleared by this read: none left
    expect(r(Reg.LSR)).toBe(LSR_THRE | LSR_TEMT);
  });

  it('16450 mode: bit 7 is always 0', () => {
    const { dev, r } = uart();
    dev.receiveBreak();
    expect(r(Reg.LSR) & LSR_FIFO_ERR).toBe(0);
    expect(r(Reg.LSR) & LSR_FIFO_ERR).toBe(0);
  });
});

describe('reset()', () => {
  it('returns to the power-on registers and drops the IRQ; SCR and the divisor stay', () => {
    const { dev, r, w, irq } = uart();
    w(Reg.SCR, 0x77);
    w(Reg.IIR_FCR, FCR_ENABLE);
    w(Reg.IER_DLM, IER_ERBFI);
    dev.receive([1, 2]);
    w(Reg.LCR, 0x83);
    w(Reg.RBR_THR_DLL, 3);
    dev.reset();
    expect(irq.level).toBe(false);
    expect([r(Reg.IER_DLM), r(Reg.IIR_FCR), r(Reg.LCR), r(Reg.MCR), r(Reg.LSR), r(Reg.MSR), r(Reg.SCR)])
      .toEqual([0, IIR_NONE, 0, MCR_OUT2, LSR_THRE | LSR_TEMT, MSR_DCD | MSR_DSR | MSR_CTS, 0x77]);
    w(Reg.LCR, LCR_DLAB);
    expect(r(Reg.RBR_THR_DLL)).toBe(3);
  });
});
