// The two ACPI devices register by register (ACPI 6.5 §4.8.3.6 Reset
// Register, §4.8.3.7 Sleep Control and Status Registers, §5.6.9 Generic
// Event Device), and the access sequences Linux makes: ACPICA's
// acpi_hw_extended_sleep() and acpi_reset(), and the DSDT's _EVT method.
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../src/bus/index.ts';
import { AcpiLayout } from '../src/boot/acpi/index.ts';
import { ACPI_GED_MMIO_SIZE, AcpiGed, GedEvent } from '../src/devices/acpi-ged.ts';
import { ACPI_RESET_VALUE, ACPI_SLEEP_PORT_COUNT, AcpiSleep, AcpiSleepRegister, SleepBits, SleepType, type AcpiSleepRequest } from '../src/devices/acpi-sleep.ts';
import { RecordingLine } from '../src/devices/interrupt-line.ts';

// Bits named as in the spec (tables 4.22 and 4.23).
const SLP_EN = 0x20, WAK_STS = 0x80;
const slpTyp = (type: number) => type << 2;

function pc() {
  const requests: AcpiSleepRequest[] = [];
  const sleep = new AcpiSleep((what) => requests.push(what));
  const pio = AddressSpace.ports();
  pio.register(AcpiLayout.SLEEP_PORT_BASE, ACPI_SLEEP_PORT_COUNT, sleep);
  const inb = (port: number) => pio.read(port, 1);
  const outb = (value: number, port: number) => pio.write(port, 1, value); // Linux's argument order
  return { requests, sleep, inb, outb };
}

describe('the register layout the FADT describes', () => {
  it('the spec\'s bit positions', () => {
    expect([SleepBits.SLP_EN, SleepBits.WAK_STS, SleepBits.SLP_TYP_MASK, SleepBits.SLP_TYP_SHIFT]).toEqual([SLP_EN, WAK_STS, 0x1c, 2]);
  });

  it('the layout\'s ports are the device\'s registers', () => {
    expect(AcpiLayout.SLEEP_CONTROL_PORT - AcpiLayout.SLEEP_PORT_BASE).toBe(AcpiSleepRegister.CONTROL);
    expect(AcpiLayout.SLEEP_STATUS_PORT - AcpiLayout.SLEEP_PORT_BASE).toBe(AcpiSleepRegister.STATUS);
    expect(AcpiLayout.RESET_PORT - AcpiLayout.SLEEP_PORT_BASE).toBe(AcpiSleepRegister.RESET);
    expect(AcpiLayout.RESET_VALUE).toBe(ACPI_RESET_VALUE);
  });
});

describe('SLEEP_CONTROL_REG: entering S5', () => {
  it('Linux\'s poweroff: clear WAK_STS, then SLP_TYP(S5) | SLP_EN (acpi_hw_extended_sleep)', () => {
    const { requests, inb, outb } = pc();
    outb(WAK_STS, AcpiLayout.SLEEP_STATUS_PORT);
    expect(requests).toEqual([]);
    outb(slpTyp(SleepType.S5) | SLP_EN, AcpiLayout.SLEEP_CONTROL_PORT);
    expect(requests).toEqual(['power-off']);
    expect(inb(AcpiLayout.SLEEP_STATUS_PORT) & WAK_STS).toBe(0); // S5 does not wake
  });

  it('SLP_TYP without SLP_EN only selects a state: nothing happens', () => {
    const { requests, inb, outb } = pc();
    outb(slpTyp(SleepType.S5), AcpiLayout.SLEEP_CONTROL_PORT);
    expect(requests).toEqual([]);
    expect(inb(AcpiLayout.SLEEP_STATUS_PORT)).toBe(0);
  });

  it('other bits of the register do not hide a power-off', () => {
    const { requests, outb } = pc();
    outb(0x03 | slpTyp(SleepType.S5) | SLP_EN | 0xc0, AcpiLayout.SLEEP_CONTROL_PORT);
    expect(requests).toEqual(['power-off']);
  });

  it('a state this machine cannot enter wakes at once: WAK_STS is set, so the guest\'s wait for it ends', () => {
    const { requests, inb, outb } = pc();
    for (const type of [SleepType.S0, 1, 3, 7]) {
      outb(WAK_STS, AcpiLayout.SLEEP_STATUS_PORT);
      expect(inb(AcpiLayout.SLEEP_STATUS_PORT) & WAK_STS).toBe(0);
      outb(slpTyp(type) | SLP_EN, AcpiLayout.SLEEP_CONTROL_PORT);
      expect(inb(AcpiLayout.SLEEP_STATUS_PORT) & WAK_STS).toBe(WAK_STS);
    }
    expect(requests).toEqual([]);
  });

  it('the control register reads 0 (write-only)', () => {
    const { inb, outb } = pc();
    outb(slpTyp(3), AcpiLayout.SLEEP_CONTROL_PORT);
    expect(inb(AcpiLayout.SLEEP_CONTROL_PORT)).toBe(0);
  });
});

