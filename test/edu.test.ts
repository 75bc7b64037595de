// QEMU's edu device without KVM: configuration space, the BAR's registers,
// its DMA engine over guest RAM, and its interrupt (INTx or MSI).
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../src/bus/index.ts';
import { RecordingLine } from '../src/devices/interrupt-line.ts';
import { Edu, EDU_BAR_SIZE, GuestRamDma, MSI_CAPABILITY_ID, MsiField, PciCommand, PciConfig, PciStatus } from '../src/devices/pci/index.ts';
import {
  EDU_DMA_BUFFER_ADDRESS, EDU_DMA_IRQ, EDU_FACTORIAL_IRQ, EDU_IDENTIFICATION, EDU_STATUS_FACTORIAL_IRQ, EduDma, EduRegister, factorial32,
} from '../src/devices/pci/edu.ts';
import { GuestMemory } from '../src/memory/index.ts';

const BAR = 0xe010_0000;
const RAM = 0x10_0000;

function setup() {
  const mmio = AddressSpace.memory();
  const memory = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: RAM }]);
  const intx = new RecordingLine();
  const messages: { address: number; data: number }[] = [];
  const edu = new Edu({
    mmio, intx, sendMsi: (m) => messages.push(m), dma: new GuestRamDma(memory),
    forbidden: [{ base: 0, length: RAM }],
    state: Edu.createState({ irq: 16, barAddress: BAR }),
  });
  const reg = (offset: number) => mmio.read(BAR + offset, 4);
  const set = (offset: number, value: number) => mmio.write(BAR + offset, 4, value);
  const set64 = (offset: number, value: bigint) => mmio.write64(BAR + offset, value);
  const dma = (source: number, destination: number, count: number, command: number) => {
    set64(EduRegister.DMA_SOURCE, BigInt(source));
    set64(EduRegister.DMA_DESTINATION, BigInt(destination));
    set64(EduRegister.DMA_COUNT, BigInt(count));
    set(EduRegister.DMA_COMMAND, command | EduDma.START);
  };
  const msi = edu.config.read(PciConfig.CAPABILITIES, 1);
  return { mmio, memory, intx, messages, edu, reg, set, set64, dma, msi };
}

