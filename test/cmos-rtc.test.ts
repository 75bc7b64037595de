// The CMOS RTC register by register (Motorola MC146818 datasheet; QEMU
// hw/rtc/mc146818rtc.c where the datasheet is silent).
import { describe, expect, it } from 'vitest';
import { rtc, START } from './helpers/cmos.ts';
import { CmosPort, CmosReg } from '../src/devices/cmos-rtc.ts';

const A_UIP = 0x80;
const B_SET = 0x80, B_PIE = 0x40, B_AIE = 0x20, B_UIE = 0x10, B_SQWE = 0x08, B_BINARY = 0x04, B_24H = 0x02;
const C_IRQF = 0x80, C_PF = 0x40, C_UF = 0x10;
const D_VRT = 0x80;


describe('index port (0x70) and the NMI mask', () => {
  it('bit 7 masks NMI and is not part of the index', () => {
    const { dev, read } = rtc();
    dev.write(CmosPort.INDEX, 1, 0x80 | CmosReg.D);
    expect(dev.nmiMasked).toBe(true);
    expect(dev.read(CmosPort.DATA, 1)).toBe(D_VRT);
    dev.write(CmosPort.INDEX, 1, CmosReg.D);
    expect(dev.nmiMasked).toBe(false);
    expect(read(CmosReg.D)).toBe(D_VRT);
  });

  it('NMIs are not masked at power-on', () => {
    expect(rtc().dev.nmiMasked).toBe(false);
  });

  it('the index stays selected across data accesses; the index port reads 0xFF', () => {
    const { dev, write } = rtc();
    write(0x40, 0x12);
    expect(dev.read(CmosPort.DATA, 1)).toBe(0x12);
    expect(dev.read(CmosPort.DATA, 1)).toBe(0x12);
    expect(dev.read(CmosPort.INDEX, 1)).toBe(0xff);
  });
});

describe('time and date registers (0x00..0x09, century 0x32)', () => {
  it('read the UTC wall clock in BCD by default', () => {
    const { time } = rtc();
    // seconds, minutes, hours, day of week (Sunday = 1), day, month, year, century
    expect(time()).toEqual([0x09, 0x07, 0x21, 0x07, 0x17, 0x05, 0x25, 0x20]);
  });

  it('read binary when B.DM (bit 2) is set', () => {
    const { write, time } = rtc();
    write(CmosReg.B, B_24H | B_BINARY);
    expect(time()).toEqual([9, 7, 21, 7, 17, 5, 25, 20]);
  });

  it('follow the clock as it runs', () => {
    const { clock, read } = rtc();
    clock.ms += 750;
    expect(read(CmosReg.SECONDS)).toBe(0x10);
    clock.ms += 50_000;
    expect(read(CmosReg.MINUTES)).toBe(0x08);
  });

  it('roll over into the next century', () => {
    const { clock, time } = rtc();
    clock.ms = Date.UTC(2099, 11, 31, 23, 59, 59, 500);
    expect(time()).toEqual([0x59, 0x59, 0x23, 0x05, 0x31, 0x12, 0x99, 0x20]);
    clock.ms += 500;
    expect(time()).toEqual([0x00, 0x00, 0x00, 0x06, 0x01, 0x01, 0x00, 0x21]);
  });
});

describe('hours: 24-hour and 12-hour mode (B bit 1)', () => {
  const hoursAt = (hour: number, b: number) => {
    const { clock, read, write } = rtc();
    write(CmosReg.B, b);
    clock.ms = Date.UTC(2025, 0, 1, hour, 30);
    return read(CmosReg.HOURS);
  };

  it('24-hour mode counts 0..23', () => {
    expect(hoursAt(0, B_24H)).toBe(0x00);
    expect(hoursAt(23, B_24H)).toBe(0x23);
    expect(hoursAt(23, B_24H | B_BINARY)).toBe(23);
  });

  it('12-hour mode counts 12, 1..11 with bit 7 = PM', () => {
    expect(hoursAt(0, 0)).toBe(0x12); // midnight: 12 AM
    expect(hoursAt(1, 0)).toBe(0x01);
    expect(hoursAt(12, 0)).toBe(0x92); // noon: 12 PM
    expect(hoursAt(21, 0)).toBe(0x89);
    expect(hoursAt(21, B_BINARY)).toBe(0x80 | 9);
    expect(hoursAt(12, B_BINARY)).toBe(0x80 | 12);
  });

  it('a 12-hour write is read back in 24-hour terms', () => {
    const { write, read } = rtc();
    write(CmosReg.B, 0);
    write(CmosReg.HOURS, 0x83); // 3 PM
    write(CmosReg.B, B_24H);
    expect(read(CmosReg.HOURS)).toBe(0x15);
    write(CmosReg.B, 0);
    write(CmosReg.HOURS, 0x12); // 12 AM
    write(CmosReg.B, B_24H);
    expect(read(CmosReg.HOURS)).toBe(0x00);
  });
});

