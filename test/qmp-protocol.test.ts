// The QMP wire protocol as docs/interop/qmp-spec.rst and QEMU 7.2 speak it,
// probed through raw sockets against a monitor over a fake machine. The
// expected strings are the ones Debian's qemu-system-x86_64 7.2 answers to
// the same bytes.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseQmpEndpoint } from '../src/qmp/endpoint.ts';
import { MAX_MESSAGE_BYTES } from '../src/qmp/json-splitter.ts';
import { QmpMonitor } from '../src/qmp/monitor.ts';
import { FakeMachine } from './helpers/qmp-fake-machine.ts';
import { RawQmpClient } from './helpers/qmp-raw-client.ts';

let dir: string;
let machine: FakeMachine;
let monitor: QmpMonitor;
let socketPath: string;
let tcpAddress: { host: string; port: number };
const clients: RawQmpClient[] = [];

async function client(): Promise<RawQmpClient> {
  const c = await RawQmpClient.connect(socketPath);
  clients.push(c);
  return c;
}

async function negotiated(): Promise<RawQmpClient> {
  const c = await RawQmpClient.negotiated(socketPath);
  clients.push(c);
  return c;
}

function genericError(desc: string): Record<string, unknown> {
  return { error: { class: 'GenericError', desc } };
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tsvmm-qmp-'));
  socketPath = join(dir, 'qmp.sock');
  machine = new FakeMachine();
  monitor = await QmpMonitor.listen(machine, [
    parseQmpEndpoint(`unix:${socketPath},server=on,wait=off`),
    parseQmpEndpoint('tcp:127.0.0.1:0,server,nowait'),
  ]);
  const port = Number(/:(\d+)$/.exec(monitor.addresses[1]!)![1]);
  tcpAddress = { host: '127.0.0.1', port };
});

afterEach(async () => {
  for (const c of clients) {
    expect(c.framingFaults).toEqual([]);
    c.close();
  }
  clients.length = 0;
  await monitor.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('greeting and capabilities negotiation', () => {
  it('greets with QEMU 7.2.0 VersionInfo naming tsvmm and no capabilities', async () => {
    const c = await client();
    const greeting = await c.next();
    expect(greeting).toEqual({
      QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: expect.stringMatching(/^tsvmm \d+\.\d+\.\d+/) }, capabilities: [] },
    });
  });

  it('refuses every command before qmp_capabilities, echoing the id', async () => {
    const c = await client();
    await c.next();
    expect(await c.command({ execute: 'query-status', id: 'x' })).toEqual({
      id: 'x', error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" },
    });
    expect(await c.command({ execute: 'nonesuch' })).toEqual({
      error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" },
    });
  });

  it('refuses capabilities it does not offer, and bad qmp_capabilities arguments, without negotiating', async () => {
    const c = await client();
    await c.next();
    expect(await c.command({ execute: 'qmp_capabilities', arguments: { enable: ['oob'] } })).toEqual(genericError('Capability oob not available'));
    expect(await c.command({ execute: 'qmp_capabilities', arguments: { enable: ['foo'] } }))
      .toEqual(genericError("Parameter 'null' does not accept value 'foo'"));
    expect(await c.command({ execute: 'qmp_capabilities', arguments: { enable: 'oob' } }))
      .toEqual(genericError("Invalid parameter type for 'enable', expected: array"));
    expect(await c.command({ execute: 'qmp_capabilities', arguments: { foo: 1 } })).toEqual(genericError("Parameter 'foo' is unexpected"));
    expect(await c.command({ execute: 'query-status' })).toMatchObject({ error: { class: 'CommandNotFound' } });
  });

  it('negotiates once: the id comes back, and a second qmp_capabilities is CommandNotFound', async () => {
    const c = await client();
    await c.next();
    expect(await c.command({ execute: 'qmp_capabilities', arguments: { enable: [] }, id: { a: [1] } })).toEqual({ return: {}, id: { a: [1] } });
    expect(await c.command({ execute: 'qmp_capabilities', id: 2 })).toEqual({
      id: 2, error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' },
    });
    expect(await c.command({ execute: 'query-status' })).toEqual({ return: { status: 'prelaunch', singlestep: false, running: false } });
  });
});

