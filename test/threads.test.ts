// How tsvmm finds its worker entries and whether its compiled copy is current.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MessageChannel } from 'node:worker_threads';
import { isCompiled, prestartWorker, releasePrestartedWorkers, siblingModule, startWorker, workerUrl } from '../src/machine/threads.ts';
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

describe('a prestarted worker', () => {
  it('is taken with data that carries a port to transfer, and nothing else starts', async () => {
    // Answers on the port it was handed; started fresh (workerData: the data itself) it has no prestart flag and throws.
    const source = [
      "import { parentPort, workerData } from 'node:worker_threads';",
      'const waiting = new Int32Array(workerData.tsvmmPrestarted);',
      'Atomics.store(waiting, 0, 1);',
      "parentPort.once('message', ({ init }) => { init.port.postMessage(`got ${init.value}`); init.port.close(); });",
    ].join('\n');
    const url = new URL(`data:text/javascript,${encodeURIComponent(source)}`);
    prestartWorker(url, { stdout: false });
    const { port1, port2 } = new MessageChannel();
    const worker = startWorker(url, { port: port2, value: 7 }, { stdout: false, transferList: [port2] });
    const answer = await Promise.race([
      new Promise<string>((resolve) => port1.once('message', resolve)),
      new Promise<string>((resolve) => worker.once('error', (e) => resolve(`error: ${e.message}`))),
      new Promise<string>((resolve) => setTimeout(() => resolve('no answer in 20 s'), 20_000)),
    ]);
    port1.close();
    await worker.terminate();
    await releasePrestartedWorkers();
    expect(answer).toBe('got 7');
  }, 30_000);
});

describe('dist/', () => {
  it('the bin checks the same folders that tsconfig.build.json compiles', () => {
    const config = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    expect(config.include.map((pattern) => pattern.split('/')[0])).toEqual(SOURCE_DIRS);
  });
});
