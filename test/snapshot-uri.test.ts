// The migration URIs (QEMU's exec:, tcp:, unix: and file:) carrying a whole
// snapshot stream between real processes and sockets on this machine, and
// the one-line errors for a URI, a command or a connection that fails.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.ts';
import { GuestMemory } from '../src/memory/index.ts';
import {
  MAGIC, PAGE_SIZE, openIncoming, openOutgoing, parseMigrationUri, receiveSnapshot, sendSnapshot,
  type SnapshotReader, type SnapshotWriter,
} from '../src/snapshot/index.ts';
import { CONFIG, fillPage } from './helpers/snapshot-streams.ts';

const MIB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'tsvmm-snapshot-uri-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** 16 MiB of RAM with every 7th page in use. */
function busyMemory(): GuestMemory {
  const memory = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 16 * MIB }]);
  for (let address = 0; address < memory.size; address += 7 * PAGE_SIZE) fillPage(memory, address, address / PAGE_SIZE);
  return memory;
}

function send(uri: string, memory: GuestMemory, signal?: AbortSignal): Promise<number> {
  return sendSnapshot(uri, CONFIG, async (writer) => {
    await writer.writeValue('vcpu0', { rip: 0x1000n });
    await writer.writeRamPages(memory, 'nonzero');
  }, { signal });
}

/** Reads a stream into fresh RAM: its config, its vcpu0 section, the RAM. */
async function receive(uri: string, options: Parameters<typeof receiveSnapshot>[2] = {}): Promise<{ config: unknown; vcpu: unknown; memory: GuestMemory }> {
  const memory = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 16 * MIB }]);
  let config: unknown;
  let vcpu: unknown;
  await receiveSnapshot(uri, async (reader: SnapshotReader) => {
    config = reader.config;
    for await (const record of reader.records()) {
      if (record.type === 'ram') record.applyTo(memory);
      else if (record.type === 'section' && record.name === 'vcpu0') vcpu = record.readValue();
    }
  }, options);
  return { config, vcpu, memory };
}

function sameRam(a: GuestMemory, b: GuestMemory): boolean {
  return Buffer.from(a.read(0, a.size)).equals(b.read(0, b.size));
}

