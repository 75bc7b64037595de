// The pure parts of the suites that run the default Linux guest (boot,
// blk-guest): parsing what the guest prints, the QEMU command line, the
// tables with a peer that failed, and the shell driver against a fake console.
// No Linux boot here: those suites are run by `tsvmm bench boot blk-guest`.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  formatBlkGuest, guestCommands, measureInTurns, RANDOM_BURST, withRatios, type BlkGuestResult, type BlkGuestRow, type Configuration, type ImageSamples,
} from '../bench/blk-guest.ts';
import { formatBoot, parseKernelBootTime, type BootResult } from '../bench/boot.ts';
import { BANNER, qemuGuestArgs, tsvmmGuestArgs, tsvmmGuestCmdline } from '../bench/lib/default-guest.ts';
import { parseDdRecordsIn, parseDiskList, parseTimed } from '../bench/lib/guest-output.ts';
import { GuestShell } from '../bench/lib/guest-shell.ts';
import { VmmProcess } from '../bench/lib/vmm-process.ts';

const s = (median: number, min = median, max = median) => ({ median, min, max, samples: [median] });

describe('what the guest prints', () => {
  it("busybox dd's record count, and no count in other lines", () => {
    expect(parseDdRecordsIn(['tsvmm:/# dd if=/dev/vda ...', '256+0 records in', '256+0 records out'])).toEqual({ whole: 256, partial: 0 });
    expect(parseDdRecordsIn(['12+1 records in\r'])).toEqual({ whole: 12, partial: 1 });
    expect(parseDdRecordsIn(['dd: /dev/vdz: No such file or directory'])).toBeNull();
  });

  it('a timed command: the count and the uptime difference; the echoed command does not count', () => {
    const lines = ['tsvmm:/# read a _ < /proc/uptime; ...; echo "randread $i $a $b"', 'randread 20 131.52 140.27'];
    const timed = parseTimed(lines, 'randread');
    expect(timed?.count).toBe(20);
    expect(timed?.seconds).toBeCloseTo(8.75, 6);
    expect(parseTimed(lines, 'zeroread')).toBeNull();
    expect(parseTimed(['randread 20 131.52'], 'randread')).toBeNull();
  });

  it('the disk list maps serials to device names', () => {
    const disks = parseDiskList(['tsvmm:/# for d in /sys/block/vd*; do ... echo "disk $s ${d##*/}"; done', 'disk raw vda', 'disk qcow2 vdb']);
    expect([...disks]).toEqual([['raw', 'vda'], ['qcow2', 'vdb']]);
  });

  it("the banner and its boot time", () => {
    expect(BANNER.test('tsvmm guest: Linux 6.1.192-tsvmm')).toBe(true);
    expect(BANNER.test('tsvmm:/# echo "tsvmm guest: Linux x"')).toBe(false);
    expect(parseKernelBootTime('boot time: 113.43 s since the kernel started')).toBe(113.43);
    expect(parseKernelBootTime('boot time: ${uptime} s since the kernel started')).toBeNull();
  });

  it('the random-read loop stays inside the disk and reads the device directly; the baseline reads /dev/zero', () => {
    const loop = guestCommands.randomLoop('randread', '/dev/vda', 20, 65536, true);
    expect(loop).toContain(`%${65536 - RANDOM_BURST}))`);
    expect(loop).toContain(`if=/dev/vda of=/dev/null bs=4k count=${RANDOM_BURST} skip=`);
    expect(loop).toContain('iflag=direct');
    expect(loop).toContain('while [ $i -lt 20 ]');
    expect(loop).toMatch(new RegExp(`echo "randread \\$\\(\\(i\\*${RANDOM_BURST}\\)\\) \\$a \\$b"$`));
    expect(guestCommands.randomLoop('zeroread', '/dev/zero', 20, 65536, false)).not.toContain('iflag=direct');
  });
});

