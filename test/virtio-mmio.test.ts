// The virtio-mmio transport, version 2 (virtio 1.2, 4.2.2), register by
// register, and the device status state machine behind it (2.1, 3.1.1).
import { describe, expect, it } from 'vitest';
import { MmioRegister, VirtioMmio } from '../src/devices/virtio/mmio.ts';
import { VirtioSharedState } from '../src/devices/virtio/shared-state.ts';
import { Feature, featureBit, Status } from '../src/devices/virtio/spec.ts';
import { VirtioTransport } from '../src/devices/virtio/transport.ts';

const DEVICE_FEATURE_BIT = 3n;

function setup() {
  const state = VirtioSharedState.create(2);
  const events: string[] = [];
  const transport = new VirtioTransport({
    type: 42, name: 'test0', features: featureBit(DEVICE_FEATURE_BIT), queueMaxSizes: [128, 64], config: Uint8Array.of(1, 2, 3, 4, 5),
  }, state, {
    notify: (queue) => events.push(`notify ${queue}`),
    // Stands in for the I/O thread: it carries out a reset at once.
    statusChanged: () => {
      events.push(`status ${state.status}`);
      state.finishReset(state.resetEpoch);
    },
  });
  const mmio = new VirtioMmio(transport);
  const read = (register: number) => mmio.read(register, 4);
  const write = (register: number, value: number) => mmio.write(register, 4, value);
  const acceptFeatures = (features: bigint) => {
    write(MmioRegister.DRIVER_FEATURES_SEL, 0);
    write(MmioRegister.DRIVER_FEATURES, Number(features & 0xffff_ffffn));
    write(MmioRegister.DRIVER_FEATURES_SEL, 1);
    write(MmioRegister.DRIVER_FEATURES, Number(features >> 32n));
  };
  return { state, events, mmio, read, write, acceptFeatures };
}

describe('virtio-mmio registers', () => {
  it('identify the device: magic "virt", version 2, device ID, vendor "QEMU"', () => {
    const { read } = setup();
    expect(read(MmioRegister.MAGIC)).toBe(0x74726976);
    expect(read(MmioRegister.VERSION)).toBe(2);
    expect(read(MmioRegister.DEVICE_ID)).toBe(42);
    expect(read(MmioRegister.VENDOR_ID)).toBe(0x554d4551);
  });

  it('offer features 32 bits at a time: device bits, then VERSION_1, indirect descriptors and event index', () => {
    const { read, write } = setup();
    write(MmioRegister.DEVICE_FEATURES_SEL, 0);
    expect(read(MmioRegister.DEVICE_FEATURES)).toBe(Number(featureBit(DEVICE_FEATURE_BIT) | featureBit(Feature.RING_INDIRECT_DESC) | featureBit(Feature.RING_EVENT_IDX)));
    write(MmioRegister.DEVICE_FEATURES_SEL, 1);
    expect(read(MmioRegister.DEVICE_FEATURES)).toBe(1); // VERSION_1 is bit 32
    write(MmioRegister.DEVICE_FEATURES_SEL, 7);
    expect(read(MmioRegister.DEVICE_FEATURES)).toBe(0);
  });

  it('QueueNumMax per queue selector, 0 for a queue the device does not have', () => {
    const { read, write } = setup();
    write(MmioRegister.QUEUE_SEL, 0);
    expect(read(MmioRegister.QUEUE_NUM_MAX)).toBe(128);
    write(MmioRegister.QUEUE_SEL, 1);
    expect(read(MmioRegister.QUEUE_NUM_MAX)).toBe(64);
    write(MmioRegister.QUEUE_SEL, 2);
    expect(read(MmioRegister.QUEUE_NUM_MAX)).toBe(0);
    expect(read(MmioRegister.QUEUE_READY)).toBe(0);
  });

  it('keep a queue\'s setup, and freeze it once QueueReady is 1', () => {
    const { state, read, write } = setup();
    write(MmioRegister.QUEUE_SEL, 1);
    write(MmioRegister.QUEUE_NUM, 32);
    write(MmioRegister.QUEUE_DESC_LOW, 0x1000);
    write(MmioRegister.QUEUE_DESC_HIGH, 0x2);
    write(MmioRegister.QUEUE_READY, 1);
    write(MmioRegister.QUEUE_NUM, 16);
    write(MmioRegister.QUEUE_DESC_LOW, 0x5000);
    const transport = new VirtioTransport({ type: 0, name: '', features: 0n, queueMaxSizes: [1, 1], config: new Uint8Array() }, state, { notify() {}, statusChanged() {} });
    expect(transport.readQueue('size')).toBe(32);
    expect(transport.readQueue('descriptors')).toBe(0x2_0000_1000);
    expect(read(MmioRegister.QUEUE_READY)).toBe(1);
  });

  it('pass a notification on with the queue index', () => {
    const { events, write } = setup();
    write(MmioRegister.QUEUE_NOTIFY, 1);
    write(MmioRegister.QUEUE_NOTIFY, 9); // no such queue: dropped
    expect(events).toEqual(['notify 1']);
  });

  it('read the configuration space at 0x100 at any width; past its end reads 0', () => {
    const { mmio } = setup();
    expect(mmio.read(MmioRegister.CONFIG, 1)).toBe(1);
    expect(mmio.read(MmioRegister.CONFIG + 1, 2)).toBe(0x0302);
    expect(mmio.read(MmioRegister.CONFIG + 2, 4)).toBe(0x00050403);
    expect(mmio.read(MmioRegister.CONFIG + 0x40, 4)).toBe(0);
  });

  it('say there is no shared memory region (length all ones)', () => {
    const { read } = setup();
    expect(read(MmioRegister.SHM_LEN_LOW)).toBe(0xffff_ffff);
    expect(read(MmioRegister.SHM_LEN_HIGH)).toBe(0xffff_ffff);
  });

  it('count accesses of the wrong width or to no register, and read them as 0', () => {
    const { mmio } = setup();
    expect(mmio.read(MmioRegister.STATUS, 2)).toBe(0);
    expect(mmio.read(MmioRegister.MAGIC + 2, 4)).toBe(0);
    mmio.write(0x0f0, 4, 1);
    expect(mmio.badAccesses).toBe(3);
  });

  it('ISR: the device raises bits, the driver acknowledges them', () => {
    const { state, read, write } = setup();
    state.raiseInterruptStatus(3);
    expect(read(MmioRegister.INTERRUPT_STATUS)).toBe(3);
    write(MmioRegister.INTERRUPT_ACK, 1);
    expect(read(MmioRegister.INTERRUPT_STATUS)).toBe(2);
  });
});

