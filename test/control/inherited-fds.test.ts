// A file descriptor tsvmm inherits above stderr (a domain's run lock comes
// as fd 3) is its own: a command it runs for an exec: migration must not get
// it, or a lock held by that command would keep the domain "running" after
// tsvmm ended. Node's child_process passes a child only the stdio it is
// given; this keeps tsvmm honest should that ever change.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tsvmmCounterArgs } from '../../bench/lib/counter-guest.ts';
import { hasKvm } from '../helpers/kvm.ts';
import { qmpSockets, sleep, TsvmmProcess } from '../helpers/tsvmm-process.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-fds-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.skipIf(!hasKvm)('fds tsvmm inherits', () => {
  it('an exec: migration command sees only stdin, stdout and stderr, not tsvmm\'s inherited fd 3', async () => {
    const qmp = qmpSockets(scratch)();
    const inherited = openSync(join(scratch, 'lock'), 'w');
    const listing = join(scratch, 'fds');
    const vm = new TsvmmProcess([...tsvmmCounterArgs({ pages: 16, every: 4096 }), '--qmp', qmp], { inherit: [inherited] });
    closeSync(inherited);
    try {
      const monitor = await vm.monitor(qmp);
      await monitor.execute('stop');
      await monitor.execute('migrate', { uri: `exec:ls /proc/$$/fd > ${listing}; cat > /dev/null` });
      for (let i = 0; i < 300 && (await monitor.execute('query-migrate') as { status?: string }).status !== 'completed'; i++) await sleep(100);
      expect(await monitor.execute('query-migrate')).toMatchObject({ status: 'completed' });
      // (sh keeps fds of its own too, such as dash's 10.)
      const fds = readFileSync(listing, 'utf8').trim().split('\n').map(Number);
      expect(fds).toEqual(expect.arrayContaining([0, 1, 2]));
      expect(fds).not.toContain(3);
      await monitor.execute('quit').catch(() => {});
      expect(await vm.end()).toBe(0);
    } finally {
      vm.kill();
    }
  });
});