describe('the VMMs on the default guest', () => {
  const files = { kernel: '/k/vmlinux', initrd: '/k/initramfs.cpio' };
  const disks = [{ path: '/d/disk.raw', format: 'raw' as const, serial: 'raw' }, { path: '/d/disk.qcow2', format: 'qcow2' as const, serial: 'qcow2' }];

  it("QEMU gets tsvmm's kernel command line, microvm and each disk with its serial and drive options", () => {
    const args = qemuGuestArgs(files, disks, 'cache=none,aio=threads');
    expect(args.slice(0, 2)).toEqual(['-M', 'microvm']);
    expect(args[args.indexOf('-append') + 1]).toBe(tsvmmGuestCmdline());
    expect(args[args.indexOf('-kernel') + 1]).toBe('/k/vmlinux');
    expect(args).toContain('if=none,id=disk1,file=/d/disk.qcow2,format=qcow2,cache=none,aio=threads');
    expect(args).toContain('virtio-blk-device,drive=disk1,serial=qcow2');
    expect(qemuGuestArgs(files, disks)).toContain('if=none,id=disk0,file=/d/disk.raw,format=raw');
    expect(args[args.indexOf('-cpu') + 1]).toMatch(/^host,-arch-capabilities/);
  });

  it('tsvmm runs its default guest with the same disks and serials', () => {
    expect(tsvmmGuestArgs(disks).slice(1)).toEqual(['run', '--disk', '/d/disk.raw,format=raw,serial=raw', '--disk', '/d/disk.qcow2,format=qcow2,serial=qcow2']);
  });

  it('a read-only disk is read-only under both, so that the VMMs can share the image', () => {
    const shared = [{ ...disks[0]!, readonly: true }];
    expect(tsvmmGuestArgs(shared).slice(1)).toEqual(['run', '--disk', '/d/disk.raw,format=raw,serial=raw,readonly']);
    expect(qemuGuestArgs(files, shared, 'cache=none,aio=threads')).toContain('if=none,id=disk0,file=/d/disk.raw,format=raw,readonly=on,cache=none,aio=threads');
  });
});

