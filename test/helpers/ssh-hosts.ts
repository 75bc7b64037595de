// Two "hosts" on this machine for tests of remote connections and
// migration: two network namespaces joined by a veth pair (10.77.0.1 and
// 10.77.0.2, addresses that exist only inside them), each running its own
// sshd (Debian's openssh-server) on its address with a host key this test
// generated, each with its own tsvmm state folder (sshd's SetEnv
// TSVMM_STATE_DIR). The client key and known_hosts are the test's too, so
// nothing of the machine's own ssh setup is read or changed. remove() stops
// both sshds and deletes both namespaces.
//
// Each host also has its own storage at one path, `storage`: the second
// host's sshd runs in a mount namespace of its own where another folder is
// bind mounted over it, so a disk path names one file on the first host and
// another on the second (what a migration with --copy-storage-all meets),
// while everything else of the file system is shared. `storageFiles` is
// where a host's files under `storage` really are, to read them from here.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestNetns } from './netns.ts';
import { TSVMM } from './kvm.ts';

export const SSHD = '/usr/sbin/sshd';

/** Why the two-host tests cannot run here, or null when they can. */
export function sshHostsUnavailable(netnsUnavailable: string | null): string | null {
  if (netnsUnavailable) return netnsUnavailable;
  if (!existsSync(SSHD)) return 'no sshd (Debian package openssh-server)';
  if (spawnSync('ssh', ['-V']).error) return 'no ssh client (Debian package openssh-client)';
  return null;
}

export interface SshHost {
  ns: TestNetns;
  address: string;
  stateDir: string;
  /** tsvmm+ssh://root@ADDRESS/system with this test's key, known_hosts and tsvmm. */
  uri: string;
  /** A folder path both hosts have, each with its own files in it (as seen through ssh). */
  storage: string;
  /** Where this host's files under `storage` are, seen from outside its namespaces. */
  storageFiles: string;
}

export class SshHosts {
  readonly hosts: [SshHost, SshHost];
  private readonly sshds: ChildProcess[] = [];

  private constructor(readonly dir: string, hosts: [SshHost, SshHost]) {
    this.hosts = hosts;
  }

  static async create(): Promise<SshHosts> {
    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-ssh-hosts-'));
    chmodSync(dir, 0o755);
    const keygen = (file: string) => spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file], { stdio: 'ignore' });
    keygen(join(dir, 'id'));
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'id.pub')));
    // The remote `tsvmm`: this checkout's, as a command sshd's shell can run.
    const command = join(dir, 'tsvmm');
    writeFileSync(command, `#!/bin/sh\nexec ${process.execPath} ${TSVMM} "$@"\n`, { mode: 0o755 });
    const a = TestNetns.create();
    const b = TestNetns.create();
    const storage = join(dir, 'storage');
    mkdirSync(storage);
    const hosts = [a, b].map((ns, i) => {
      const address = `10.77.0.${i + 1}`;
      const stateDir = join(dir, `state-${i + 1}`);
      mkdirSync(stateDir);
      const storageFiles = i === 0 ? storage : join(dir, `storage-${i + 1}`);
      if (i > 0) mkdirSync(storageFiles);
      keygen(join(dir, `host-${i + 1}`));
      const params = new URLSearchParams({ keyfile: join(dir, 'id'), known_hosts: join(dir, 'known_hosts'), tsvmm: command });
      return { ns, address, stateDir, uri: `tsvmm+ssh://root@${address}/system?${params.toString()}`, storage, storageFiles };
    }) as [SshHost, SshHost];
    const set = new SshHosts(dir, hosts);
    try {
      a.ip('link', 'add', 'veth-a', 'type', 'veth', 'peer', 'name', 'veth-b', 'netns', b.name);
      for (const [host, link] of [[hosts[0], 'veth-a'], [hosts[1], 'veth-b']] as const) {
        host.ns.ip('addr', 'add', `${host.address}/24`, 'dev', link);
        host.ns.ip('link', 'set', 'dev', link, 'up');
      }
      writeFileSync(join(dir, 'known_hosts'), hosts.map((h, i) => `${h.address} ${readFileSync(join(dir, `host-${i + 1}.pub`), 'utf8')}`).join(''));
      // sshd insists on its privilege separation folder.
      mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
      for (const [i, host] of hosts.entries()) set.startSshd(host, i + 1);
      await set.waitForSshds();
    } catch (e) {
      set.remove();
      throw e;
    }
    return set;
  }

  private startSshd(host: SshHost, n: number): void {
    const config = join(this.dir, `sshd-${n}.conf`);
    writeFileSync(config, [
      `ListenAddress ${host.address}`,
      `HostKey ${join(this.dir, `host-${n}`)}`,
      `AuthorizedKeysFile ${join(this.dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      `PidFile ${join(this.dir, `sshd-${n}.pid`)}`,
      `SetEnv TSVMM_STATE_DIR=${host.stateDir} PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`,
      '',
    ].join('\n'));
    const sshd = [SSHD, '-D', '-e', '-f', config];
    // Its own storage: a private mount namespace (inside the network namespace) where storageFiles covers storage.
    const command = host.storageFiles === host.storage ? sshd
      : ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" "$2" && shift 2 && exec "$@"', 'sh', host.storageFiles, host.storage, ...sshd];
    const [file, args] = host.ns.wrap(command);
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.resume();
    this.sshds.push(child);
  }

  /** Each sshd answers an `ssh true` from the other namespace (bounded). */
  private async waitForSshds(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (const [i, host] of this.hosts.entries()) {
      const from = this.hosts[1 - i]!;
      for (;;) {
        const [file, args] = from.ns.wrap(['ssh', '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${join(this.dir, 'known_hosts')}`,
          '-i', join(this.dir, 'id'), '-o', 'ConnectTimeout=5', `root@${host.address}`, 'true']);
        if (spawnSync(file, args, { stdio: 'ignore', timeout: 10_000 }).status === 0) break;
        if (Date.now() > deadline) throw new Error(`sshd on ${host.address} did not answer within 30 s`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  remove(): void {
    for (const sshd of this.sshds) sshd.kill('SIGTERM');
    for (const host of this.hosts) host.ns.remove();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
