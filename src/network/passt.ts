// User networking (`--net user`, `<interface type='user'>`) through passt
// (https://passt.top): an unprivileged process that gives the guest DHCP,
// DNS and NAT onto the host's own sockets, so a VM has a network without
// root, bridges or TAP devices. tsvmm starts one passt per interface on one
// end of a socketpair (`passt --fd`, which also makes it quit once the other
// end closes) and the virtio-net device speaks passt's stream protocol on the
// other (src/devices/virtio/net-stream.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import type { Socket } from 'node:net';
import { delimiter, join } from 'node:path';
import { InputError } from '../errors.ts';
import { closeFd, createStreamSocketPair } from '../kvm/index.ts';
import type { HostForward, MachineConfig, UserNetworkConfig } from '../machine/config.ts';

/**
 * The MTU passt's DHCP gives the guest. Its default (65520) suits a driver
 * with large receive buffers; tsvmm's virtio-net offers no MRG_RXBUF or
 * offloads, so Linux posts 1526-byte buffers and a larger frame would be
 * dropped.
 */
const GUEST_MTU = 1500;

/** passt's own lines that say nothing to a tsvmm user (it logs to syslog too, and drops root by itself). */
const NOISE = [/^Failed to send \d+ bytes to syslog$/, /^Don't run as root\. Changing to nobody\.\.\.$/];

function findProgram(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // Not in this directory.
    }
  }
  return null;
}

/** passt's -t or -u spec for a forward: [ADDRESS/]HOSTPORT:GUESTPORT. */
export function passtPortSpec(forward: HostForward): string {
  return `${forward.address !== undefined ? `${forward.address}/` : ''}${forward.hostPort}:${forward.guestPort}`;
}

/** passt's arguments for one guest interface whose socket is passt's fd 3. */
export function passtArguments(network: UserNetworkConfig): string[] {
  return [
    '--fd', '3', '--foreground', '--quiet', '--mtu', String(GUEST_MTU),
    ...network.hostForwards.flatMap((forward) => [forward.protocol === 'tcp' ? '-t' : '-u', passtPortSpec(forward)]),
  ];
}

/** A running passt and tsvmm's end of its socket. */
export class PasstProcess {
  private exited = false;
  private stopping = false;
  /** Settles once passt has exited, with its status (null: ended by a signal). */
  readonly ended: Promise<number | null>;

  private constructor(readonly fd: number, private readonly child: ChildProcess, say: (line: string) => void) {
    let pending = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      const lines = (pending + text).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) if (line.trim() && !NOISE.some((noise) => noise.test(line.trim()))) say(`passt: ${line.trim()}`);
    });
    this.ended = new Promise((settle) => {
      child.on('exit', (code, signal) => {
        this.exited = true;
        if (!this.stopping && code !== 0) say(`passt ended (${signal ?? `status ${code}`}): the guest's user network is down`);
        settle(code);
      });
      // A failed exec shows as an 'error' event, after which there is no process to stop.
      child.on('error', (e) => {
        this.exited = true;
        say(`passt: ${e.message}`);
        settle(null);
      });
    });
  }

  /** Starts passt for one interface. InputError when passt is not installed. */
  static start(network: UserNetworkConfig, say: (line: string) => void): PasstProcess {
    const program = findProgram('passt');
    if (program === null) throw new InputError('--net user needs passt, which is not installed (Debian package passt)');
    const { local, remote } = createStreamSocketPair();
    let child: ChildProcess;
    try {
      // The socket becomes passt's fd 3; it inherits nothing else of tsvmm's.
      child = spawn(program, passtArguments(network), { stdio: ['ignore', 'ignore', 'pipe', remote] });
    } catch (e) {
      closeFd(local);
      throw e;
    } finally {
      closeFd(remote);
    }
    // passt never keeps tsvmm alive: when tsvmm ends, its end of the socket closes and passt quits.
    child.unref();
    (child.stderr as Socket | null)?.unref();
    return new PasstProcess(local, child, say);
  }

  /** Closes tsvmm's end, which ends passt (--fd implies one client); SIGTERM makes sure. */
  stop(): void {
    this.stopping = true;
    closeFd(this.fd);
    if (!this.exited) this.child.kill('SIGTERM');
  }
}

/**
 * Starts passt for each `--net user` device of `config` and returns the
 * configuration with their sockets filled in, and what stops them all.
 */
export function startUserNetworks(config: MachineConfig, say: (line: string) => void): { config: MachineConfig; stop: () => void } {
  const started: PasstProcess[] = [];
  const stop = () => {
    for (const passt of started.splice(0)) passt.stop();
  };
  try {
    const virtio = config.virtio?.map((device) => {
      if (device.kind !== 'net' || !device.user || device.streamFd !== undefined) return device;
      const passt = PasstProcess.start(device.user, say);
      started.push(passt);
      return { ...device, streamFd: passt.fd };
    });
    return { config: virtio ? { ...config, virtio } : config, stop };
  } catch (e) {
    stop();
    throw e;
  }
}