describe('the tables', () => {
  const row = (vmm: string, image: 'raw' | 'qcow2', seq: number | null, rand: number | null, failed?: string): BlkGuestRow => ({
    vmm, image,
    sequentialMBs: seq === null ? null : s(seq), randomIops: rand === null ? null : s(rand),
    loopIops: rand === null ? null : s(rand * 2), deviceUs: rand === null ? null : s(1000),
    sequentialRatio: null, randomRatio: null, note: 'n', ...(failed ? { failed } : {}),
  });

  it('each QEMU row gets tsvmm / QEMU for its own image; a failed peer is a row saying why', () => {
    const rows = withRatios([
      row('tsvmm', 'raw', 2, 10), row('tsvmm', 'qcow2', 1.5, 8),
      row('QEMU cache=none,aio=threads', 'raw', 1, 20), row('QEMU cache=none,aio=threads', 'qcow2', 3, 4),
      row('QEMU default', 'raw', null, null, 'QEMU default failed: qemu-system-x86_64: failed to set MSR 0x10a'),
      row('QEMU default', 'qcow2', null, null, 'QEMU default failed: qemu-system-x86_64: failed to set MSR 0x10a'),
    ]);
    expect(rows[2]).toMatchObject({ sequentialRatio: 2, randomRatio: 0.5 });
    expect(rows[3]).toMatchObject({ sequentialRatio: 0.5, randomRatio: 2 });
    expect(rows[4]).toMatchObject({ sequentialRatio: null, randomRatio: null });
    const result: BlkGuestResult = { runs: 1, loads: { diskBytes: 256 << 20, sequentialReads: 256, randomSeeks: 16 }, rows };
    const text = formatBlkGuest(result);
    expect(text).toMatch(/QEMU cache=none,aio=threads\s+raw\s+1\.0 \(1\.0–1\.0\)\s+20\.0 \(20\.0–20\.0\)\s+40\.0 \(40\.0–40\.0\)\s+1000 \(1000–1000\)\s+2\.00×\s+0\.50×/);
    expect(text).toMatch(/QEMU default\s+qcow2(\s+—){6}\s+QEMU default failed: qemu-system-x86_64: failed to set MSR 0x10a/);
    expect(text).toContain('256 MiB images; per run 256 sequential 64 KiB reads and 16 random offsets × 16 4 KiB reads, 1 runs per VMM, the VMMs taking turns run by run (one boot each).');
  });

  it('the boot table: medians, the ratios and the goal; without QEMU figures no ratio', () => {
    const result: BootResult = {
      runs: 3, goal: 1, bannerRatio: 1.1, promptRatio: 0.9,
      rows: [
        { vmm: 'tsvmm', bannerS: s(55, 50, 60), promptS: s(63), kernelS: s(50), note: 'tsvmm run' },
        { vmm: 'QEMU', bannerS: s(50), promptS: s(70), kernelS: s(48), note: 'QEMU 7.2' },
      ],
    };
    const text = formatBoot(result);
    expect(text).toMatch(/tsvmm\s+55\.0 \(50\.0–60\.0\)\s+63\.0 \(63\.0–63\.0\)\s+50\.0 \(50\.0–50\.0\)\s+tsvmm run/);
    expect(text).toContain('tsvmm / QEMU: banner 1.10×, prompt 0.90× (goal ≤ 1.0×: not met).');
    const failed = formatBoot({
      ...result, bannerRatio: null, promptRatio: null,
      rows: [result.rows[0]!, { vmm: 'QEMU', bannerS: null, promptS: null, kernelS: null, note: 'QEMU 7.2', failed: 'QEMU failed: it aborted' }],
    });
    expect(failed).toMatch(/QEMU(\s+—){3}\s+QEMU failed: it aborted/);
    expect(failed).toContain('No QEMU figures: no ratio.');
  });
});

describe('the guest shell driver', () => {
  // A fake console: sh prints a prompt with the terminal query ash's line
  // editing adds, echoes what is typed and runs it.
  const fakeConsole = `
    printf 'tsvmm:/# \\033[6n'
    while IFS= read -r line; do
      printf '%s\\n' "$line"
      eval "$line"
      printf 'tsvmm:/# \\033[6n'
    done`;

  it('finds the prompt after a terminal query, collects a command\'s lines and its status', async () => {
    const vmm = new VmmProcess('fake console', 'sh', ['-c', fakeConsole]);
    try {
      const shell = new GuestShell(vmm);
      await shell.waitForPrompt(10_000);
      const r = await shell.run('echo "disk raw vda"; echo "disk qcow2 vdb"', 10_000);
      expect(r.status).toBe(0);
      expect([...parseDiskList(r.lines)]).toEqual([['raw', 'vda'], ['qcow2', 'vdb']]);
      await expect(shell.run('false', 10_000)).rejects.toThrow(/"false" ended with status 1/);
    } finally {
      await vmm.kill();
    }
  });

  it('a console that ends before its prompt is an error naming what it printed, not a hang', async () => {
    const vmm = new VmmProcess('fake console', 'sh', ['-c', 'echo "Kernel panic - not syncing"; exit 1']);
    await expect(new GuestShell(vmm).waitForPrompt(10_000)).rejects.toThrow(/ended \(status 1\) before the shell prompt; last line: "Kernel panic - not syncing"/);
  });
});

