// The VT-d unit's and edu's state as data: saved, restored into fresh
// objects (which then behave as the originals did), shared by two objects
// over one buffer as two vCPU threads would serve them, and refused when it
// is another device's.
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../../src/bus/index.ts';
import { RecordingLine } from '../../src/devices/interrupt-line.ts';
import { IntelVtd, VTD_STATE, VtdGlobal, VtdRegister } from '../../src/devices/iommu/index.ts';
import { Edu, EDU_STATE, GuestRamDma, PciCommand, PciConfig } from '../../src/devices/pci/index.ts';
import { EduRegister } from '../../src/devices/pci/edu.ts';
import { GuestMemory } from '../../src/memory/index.ts';
import { expectRestoreRefusals } from './refusals.ts';

const memory = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 0x10_0000 }]);

function unit(state = IntelVtd.createState({ interruptRemapping: true })) {
  return new IntelVtd({ memory, signalMsi() {} }, state);
}

function edu(state = Edu.createState({ irq: 16, barAddress: 0xe010_0000 })) {
  const mmio = AddressSpace.memory();
  const device = new Edu({ mmio, intx: new RecordingLine(), sendMsi() {}, dma: new GuestRamDma(memory), state });
  return { device, mmio };
}

describe('VT-d unit state', () => {
  function programmed() {
    const u = unit();
    // Root table: bus 0 → context table at 0x2000; devfn 8 → pass-through.
    memory.writeU64(0x1000, 0x2001n);
    memory.writeU64(0x2000 + 8 * 16, 1n | (2n << 2n));
    memory.writeU64(0x2000 + 8 * 16 + 8, 2n);
    u.write64(VtdRegister.RTADDR, 0x1000n);
    u.write(VtdRegister.GCMD, 4, VtdGlobal.SRTP);
    u.write(VtdRegister.GCMD, 4, (VtdGlobal.SRTP | VtdGlobal.TE) >>> 0);
    u.write(VtdRegister.FEDATA, 4, 0x43);
    return u;
  }

  it('restores registers and the latched root pointer: the restored unit translates as the saved one did', () => {
    const saved = programmed().saveState();
    const restored = unit();
    restored.restoreState(saved);
    expect(restored.read(VtdRegister.GSTS, 4) >>> 0).toBe((VtdGlobal.SRTP | VtdGlobal.TE) >>> 0);
    expect(restored.read(VtdRegister.FEDATA, 4)).toBe(0x43);
    expect(restored.translate(8, 0x1234, 'read')).toMatchObject({ ok: true, address: 0x1234 });
    expect(restored.translate(16, 0x1234, 'read').ok).toBe(false);
  });

  it('two objects over one buffer are one unit', () => {
    const a = programmed();
    const b = unit(a.state);
    b.write(VtdRegister.GCMD, 4, VtdGlobal.SRTP); // TE off from the other "thread"
    expect(a.read(VtdRegister.GSTS, 4)).toBe(VtdGlobal.SRTP);
    expect(a.translate(8, 0x5000, 'write')).toMatchObject({ ok: true, address: 0x5000 });
  });

  it('refuses another device, version or size', () => {
    expectRestoreRefusals(VTD_STATE, unit());
  });
});

describe('edu state', () => {
  it('restores registers, buffer and configuration space: the BAR decodes where the guest put it', () => {
    const { device, mmio } = edu();
    device.writeConfig(PciConfig.COMMAND, 2, 0);
    device.writeConfig(PciConfig.BAR0, 4, 0xe020_0000);
    device.writeConfig(PciConfig.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER);
    mmio.write(0xe020_0000 + EduRegister.LIVENESS, 4, 7);
    memory.writeU32(0x8000, 0x1122_3344);
    mmio.write64(0xe020_0000 + EduRegister.DMA_SOURCE, 0x8000n);
    mmio.write64(0xe020_0000 + EduRegister.DMA_DESTINATION, 0x4_0000n);
    mmio.write64(0xe020_0000 + EduRegister.DMA_COUNT, 4n);
    mmio.write(0xe020_0000 + EduRegister.DMA_COMMAND, 4, 1);
    const saved = device.saveState();

    const fresh = edu();
    fresh.device.restoreState(saved);
    expect(fresh.device.bar.mapped).toBe(0xe020_0000);
    expect(fresh.mmio.read(0xe020_0000 + EduRegister.LIVENESS, 4)).toBe(~7 >>> 0);
    // The buffer came along: copy it back out to RAM.
    fresh.mmio.write64(0xe020_0000 + EduRegister.DMA_SOURCE, 0x4_0000n);
    fresh.mmio.write64(0xe020_0000 + EduRegister.DMA_DESTINATION, 0x9000n);
    fresh.mmio.write(0xe020_0000 + EduRegister.DMA_COMMAND, 4, 3);
    expect(memory.readU32(0x9000)).toBe(0x1122_3344);
  });

  it('refuses another device, version or size, and another function\'s configuration space', () => {
    const { device } = edu();
    expectRestoreRefusals(EDU_STATE, device);
    const saved = device.saveState();
    const bytes = saved.bytes.slice();
    bytes[PciConfig.DEVICE_ID] = 0x42;
    expect(() => device.restoreState({ ...saved, bytes })).toThrow(/PCI state of function 1234:1142 cannot be restored into function 1234:11e8/);
  });
});
