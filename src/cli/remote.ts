// A verb on another host, as libvirt's qemu+ssh reaches one: through the
// user's own `ssh` client (its keys, agent and known_hosts), in batch mode so
// that it never stops to ask for a password or to accept a host key. The
// verb's output and exit status come back as if it had run here; a console
// gets a terminal on the other side when this one has one.
import { spawn } from 'node:child_process';
import { InputError } from '../errors.ts';
import { remoteLocalUri, type Connection } from '../domain/index.ts';

type SshConnection = Extract<Connection, { kind: 'ssh' }>;

/** ssh's own failures (no route, refused, authentication, host key) end with this status. */
const SSH_FAILURE = 255;

/**
 * Takes a leading `-c URI` / `--connect URI` / `--connect=URI` off the
 * command line (virsh's global option, before the verb): `tsvmm run -c 2`
 * keeps its own -c.
 */
export function takeConnectOption(argv: readonly string[]): { uri: string | null; rest: string[] } {
  const [first, second] = argv;
  if (first === '-c' || first === '--connect') {
    if (second === undefined) throw new InputError(`${first}: expected a connection URI`);
    return { uri: second, rest: argv.slice(2) };
  }
  if (first?.startsWith('--connect=')) return { uri: first.slice('--connect='.length), rest: argv.slice(1) };
  return { uri: null, rest: [...argv] };
}

/** A word for `sh -c` on the other side: single-quoted, with ' written as '\''. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

/** The `ssh ...` argument list that runs `tsvmm -c tsvmm:///SCOPE ARGS` on the connection's host. */
export function sshArguments(connection: SshConnection, args: readonly string[], { tty = false } = {}): string[] {
  const remote = [connection.command, '-c', remoteLocalUri(connection), ...args].map(shellQuote).join(' ');
  return [
    '-o', 'BatchMode=yes',
    '-o', `StrictHostKeyChecking=${connection.noVerify ? 'no' : 'yes'}`,
    ...(connection.knownHosts ? ['-o', `UserKnownHostsFile=${connection.knownHosts}`] : []),
    ...(connection.keyfile ? ['-i', connection.keyfile, '-o', 'IdentitiesOnly=yes'] : []),
    ...(connection.port !== undefined ? ['-p', String(connection.port)] : []),
    ...(connection.user ? ['-l', connection.user] : []),
    // No escape character: every byte (Ctrl-] for the console among them) reaches the verb.
    '-e', 'none',
    tty ? '-t' : '-T',
    connection.host, '--', remote,
  ];
}

/** The same as one string for `sh -c` (an exec: migration URI runs it so). */
export function sshCommandLine(connection: SshConnection, args: readonly string[]): string {
  return ['ssh', ...sshArguments(connection, args)].map(shellQuote).join(' ');
}

/**
 * Runs `tsvmm ARGS` on the connection's host with this process's stdin and
 * stdout; returns its exit status. ssh's own failure is one line and
 * status 2, like any input tsvmm cannot use.
 */
export async function runRemotely(connection: SshConnection, args: readonly string[]): Promise<number> {
  const interactive = args[0] === 'console' || (args[0] === 'start' && args.includes('--console'));
  const tty = interactive && process.stdin.isTTY === true;
  const child = spawn('ssh', sshArguments(connection, args, { tty }), { stdio: ['inherit', 'inherit', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const status = await new Promise<number>((resolve, reject) => {
    child.once('error', (e) => reject(new InputError(`cannot run ssh: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    child.once('close', (code, signal) => resolve(code ?? 128 + (signal === 'SIGINT' ? 2 : 15)));
  });
  if (status === SSH_FAILURE) {
    const last = stderr.trim().split('\n').filter((line) => line.trim()).pop() ?? 'ssh failed';
    throw new InputError(`${connection.host}: ${last.replace(/\r$/, '')}`);
  }
  process.stderr.write(stderr);
  return status;
}