describe('the device status state machine', () => {
  const INIT = Status.ACKNOWLEDGE | Status.DRIVER;

  it('accepts FEATURES_OK for a subset of the offered features that includes VERSION_1, then DRIVER_OK', () => {
    const { events, read, write, acceptFeatures } = setup();
    write(MmioRegister.STATUS, INIT);
    acceptFeatures(featureBit(Feature.VERSION_1) | featureBit(DEVICE_FEATURE_BIT));
    write(MmioRegister.STATUS, INIT | Status.FEATURES_OK);
    expect(read(MmioRegister.STATUS)).toBe(INIT | Status.FEATURES_OK);
    write(MmioRegister.STATUS, INIT | Status.FEATURES_OK | Status.DRIVER_OK);
    expect(read(MmioRegister.STATUS)).toBe(INIT | Status.FEATURES_OK | Status.DRIVER_OK);
    expect(events).toEqual([`status ${INIT | Status.FEATURES_OK | Status.DRIVER_OK}`]);
  });

  it.each([
    ['a feature the device did not offer', featureBit(Feature.VERSION_1) | (1n << 40n)],
    ['no VERSION_1 (a legacy driver)', featureBit(DEVICE_FEATURE_BIT)],
  ])('refuses FEATURES_OK for %s: the bit does not stick', (_what, features) => {
    const { read, write, acceptFeatures } = setup();
    write(MmioRegister.STATUS, INIT);
    acceptFeatures(features);
    write(MmioRegister.STATUS, INIT | Status.FEATURES_OK);
    expect(read(MmioRegister.STATUS) & Status.FEATURES_OK).toBe(0);
  });

  it('ignores DRIVER_OK without FEATURES_OK, and feature writes after FEATURES_OK', () => {
    const { state, read, write, acceptFeatures } = setup();
    write(MmioRegister.STATUS, INIT | Status.DRIVER_OK);
    expect(read(MmioRegister.STATUS)).toBe(INIT);
    acceptFeatures(featureBit(Feature.VERSION_1));
    write(MmioRegister.STATUS, INIT | Status.FEATURES_OK);
    acceptFeatures(featureBit(Feature.VERSION_1) | featureBit(DEVICE_FEATURE_BIT));
    expect(state.driverFeatures).toBe(featureBit(Feature.VERSION_1));
  });

  it('writing 0 resets: status, features, queues and ISR cleared, once the I/O side has let go', () => {
    const { state, events, read, write, acceptFeatures } = setup();
    write(MmioRegister.STATUS, INIT);
    acceptFeatures(featureBit(Feature.VERSION_1));
    write(MmioRegister.QUEUE_SEL, 0);
    write(MmioRegister.QUEUE_NUM, 64);
    write(MmioRegister.QUEUE_READY, 1);
    state.raiseInterruptStatus(1);
    write(MmioRegister.STATUS, 0);
    expect(events).toEqual(['status 0']);
    expect(state.resetDone).toBe(state.resetEpoch);
    expect(read(MmioRegister.STATUS)).toBe(0);
    expect(state.driverFeatures).toBe(0n);
    expect(read(MmioRegister.QUEUE_READY)).toBe(0);
    expect(read(MmioRegister.INTERRUPT_STATUS)).toBe(0);
  });
});
