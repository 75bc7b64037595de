// DeviceStateLayout itself: how fields are placed in the buffer, what the
// views see, that a saved state is a copy, and the three refusals a restore
// can give (another device, another version, a damaged size).
import { describe, expect, it } from 'vitest';
import { DeviceStateLayout, type SavedDeviceState } from '../../src/devices/device-state.ts';
import { InputError } from '../../src/errors.ts';

const EXAMPLE = new DeviceStateLayout('example', 3, {
  flag: ['u8', 1], //       1 byte  -> 8
  counters: ['i32', 3], // 12 bytes -> 16
  times: ['f64', 2], //    16 bytes -> 16
  ids: ['u32', 2], //       8 bytes -> 8
  fifo: ['u8', 9], //       9 bytes -> 16
});

describe('field placement', () => {
  it('lays fields out in the order given, each starting on an 8-byte boundary', () => {
    const views = EXAMPLE.views(EXAMPLE.create());
    expect([views.flag.byteOffset, views.counters.byteOffset, views.times.byteOffset, views.ids.byteOffset, views.fifo.byteOffset])
      .toEqual([0, 8, 24, 40, 48]);
    expect(EXAMPLE.bytes).toBe(64);
    expect(EXAMPLE.bytes % 8).toBe(0);
  });

  it('gives each field a view of its type and length', () => {
    const views = EXAMPLE.views(EXAMPLE.create());
    expect(views.flag).toBeInstanceOf(Uint8Array);
    expect(views.counters).toBeInstanceOf(Int32Array);
    expect(views.times).toBeInstanceOf(Float64Array);
    expect(views.ids).toBeInstanceOf(Uint32Array);
    expect([views.flag.length, views.counters.length, views.times.length, views.ids.length, views.fifo.length]).toEqual([1, 3, 2, 2, 9]);
  });

  it('a layout without fields has no bytes', () => {
    expect(new DeviceStateLayout('none', 1, {}).bytes).toBe(0);
  });
});

describe('views', () => {
  it('start zeroed and do not overlap: writing every element of one field leaves the others at 0', () => {
    const buffer = EXAMPLE.create();
    const views = EXAMPLE.views(buffer);
    views.counters.fill(-1);
    expect([...views.flag, ...views.times, ...views.ids, ...views.fifo].every((v) => v === 0)).toBe(true);
    expect(new Uint8Array(buffer).filter((b) => b !== 0).length).toBe(12);
  });

  it('two sets of views over one buffer see each other\'s writes (two threads, one device)', () => {
    const buffer = EXAMPLE.create();
    const a = EXAMPLE.views(buffer);
    const b = EXAMPLE.views(buffer);
    a.times[1] = 1.5;
    a.ids[0] = 0xffff_ffff;
    expect(b.times[1]).toBe(1.5);
    expect(b.ids[0]).toBe(0xffff_ffff);
  });

  it('refuse a buffer of another size', () => {
    expect(() => EXAMPLE.views(new SharedArrayBuffer(EXAMPLE.bytes + 8))).toThrow('example state: a buffer of 72 bytes, expected 64');
  });
});

describe('save and restore', () => {
  it('save is tagged with the kind and version and is a copy: later writes do not change it', () => {
    const buffer = EXAMPLE.create();
    const views = EXAMPLE.views(buffer);
    views.counters[2] = 42;
    const saved = EXAMPLE.save(buffer);
    expect(saved.kind).toBe('example');
    expect(saved.version).toBe(3);
    expect(saved.bytes.buffer).not.toBe(buffer);
    views.counters[2] = 7;
    expect(new Int32Array(saved.bytes.buffer, 8, 3)[2]).toBe(42);
  });

  it('a saved state survives structured clone (a file, a message) and restores into another buffer', () => {
    const source = EXAMPLE.create();
    const from = EXAMPLE.views(source);
    from.flag[0] = 1;
    from.times[0] = -2.25;
    from.fifo.set([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const saved: SavedDeviceState = structuredClone(EXAMPLE.save(source));
    const target = EXAMPLE.create();
    EXAMPLE.restore(saved, target);
    expect(new Uint8Array(target)).toEqual(new Uint8Array(source));
    // Restoring copies: changing the saved bytes afterwards leaves the device alone.
    saved.bytes.fill(0);
    expect(EXAMPLE.views(target).times[0]).toBe(-2.25);
  });

  function refusal(saved: SavedDeviceState): InputError {
    const target = EXAMPLE.create();
    const views = EXAMPLE.views(target);
    views.counters[0] = 99;
    try {
      EXAMPLE.restore(saved, target);
    } catch (error) {
      expect(views.counters[0]).toBe(99); // a refused restore leaves the device as it was
      expect(error).toBeInstanceOf(InputError);
      return error as InputError;
    }
    throw new Error('the restore was not refused');
  }

  it('refuses the state of another kind of device', () => {
    const other = new DeviceStateLayout('other', 3, EXAMPLE.fields);
    expect(refusal(other.save(other.create())).message).toBe('other state cannot be restored into example (another device)');
  });

  it('refuses another version of the same device', () => {
    const older = new DeviceStateLayout('example', 2, EXAMPLE.fields);
    expect(refusal(older.save(older.create())).message).toBe('example state version 2 cannot be restored: this tsvmm reads version 3');
  });

  it('refuses bytes of the wrong size (a damaged state)', () => {
    const saved = { ...EXAMPLE.save(EXAMPLE.create()), bytes: new Uint8Array(EXAMPLE.bytes - 8) };
    expect(refusal(saved).message).toBe('example state: 56 bytes, expected 64 (damaged state)');
  });

  it('check() alone says the same without touching any buffer', () => {
    expect(() => EXAMPLE.check({ kind: 'example', version: 4, bytes: new Uint8Array(64) })).toThrow(InputError);
    expect(() => EXAMPLE.check({ kind: 'example', version: 3, bytes: new Uint8Array(64) })).not.toThrow();
  });
});
