// Everything a driver can read of a virtio device, gathered without changing
// what it gathers: no selector is written (values behind the other selectors
// and behind write-only registers are read from the shared state), and
// virtio-pci's ISR, which a read clears, is read from the state too. Device
// state tests compare it before a save and after a restore.
import { PCI_CONFIG_SIZE } from '../../src/devices/pci/index.ts';
import { MmioRegister } from '../../src/devices/virtio/mmio.ts';
import { CommonCfg, VirtioPciRegion } from '../../src/devices/virtio/pci.ts';
import { QueueWord } from '../../src/devices/virtio/shared-state.ts';
import type { VirtioTestDriver } from './virtio-driver.ts';

const MMIO_READABLE = [
  MmioRegister.MAGIC, MmioRegister.VERSION, MmioRegister.DEVICE_ID, MmioRegister.VENDOR_ID, MmioRegister.DEVICE_FEATURES,
  MmioRegister.QUEUE_NUM_MAX, MmioRegister.QUEUE_READY, MmioRegister.INTERRUPT_STATUS, MmioRegister.STATUS,
  MmioRegister.SHM_LEN_LOW, MmioRegister.SHM_LEN_HIGH, MmioRegister.SHM_BASE_LOW, MmioRegister.SHM_BASE_HIGH, MmioRegister.CONFIG_GENERATION,
];

/** Readable common configuration fields and their widths (virtio 1.2, 4.1.4.3). */
const COMMON_READABLE: readonly (readonly [number, number])[] = [
  [CommonCfg.DEVICE_FEATURE_SELECT, 4], [CommonCfg.DEVICE_FEATURE, 4], [CommonCfg.DRIVER_FEATURE_SELECT, 4], [CommonCfg.DRIVER_FEATURE, 4],
  [CommonCfg.MSIX_CONFIG, 2], [CommonCfg.NUM_QUEUES, 2], [CommonCfg.DEVICE_STATUS, 1], [CommonCfg.CONFIG_GENERATION, 1],
  [CommonCfg.QUEUE_SELECT, 2], [CommonCfg.QUEUE_SIZE, 2], [CommonCfg.QUEUE_MSIX_VECTOR, 2], [CommonCfg.QUEUE_ENABLE, 2],
  [CommonCfg.QUEUE_NOTIFY_OFF, 2], [CommonCfg.QUEUE_DESC_LO, 4], [CommonCfg.QUEUE_DESC_HI, 4], [CommonCfg.QUEUE_DRIVER_LO, 4],
  [CommonCfg.QUEUE_DRIVER_HI, 4], [CommonCfg.QUEUE_DEVICE_LO, 4], [CommonCfg.QUEUE_DEVICE_HI, 4],
];

/** The driver's set-up words of each queue (not the I/O thread's, which only a save writes). */
const QUEUE_SETUP_WORDS = [
  QueueWord.SIZE, QueueWord.READY, QueueWord.DESCRIPTORS_LOW, QueueWord.DESCRIPTORS_HIGH,
  QueueWord.AVAILABLE_LOW, QueueWord.AVAILABLE_HIGH, QueueWord.USED_LOW, QueueWord.USED_HIGH,
];

export function readAllRegisters(driver: VirtioTestDriver): Record<string, number> {
  const out: Record<string, number> = {};
  const { state, info } = driver;
  if (driver.mmio) {
    for (const register of MMIO_READABLE) out[`mmio 0x${register.toString(16)}`] = driver.mmio.read(register, 4);
  }
  if (driver.pci) {
    const pci = driver.pci;
    for (const [offset, size] of COMMON_READABLE) out[`common 0x${offset.toString(16)}`] = pci.read(VirtioPciRegion.COMMON + offset, size);
    for (let offset = 0; offset < PCI_CONFIG_SIZE; offset += 4) out[`pci config 0x${offset.toString(16)}`] = pci.readConfig(offset, 4);
    out['bar mapped at'] = pci.bar.mapped ?? -1;
  }
  for (let offset = 0; offset < info.config.length; offset++) out[`device config ${offset}`] = driver.readConfig(offset, 1);
  for (let queue = 0; queue < state.queueCount; queue++) {
    for (const word of QUEUE_SETUP_WORDS) out[`queue ${queue} word ${word}`] = state.queueWord(queue, word);
  }
  out['ISR'] = state.interruptStatus;
  out['driver features low'] = Number(state.driverFeatures & 0xffff_ffffn);
  out['driver features high'] = Number(state.driverFeatures >> 32n);
  out['device feature select'] = state.deviceFeatureSelect;
  out['driver feature select'] = state.driverFeatureSelect;
  out['queue select'] = state.queueSelect;
  out['errors'] = state.errors;
  out['bad accesses'] = state.badAccesses;
  return out;
}
