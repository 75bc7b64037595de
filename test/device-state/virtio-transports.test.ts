// The virtio transports keep no register of their own: two transport objects
// over one VirtioSharedState (two vCPU threads serving one device) are one
// device. A driver may select a queue on CPU 0 and size it on CPU 1.
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../../src/bus/index.ts';
import type { VirtioDeviceInfo } from '../../src/devices/virtio/device.ts';
import { MmioRegister, VirtioMmio } from '../../src/devices/virtio/mmio.ts';
import { CommonCfg, VirtioPci, VirtioPciRegion } from '../../src/devices/virtio/pci.ts';
import { VirtioSharedState } from '../../src/devices/virtio/shared-state.ts';
import { DeviceType, Status } from '../../src/devices/virtio/spec.ts';
import { VirtioTransport } from '../../src/devices/virtio/transport.ts';

const INFO: VirtioDeviceInfo = { type: DeviceType.NET, name: 'net0', features: 1n << 40n, queueMaxSizes: [256, 128], config: new Uint8Array(8) };

/** One vCPU thread's transport over the device's shared state buffer. */
function transportOver(buffer: SharedArrayBuffer): VirtioTransport {
  return new VirtioTransport(INFO, new VirtioSharedState(buffer, INFO.queueMaxSizes.length), { notify() {}, statusChanged() {} });
}

describe('two virtio-mmio transports over one shared state', () => {
  it('answer as one device: selectors, queue setup, status and the bad-access count', () => {
    const { buffer } = VirtioSharedState.create(INFO.queueMaxSizes.length);
    const cpu0 = new VirtioMmio(transportOver(buffer));
    const cpu1 = new VirtioMmio(transportOver(buffer));
    cpu0.write(MmioRegister.QUEUE_SEL, 4, 1);
    cpu1.write(MmioRegister.QUEUE_NUM, 4, 64);
    expect(cpu0.read(MmioRegister.QUEUE_NUM_MAX, 4)).toBe(128);
    expect(cpu1.transport.readQueue('size')).toBe(64);
    cpu0.write(MmioRegister.QUEUE_DESC_LOW, 4, 0x1000);
    cpu1.write(MmioRegister.QUEUE_READY, 4, 1);
    expect(cpu0.read(MmioRegister.QUEUE_READY, 4)).toBe(1);
    expect(cpu1.transport.readQueue('descriptors')).toBe(0x1000);

    cpu1.write(MmioRegister.DEVICE_FEATURES_SEL, 4, 1);
    expect(cpu0.read(MmioRegister.DEVICE_FEATURES, 4)).toBe((1 << 8) | 1); // bit 40, and VERSION_1 (bit 32)
    cpu0.write(MmioRegister.STATUS, 4, Status.ACKNOWLEDGE);
    cpu1.write(MmioRegister.STATUS, 4, Status.ACKNOWLEDGE | Status.DRIVER);
    expect(cpu0.read(MmioRegister.STATUS, 4)).toBe(Status.ACKNOWLEDGE | Status.DRIVER);

    cpu0.read(MmioRegister.QUEUE_NUM, 4); // write-only
    cpu1.write(MmioRegister.MAGIC, 2, 0); // wrong width
    expect(cpu0.badAccesses).toBe(2);
    expect(cpu1.badAccesses).toBe(2);
  });
});

describe('two virtio-pci functions over one shared state and one configuration space', () => {
  it('answer as one device: a queue selected on CPU 0 is sized and enabled on CPU 1', () => {
    const { buffer } = VirtioSharedState.create(INFO.queueMaxSizes.length);
    const pciState = VirtioPci.createState(INFO, { irq: 10 });
    const cpu0 = new VirtioPci(transportOver(buffer), { irq: 10, mmio: AddressSpace.memory(), state: pciState });
    const cpu1 = new VirtioPci(transportOver(buffer), { irq: 10, mmio: AddressSpace.memory(), state: pciState });
    const common = (pci: VirtioPci, offset: number, size: number) => pci.read(VirtioPciRegion.COMMON + offset, size);
    const setCommon = (pci: VirtioPci, offset: number, size: number, value: number) => pci.write(VirtioPciRegion.COMMON + offset, size, value);

    setCommon(cpu0, CommonCfg.QUEUE_SELECT, 2, 1);
    expect(common(cpu1, CommonCfg.QUEUE_SIZE, 2)).toBe(128);
    setCommon(cpu1, CommonCfg.QUEUE_SIZE, 2, 32);
    setCommon(cpu1, CommonCfg.QUEUE_DEVICE_LO, 4, 0x3000);
    setCommon(cpu1, CommonCfg.QUEUE_ENABLE, 2, 1);
    expect(common(cpu0, CommonCfg.QUEUE_SELECT, 2)).toBe(1);
    expect(common(cpu0, CommonCfg.QUEUE_SIZE, 2)).toBe(32);
    expect(common(cpu0, CommonCfg.QUEUE_DEVICE_LO, 4)).toBe(0x3000);
    expect(common(cpu0, CommonCfg.QUEUE_ENABLE, 2)).toBe(1);

    // ISR raised by the device, read (and so cleared) on one CPU: the other sees it cleared.
    cpu0.transport.state.raiseInterruptStatus(1);
    expect(cpu1.read(VirtioPciRegion.ISR, 1)).toBe(1);
    expect(cpu0.read(VirtioPciRegion.ISR, 1)).toBe(0);

    common(cpu0, CommonCfg.QUEUE_SIZE, 4); // wrong width
    setCommon(cpu1, CommonCfg.NUM_QUEUES, 2, 9); // read-only
    expect(cpu0.badAccesses).toBe(2);
    expect(cpu1.badAccesses).toBe(2);
  });
});
