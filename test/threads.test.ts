// How tsvmm finds its worker entries and whether its compiled copy is current.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isCompiled, siblingModule, workerUrl } from '../src/machine/threads.ts';
import { ROOT, SOURCE_DIRS } from '../src/cli/dist.mjs';

describe('worker entries', () => {
  it('compiled: the .js beside the caller', () => {
    const caller = 'file:///x/dist/src/machine/machine.js';
    expect(isCompiled(caller)).toBe(true);
    expect(workerUrl(caller, 'vcpu-thread-main').href).toBe('file:///x/dist/src/machine/vcpu-thread-main.js');
    expect(siblingModule('file:///x/dist/bench/exits.js', './devices/null-sink').href).toBe('file:///x/dist/bench/devices/null-sink.js');
  });

  it('bundled: the .cjs bundle of that name beside the caller', () => {
    const caller = 'file:///x/dist/bundle/threads.bundle.cjs';
    expect(isCompiled(caller)).toBe(true);
    expect(workerUrl(caller, 'vcpu-thread-main').href).toBe('file:///x/dist/bundle/vcpu-thread-main.cjs');
    expect(() => siblingModule('file:///x/dist/bundle/thing.mjs', './other')).toThrow(/not a \.ts, \.js or \.cjs module/);
  });

  it('from sources: a data: module that registers tsx, then imports the .ts beside the caller', () => {
    const caller = new URL('../src/machine/machine.ts', import.meta.url).href;
    const url = workerUrl(caller, 'virtio-thread-main');
    expect(url.protocol).toBe('data:');
    const source = decodeURIComponent(url.href.slice('data:text/javascript,'.length));
    expect(source).toMatch(/import \{ register \} from "file:\/\/\/.*tsx\/dist\/esm\/api\/index\.mjs";/);
    expect(source).toContain(`await import(${JSON.stringify(new URL('./virtio-thread-main.ts', caller).href)})`);
  });
});

describe('dist/', () => {
  it('the bin checks the same folders that tsconfig.build.json compiles', () => {
    const config = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    expect(config.include.map((pattern) => pattern.split('/')[0])).toEqual(SOURCE_DIRS);
  });
});