describe('SLEEP_STATUS_REG: WAK_STS is write-1-to-clear', () => {
  it('writing 0 leaves it set; writing WAK_STS clears it', () => {
    const { inb, outb } = pc();
    outb(slpTyp(1) | SLP_EN, AcpiLayout.SLEEP_CONTROL_PORT);
    outb(0x00, AcpiLayout.SLEEP_STATUS_PORT);
    expect(inb(AcpiLayout.SLEEP_STATUS_PORT)).toBe(WAK_STS);
    outb(0x7f, AcpiLayout.SLEEP_STATUS_PORT);
    expect(inb(AcpiLayout.SLEEP_STATUS_PORT)).toBe(WAK_STS);
    outb(WAK_STS, AcpiLayout.SLEEP_STATUS_PORT);
    expect(inb(AcpiLayout.SLEEP_STATUS_PORT)).toBe(0);
  });

  it('two device objects over one state (two vCPU threads) see one register', () => {
    const requests: AcpiSleepRequest[] = [];
    const a = new AcpiSleep((what) => requests.push(what));
    const b = new AcpiSleep((what) => requests.push(what), a.state);
    a.write(AcpiSleepRegister.CONTROL, 1, slpTyp(1) | SLP_EN);
    expect(b.read(AcpiSleepRegister.STATUS, 1)).toBe(WAK_STS);
    b.write(AcpiSleepRegister.STATUS, 1, WAK_STS);
    expect(a.read(AcpiSleepRegister.STATUS, 1)).toBe(0);
  });
});

describe('RESET_REG', () => {
  it('Linux\'s reboot writes RESET_VALUE to the reset register (acpi_reset)', () => {
    const { requests, outb } = pc();
    outb(ACPI_RESET_VALUE, AcpiLayout.RESET_PORT);
    expect(requests).toEqual(['reset']);
  });

  it('any other value does nothing', () => {
    const { requests, inb, outb } = pc();
    for (const value of [0x00, 0x02, 0x06, 0xfe, 0xff]) outb(value, AcpiLayout.RESET_PORT);
    expect(requests).toEqual([]);
    expect(inb(AcpiLayout.RESET_PORT)).toBe(0);
  });

  it('byte-wide ports: a 16-bit write at the status port carries its high byte to the reset port', () => {
    const requests: AcpiSleepRequest[] = [];
    const pio = AddressSpace.ports();
    pio.register(AcpiLayout.SLEEP_PORT_BASE, ACPI_SLEEP_PORT_COUNT, new AcpiSleep((what) => requests.push(what)));
    pio.write(AcpiLayout.SLEEP_STATUS_PORT, 2, ACPI_RESET_VALUE << 8); // high byte lands on the reset port
    expect(requests).toEqual(['reset']);
  });
});

describe('the Generic Event Device', () => {
  function ged() {
    const irq = new RecordingLine();
    const device = new AcpiGed(irq);
    const mmio = AddressSpace.memory();
    mmio.register(AcpiLayout.GED_MMIO_BASE, ACPI_GED_MMIO_SIZE, device);
    // What the DSDT's _EVT does: Local0 = ESTS (a DWordAcc field at offset 0).
    const readStatus = () => mmio.read(AcpiLayout.GED_MMIO_BASE, 4);
    return { irq, device, mmio, readStatus };
  }

  it('no event is pending and the line is low before anything happens', () => {
    const { irq, readStatus } = ged();
    expect(readStatus()).toBe(0);
    expect(irq.level).toBe(false);
  });

  it('pressPowerButton sets the power-button bit and pulses the line (an edge)', () => {
    const { irq, device, readStatus } = ged();
    device.pressPowerButton();
    expect(irq.levels).toEqual([true, false]);
    expect(irq.risingEdges).toBe(1);
    expect(readStatus()).toBe(GedEvent.POWER_BUTTON);
  });

  it('_EVT\'s read takes the event: a second read finds none', () => {
    const { device, readStatus } = ged();
    device.pressPowerButton();
    expect(readStatus()).toBe(GedEvent.POWER_BUTTON);
    expect(readStatus()).toBe(0);
  });

  it('two presses before the guest reads are one pending event and two edges', () => {
    const { irq, device, readStatus } = ged();
    device.pressPowerButton();
    device.pressPowerButton();
    expect(irq.risingEdges).toBe(2);
    expect(readStatus()).toBe(GedEvent.POWER_BUTTON);
    expect(readStatus()).toBe(0);
  });

  it('a narrow read returns and clears only the bits it covers', () => {
    const { device, mmio, readStatus } = ged();
    device.pressPowerButton();
    expect(mmio.read(AcpiLayout.GED_MMIO_BASE + 1, 1)).toBe(0); // bits 15:8
    expect(mmio.read(AcpiLayout.GED_MMIO_BASE, 1)).toBe(GedEvent.POWER_BUTTON); // bits 7:0
    expect(readStatus()).toBe(0);
  });

  it('the register is read-only: a write neither clears nor raises an event', () => {
    const { irq, device, mmio, readStatus } = ged();
    mmio.write(AcpiLayout.GED_MMIO_BASE, 4, 0xffff_ffff);
    expect(irq.levels).toEqual([]);
    expect(readStatus()).toBe(0);
    device.pressPowerButton();
    mmio.write(AcpiLayout.GED_MMIO_BASE, 4, 0);
    expect(readStatus()).toBe(GedEvent.POWER_BUTTON);
  });

  it('the host presses in one thread\'s object, the guest reads through another\'s (shared state)', () => {
    const hostLine = new RecordingLine();
    const vcpuLine = new RecordingLine();
    const host = new AcpiGed(hostLine);
    const vcpu = new AcpiGed(vcpuLine, host.state);
    host.pressPowerButton();
    expect(hostLine.risingEdges).toBe(1);
    expect(vcpu.read(0, 4)).toBe(GedEvent.POWER_BUTTON);
    expect(host.read(0, 4)).toBe(0);
  });
});