describe('requests', () => {
  it('echoes an id of any JSON type, null included', async () => {
    const c = await negotiated();
    for (const id of [5, 'text', null, [1, 'two'], { nested: { deep: true } }, 1.5, false]) {
      expect(await c.command({ execute: 'query-kvm', id })).toEqual({ return: { enabled: true, present: true }, id });
    }
  });

  it('checks the envelope with QEMU\'s messages, echoing the id where there is one', async () => {
    const c = await negotiated();
    expect(await c.command('[1,2]')).toEqual(genericError('QMP input must be a JSON object'));
    expect(await c.command('"str"')).toEqual(genericError('QMP input must be a JSON object'));
    expect(await c.command('3')).toEqual(genericError('QMP input must be a JSON object'));
    expect(await c.command({ execute: 1 })).toEqual(genericError("QMP input member 'execute' must be a string"));
    expect(await c.command({ id: 3 })).toEqual({ id: 3, ...genericError("QMP input lacks member 'execute'") });
    expect(await c.command({ execute: 'query-status', extra: 1, id: 7 })).toEqual({ id: 7, ...genericError("QMP input member 'extra' is unexpected") });
    expect(await c.command({ execute: 'query-status', arguments: [] })).toEqual(genericError("QMP input member 'arguments' must be an object"));
    expect(await c.command({ execute: 'query-status', arguments: null })).toEqual(genericError("QMP input member 'arguments' must be an object"));
    expect(await c.command({ execute: 'query-status', control: {} })).toEqual(genericError("QMP input member 'control' is unexpected"));
  });

  it('refuses exec-oob as QEMU does when oob was not negotiated', async () => {
    const c = await negotiated();
    expect(await c.command({ 'exec-oob': 'query-status', id: 1 })).toEqual({ id: 1, ...genericError("QMP input member 'exec-oob' is unexpected") });
    expect(await c.command({ execute: 'query-status', 'exec-oob': 'query-status' })).toEqual(genericError("QMP input member 'exec-oob' is unexpected"));
  });

  it('answers an unknown command with CommandNotFound', async () => {
    const c = await negotiated();
    expect(await c.command({ execute: 'nonesuch', id: 'a' })).toEqual({
      id: 'a', error: { class: 'CommandNotFound', desc: 'The command nonesuch has not been found' },
    });
    expect(await c.command({ execute: '__proto__' })).toMatchObject({ error: { class: 'CommandNotFound' } });
  });

  it('checks arguments: unexpected, missing, wrong type, nested paths, enum values', async () => {
    const c = await negotiated();
    expect(await c.command({ execute: 'query-status', arguments: { x: 1 } })).toEqual(genericError("Parameter 'x' is unexpected"));
    expect(await c.command({ execute: 'migrate' })).toEqual(genericError("Parameter 'uri' is missing"));
    expect(await c.command({ execute: 'migrate', arguments: { uri: 5 } })).toEqual(genericError("Invalid parameter type for 'uri', expected: string"));
    expect(await c.command({ execute: 'migrate', arguments: { uri: 'tcp:x:1', blk: 'yes' } }))
      .toEqual(genericError("Invalid parameter type for 'blk', expected: boolean"));
    expect(await c.command({ execute: 'migrate', arguments: { uri: 'bogus:1' } }))
      .toEqual(genericError("Parameter 'uri' expects a valid migration protocol"));
    expect(await c.command({ execute: 'human-monitor-command' })).toEqual(genericError("Parameter 'command-line' is missing"));
    expect(await c.command({ execute: 'human-monitor-command', arguments: { 'command-line': 'info status', 'cpu-index': 'a' } }))
      .toEqual(genericError("Invalid parameter type for 'cpu-index', expected: integer"));
    const capabilities = (value: unknown) => ({ execute: 'migrate-set-capabilities', arguments: { capabilities: value } });
    expect(await c.command(capabilities({}))).toEqual(genericError("Invalid parameter type for 'capabilities', expected: array"));
    expect(await c.command(capabilities([5]))).toEqual(genericError("Invalid parameter type for 'capabilities[0]', expected: object"));
    expect(await c.command(capabilities([{ capability: 'events' }]))).toEqual(genericError("Parameter 'capabilities[0].state' is missing"));
    expect(await c.command(capabilities([{ capability: 'events', state: true, x: 1 }])))
      .toEqual(genericError("Parameter 'capabilities[0].x' is unexpected"));
    expect(await c.command(capabilities([{ capability: 7, state: true }])))
      .toEqual(genericError("Invalid parameter type for 'capabilities[0].capability', expected: string"));
    expect(await c.command(capabilities([{ capability: 'nonesuch', state: true }])))
      .toEqual(genericError("Parameter 'capability' does not accept value 'nonesuch'"));
    expect(machine.calls.filter((call) => call.startsWith('capability') || call.startsWith('migrate'))).toEqual([]);
  });
});

