// Where the domain manager keeps things. There is no daemon: definitions,
// snapshots and autostart marks live in a data folder, and each running
// domain's sockets, pid file and logs in a run folder that a reboot clears,
// as libvirt keeps /var/lib/libvirt and /run/libvirt.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { InputError } from '../errors.ts';
import { localScope } from './connection.ts';

export interface StateFolders {
  /** Definitions, snapshots, autostart marks: kept across host reboots. */
  data: string;
  /** Running domains: one folder each, with sockets, pid file and logs. */
  run: string;
}

/** A unix socket path must fit sockaddr_un.sun_path (108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

/**
 * --state-dir DIR (or TSVMM_STATE_DIR) puts both under DIR. Otherwise the
 * connection chooses (`-c` / TSVMM_DEFAULT_URI): tsvmm:///system is
 * /var/lib/tsvmm and /run/tsvmm, tsvmm:///session the XDG folders; without
 * one, root's commands are system ones and anyone else's session ones.
 */
export function stateFolders(option: string | undefined, env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? -1): StateFolders {
  const chosen = option ?? (env.TSVMM_STATE_DIR || undefined);
  if (chosen !== undefined) {
    if (!chosen) throw new InputError('--state-dir: expected a folder');
    const dir = resolve(chosen);
    // `tsvmm run --serial unix:PATH,...,logfile=FILE` separates settings with commas.
    if (dir.includes(',')) throw new InputError(`--state-dir ${dir}: tsvmm cannot use a folder with a comma in its path`);
    return { data: dir, run: join(dir, 'run') };
  }
  const scope = localScope(env.TSVMM_DEFAULT_URI) ?? (uid === 0 ? 'system' : 'session');
  if (scope === 'system') return { data: '/var/lib/tsvmm', run: '/run/tsvmm' };
  const data = join(env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share'), 'tsvmm');
  // Without a runtime folder (no login session), running state stays beside the data.
  return { data, run: env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'tsvmm') : join(data, 'run') };
}

/** Refuses a socket path the kernel could not bind, naming it. */
export function checkSocketPath(path: string): string {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new InputError(`${path}: longer than the ${MAX_SOCKET_PATH} bytes a unix socket path may have; choose a shorter --state-dir`);
  }
  return path;
}