describe('register A', () => {
  it('powers on with the 32.768 kHz divider and 1024 Hz rate, UIP clear', () => {
    expect(rtc().read(CmosReg.A)).toBe(0x26);
  });

  it('UIP is set only in the last millisecond before a second ticks, never stuck', () => {
    const { clock, read } = rtc();
    clock.ms = START - 250 + 998;
    expect(read(CmosReg.A) & A_UIP).toBe(0);
    clock.ms += 1;
    expect(read(CmosReg.A) & A_UIP).toBe(A_UIP);
    clock.ms += 1;
    expect(read(CmosReg.A) & A_UIP).toBe(0);
  });

  it('UIP stays clear while B.SET stops updates', () => {
    const { clock, read, write } = rtc();
    write(CmosReg.B, B_SET | B_24H);
    clock.ms = START - 250 + 999;
    expect(read(CmosReg.A) & A_UIP).toBe(0);
  });

  it('divider and rate bits are writable; UIP is read-only', () => {
    const { clock, read, write } = rtc();
    write(CmosReg.A, 0xff);
    expect(read(CmosReg.A)).toBe(0x7f);
    clock.ms = START - 250 + 999;
    expect(read(CmosReg.A)).toBe(0xff); // UIP from the clock, not from the write
  });
});

describe('register B: SET freezes the clock', () => {
  it('powers on in 24-hour BCD mode', () => {
    expect(rtc().read(CmosReg.B)).toBe(B_24H);
  });

  it('under SET the registers hold the time latched when SET was written; clearing SET without a time write keeps the running clock', () => {
    const { clock, write, read, time } = rtc();
    write(CmosReg.B, B_SET | B_24H);
    clock.ms += 10_000;
    expect(read(CmosReg.SECONDS)).toBe(0x09);
    write(CmosReg.B, B_24H);
    expect(read(CmosReg.SECONDS)).toBe(0x19); // the clock kept time underneath
    expect(time()[1]).toBe(0x07);
  });

  it('time written under SET runs from the moment SET is cleared', () => {
    const { clock, write, read, time } = rtc();
    write(CmosReg.B, B_SET | B_24H);
    const writes: [number, number][] = [
      [CmosReg.SECONDS, 0x58], [CmosReg.MINUTES, 0x59], [CmosReg.HOURS, 0x23],
      [CmosReg.DAY_OF_MONTH, 0x31], [CmosReg.MONTH, 0x12], [CmosReg.YEAR, 0x99], [CmosReg.CENTURY, 0x19],
    ];
    for (const [index, value] of writes) write(index, value);
    clock.ms += 5_000; // frozen: nothing moves
    expect(read(CmosReg.SECONDS)).toBe(0x58);
    write(CmosReg.B, B_24H);
    expect(time()).toEqual([0x58, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19]); // a Friday
    clock.ms += 750; // the host's second ends: so does the guest's
    expect(read(CmosReg.SECONDS)).toBe(0x59);
    clock.ms += 1000;
    expect(time()).toEqual([0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20]);
  });

  it('a day-of-week write shows while SET holds the clock; the date decides it afterwards', () => {
    const { write, read } = rtc();
    write(CmosReg.B, B_SET | B_24H);
    write(CmosReg.DAY_OF_WEEK, 0x02);
    expect(read(CmosReg.DAY_OF_WEEK)).toBe(0x02);
    write(CmosReg.B, B_24H);
    expect(read(CmosReg.DAY_OF_WEEK)).toBe(0x07);
  });

  it('writes while the clock runs move it at once', () => {
    const { clock, write, read } = rtc();
    write(CmosReg.MINUTES, 0x30);
    expect(read(CmosReg.MINUTES)).toBe(0x30);
    expect(read(CmosReg.HOURS)).toBe(0x21);
    clock.ms += 1000;
    expect(read(CmosReg.SECONDS)).toBe(0x10);
    expect(read(CmosReg.MINUTES)).toBe(0x30);
  });

  it('binary mode decodes written values as binary', () => {
    const { write, read } = rtc();
    write(CmosReg.B, B_SET | B_24H | B_BINARY);
    write(CmosReg.YEAR, 30);
    write(CmosReg.B, B_24H | B_BINARY);
    expect(read(CmosReg.YEAR)).toBe(30);
    write(CmosReg.B, B_24H);
    expect(read(CmosReg.YEAR)).toBe(0x30);
  });

  it('setting SET clears UIE', () => {
    const { write, read } = rtc();
    write(CmosReg.B, B_SET | B_UIE | B_24H);
    expect(read(CmosReg.B)).toBe(B_SET | B_24H);
  });
});

