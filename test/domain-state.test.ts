// The domain manager's pieces that need no guest: where state lives, atomic
// writes, the definitions store, the run lock (held by a child process, as a
// domain's tsvmm holds it), domain ids, and virsh's output layouts, compared
// with virsh itself where it is installed.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.ts';
import {
  DomainStore, formatKeyValues, formatTable, parseDomainXml, RunLock, runLockHeld, stateFolders, stateOfRunState, takeDomainId, writeFileAtomic,
} from '../src/domain/index.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-domain-state-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const hasVirsh = spawnSync('virsh', ['--version'], { encoding: 'utf8' }).error === undefined;
if (!hasVirsh) console.warn('domain-state tests: virsh is not installed (Debian package libvirt-clients): skipping the comparisons with its output');

/** Runs virsh commands against libvirt's built-in test driver (no daemon). */
function virsh(commands: string): string {
  const result = spawnSync('virsh', ['-c', 'test:///default', commands], { encoding: 'utf8', input: '', timeout: 30_000 });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout;
}

describe('state folders', () => {
  it('root: /var/lib/tsvmm and /run/tsvmm', () => {
    expect(stateFolders(undefined, {}, 0)).toEqual({ data: '/var/lib/tsvmm', run: '/run/tsvmm' });
  });

  it('a user: the XDG data and runtime folders, or ~/.local/share without XDG_DATA_HOME', () => {
    expect(stateFolders(undefined, { XDG_DATA_HOME: '/d', XDG_RUNTIME_DIR: '/r', HOME: '/h' }, 1000)).toEqual({ data: '/d/tsvmm', run: '/r/tsvmm' });
    expect(stateFolders(undefined, { HOME: '/h' }, 1000)).toEqual({ data: '/h/.local/share/tsvmm', run: '/h/.local/share/tsvmm/run' });
  });

  it('--state-dir wins over TSVMM_STATE_DIR, which wins over the defaults', () => {
    expect(stateFolders('/s', { TSVMM_STATE_DIR: '/e' }, 0)).toEqual({ data: '/s', run: '/s/run' });
    expect(stateFolders(undefined, { TSVMM_STATE_DIR: '/e' }, 0)).toEqual({ data: '/e', run: '/e/run' });
  });

  it('refuses a folder whose path has a comma (tsvmm run\'s --serial separates settings with commas)', () => {
    expect(() => stateFolders('/a,b', {}, 0)).toThrow(InputError);
  });

  it('refuses a state folder too deep for a unix socket path, naming the path', () => {
    const store = new DomainStore(stateFolders(`/${'x'.repeat(120)}`, {}, 0));
    expect(() => store.runFiles('d')).toThrow(/longer than the 107 bytes/);
  });
});

describe('atomic writes', () => {
  it('replaces a file whole and leaves no temporary file behind', () => {
    const folder = join(scratch, 'atomic');
    const file = join(folder, 'a.xml');
    writeFileAtomic(file, 'old');
    writeFileAtomic(file, 'new');
    expect(readFileSync(file, 'utf8')).toBe('new');
    expect(readdirSync(folder)).toEqual(['a.xml']);
  });
});

const DOMAIN = (name: string, uuid: string) => `<domain type='kvm'><name>${name}</name><uuid>${uuid}</uuid><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>`;
const UUID_A = '11111111-2222-4333-8444-555555555555';
const UUID_B = '11111111-2222-4333-8444-666666666666';

describe('the definitions store', () => {
  const store = new DomainStore(stateFolders(join(scratch, 'store'), {}, 0));

  it('defines, finds by name or UUID, and lists by name', () => {
    store.define(parseDomainXml(DOMAIN('b', UUID_B), 'b.xml'));
    store.define(parseDomainXml(DOMAIN('a', UUID_A), 'a.xml'));
    expect(store.all().map((d) => d.name)).toEqual(['a', 'b']);
    expect(store.find('a').uuid).toBe(UUID_A);
    expect(store.find(UUID_B.toUpperCase()).name).toBe('b');
    expect(() => store.find('c')).toThrow("failed to get domain 'c'");
  });

  it('refuses a second domain with a name or UUID already taken, and redefines one with both the same', () => {
    expect(() => store.define(parseDomainXml(DOMAIN('a', UUID_B), 'x.xml'))).toThrow(/'a' is already defined with uuid 11111111-2222-4333-8444-555555555555/);
    expect(() => store.define(parseDomainXml(DOMAIN('c', UUID_A), 'x.xml'))).toThrow(/'a' is already defined/);
    store.define(parseDomainXml(DOMAIN('a', UUID_A).replace('64', '128'), 'a.xml'));
    expect(store.find('a').memoryBytes).toBe(128 * 2 ** 20);
  });

  it('marks for autostart, and undefine removes the definition and its mark', () => {
    store.setAutostart('b', true);
    expect(store.autostart('b')).toBe(true);
    store.undefine('b');
    expect(store.autostart('b')).toBe(false);
    expect(store.all().map((d) => d.name)).toEqual(['a']);
  });
});