describe('edu', () => {
  it('is 1234:11e8 rev 0x10, class 00ff, INTA# on the given line, a 64-bit MSI capability, and a 1 MiB BAR firmware placed', () => {
    const { edu, msi } = setup();
    expect(edu.readConfig(PciConfig.VENDOR_ID, 4)).toBe(0x11e8_1234);
    expect(edu.readConfig(PciConfig.REVISION_ID, 4)).toBe(0x00ff_0010);
    expect(edu.readConfig(PciConfig.INTERRUPT_LINE, 2)).toBe(0x0110);
    expect(edu.readConfig(msi, 1)).toBe(MSI_CAPABILITY_ID);
    expect(edu.readConfig(msi + MsiField.CONTROL, 2)).toBe(0x0080);
    expect(edu.bar.mapped).toBe(BAR);
    edu.writeConfig(PciConfig.BAR0, 4, 0xffff_ffff);
    expect(edu.readConfig(PciConfig.BAR0, 4)).toBe((~(EDU_BAR_SIZE - 1)) >>> 0);
  });

  it('identifies itself, inverts the liveness value and computes factorials in 32 bits', () => {
    const { reg, set } = setup();
    expect(reg(EduRegister.IDENTIFICATION)).toBe(EDU_IDENTIFICATION);
    set(EduRegister.LIVENESS, 0x1234_5678);
    expect(reg(EduRegister.LIVENESS)).toBe(0xedcb_a987);
    set(EduRegister.FACTORIAL, 10);
    expect(reg(EduRegister.FACTORIAL)).toBe(3628800);
    expect(reg(EduRegister.STATUS) & 1).toBe(0); // done already
    expect(factorial32(13)).toBe(Number(6227020800n % 2n ** 32n));
    expect(factorial32(0xffff_ffff)).toBe(0);
  });

  it('takes 4-byte accesses below 0x80 and 4 or 8 bytes for DMA; others read all ones and write nothing', () => {
    const { mmio, reg } = setup();
    expect(mmio.read(BAR + EduRegister.IDENTIFICATION, 2)).toBe(0xffff);
    mmio.write(BAR + EduRegister.LIVENESS, 2, 0x1);
    expect(reg(EduRegister.LIVENESS)).toBe(0);
    mmio.write64(BAR + EduRegister.DMA_COUNT, 0x1_0000_0004n);
    expect(mmio.read64(BAR + EduRegister.DMA_COUNT)).toBe(0x1_0000_0004n);
    mmio.write(BAR + EduRegister.DMA_COUNT, 4, 8); // a dword write sets the whole register, as in QEMU
    expect(mmio.read64(BAR + EduRegister.DMA_COUNT)).toBe(8n);
    expect(mmio.read64(BAR + EduRegister.LIVENESS)).toBe(0xffff_ffff_ffff_ffffn);
  });

  it('copies RAM to its buffer and back, with the DMA interrupt', () => {
    const { memory, dma, reg, edu, intx } = setup();
    edu.writeConfig(PciConfig.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER);
    memory.writeU32(0x8000, 0xcafe_f00d);
    dma(0x8000, EDU_DMA_BUFFER_ADDRESS + 16, 4, 0);
    expect(reg(EduRegister.DMA_COMMAND) & EduDma.START).toBe(0);
    dma(EDU_DMA_BUFFER_ADDRESS + 16, 0x8004, 4, EduDma.TO_RAM | EduDma.IRQ);
    expect(memory.readU32(0x8004)).toBe(0xcafe_f00d);
    expect(reg(EduRegister.INTERRUPT_STATUS)).toBe(EDU_DMA_IRQ);
    expect(intx.level).toBe(true);
    expect(edu.refusedDmas).toBe(0);
  });

  it('refuses a transfer outside its buffer, to or from outside RAM, or without Bus Master; it cuts bus addresses to 28 bits', () => {
    const { memory, dma, edu } = setup();
    dma(0x8000, EDU_DMA_BUFFER_ADDRESS, 4, 0); // Bus Master off
    expect(edu.refusedDmas).toBe(1);
    edu.writeConfig(PciConfig.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER);
    dma(0x8000, EDU_DMA_BUFFER_ADDRESS + 0xffe, 4, 0);
    dma(0x8000, EDU_DMA_BUFFER_ADDRESS - 4, 4, 0);
    dma(EDU_DMA_BUFFER_ADDRESS, 0x8000, 0x1_0000_0000, EduDma.TO_RAM);
    dma(EDU_DMA_BUFFER_ADDRESS, 0x0fff_f000, 4, EduDma.TO_RAM); // past the 1 MiB of RAM
    expect(edu.refusedDmas).toBe(5);
    memory.writeU32(0x8000, 0x0102_0304);
    dma(0xf000_8000, EDU_DMA_BUFFER_ADDRESS, 4, 0); // 0xf0008000 & 0x0fffffff = 0x8000
    dma(EDU_DMA_BUFFER_ADDRESS, 0x9000, 4, EduDma.TO_RAM);
    expect(memory.readU32(0x9000)).toBe(0x0102_0304);
    expect(edu.refusedDmas).toBe(5);
  });

  it('drives INTx while an interrupt is pending, and respects Interrupt Disable', () => {
    const { set, intx, edu, reg } = setup();
    set(EduRegister.INTERRUPT_RAISE, 0x5);
    expect(intx.level).toBe(true);
    expect(edu.readConfig(PciConfig.STATUS, 2) & PciStatus.INTERRUPT).toBe(PciStatus.INTERRUPT);
    set(EduRegister.INTERRUPT_ACK, 0x1);
    expect(intx.level).toBe(true);
    edu.writeConfig(PciConfig.COMMAND, 2, PciCommand.MEMORY | PciCommand.INTX_DISABLE);
    expect(intx.level).toBe(false);
    edu.writeConfig(PciConfig.COMMAND, 2, PciCommand.MEMORY);
    expect(intx.level).toBe(true);
    set(EduRegister.INTERRUPT_ACK, 0x4);
    expect(intx.level).toBe(false);
    expect(reg(EduRegister.INTERRUPT_STATUS)).toBe(0);
    // A finished factorial raises 0x1 when status bit 7 asks for it.
    set(EduRegister.STATUS, EDU_STATUS_FACTORIAL_IRQ);
    set(EduRegister.FACTORIAL, 3);
    expect(reg(EduRegister.INTERRUPT_STATUS)).toBe(EDU_FACTORIAL_IRQ);
    expect(intx.risingEdges).toBe(3);
  });

  it('sends the programmed message for each raise while MSI is enabled (and Bus Master is on), instead of INTx', () => {
    const { set, intx, edu, messages, msi } = setup();
    edu.writeConfig(msi + MsiField.ADDRESS_LOW, 4, 0xfee0_1003); // bits 1:0 are not writable
    edu.writeConfig(msi + MsiField.ADDRESS_HIGH, 4, 0);
    edu.writeConfig(msi + MsiField.DATA, 2, 0x41);
    edu.writeConfig(msi + MsiField.CONTROL, 2, 0xffff);
    expect(edu.readConfig(msi + MsiField.CONTROL, 2)).toBe(0x0081);
    set(EduRegister.INTERRUPT_RAISE, 1);
    expect(messages).toEqual([]); // no Bus Master: a message is a memory write
    edu.writeConfig(PciConfig.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER);
    set(EduRegister.INTERRUPT_RAISE, 1);
    set(EduRegister.INTERRUPT_RAISE, 1);
    expect(messages).toEqual([{ address: 0xfee0_1000, data: 0x41 }, { address: 0xfee0_1000, data: 0x41 }]);
    expect(intx.levels.filter(Boolean)).toEqual([]);
  });
});