describe('framing', () => {
  it('answers bad JSON with a GenericError without id, and the connection stays open', async () => {
    const c = await negotiated();
    const reply = await c.command('{bad}');
    expect(reply).toEqual({ error: { class: 'GenericError', desc: expect.stringMatching(/^JSON parse error, /) } });
    expect(await c.command('{"execute": }')).toEqual({ error: { class: 'GenericError', desc: expect.stringMatching(/^JSON parse error, /) } });
    expect(await c.command('}')).toMatchObject({ error: { class: 'GenericError' } });
    expect(await c.command({ execute: 'query-status', id: 1 })).toMatchObject({ return: { status: 'prelaunch' }, id: 1 });
  });

  it('takes a message split across writes, and several in one write', async () => {
    const c = await negotiated();
    c.send('{"execute": "query-');
    await new Promise((resolve) => setImmediate(resolve));
    c.send('kvm", "id": 1}');
    expect(await c.reply()).toEqual({ return: { enabled: true, present: true }, id: 1 });
    c.send('{"execute":"query-name","id":2}{"execute":"query-uuid","id":3}\n{"execute":"query-kvm","id":4}');
    expect(await c.reply()).toEqual({ return: {}, id: 2 });
    expect(await c.reply()).toEqual({ return: { UUID: '00000000-0000-0000-0000-000000000000' }, id: 3 });
    expect(await c.reply()).toMatchObject({ id: 4 });
  });

  it('keeps strings with braces, quotes and multi-byte characters whole', async () => {
    const c = await negotiated();
    const id = 'a }{ ] [ \\" ünïcødé 🙂';
    expect(await c.command({ execute: 'query-kvm', id })).toMatchObject({ id });
  });

  it('throws away a half-sent message at a 0xFF byte (the spec\'s way to resynchronise)', async () => {
    const c = await negotiated();
    c.send('{"execute": "query-status", "arguments": {');
    c.send(new Uint8Array([0xff]));
    expect(await c.command({ execute: 'query-kvm', id: 9 })).toMatchObject({ return: { enabled: true }, id: 9 });
  });

  it('refuses a message over the size limit and goes on reading', async () => {
    const c = await negotiated();
    c.send(`{"execute":"query-status","id":"${'x'.repeat(MAX_MESSAGE_BYTES)}"}`);
    expect(await c.reply()).toEqual(genericError('JSON message size limit exceeded'));
    expect(await c.command({ execute: 'query-kvm', id: 1 })).toMatchObject({ id: 1 });
  });

  it('refuses nesting deeper than QEMU allows', async () => {
    const c = await negotiated();
    expect(await c.command(`${'['.repeat(1100)}${']'.repeat(1100)}`)).toEqual(genericError('JSON nesting depth limit exceeded'));
    expect(await c.command({ execute: 'query-kvm', id: 1 })).toMatchObject({ id: 1 });
  });

  it('answers in order when requests arrive faster than a command completes', async () => {
    const c = await negotiated();
    const batch = Array.from({ length: 40 }, (_, i) => JSON.stringify({ execute: i % 2 ? 'stop' : 'query-status', id: i })).join('');
    c.send(batch);
    for (let i = 0; i < 40; i++) expect(await c.reply()).toMatchObject({ id: i });
  });
});

