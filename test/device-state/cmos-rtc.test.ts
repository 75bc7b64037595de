// The CMOS RTC's state as data (CMOS_RTC_STATE): the 128 bytes, the index
// and NMI bit, the guest's offset from host time, and a time held under
// B.SET. A chip driven into such a state is saved, restored into a fresh
// chip, and both then read alike, byte by byte and as the clock runs on.
import { describe, expect, it } from 'vitest';
import { rtc, START } from '../helpers/cmos.ts';
import { CMOS_RTC_STATE, CmosPort, CmosReg, CmosRtc } from '../../src/devices/cmos-rtc.ts';
import { expectRestoreRefusals } from './refusals.ts';

const B_SET = 0x80, B_UIE = 0x10, B_BINARY = 0x04, B_24H = 0x02;
const C_UF = 0x10;


/** Binary 12-hour mode, the clock moved to 1999-12-31 (an offset from the host), RAM and an alarm set, then SET with a new time written under it. */
function busyRtc() {
  const r = rtc();
  r.write(CmosReg.B, B_BINARY);
  r.write(CmosReg.YEAR, 99);
  r.write(CmosReg.CENTURY, 19);
  r.write(CmosReg.MONTH, 12);
  r.write(CmosReg.DAY_OF_MONTH, 31);
  r.write(CmosReg.HOURS_ALARM, 0x85); // 5 PM
  r.write(0x40, 0x11);
  r.write(0x7f, 0xee);
  r.write(CmosReg.B, B_SET | B_UIE | B_BINARY); // SET clears UIE
  r.write(CmosReg.MINUTES, 59);
  r.write(CmosReg.SECONDS, 58);
  r.dev.write(CmosPort.INDEX, 1, 0x80 | CmosReg.HOURS); // NMI masked, hours selected
  return r;
}

describe('CmosRtc state', () => {
  it('a chip with a held time, an offset, RAM and a selected index reads the same after a restore', () => {
    const original = busyRtc();
    const saved = original.dev.saveState();
    expect(saved.kind).toBe('cmos-rtc');
    const copy = rtc();
    copy.dev.restoreState(saved);

    // The index and the NMI bit: the data port reads the selected register before any index write.
    expect(copy.dev.nmiMasked).toBe(true);
    expect(copy.dev.read(CmosPort.DATA, 1)).toBe(original.dev.read(CmosPort.DATA, 1));
    expect(copy.all()).toEqual(original.all());
    expect(copy.time()).toEqual([58, 59, 9 | 0x80, 6, 31, 12, 99, 19]); // held: 9 PM, binary, Friday 1999-12-31

    // Under SET the clock does not run for the guest, on either chip.
    original.clock.ms += 5000;
    copy.clock.ms += 5000;
    expect(copy.time()).toEqual(original.time());
    // Clearing SET starts both from the written time; they then tick together into 2000.
    for (const r of [original, copy]) r.write(CmosReg.B, B_BINARY | B_24H);
    original.clock.ms += 2000;
    copy.clock.ms += 2000;
    expect(copy.time()).toEqual(original.time());
    expect(copy.time()).toEqual([0, 0, 22, 6, 31, 12, 99, 19]); // Friday
    original.clock.ms += 2 * 3600_000;
    copy.clock.ms += 2 * 3600_000;
    expect(copy.time()).toEqual([0, 0, 0, 7, 1, 1, 0, 20]); // Saturday 2000-01-01
    expect(copy.read(CmosReg.C)).toBe(original.read(CmosReg.C));
  });

  it('the guest clock keeps its offset from host time: restored an hour later, it is an hour later', () => {
    const original = busyRtc();
    original.write(CmosReg.B, B_BINARY | B_24H); // runs from 21:59:58 on 1999-12-31
    const later = rtc({ ms: START + 3600_000 });
    later.dev.restoreState(original.dev.saveState());
    expect(later.time()).toEqual([58, 59, 22, 6, 31, 12, 99, 19]);
  });

  it('update-flag bookkeeping survives: C after a restore reports the second that ended since the last read', () => {
    const original = rtc();
    original.read(CmosReg.C);
    original.clock.ms += 1000;
    const copy = rtc({ ms: original.clock.ms });
    copy.dev.restoreState(original.dev.saveState());
    expect(copy.read(CmosReg.C) & C_UF).toBe(C_UF);
    expect(copy.read(CmosReg.C) & C_UF).toBe(0);
  });

  it('two objects over one buffer are one chip: an index, SET and a time written through one show through the other', () => {
    const a = rtc();
    const b = rtc({ state: a.dev.state });
    a.write(CmosReg.B, B_SET | B_24H);
    a.write(CmosReg.HOURS, 0x23);
    a.dev.write(CmosPort.INDEX, 1, CmosReg.HOURS);
    expect(b.dev.read(CmosPort.DATA, 1)).toBe(0x23);
    b.write(0x50, 0x99);
    expect(a.dev.getByte(0x50)).toBe(0x99);
    b.write(CmosReg.B, B_24H);
    a.clock.ms += 1000; // both objects read the same host clock in a machine; here each has its own
    b.clock.ms += 1000;
    expect(a.time()).toEqual(b.time());
    expect(a.read(CmosReg.HOURS)).toBe(0x23);
  });

  it('a new state takes the constructor\'s plain bytes; a shared one is used as it is', () => {
    const a = new CmosRtc({ bytes: { 0x34: 0x12 } });
    const b = new CmosRtc({ bytes: { 0x34: 0x56 }, state: a.state });
    expect(b.getByte(0x34)).toBe(0x12);
    expect(CmosRtc.createState({ bytes: { 0x35: 7 } }).byteLength).toBe(CMOS_RTC_STATE.bytes);
  });

  it('refuses another device\'s state, another version and a damaged size', () => {
    expectRestoreRefusals(CMOS_RTC_STATE, busyRtc().dev);
  });
});
