// A CMOS RTC on a clock the test moves by hand, with the index/data port
// sequence a driver uses to read and write its bytes.
import { CmosPort, CmosReg, CmosRtc } from '../../src/devices/cmos-rtc.ts';

/** Saturday 2025-05-17 21:07:09.250 UTC. */
export const START = Date.UTC(2025, 4, 17, 21, 7, 9, 250);

export function rtc(options: { bytes?: Record<number, number>; state?: SharedArrayBuffer; ms?: number } = {}) {
  const clock = { ms: options.ms ?? START };
  const dev = new CmosRtc({
    now: () => new Date(clock.ms),
    ...(options.bytes ? { bytes: options.bytes } : {}),
    ...(options.state ? { state: options.state } : {}),
  });
  const read = (index: number) => {
    dev.write(CmosPort.INDEX, 1, index);
    return dev.read(CmosPort.DATA, 1);
  };
  const write = (index: number, value: number) => {
    dev.write(CmosPort.INDEX, 1, index);
    dev.write(CmosPort.DATA, 1, value);
  };
  const time = () => [CmosReg.SECONDS, CmosReg.MINUTES, CmosReg.HOURS, CmosReg.DAY_OF_WEEK, CmosReg.DAY_OF_MONTH, CmosReg.MONTH, CmosReg.YEAR, CmosReg.CENTURY].map(read);
  /** Every index 0..127 in order (C's read-to-clear included, alike on both sides). */
  const all = () => Array.from({ length: 128 }, (_, i) => read(i));
  return { dev, clock, read, write, time, all };
}