describe('blk-guest takes turns', () => {
  // A fake guest per VMM: it answers the suite's commands with what busybox
  // would print (a sequential dd of 256 blocks in 2 s, random and /dev/zero
  // loops of 256 reads in 4 s and 1 s) and logs which load ran where.
  const fakeGuest = (name: string, log: string, failAt = '') => `
    printf 'tsvmm:/# '
    while IFS= read -r line; do
      printf '%s\\n' "$line"
      case "$line" in
        *serial*) echo "disk raw vda"; echo "disk qcow2 vdb" ;;
        *seqread*) dev=\${line#*if=/dev/}; dev=\${dev%% *}; echo "${name} $dev" >> ${log}
          [ -n "${failAt}" ] && [ "$(grep -c ${name} ${log})" -ge ${failAt || 0} ] && exit 3
          echo "256+0 records in"; echo "seqread 256 10.00 12.00" ;;
        *randread*) echo "randread 256 20.00 24.00" ;;
        *zeroread*) echo "zeroread 256 30.00 31.00" ;;
      esac
      echo '<<0>>'
      printf 'tsvmm:/# '
    done`;
  const disks = [{ path: 'unused.raw', format: 'raw', serial: 'raw' }, { path: 'unused.qcow2', format: 'qcow2', serial: 'qcow2' }] as const;
  const loads = { diskBytes: 1 << 20, sequentialReads: 256, randomSeeks: 16 };
  const config = (vmm: string, script: string, peer: boolean): Configuration => ({ vmm, command: 'sh', args: ['-c', script], note: '', peer });

  /** Runs `body` with a fresh folder and the path of the order log in it; removes the folder after. */
  async function inFolder(body: (dir: string, log: string) => Promise<void>): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-turns-'));
    try {
      await body(dir, join(dir, 'order'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('boots every VMM, then runs each load on each in turn, run by run', async () => inFolder(async (_dir, log) => {
    const tsvmm = config('tsvmm', fakeGuest('tsvmm', log), false);
    const qemu = config('QEMU', fakeGuest('QEMU', log), true);
    const results = await measureInTurns([tsvmm, qemu], disks, loads, 2, () => {});
    expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual([
      'tsvmm vda', 'tsvmm vdb', 'QEMU vda', 'QEMU vdb', 'tsvmm vda', 'tsvmm vdb', 'QEMU vda', 'QEMU vdb',
    ]);
    const raw = (results.get(tsvmm) as Map<string, ImageSamples>).get('raw')!;
    // 256 × 64 KiB in 2 s; 256 reads in 4 s; the loop alone 256 in 1 s: 3 s / 256 per read on the device.
    expect(raw.sequentialMBs).toEqual([(256 * 65536) / 2 / 1e6, (256 * 65536) / 2 / 1e6]);
    expect(raw.randomIops).toEqual([64, 64]);
    expect(raw.loopIops).toEqual([256, 256]);
    expect(raw.deviceUs[0]).toBeCloseTo((3 / 256) * 1e6, 6);
  }));

  it('a peer that dies mid-run is a row saying why; tsvmm goes on', async () => inFolder(async (_dir, log) => {
    const tsvmm = config('tsvmm', fakeGuest('tsvmm', log), false);
    const qemu = config('QEMU', fakeGuest('QEMU', log, '2'), true);
    const results = await measureInTurns([tsvmm, qemu], disks, loads, 2, () => {});
    expect(results.get(qemu)).toMatch(/^QEMU failed: /);
    expect((results.get(tsvmm) as Map<string, ImageSamples>).get('qcow2')!.sequentialMBs).toHaveLength(2);
    expect(readFileSync(log, 'utf8').trim().split('\n').filter((l) => l.startsWith('tsvmm'))).toHaveLength(4);
  }));

  it('tsvmm failing to boot ends the suite, and the peers it booted are killed', async () => inFolder(async (dir, log) => {
    const tsvmm = config('tsvmm', 'echo "Kernel panic - not syncing"; exit 1', false);
    const qemu = config('QEMU', `echo $$ > ${join(dir, 'pid')}; ${fakeGuest('QEMU', log)}`, true);
    await expect(measureInTurns([tsvmm, qemu], disks, loads, 1, () => {})).rejects.toThrow(/before the shell prompt/);
    const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    expect(() => process.kill(pid, 0)).toThrow();
  }));
});
