// --qmp in QEMU's spelling, and listening: stale unix sockets, live ones,
// several endpoints at once, wait=on holding start-up until a client comes.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.ts';
import { parseQmpEndpoint } from '../src/qmp/endpoint.ts';
import { QmpMonitor } from '../src/qmp/monitor.ts';
import { FakeMachine } from './helpers/qmp-fake-machine.ts';
import { RawQmpClient } from './helpers/qmp-raw-client.ts';

describe('parseQmpEndpoint', () => {
  it('reads unix and tcp endpoints with QEMU\'s long and short options', () => {
    expect(parseQmpEndpoint('unix:/run/vm.sock,server=on,wait=off'))
      .toEqual({ transport: 'unix', path: '/run/vm.sock', wait: false, spec: 'unix:/run/vm.sock,server=on,wait=off' });
    expect(parseQmpEndpoint('unix:/run/vm.sock,server,nowait')).toMatchObject({ transport: 'unix', wait: false });
    expect(parseQmpEndpoint('unix:/run/vm.sock,server=on')).toMatchObject({ wait: true });
    expect(parseQmpEndpoint('unix:/run/a,,b.sock,server=yes,wait=no')).toMatchObject({ path: '/run/a,b.sock', wait: false });
    expect(parseQmpEndpoint('tcp:127.0.0.1:4444,server=on,wait=off')).toMatchObject({ transport: 'tcp', host: '127.0.0.1', port: 4444, wait: false });
    expect(parseQmpEndpoint('tcp::4444,server,nowait')).toMatchObject({ host: '', port: 4444 });
    expect(parseQmpEndpoint('tcp:[::1]:4444,server,nowait')).toMatchObject({ host: '::1', port: 4444 });
  });

  it('refuses what tsvmm cannot do, in one line each', () => {
    const refusal = (spec: string): string => {
      try {
        parseQmpEndpoint(spec);
      } catch (e) {
        expect(e).toBeInstanceOf(InputError);
        expect((e as Error).message).not.toContain('\n');
        return (e as Error).message;
      }
      throw new Error(`${spec} was accepted`);
    };
    expect(refusal('unix:/run/vm.sock')).toContain('server=on');
    expect(refusal('unix:/run/vm.sock,server=off')).toContain('server=off, is not supported');
    expect(refusal('unix:/run/vm.sock,server=maybe')).toContain('server=maybe: use on or off');
    expect(refusal('unix:/run/vm.sock,server,telnet')).toContain("unknown option 'telnet'");
    expect(refusal('unix:,server')).toContain('needs a socket path');
    expect(refusal(`unix:/${'x'.repeat(120)},server`)).toContain('longer than 107 bytes');
    expect(refusal('tcp:localhost,server')).toContain('tcp:HOST:PORT');
    expect(refusal('tcp:localhost:99999,server')).toContain('0 to 65535');
    expect(refusal('stdio,server')).toContain('unix:PATH or tcp:HOST:PORT');
  });
});

describe('listening', () => {
  let dir: string;
  let monitor: QmpMonitor | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsvmm-qmp-endpoint-'));
  });

  afterEach(async () => {
    await monitor?.close();
    monitor = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A socket file that a killed process left behind: nobody accepts on it. */
  async function staleSocket(path: string): Promise<void> {
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`]);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the helper process did not listen')), 10_000);
      child.stdout.once('data', () => { clearTimeout(timer); resolve(); });
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  it('replaces a stale socket file', async () => {
    const path = join(dir, 'stale.sock');
    await staleSocket(path);
    expect(existsSync(path)).toBe(true);
    monitor = await QmpMonitor.listen(new FakeMachine(), [parseQmpEndpoint(`unix:${path},server,nowait`)]);
    const client = await RawQmpClient.connect(path);
    expect(await client.next()).toHaveProperty('QMP');
    client.close();
  });

  it('refuses a socket another process listens on, and a path that is not a socket', async () => {
    const path = join(dir, 'live.sock');
    const first = await QmpMonitor.listen(new FakeMachine(), [parseQmpEndpoint(`unix:${path},server,nowait`)]);
    await expect(QmpMonitor.listen(new FakeMachine(), [parseQmpEndpoint(`unix:${path},server,nowait`)]))
      .rejects.toThrow(`another process is listening on ${path}`);
    await first.close();
    const file = join(dir, 'file');
    writeFileSync(file, 'data');
    await expect(QmpMonitor.listen(new FakeMachine(), [parseQmpEndpoint(`unix:${file},server,nowait`)]))
      .rejects.toThrow('exists and is not a socket');
  });

  it('listens on several endpoints at once and reports the tcp port it got', async () => {
    const a = join(dir, 'a.sock');
    const b = join(dir, 'b.sock');
    monitor = await QmpMonitor.listen(new FakeMachine(), [
      parseQmpEndpoint(`unix:${a},server,nowait`),
      parseQmpEndpoint(`unix:${b},server,nowait`),
      parseQmpEndpoint('tcp:127.0.0.1:0,server,nowait'),
    ]);
    const [, , tcp] = monitor.addresses;
    expect(monitor.addresses.slice(0, 2)).toEqual([`unix:${a}`, `unix:${b}`]);
    const port = Number(/^tcp:127\.0\.0\.1:(\d+)$/.exec(tcp!)![1]);
    expect(port).toBeGreaterThan(0);
    for (const address of [a, b, { host: '127.0.0.1', port }]) {
      const client = await RawQmpClient.negotiated(address);
      expect(await client.command({ execute: 'query-kvm' })).toEqual({ return: { enabled: true, present: true } });
      client.close();
    }
    await monitor.close();
    monitor = undefined;
    expect(existsSync(a) || existsSync(b)).toBe(false);
  });

  it('an endpoint that cannot be used leaves none listening', async () => {
    const good = join(dir, 'good.sock');
    const blocker = await QmpMonitor.listen(new FakeMachine(), [parseQmpEndpoint('tcp:127.0.0.1:0,server,nowait')]);
    const taken = blocker.addresses[0]!;
    await expect(QmpMonitor.listen(new FakeMachine(), [
      parseQmpEndpoint(`unix:${good},server,nowait`),
      parseQmpEndpoint(`${taken},server,nowait`),
    ])).rejects.toThrow('cannot listen: EADDRINUSE');
    await blocker.close();
    expect(existsSync(good)).toBe(false);
  });

  it('wait=on holds waitForClients until a client connects; wait=off does not', async () => {
    const held = join(dir, 'held.sock');
    const free = join(dir, 'free.sock');
    monitor = await QmpMonitor.listen(new FakeMachine(), [
      parseQmpEndpoint(`unix:${free},server,nowait`),
      parseQmpEndpoint(`unix:${held},server=on`),
    ]);
    const announced: string[] = [];
    let released = false;
    const waiting = monitor.waitForClients((address) => announced.push(address)).then(() => { released = true; });
    const first = await RawQmpClient.connect(free);
    await first.next();
    expect(released).toBe(false);
    const second = await RawQmpClient.connect(held);
    await second.next();
    await waiting;
    expect(announced).toEqual([`unix:${held}`]);
    first.close();
    second.close();
  });

  it('close() releases a waitForClients that nobody answered', async () => {
    monitor = await QmpMonitor.listen(new FakeMachine(), [parseQmpEndpoint(`unix:${join(dir, 'w.sock')},server`)]);
    const waiting = monitor.waitForClients();
    await monitor.close();
    await waiting;
  });
});