describe('events', () => {
  it('reach every negotiated client, on unix and tcp, with a timestamp; not a client still negotiating', async () => {
    const unixClient = await negotiated();
    const tcpClient = await RawQmpClient.negotiated(tcpAddress);
    clients.push(tcpClient);
    const waiting = await client();
    expect(await waiting.next()).toHaveProperty('QMP');

    const before = Date.now() / 1000;
    const events: Array<Record<string, unknown>> = [];
    expect(await unixClient.command({ execute: 'cont' }, events)).toEqual({ return: {} });
    expect(events).toEqual([{ timestamp: { seconds: expect.any(Number), microseconds: expect.any(Number) }, event: 'RESUME' }]);
    const { seconds, microseconds } = events[0]!['timestamp'] as { seconds: number; microseconds: number };
    expect(Number.isInteger(seconds) && Number.isInteger(microseconds) && microseconds < 1e6).toBe(true);
    expect(seconds).toBeGreaterThanOrEqual(Math.floor(before));

    expect(await tcpClient.next()).toMatchObject({ event: 'RESUME' });
    machine.emit({ event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' } });
    expect(await tcpClient.next()).toMatchObject({ event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' } });
    expect(await unixClient.next()).toMatchObject({ event: 'SHUTDOWN' });

    // The client that had not negotiated got none of them: its next message is its reply.
    expect(await waiting.command({ execute: 'qmp_capabilities' })).toEqual({ return: {} });
    expect(waiting.unread).toBe(0);
  });

  it('sends MIGRATION only while the events capability is on', async () => {
    const c = await negotiated();
    machine.emit({ event: 'MIGRATION', data: { status: 'setup' } });
    expect(await c.command({ execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'events', state: true }] } }))
      .toEqual({ return: {} });
    machine.emit({ event: 'MIGRATION', data: { status: 'active' } });
    expect(await c.next()).toMatchObject({ event: 'MIGRATION', data: { status: 'active' } });
    expect(c.unread).toBe(0);
  });
});

describe('commands', () => {
  it('query-status follows the run state', async () => {
    const c = await negotiated();
    expect(await c.command({ execute: 'query-status' })).toEqual({ return: { status: 'prelaunch', singlestep: false, running: false } });
    await c.command({ execute: 'cont' });
    expect(await c.command({ execute: 'query-status' })).toEqual({ return: { status: 'running', singlestep: false, running: true } });
    await c.command({ execute: 'stop' });
    expect(await c.command({ execute: 'query-status' })).toEqual({ return: { status: 'paused', singlestep: false, running: false } });
    expect(machine.calls).toEqual(['cont', 'stop']);
  });

  it('system_reset and system_powerdown reach the machine and their events the client', async () => {
    const c = await negotiated();
    const events: Array<Record<string, unknown>> = [];
    expect(await c.command({ execute: 'system_reset' }, events)).toEqual({ return: {} });
    expect(await c.command({ execute: 'system_powerdown' }, events)).toEqual({ return: {} });
    expect(events.map(({ event, data }) => ({ event, data }))).toEqual([
      { event: 'RESET', data: { guest: false, reason: 'host-qmp-system-reset' } },
      { event: 'POWERDOWN', data: undefined },
    ]);
    expect(machine.calls).toEqual(['system_reset', 'system_powerdown']);
  });

  it('a MonitorError from the machine becomes the error reply', async () => {
    machine.state = 'inmigrate';
    const c = await negotiated();
    expect(await c.command({ execute: 'cont', id: 1 })).toEqual({ id: 1, ...genericError("Migration is not supported in state 'inmigrate'") });
    expect(await c.command({ execute: 'migrate-incoming', arguments: { uri: 'tcp:127.0.0.1:0' } }))
      .toEqual(genericError("'-incoming' was not specified on the command line"));
  });

  it('quit replies first, then the machine ends (here: closes the monitor) and the client still has the reply and SHUTDOWN', async () => {
    await monitor.close();
    machine = new FakeMachine({ onQuit: () => void monitor.close() });
    monitor = await QmpMonitor.listen(machine, [parseQmpEndpoint(`unix:${socketPath},server=on,wait=off`)]);
    const c = await negotiated();
    expect(await c.command({ execute: 'quit', id: 'q' })).toEqual({ return: {}, id: 'q' });
    expect(await c.next()).toMatchObject({ event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
    await expect(c.next()).rejects.toThrow('closed');
    expect(machine.calls).toEqual(['quit']);
  });

  it('query-version, query-kvm, query-name, query-uuid, query-cpus-fast', async () => {
    await monitor.close();
    machine = new FakeMachine({
      name: 'vm1', uuid: '12345678-1234-1234-1234-123456789abc',
      cpus: [{ index: 0, threadId: 101 }, { index: 1, threadId: 102 }],
    });
    monitor = await QmpMonitor.listen(machine, [parseQmpEndpoint(`unix:${socketPath},server=on,wait=off`)]);
    const c = await negotiated();
    expect(await c.command({ execute: 'query-version' })).toEqual({
      return: { qemu: { micro: 0, minor: 2, major: 7 }, package: expect.stringMatching(/^tsvmm /) },
    });
    expect(await c.command({ execute: 'query-name' })).toEqual({ return: { name: 'vm1' } });
    expect(await c.command({ execute: 'query-uuid' })).toEqual({ return: { UUID: '12345678-1234-1234-1234-123456789abc' } });
    expect(await c.command({ execute: 'query-cpus-fast' })).toEqual({
      return: [0, 1].map((i) => ({
        'thread-id': 101 + i, props: { 'core-id': i, 'thread-id': 0, 'socket-id': 0 },
        'qom-path': `/machine/unattached/device[${i}]`, 'cpu-index': i, target: 'x86_64',
      })),
    });
  });

  it('query-commands lists every command the session accepts, each of which is known', async () => {
    const c = await negotiated();
    const reply = await c.command({ execute: 'query-commands' });
    const names = (reply['return'] as Array<{ name: string }>).map(({ name }) => name);
    for (const name of ['qmp_capabilities', 'query-status', 'stop', 'cont', 'system_reset', 'system_powerdown', 'quit',
      'human-monitor-command', 'migrate', 'migrate-incoming', 'query-migrate', 'migrate_cancel',
      'migrate-set-capabilities', 'query-migrate-capabilities', 'migrate-set-parameters', 'query-migrate-parameters',
      'query-version', 'query-commands', 'query-kvm', 'query-cpus-fast', 'query-block', 'query-name', 'query-uuid']) {
      expect(names).toContain(name);
    }
    for (const name of names.filter((n) => !['quit', 'qmp_capabilities', 'migrate', 'migrate-incoming', 'human-monitor-command'].includes(n))) {
      expect(await c.command({ execute: name })).not.toMatchObject({ error: { class: 'CommandNotFound' } });
    }
  });
});

describe('migration commands', () => {
  it('query-migrate is {} before any migration, QEMU\'s MigrationInfo after', async () => {
    const c = await negotiated();
    expect(await c.command({ execute: 'query-migrate' })).toEqual({ return: {} });
    expect(await c.command({ execute: 'migrate', arguments: { uri: 'exec:cat > /dev/null' } })).toEqual({ return: {} });
    expect(machine.calls).toEqual(['migrate exec:cat > /dev/null']);
    const info = (await c.command({ execute: 'query-migrate' }))['return'] as Record<string, unknown>;
    expect(Object.keys(info).sort()).toEqual(['downtime', 'ram', 'setup-time', 'status', 'total-time']);
    expect(Object.keys(info['ram'] as object).sort()).toEqual([
      'dirty-pages-rate', 'dirty-sync-count', 'dirty-sync-missed-zero-copy', 'downtime-bytes', 'duplicate', 'mbps',
      'multifd-bytes', 'normal', 'normal-bytes', 'page-size', 'pages-per-second', 'postcopy-bytes', 'postcopy-requests',
      'precopy-bytes', 'remaining', 'skipped', 'total', 'transferred',
    ]);
    machine.setMigrationInfo({ status: 'failed', errorDesc: "Failed to connect to '127.0.0.1:1': Connection refused" });
    expect(await c.command({ execute: 'query-migrate' }))
      .toEqual({ return: { status: 'failed', 'error-desc': "Failed to connect to '127.0.0.1:1': Connection refused" } });
  });

  it('migrate refuses incremental disk copying and postcopy resume, which tsvmm does not do', async () => {
    const c = await negotiated();
    expect(await c.command({ execute: 'migrate', arguments: { uri: 'tcp:127.0.0.1:4444', inc: true } })).toMatchObject({ error: { class: 'GenericError' } });
    expect(await c.command({ execute: 'migrate', arguments: { uri: 'tcp:127.0.0.1:4444', resume: true } })).toMatchObject({ error: { class: 'GenericError' } });
    expect(await c.command({ execute: 'migrate', arguments: { uri: 'tcp:127.0.0.1:4444', detach: true, blk: false } })).toEqual({ return: {} });
  });

  it('migrate with blk asks the machine for a block migration; query-migrate then has QEMU\'s disk member', async () => {
    const c = await negotiated();
    expect(await c.command({ execute: 'migrate', arguments: { uri: 'exec:cat > /dev/null', blk: true } })).toEqual({ return: {} });
    expect(machine.calls).toEqual(['migrate exec:cat > /dev/null (block)']);
    machine.setMigrationInfo({ status: 'active', totalTimeMs: 5, disk: { transferred: 1048600, remaining: 3145728, total: 4194304 } });
    const info = (await c.command({ execute: 'query-migrate' }))['return'] as Record<string, Record<string, number>>;
    expect(info['disk']).toMatchObject({ transferred: 1048600, remaining: 3145728, total: 4194304, normal: 0, duplicate: 0 });
    expect(Object.keys(info['disk']!)).toHaveLength(18);
  });

  it('migration capabilities: QEMU 7.2\'s whole list, set through the machine', async () => {
    const c = await negotiated();
    const list = (await c.command({ execute: 'query-migrate-capabilities' }))['return'] as Array<{ capability: string; state: boolean }>;
    expect(list).toHaveLength(21);
    expect(list[0]).toEqual({ state: false, capability: 'xbzrle' });
    expect(await c.command({ execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'xbzrle', state: true }] } }))
      .toEqual(genericError("tsvmm does not support the migration capability 'xbzrle'"));
    await c.command({ execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'events', state: true }] } });
    const after = (await c.command({ execute: 'query-migrate-capabilities' }))['return'] as Array<{ capability: string; state: boolean }>;
    expect(after.find(({ capability }) => capability === 'events')).toEqual({ state: true, capability: 'events' });
  });

  it('migration parameters: downtime-limit and max-bandwidth with QEMU\'s checks', async () => {
    const c = await negotiated();
    expect(await c.command({ execute: 'query-migrate-parameters' })).toEqual({ return: { 'downtime-limit': 300, 'max-bandwidth': 0 } });
    expect(await c.command({ execute: 'migrate-set-parameters', arguments: { 'downtime-limit': 500, 'max-bandwidth': 1000000 } })).toEqual({ return: {} });
    expect(await c.command({ execute: 'query-migrate-parameters' })).toEqual({ return: { 'downtime-limit': 500, 'max-bandwidth': 1000000 } });
    const range = "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms";
    expect(await c.command({ execute: 'migrate-set-parameters', arguments: { 'downtime-limit': 3000000 } })).toEqual(genericError(range));
    expect(await c.command({ execute: 'migrate-set-parameters', arguments: { 'downtime-limit': -1 } })).toEqual(genericError(range));
    expect(await c.command({ execute: 'migrate-set-parameters', arguments: { 'downtime-limit': 'x' } }))
      .toEqual(genericError("Parameter 'downtime-limit' expects uint64"));
    expect(await c.command({ execute: 'migrate-set-parameters', arguments: { 'downtime-limit': 1.5 } }))
      .toEqual(genericError("Parameter 'downtime-limit' expects uint64"));
    expect(await c.command({ execute: 'migrate-set-parameters', arguments: { bogus: 1 } })).toEqual(genericError("Parameter 'bogus' is unexpected"));
    expect(await c.command({ execute: 'migrate-set-parameters', arguments: { 'downtime-limit': 2000000 } })).toEqual({ return: {} });
    expect(machine.calls).toEqual([
      'parameters {"downtimeLimitMs":500,"maxBandwidth":1000000}',
      'parameters {"downtimeLimitMs":2000000}',
    ]);
  });

  it('migrate_cancel reaches the machine', async () => {
    const c = await negotiated();
    expect(await c.command({ execute: 'migrate_cancel' })).toEqual({ return: {} });
    expect(machine.calls).toEqual(['migrate_cancel']);
  });
});

describe('monitor life', () => {
  it('close() disconnects clients and removes the unix socket', async () => {
    const c = await negotiated();
    await monitor.close();
    await expect(c.next()).rejects.toThrow('closed');
    await expect(RawQmpClient.connect(socketPath)).rejects.toThrow();
  });

  it('a client that disconnects mid-command does not disturb the others', async () => {
    const first = await negotiated();
    const second = await negotiated();
    first.send('{"execute":"query-status"}{"execute":"query-kvm"}');
    first.close();
    expect(await second.command({ execute: 'query-kvm', id: 1 })).toMatchObject({ id: 1 });
  });
});
