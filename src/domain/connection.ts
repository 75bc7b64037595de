// Where a command runs, as libvirt's connection URIs say it (virsh -c URI):
//   tsvmm:///system                      this host, root's domains (/var/lib/tsvmm, /run/tsvmm)
//   tsvmm:///session                     this host, the user's domains (the XDG folders)
//   tsvmm+ssh://[user@]host[:port]/system|session[?keyfile=F&known_hosts=F&no_verify=1&tsvmm=CMD]
//                                        another host, through the ssh client: the verb runs
//                                        there as `tsvmm -c tsvmm:///system VERB ...`
// `tsvmm -c URI VERB ...` chooses one for a command, TSVMM_DEFAULT_URI for
// every command; without either, root's commands are system ones and
// anyone else's session ones (src/domain/state-folders.ts).
import { InputError } from '../errors.ts';

export type Scope = 'system' | 'session';

export type Connection =
  | { kind: 'local'; scope: Scope }
  | {
    kind: 'ssh';
    scope: Scope;
    host: string;
    user?: string;
    port?: number;
    /** The key ssh authenticates with (libvirt's keyfile=). */
    keyfile?: string;
    /** The known_hosts file the host key is checked against (libvirt's known_hosts=). */
    knownHosts?: string;
    /** no_verify=1: accept a host key not in known_hosts (libvirt's no_verify). */
    noVerify: boolean;
    /** The tsvmm command on the other host (default: `tsvmm` on its PATH). */
    command: string;
  };

const SSH_PARAMETERS = ['keyfile', 'known_hosts', 'no_verify', 'tsvmm'];

export function parseConnectUri(text: string): Connection {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InputError(`${text}: not a connection URI (tsvmm:///system, tsvmm:///session or tsvmm+ssh://[user@]host[:port]/system)`);
  }
  const scope = url.pathname.replace(/\/+$/, '');
  if (scope !== '/system' && scope !== '/session') throw new InputError(`${text}: the path is /system or /session`);
  if (url.protocol === 'tsvmm:') {
    if (url.host || url.search) throw new InputError(`${text}: a tsvmm: URI names no host (tsvmm+ssh://HOST/... reaches another one)`);
    return { kind: 'local', scope: scope.slice(1) as Scope };
  }
  if (url.protocol !== 'tsvmm+ssh:') throw new InputError(`${text}: tsvmm connects through tsvmm:/// (this host) or tsvmm+ssh:// (another host)`);
  if (!url.hostname) throw new InputError(`${text}: names no host`);
  if (url.password) throw new InputError(`${text}: a password does not belong in the URI (ssh authenticates with a key)`);
  for (const key of url.searchParams.keys()) {
    if (!SSH_PARAMETERS.includes(key)) throw new InputError(`${text}: unknown parameter "${key}" (known: ${SSH_PARAMETERS.join(', ')})`);
  }
  const noVerify = url.searchParams.get('no_verify');
  if (noVerify !== null && noVerify !== '0' && noVerify !== '1') throw new InputError(`${text}: no_verify is 0 or 1`);
  return {
    kind: 'ssh',
    scope: scope.slice(1) as Scope,
    host: url.hostname,
    ...(url.username ? { user: decodeURIComponent(url.username) } : {}),
    ...(url.port ? { port: Number(url.port) } : {}),
    ...(url.searchParams.get('keyfile') ? { keyfile: url.searchParams.get('keyfile')! } : {}),
    ...(url.searchParams.get('known_hosts') ? { knownHosts: url.searchParams.get('known_hosts')! } : {}),
    noVerify: noVerify === '1',
    command: url.searchParams.get('tsvmm') || 'tsvmm',
  };
}

/** The local scope a URI names, or null (no URI, or another host's). */
export function localScope(text: string | undefined): Scope | null {
  if (!text) return null;
  const connection = parseConnectUri(text);
  return connection.kind === 'local' ? connection.scope : null;
}

/** The URI of the same place as seen from that host (the verb's own -c there). */
export function remoteLocalUri(connection: Connection): string {
  return `tsvmm:///${connection.scope}`;
}
