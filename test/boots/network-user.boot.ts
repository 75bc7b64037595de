// The default guest on user networking: `tsvmm run --net user,hostfwd=...`
// starts passt, the guest leases an address from passt's DHCP server, reads
// a greeting from a server on the host's loopback (passt maps the gateway's
// address to the host; busybox nc, as busybox's wget crashes with a timeout
// given), and the host fetches a page from the guest's httpd through the
// forwarded port. Nothing leaves loopback; passt ends with the VM.
// tsvmm runs as nobody, with no capabilities (test/helpers/unprivileged.ts):
// user networking needs no privilege.
// Outside the default suite (a Linux boot): `npm run test:boots`.
import { spawnSync } from 'node:child_process';
import { get } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultLinuxGuest } from '../../src/cli/guest.ts';
import { GuestConsole } from '../helpers/guest-console.ts';
import { hasKvm } from '../helpers/kvm.ts';
import { freePort } from '../helpers/tsvmm-process.ts';
import { NOBODY, processCredentials, unprivilegedUnavailable, UnprivilegedTsvmm } from '../helpers/unprivileged.ts';

const unavailable = !hasKvm ? 'no /dev/kvm'
  : spawnSync('passt', ['--version']).error !== undefined ? 'passt is not installed (Debian package passt)'
    : unprivilegedUnavailable;
if (unavailable) console.warn(`user network boot test: skipped: ${unavailable}`);

const GUEST_PORT = 8080;

/** GET http://127.0.0.1:port/ once: its body, or the error's code. */
function fetchOnce(port: number): Promise<string> {
  return new Promise((resolve) => {
    const request = get({ host: '127.0.0.1', port, path: '/', timeout: 5000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve(body));
    });
    request.on('timeout', () => request.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    request.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
  });
}

describe.skipIf(unavailable !== null)('the default guest on --net user (passt), run by nobody', () => {
  let runner: UnprivilegedTsvmm;
  let guest: GuestConsole;
  let stderr = '';
  let exited: Promise<number | null>;
  let hostServer: TcpServer;
  let hostPort: number;
  let forwardedPort: number;

  beforeAll(async () => {
    const built = await defaultLinuxGuest({ quiet: true });
    runner = new UnprivilegedTsvmm();
    hostServer = createTcpServer((socket) => socket.end('hello from the host\n'));
    await new Promise<void>((done) => hostServer.listen(0, '127.0.0.1', done));
    hostPort = (hostServer.address() as AddressInfo).port;
    forwardedPort = await freePort();
    const child = runner.spawn([
      'run', '--kernel', runner.share(built.kernel), '--initrd', runner.share(built.initrd),
      '--net', `user,hostfwd=tcp:127.0.0.1:${forwardedPort}-:${GUEST_PORT}`,
    ]);
    child.stderr.on('data', (d) => (stderr += d));
    exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    guest = new GuestConsole(child);
  }, 30 * 60_000);

  afterAll(async () => {
    if (guest && guest.child.exitCode === null) guest.child.kill('SIGKILL');
    await new Promise((done) => hostServer?.close(done));
    runner?.dispose();
  });

  it('boots to a shell with eth0, tsvmm running as nobody with no capabilities', async () => {
    await guest.waitFor(/tsvmm guest: Linux \S+/, 900_000);
    expect(processCredentials(guest.child.pid!)).toEqual({ uid: NOBODY, capEff: 0n });
    // A newline brings a prompt once the shell is there.
    const prompt = setInterval(() => guest.type('\n'), 5000);
    try {
      await guest.waitFor(/tsvmm:\/# /, 120_000);
    } finally {
      clearInterval(prompt);
    }
    guest.type('ip -o link show eth0 && echo LINK_OK\n');
    await guest.waitFor(/LINK_OK/, 60_000);
  }, 1_100_000);

  it('leases an address from passt\'s DHCP server', async () => {
    guest.type('udhcpc -i eth0 -q -n -t 10 -T 2 -s /usr/share/udhcpc/default.script && echo "LEASED $(ip -4 -o addr show dev eth0) GW $(ip route | grep default)"\n');
    const m = await guest.waitFor(/LEASED \d+: eth0\s+inet (\d+\.\d+\.\d+\.\d+)\/\d+.* GW default via (\d+\.\d+\.\d+\.\d+)/, 180_000);
    expect(m[1]).not.toBe('0.0.0.0');
    expect(m[2]).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
  }, 200_000);

  it('reaches a server on the host\'s loopback through the gateway\'s address', async () => {
    guest.type(`gw=$(ip route | awk '/default/ {print $3}'); [ -n "$gw" ] && echo "GREETED $(nc -w 20 $gw ${hostPort} </dev/null)"\n`);
    await guest.waitFor(/GREETED hello from the host/, 120_000);
  }, 150_000);

  it('answers the host on the forwarded port (hostfwd)', async () => {
    guest.type(`mkdir -p /tmp/www && echo hello from the guest > /tmp/www/index.html && httpd -p ${GUEST_PORT} -h /tmp/www && echo HTTPD_UP\n`);
    await guest.waitFor(/HTTPD_UP/, 60_000);
    let body = '';
    // httpd answers once it has started listening; each attempt is bounded.
    for (let attempt = 0; attempt < 20 && !body.startsWith('hello from the guest'); attempt++) {
      body = await fetchOnce(forwardedPort);
      if (!body.startsWith('hello from the guest')) await new Promise((done) => setTimeout(done, 2000));
    }
    expect(body).toBe('hello from the guest\n');
  }, 150_000);

  it('poweroff ends tsvmm with status 0, and passt with it: the forwarded port is closed', async () => {
    guest.type('poweroff\n');
    const status = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 120_000))]);
    expect(status).toBe(0);
    expect(stderr).not.toMatch(/internal error|KVM internal|passt ended/);
    let answer = '';
    for (let attempt = 0; attempt < 20 && answer !== 'error ECONNREFUSED'; attempt++) {
      answer = await fetchOnce(forwardedPort);
      if (answer !== 'error ECONNREFUSED') await new Promise((done) => setTimeout(done, 500));
    }
    expect(answer).toBe('error ECONNREFUSED');
  }, 150_000);
});
