// Suspend to RAM (ACPI S3) the way firmware-era software drives it, and
// kvm-unit-tests' s3.flat: the FADT's FACS and PM1a blocks, the PM1a
// registers (devices/acpi-pm1.ts), the RTC alarm that wakes the machine, and
// the real-mode resume at the FACS waking vector. Then s3-resume, a multiboot
// guest that sleeps and is woken by the alarm, under KVM.
import { describe, expect, it } from 'vitest';
import { multibootFirmwarePath } from '../firmware/firmware.ts';
import { AcpiLayout, acpiPlatform, buildAcpiTables } from '../src/boot/acpi/index.ts';
import { FacsField, FadtField, FACS_SIZE } from '../src/boot/acpi/tables.ts';
import { realModeEntry } from '../src/boot/cpu-entry.ts';
import { AddressSpace } from '../src/bus/index.ts';
import { AcpiPm1, ACPI_PM1_CONTROL_PORT_COUNT, ACPI_PM1_EVENT_PORT_COUNT, Pm1Status, type AcpiPm1Request } from '../src/devices/acpi-pm1.ts';
import { CmosReg } from '../src/devices/cmos-rtc.ts';
import { MonotonicClock } from '../src/devices/clock.ts';
import { RecordingLine } from '../src/devices/interrupt-line.ts';
import { PortLayout } from '../src/layout.ts';
import { attachDevices } from '../src/machine/bus-devices.ts';
import { machineDevices } from '../src/machine/builder.ts';
import { GuestMemory } from '../src/memory/index.ts';
import type { VcpuStop } from '../src/vcpu/index.ts';
import { POWER_ON_STATE } from './helpers/fake-kernels.ts';
import { rtc, START } from './helpers/cmos.ts';
import { hasKvm, tsvmm } from './helpers/kvm.ts';

const EVT = PortLayout.ACPI_PM1A_EVENT;
const CNT = PortLayout.ACPI_PM1A_CONTROL;
const B_24H = 0x02, B_AIE = 0x20, C_AF = 0x20;

function pm1() {
  const requests: AcpiPm1Request[] = [];
  const device = new AcpiPm1((what) => requests.push(what));
  const pio = AddressSpace.ports();
  pio.register(EVT, ACPI_PM1_EVENT_PORT_COUNT, device.event);
  pio.register(CNT, ACPI_PM1_CONTROL_PORT_COUNT, device.control);
  return { device, pio, requests };
}

describe('the FADT and FACS', () => {
  const tables = buildAcpiTables(acpiPlatform(1), AcpiLayout.TABLES_ADDRESS, AcpiLayout.TABLES_MAX_SIZE);
  const at = (address: number) => Buffer.from(tables.image.buffer, tables.image.byteOffset + address - tables.rsdpAddress);
  const fadt = at(tables.tables.find((t) => t.signature === 'FACP')!.address);

  it('the FACS is where AcpiLayout says, 64-byte aligned, through FIRMWARE_CTRL and X_FIRMWARE_CTRL, not in the XSDT', () => {
    expect(tables.tables.find((t) => t.signature === 'FACS')).toEqual({ signature: 'FACS', address: AcpiLayout.FACS_ADDRESS, length: FACS_SIZE });
    expect(AcpiLayout.FACS_ADDRESS % 64).toBe(0);
    expect(fadt.readUInt32LE(FadtField.FIRMWARE_CTRL)).toBe(AcpiLayout.FACS_ADDRESS);
    expect(Number(fadt.readBigUInt64LE(FadtField.X_FIRMWARE_CTRL))).toBe(AcpiLayout.FACS_ADDRESS);
    const facs = at(AcpiLayout.FACS_ADDRESS);
    expect(facs.toString('latin1', 0, 4)).toBe('FACS');
    expect(facs.readUInt32LE(FacsField.LENGTH)).toBe(64);
    expect(facs.readUInt32LE(FacsField.FIRMWARE_WAKING_VECTOR)).toBe(0);
    expect(facs.readUInt8(FacsField.VERSION)).toBe(2);
  });

  it('PM1a_EVT_BLK (4 bytes) and PM1a_CNT_BLK (2 bytes), in both forms; still hardware-reduced for an OS', () => {
    expect(fadt.readUInt32LE(FadtField.PM1A_EVT_BLK)).toBe(EVT);
    expect(fadt.readUInt8(FadtField.PM1_EVT_LEN)).toBe(4);
    expect(fadt.readUInt32LE(FadtField.PM1A_CNT_BLK)).toBe(CNT);
    expect(fadt.readUInt8(FadtField.PM1_CNT_LEN)).toBe(2);
    expect([...fadt.subarray(FadtField.X_PM1A_EVT_BLK, FadtField.X_PM1A_EVT_BLK + 4)]).toEqual([1, 32, 0, 2]);
    expect(Number(fadt.readBigUInt64LE(FadtField.X_PM1A_EVT_BLK + 4))).toBe(EVT);
    expect([...fadt.subarray(FadtField.X_PM1A_CNT_BLK, FadtField.X_PM1A_CNT_BLK + 4)]).toEqual([1, 16, 0, 2]);
    expect(Number(fadt.readBigUInt64LE(FadtField.X_PM1A_CNT_BLK + 4))).toBe(CNT);
    expect(fadt.readUInt32LE(FadtField.FLAGS) & (1 << 20)).not.toBe(0);
  });
});