/** The tcp URI of a port nothing listens on (one just freed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('parseMigrationUri', () => {
  it('reads the four schemes as QEMU spells them', () => {
    expect(parseMigrationUri('exec:cat > /tmp/vm.snap')).toEqual({ scheme: 'exec', command: 'cat > /tmp/vm.snap' });
    expect(parseMigrationUri('tcp:192.168.1.2:4444')).toEqual({ scheme: 'tcp', host: '192.168.1.2', port: 4444 });
    expect(parseMigrationUri('tcp:[::1]:4444')).toEqual({ scheme: 'tcp', host: '::1', port: 4444 });
    expect(parseMigrationUri('tcp::4444')).toEqual({ scheme: 'tcp', host: '', port: 4444 });
    expect(parseMigrationUri('unix:/run/vm.sock')).toEqual({ scheme: 'unix', path: '/run/vm.sock' });
    expect(parseMigrationUri('file:/tmp/a:b')).toEqual({ scheme: 'file', path: '/tmp/a:b' });
  });

  it.each([
    ['rdma:host:4444', "migrate: unknown URI scheme 'rdma' (expected exec:, tcp:, unix: or file:)"],
    ['/tmp/vm.snap', "migrate: unknown URI scheme '/tmp/vm.snap' (expected exec:, tcp:, unix: or file:)"],
    ['exec: ', "migrate: 'exec: ' has no command (expected exec:COMMAND)"],
    ['unix:', "migrate: 'unix:' has no path (expected unix:PATH)"],
    ['tcp:host', "migrate: 'tcp:host' is not tcp:HOST:PORT"],
    ['tcp:host:65536', "migrate: 'tcp:host:65536' is not tcp:HOST:PORT"],
    ['tcp:host:44x', "migrate: 'tcp:host:44x' is not tcp:HOST:PORT"],
    ['tcp:::1:4444', "migrate: 'tcp:::1:4444' is not tcp:HOST:PORT"],
  ])('refuses %j with one line', (uri, message) => {
    expect(() => parseMigrationUri(uri)).toThrow(InputError);
    expect(() => parseMigrationUri(uri)).toThrow(message);
  });

  it('refuses an outgoing tcp: URI without a host', async () => {
    await expect(openOutgoing('tcp::4444')).rejects.toThrow("migrate: 'tcp::4444' has no host to connect to");
  });
});

describe('a snapshot through', () => {
  it('exec:cat > FILE, then exec:cat FILE (QEMU\'s way to a file)', async () => {
    const file = join(dir, 'exec.snap');
    const memory = busyMemory();
    const bytes = await send(`exec:cat > '${file}'`, memory);
    const written = readFileSync(file);
    expect(written.length).toBe(bytes);
    expect(written.subarray(0, 8).equals(MAGIC)).toBe(true);
    const back = await receive(`exec:cat '${file}'`);
    expect(back.config).toEqual(CONFIG);
    expect(back.vcpu).toEqual({ rip: 0x1000n });
    expect(sameRam(memory, back.memory)).toBe(true);
  });

  it('file:PATH', async () => {
    const file = join(dir, 'file.snap');
    const memory = busyMemory();
    await send(`file:${file}`, memory);
    expect(sameRam(memory, (await receive(`file:${file}`)).memory)).toBe(true);
  });

  it('tcp: on 127.0.0.1, the destination listening for the source', async () => {
    const memory = busyMemory();
    let listening!: (uri: string) => void;
    const bound = new Promise<string>((resolve) => { listening = resolve; });
    const destination = receive('tcp:127.0.0.1:0', { onListening: listening });
    const uri = await bound;
    expect(uri).toMatch(/^tcp:127\.0\.0\.1:\d+$/);
    const [, back] = await Promise.all([send(uri, memory), destination]);
    expect(sameRam(memory, back.memory)).toBe(true);
    expect(back.vcpu).toEqual({ rip: 0x1000n });
  });

  it('unix:PATH, replacing a socket file an earlier listener left', async () => {
    const path = join(dir, 'migrate.sock');
    const stale = createServer();
    await new Promise<void>((resolve) => stale.listen(path, resolve));
    stale.unref(); // left listening on purpose: its socket file is the stale one
    const memory = busyMemory();
    let listening!: () => void;
    const bound = new Promise<void>((resolve) => { listening = resolve; });
    const destination = receive(`unix:${path}`, { onListening: listening });
    await bound;
    const [, back] = await Promise.all([send(`unix:${path}`, memory), destination]);
    expect(sameRam(memory, back.memory)).toBe(true);
    stale.close();
  });
});

describe('a failing transport', () => {
  it('exec: whose command cannot write its file names the command, its status and its complaint', async () => {
    await expect(send('exec:cat > /nonexistent-tsvmm-dir/vm.snap', busyMemory()))
      .rejects.toThrow(/^exec:cat > \/nonexistent-tsvmm-dir\/vm\.snap: the command failed with exit status 2 \(.*nonexistent-tsvmm-dir.*\)$/);
  });

  it('exec: whose command exits non-zero after reading everything is a failure too', async () => {
    await expect(send('exec:cat > /dev/null; exit 3', busyMemory()))
      .rejects.toThrow(/^exec:cat > \/dev\/null; exit 3: the command failed with exit status 3$/);
  });

  it('exec: incoming from a command that fails names the command, not an empty stream', async () => {
    await expect(receive('exec:cat /nonexistent-tsvmm-file'))
      .rejects.toThrow(/^exec:cat \/nonexistent-tsvmm-file: the command failed with exit status 1 \(cat: .*No such file or directory\)$/);
  });

  it('exec: incoming of something that is not a snapshot stops the command and says so', async () => {
    const file = join(dir, 'big-garbage');
    writeFileSync(file, Buffer.alloc(8 * MIB, 0x41)); // more than a pipe holds: cat is still writing when the reader stops
    await expect(receive(`exec:cat '${file}'`)).rejects.toThrow(`exec:cat '${file}': not a tsvmm snapshot (it starts with 4141414141414141)`);
  });

  it('file: that does not exist', async () => {
    await expect(receive('file:/nonexistent-tsvmm-file')).rejects.toThrow('file:/nonexistent-tsvmm-file: cannot open: no such file or directory (ENOENT)');
  });

  it('tcp: with nobody listening', async () => {
    const port = await closedPort();
    await expect(send(`tcp:127.0.0.1:${port}`, busyMemory())).rejects.toThrow(`tcp:127.0.0.1:${port}: cannot connect: connection refused (ECONNREFUSED)`);
  });

  it('tcp: a dropped connection leaves the destination with a truncated stream, and the source with its cancel', async () => {
    let listening!: (uri: string) => void;
    const bound = new Promise<string>((resolve) => { listening = resolve; });
    const destination = receive('tcp:127.0.0.1:0', { onListening: listening });
    const destinationFailed = expect(destination).rejects.toThrow(/^tcp:127\.0\.0\.1:\d+: truncated: the stream ends (inside|after) record \d+/);
    const uri = await bound;
    const cancel = new AbortController();
    const memory = busyMemory();
    const source = sendSnapshot(uri, CONFIG, async (writer: SnapshotWriter) => {
      await writer.writeRamPages(memory, [0, 7 * PAGE_SIZE]);
      cancel.abort(new Error('migrate_cancel'));
      await writer.writeRamPages(memory, 'nonzero');
    }, { signal: cancel.signal });
    await expect(source).rejects.toThrow('migrate_cancel');
    await destinationFailed;
  });

  it('tcp: a destination waiting for its source can be cancelled, and frees its port', async () => {
    let listening!: (uri: string) => void;
    const bound = new Promise<string>((resolve) => { listening = resolve; });
    const cancel = new AbortController();
    const waiting = openIncoming('tcp:127.0.0.1:0', { signal: cancel.signal, onListening: listening });
    const uri = await bound;
    cancel.abort(new Error('migrate-incoming cancelled'));
    await expect(waiting).rejects.toThrow('migrate-incoming cancelled');
    const port = Number(uri.split(':').pop());
    await expect(openOutgoing(uri)).rejects.toThrow(`${uri}: cannot connect: connection refused (ECONNREFUSED)`);
    // Listening there again works: the cancelled listener let go of the port.
    const again = new AbortController();
    const second = openIncoming(`tcp:127.0.0.1:${port}`, { signal: again.signal });
    again.abort(new Error('done'));
    await expect(second).rejects.toThrow('done');
  });

  it('unix: a listener leaves no socket file behind', async () => {
    const path = join(dir, 'gone.sock');
    const cancel = new AbortController();
    let listening!: () => void;
    const bound = new Promise<void>((resolve) => { listening = resolve; });
    const waiting = openIncoming(`unix:${path}`, { signal: cancel.signal, onListening: listening });
    await bound;
    expect(existsSync(path)).toBe(true);
    cancel.abort(new Error('cancelled'));
    await expect(waiting).rejects.toThrow('cancelled');
    expect(existsSync(path)).toBe(false);
  });

  it('unix: refuses to replace a file that is not a socket', async () => {
    const path = join(dir, 'not-a-socket');
    writeFileSync(path, 'data');
    await expect(openIncoming(`unix:${path}`)).rejects.toThrow(`unix:${path}: ${path} exists and is not a socket`);
  });
});
