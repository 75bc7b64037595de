// Guest pages tsvmm itself wrote. KVM's dirty log (KVM_GET_DIRTY_LOG) sees
// only what vCPUs write; the virtio I/O thread writes guest RAM from the
// host side (request data, used rings), which KVM never sees. Live migration
// must send those pages again too, so while it runs every such write is
// marked here: one bit per 4 KiB guest-physical page, marked by every thread
// and harvested by the migration (dirty-bitmap.ts).
import { DirtyBitmap } from './dirty-bitmap.ts';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

export class DirtyPageLog extends DirtyBitmap {
  /** A log for guest-physical addresses below `end`, not logging yet. */
  static create(end: number): SharedArrayBuffer {
    return DirtyBitmap.buffer(Math.ceil(end / PAGE_SIZE));
  }

  constructor(buffer: SharedArrayBuffer) {
    super(buffer, PAGE_SIZE);
  }

  /** Pages the log can hold. */
  get pages(): number {
    return this.units;
  }
}