describe('register C: interrupt flags (no IRQ8 is raised)', () => {
  it('UF reports a second that ended since C was last read; reading clears', () => {
    const { clock, write, read } = rtc();
    write(CmosReg.A, 0x20); // no periodic rate: no PF
    read(CmosReg.C);
    clock.ms += 500;
    expect(read(CmosReg.C)).toBe(0);
    clock.ms += 500;
    expect(read(CmosReg.C)).toBe(C_UF);
    expect(read(CmosReg.C)).toBe(0);
  });

  it('PF reports a period of the rate in A; IRQF joins a flag whose interrupt B enables', () => {
    const { clock, write, read } = rtc();
    write(CmosReg.A, 0x2f); // 2 Hz
    read(CmosReg.C);
    clock.ms += 250;
    expect(read(CmosReg.C)).toBe(C_PF);
    write(CmosReg.B, B_24H | B_PIE);
    clock.ms += 500;
    expect(read(CmosReg.C)).toBe(C_IRQF | C_PF | C_UF);
  });

  it('no update flag while SET stops the clock', () => {
    const { clock, write, read } = rtc();
    write(CmosReg.A, 0x20);
    write(CmosReg.B, B_SET | B_24H);
    read(CmosReg.C);
    clock.ms += 3000;
    expect(read(CmosReg.C)).toBe(0);
  });

  it('is read-only', () => {
    const { clock, write, read } = rtc();
    write(CmosReg.A, 0x20);
    read(CmosReg.C);
    write(CmosReg.C, 0xff);
    clock.ms += 1;
    expect(read(CmosReg.C)).toBe(0);
  });
});

describe('register D', () => {
  it('VRT (bit 7) is always set: the battery is good; writes are ignored', () => {
    const { write, read } = rtc();
    expect(read(CmosReg.D)).toBe(D_VRT);
    write(CmosReg.D, 0);
    expect(read(CmosReg.D)).toBe(D_VRT);
  });
});

describe('alarm registers (0x01, 0x03, 0x05)', () => {
  it('are stored as written', () => {
    const { write, read } = rtc();
    write(CmosReg.SECONDS_ALARM, 0x30);
    write(CmosReg.MINUTES_ALARM, 0xc0); // "don't care"
    write(CmosReg.HOURS_ALARM, 0x06);
    expect([read(CmosReg.SECONDS_ALARM), read(CmosReg.MINUTES_ALARM), read(CmosReg.HOURS_ALARM)]).toEqual([0x30, 0xc0, 0x06]);
    expect(read(CmosReg.SECONDS)).toBe(0x09); // the time is untouched
  });
});

describe('plain CMOS RAM (0x0E..0x7F)', () => {
  it('stores what the guest writes', () => {
    const { write, read } = rtc();
    for (const index of [0x0e, 0x0f, 0x31, 0x33, 0x7f]) {
      write(index, index ^ 0xa5);
      expect(read(index)).toBe(index ^ 0xa5);
    }
  });

  it('takes initial contents from the constructor and setByte (memory size as QEMU puts it)', () => {
    const { dev, read } = rtc({ bytes: { 0x34: 0x00, 0x35: 0x3f } });
    dev.setByte(0x5b, 0x00);
    dev.setByte(0x5c, 0x10);
    dev.setByte(0x5d, 0x00);
    expect([0x34, 0x35, 0x5b, 0x5c, 0x5d].map(read)).toEqual([0x00, 0x3f, 0x00, 0x10, 0x00]);
    expect(dev.getByte(0x35)).toBe(0x3f);
  });

  it('setByte refuses the clock registers and the century byte', () => {
    const { dev } = rtc();
    for (const index of [0x00, 0x0b, 0x0d, 0x32, 0x80, -1]) expect(() => dev.setByte(index, 0)).toThrow(RangeError);
    expect(() => rtc({ bytes: { 0x32: 0x19 } })).toThrow(RangeError);
  });
});

describe('reset()', () => {
  it('clears the interrupt enables and keeps the time, the format and the RAM', () => {
    const { dev, write, read } = rtc();
    write(CmosReg.B, B_PIE | B_AIE | B_UIE | B_SQWE | B_BINARY | B_24H);
    write(0x40, 0x77);
    dev.reset();
    expect(read(CmosReg.B)).toBe(B_BINARY | B_24H);
    expect(read(0x40)).toBe(0x77);
    expect(read(CmosReg.SECONDS)).toBe(9);
  });
});