describe('the PM1a registers', () => {
  it('PM1_EN keeps RTC_EN only; PM1_STS clears by writing 1; PM1_CNT reads SCI_EN and SLP_TYP, never SLP_EN', () => {
    const { device, pio } = pm1();
    pio.write(EVT + 2, 2, 0xffff);
    expect(pio.read(EVT + 2, 2)).toBe(0x400);
    expect(device.rtcWakeEnabled).toBe(true);
    device.wake(Pm1Status.RTC_STS);
    expect(pio.read(EVT, 2)).toBe(0x8400);
    expect(pio.read(EVT, 4)).toBe(0x0400_8400); // a dword reads status, then enable
    pio.write(EVT, 2, 0x0400);
    expect(pio.read(EVT, 2)).toBe(0x8000);
    pio.write(EVT + 1, 1, 0x80); // a byte write to the high half
    expect(pio.read(EVT, 2)).toBe(0);
    pio.write(CNT, 2, 3 << 10); // SLP_TYP 3 without SLP_EN: stored, nothing happens
    expect(pio.read(CNT, 2)).toBe((3 << 10) | 1);
  });

  it('SLP_EN with SLP_TYP 1 suspends, with 0 powers off (QEMU PIIX4 values); another type wakes at once', () => {
    const { pio, requests } = pm1();
    pio.write(CNT, 2, 0x2400); // what kvm-unit-tests' s3 writes
    pio.write(CNT, 2, 0x2000);
    expect(requests).toEqual(['suspend', 'power-off']);
    pio.write(CNT, 2, 0x2000 | (5 << 10));
    expect(requests).toHaveLength(2);
    expect(pio.read(EVT, 2)).toBe(Pm1Status.WAK_STS);
    expect(pio.read(CNT, 2) & 0x2000).toBe(0);
  });
});

describe('the RTC alarm', () => {
  it('with every byte "don\'t care" it goes off at each second; AF shows in C once one passed', () => {
    const { dev, clock, read, write } = rtc();
    for (const reg of [CmosReg.SECONDS_ALARM, CmosReg.MINUTES_ALARM, CmosReg.HOURS_ALARM]) write(reg, 0xc0);
    expect(dev.nextAlarmAtMs()).toBeNull(); // B.AIE clear
    write(CmosReg.B, B_24H | B_AIE);
    expect(dev.nextAlarmAtMs()).toBe(START - 250 + 1000);
    read(CmosReg.C);
    clock.ms += 500;
    expect(read(CmosReg.C) & C_AF).toBe(0);
    clock.ms += 500;
    expect(read(CmosReg.C) & C_AF).toBe(C_AF);
  });

  it('matches the time in the format B sets: 21:08:00 in BCD is the next such second', () => {
    const { dev, write } = rtc(); // 21:07:09.250
    write(CmosReg.B, B_24H | B_AIE);
    write(CmosReg.SECONDS_ALARM, 0x00);
    write(CmosReg.MINUTES_ALARM, 0x08);
    write(CmosReg.HOURS_ALARM, 0xff);
    expect(dev.nextAlarmAtMs()).toBe(Date.UTC(2025, 4, 17, 21, 8, 0));
    write(CmosReg.HOURS_ALARM, 0x25); // no such hour: never
    expect(dev.nextAlarmAtMs()).toBeNull();
  });
});