describe('the run lock', () => {
  it('of two acquirers exactly one wins; the lock shows as held until it is closed', () => {
    const path = join(scratch, 'locks', 'one');
    const first = RunLock.tryAcquire(path);
    expect(first).not.toBeNull();
    expect(RunLock.tryAcquire(path)).toBeNull();
    expect(runLockHeld(path)).toBe(true);
    first!.close();
    expect(runLockHeld(path)).toBe(false);
  });

  it('stays held by a child that inherited it after the parent closes its copy, and goes with the child\'s death', async () => {
    const path = join(scratch, 'locks', 'child');
    const lock = RunLock.tryAcquire(path)!;
    const child = spawn('sleep', ['60'], { stdio: ['ignore', 'ignore', 'ignore', lock.fd] });
    lock.close();
    expect(runLockHeld(path)).toBe(true);
    const exited = new Promise((resolve) => child.on('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    expect(runLockHeld(path)).toBe(false);
    expect(RunLock.tryAcquire(path)).not.toBeNull();
  });
});

describe('domain ids', () => {
  it('count up from 1 in a run folder', () => {
    const run = join(scratch, 'ids');
    expect([takeDomainId(run), takeDomainId(run), takeDomainId(run)]).toEqual([1, 2, 3]);
    writeFileSync(join(run, 'next-id'), 'garbage');
    expect(takeDomainId(run)).toBe(1);
    expect(existsSync(join(run, 'next-id.lock'))).toBe(true);
  });
});

describe('virsh\'s layouts', () => {
  it('a table: a leading space, columns three apart, the last unpadded, a rule as wide as the columns plus three each', () => {
    expect(formatTable(['Id', 'Name', 'State'], [])).toBe(' Id   Name   State\n--------------------\n\n');
    expect(formatTable(['Id', 'Name', 'State'], [['1', 'alpha-longer-name', 'running'], ['-', 'b', 'shut off']])).toBe([
      ' Id   Name                State',
      '------------------------------------',
      ' 1    alpha-longer-name   running',
      ' -    b                   shut off',
      '', '',
    ].join('\n'));
  });

  it('key: value lists pad the key to 15 columns', () => {
    expect(formatKeyValues([['Id', '-'], ['Security DOI', '']])).toBe('Id:             -\nSecurity DOI:   \n\n');
  });

  it('QMP run states are named as libvirt names the domain\'s state', () => {
    expect(['running', 'paused', 'prelaunch', 'postmigrate', 'shutdown', 'guest-panicked', 'what'].map(stateOfRunState))
      .toEqual(['running', 'paused', 'paused', 'paused', 'in shutdown', 'crashed', 'no state']);
  });

  describe.skipIf(!hasVirsh)('the same bytes as virsh -c test:///default', () => {
    it('list --all, running and shut off, with a longer name', () => {
      const xml = join(scratch, 'virsh-domain.xml');
      writeFileSync(xml, "<domain type='test'><name>alpha-longer-name</name><memory>131072</memory><os><type>hvm</type></os></domain>");
      const out = virsh(`define ${xml}; list --all`);
      expect(out).toBe(`Domain 'alpha-longer-name' defined from ${xml}\n\n${formatTable(['Id', 'Name', 'State'], [['1', 'test', 'running'], ['-', 'alpha-longer-name', 'shut off']])}`);
      expect(virsh('list --inactive')).toBe(formatTable(['Id', 'Name', 'State'], []));
    });

    it('dominfo\'s key column', () => {
      const lines = virsh('dominfo test').split('\n');
      expect(lines.slice(0, 5).join('\n')).toBe(formatKeyValues([['Id', '1'], ['Name', 'test'], ['UUID', '6695eb01-f6a4-8304-79aa-97f2502e193f'], ['OS Type', 'linux'], ['State', 'running']]).trimEnd());
    });
  });
});
