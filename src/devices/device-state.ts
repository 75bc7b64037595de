// Device state as data. A device keeps every register and internal value it
// has in one SharedArrayBuffer, laid out by a DeviceStateLayout. Because the
// state is bytes:
//   - several threads (one per vCPU) can serve one device, each with its own
//     device object over the same buffer, under the machine's device lock;
//   - saving is a copy of the bytes tagged with the device kind and layout
//     version, and restoring is the copy back after checking both, which is
//     what pause, snapshots and migration need.
// Everything a device holds outside its buffer is wiring (sinks, interrupt
// lines, callbacks), never state.
import { InputError } from '../errors.ts';

/** One field of a device's state: an array of `length` elements of a type. */
export type StateField = readonly ['i32' | 'u32' | 'f64' | 'u8', number];

type ViewOf<F extends StateField> =
  F[0] extends 'f64' ? Float64Array : F[0] extends 'u8' ? Uint8Array : F[0] extends 'u32' ? Uint32Array : Int32Array;

/** The typed views a device reads and writes its state through. */
export type StateViews<Fields extends Record<string, StateField>> = { readonly [K in keyof Fields]: ViewOf<Fields[K]> };

/** A device's state as saved: plain data that survives structured clone and a file. */
export interface SavedDeviceState {
  /** The device model (e.g. "serial16550"): restoring into another model is refused. */
  readonly kind: string;
  /** The layout version of `kind` the bytes follow. */
  readonly version: number;
  readonly bytes: Uint8Array;
}

/** What every device with state offers the machine (pause, snapshot, migration). */
export interface StatefulDevice {
  saveState(): SavedDeviceState;
  /** Throws InputError when `saved` belongs to another device or layout version. */
  restoreState(saved: SavedDeviceState): void;
}

const ELEMENT_BYTES = { i32: 4, u32: 4, f64: 8, u8: 1 } as const;

export class DeviceStateLayout<Fields extends Record<string, StateField>> {
  /** Total bytes, a multiple of 8. */
  readonly bytes: number;
  private readonly offsets: Record<string, number> = {};

  /**
   * Fields are laid out in the order given, each aligned to 8 bytes, so a
   * layout reads like the struct it is. Bump `version` whenever the fields
   * (or what they mean) change.
   */
  constructor(
    readonly kind: string,
    readonly version: number,
    readonly fields: Fields,
  ) {
    let at = 0;
    for (const [name, [type, length]] of Object.entries(fields)) {
      this.offsets[name] = at;
      at += Math.ceil((ELEMENT_BYTES[type] * length) / 8) * 8;
    }
    this.bytes = at;
  }

  /** A zeroed state for one device, to be shared by every thread that serves it. */
  create(): SharedArrayBuffer {
    return new SharedArrayBuffer(this.bytes);
  }

  /** Typed views of `buffer`'s fields; throws if the buffer is not of this layout's size. */
  views(buffer: SharedArrayBuffer): StateViews<Fields> {
    if (buffer.byteLength !== this.bytes) {
      throw new Error(`${this.kind} state: a buffer of ${buffer.byteLength} bytes, expected ${this.bytes}`);
    }
    const views: Record<string, ArrayBufferView> = {};
    for (const [name, [type, length]] of Object.entries(this.fields)) {
      const at = this.offsets[name]!;
      views[name] = type === 'f64' ? new Float64Array(buffer, at, length)
        : type === 'u8' ? new Uint8Array(buffer, at, length)
          : type === 'u32' ? new Uint32Array(buffer, at, length)
            : new Int32Array(buffer, at, length);
    }
    // A copy as an object literal: adding many properties by computed name
    // leaves `views` in V8's dictionary mode, where every field access on the
    // exit path is a hash lookup (the PIT's port reads ran 5x slower).
    return { ...views } as StateViews<Fields>;
  }

  /** A copy of the state in `buffer`, tagged with the kind and version. */
  save(buffer: SharedArrayBuffer): SavedDeviceState {
    return { kind: this.kind, version: this.version, bytes: new Uint8Array(buffer).slice() };
  }

  /** Copies a saved state into `buffer`, after checking it is this device's, this version, this size. */
  restore(saved: SavedDeviceState, buffer: SharedArrayBuffer): void {
    this.check(saved);
    new Uint8Array(buffer).set(saved.bytes);
  }

  /** Throws InputError unless `saved` can be restored into this layout. */
  check(saved: SavedDeviceState): void {
    if (saved.kind !== this.kind) {
      throw new InputError(`${saved.kind} state cannot be restored into ${this.kind} (another device)`);
    }
    if (saved.version !== this.version) {
      throw new InputError(`${this.kind} state version ${saved.version} cannot be restored: this tsvmm reads version ${this.version}`);
    }
    if (saved.bytes.byteLength !== this.bytes) {
      throw new InputError(`${this.kind} state: ${saved.bytes.byteLength} bytes, expected ${this.bytes} (damaged state)`);
    }
  }
}