describe("the machine's PM1a block, as a vCPU thread attaches it", () => {
  function attached(requestSleep?: () => boolean) {
    const pio = AddressSpace.ports();
    const stops: VcpuStop[] = [];
    const memory = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 0x10_0000 }]);
    const platform = attachDevices(
      machineDevices({ pit: 'kernel' }, true),
      { pio, mmio: AddressSpace.memory(), memory, requestStop: (stop) => stops.push(stop), irqLine: () => new RecordingLine(), flushPage() {}, ...(requestSleep ? { requestSleep } : {}) },
      { console: { writeByte() {} }, input: null, clock: new MonotonicClock(), timers: null },
    );
    return { pio, stops, memory, sleep: platform.sleep! };
  }

  it('S3 asks the vCPU to sleep; the wake is the RTC alarm when RTC_EN is set, and resumes at the FACS waking vector', () => {
    let asked = 0;
    const { pio, memory, sleep } = attached(() => { asked++; return true; });
    memory.writeU32(AcpiLayout.FACS_ADDRESS + FacsField.FIRMWARE_WAKING_VECTOR, 0x1000);
    pio.write(0x70, 1, CmosReg.B);
    pio.write(0x71, 1, B_24H | B_AIE); // alarm bytes 0: at 00:00:00 UTC
    pio.write(CNT, 2, 0x2400);
    expect(asked).toBe(1);
    expect(sleep.wakeAtMs()).toBeNull(); // RTC_EN clear: nothing can wake it
    pio.write(EVT + 2, 2, 0x400);
    const wakeAt = sleep.wakeAtMs()!;
    expect(wakeAt % (24 * 3600 * 1000)).toBe(0);
    expect(wakeAt - Date.now()).toBeLessThanOrEqual(24 * 3600 * 1000);
    expect(sleep.wake()).toBe(0x1000);
    expect(pio.read(EVT, 2)).toBe(Pm1Status.WAK_STS | Pm1Status.RTC_STS);
  });

  it('where the vCPU cannot sleep (more than one vCPU), S3 ends at once with WAK_STS; S5 powers off', () => {
    const { pio, stops } = attached(() => false);
    pio.write(CNT, 2, 0x2400);
    expect(pio.read(EVT, 2)).toBe(Pm1Status.WAK_STS);
    pio.write(CNT, 2, 0x2000);
    expect(stops).toEqual([{ cause: 'poweroff', status: 0, message: 'guest powered off' }]);
  });
});

describe('the resume', () => {
  it('real mode as after a reset, at CS:IP = vector >> 4 : vector & 0xf, other segments 0, interrupts off', () => {
    const longMode = { regs: { ...POWER_ON_STATE.regs, rax: 7n, rflags: 0x246n }, sregs: { ...POWER_ON_STATE.sregs, cr0: 0x8000_0011n, efer: 0x500n, cr4: 0x20n } };
    const { regs, sregs } = realModeEntry(longMode, 0x1000 >> 4, 0);
    expect({ rip: regs.rip, rflags: regs.rflags, rax: regs.rax }).toEqual({ rip: 0n, rflags: 2n, rax: 0n });
    expect({ selector: sregs.cs.selector, base: sregs.cs.base, limit: sregs.cs.limit, db: sregs.cs.db }).toEqual({ selector: 0x100, base: 0x1000n, limit: 0xffff, db: 0 });
    expect({ selector: sregs.ds.selector, base: sregs.ds.base }).toEqual({ selector: 0, base: 0n });
    expect({ cr0: sregs.cr0, cr4: sregs.cr4, efer: sregs.efer }).toEqual({ cr0: 0x6000_0010n, cr4: 0n, efer: 0n });
  });
});

describe('s3-resume: a multiboot kernel that sleeps in S3 and is woken by the RTC alarm', () => {
  it.skipIf(!hasKvm)('the vCPU stops at SLP_EN, and resumes in real mode at the waking vector with WAK_STS and RTC_STS set', () => {
    const r = tsvmm(['run', '-k', multibootFirmwarePath('s3-resume')], { timeoutMs: 60_000 });
    expect(r.stdout).toBe([
      `fadt pm1a_evt=0604 pm1a_cnt=060C facs=${AcpiLayout.FACS_ADDRESS.toString(16).toUpperCase().padStart(8, '0')}`,
      'sleeping',
      'resumed cs=0100 marker=00000000 pm1_sts=8400', // marker 0: nothing ran after the sleep
      '',
    ].join('\n'));
    expect(r.status).toBe(1);
  });
});
