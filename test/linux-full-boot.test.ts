// The product's main job, end to end: `tsvmm run --cpus 2` boots the default
// guest (guests/default, an SMP kernel) to its shell on the console; a command typed into tsvmm's
// stdin runs in the guest and its output comes back; `poweroff` ends tsvmm
// with status 0. About 1.5 minutes on a PVM host: the one full boot of the
// default suite, so every check here shares it, including Linux's own virtio
// drivers on both transports: a raw disk over virtio-mmio and a qcow2 disk
// over virtio-pci (read a known pattern, write one the host then verifies),
// virtio-rng behind /dev/hwrng, virtio-console as hvc0, and virtio-net as
// eth0 on a TAP device (when this host lets us create one). With a TAP, tsvmm
// runs inside a network namespace the test creates (helpers/netns.ts), and the
// guest's ping stays in it.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultLinuxGuest } from '../src/cli/guest.ts';
import { openDisk } from '../src/storage/open-disk.ts';
import { createQcow2 } from '../src/storage/qcow2/create.ts';
import { GuestConsole as Console } from './helpers/guest-console.ts';
import { hasKvm, TSVMM } from './helpers/kvm.ts';
import { netnsUnavailable, TestNetns } from './helpers/netns.ts';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-linux-'));
const RAW = join(dir, 'raw.img');
const QCOW2 = join(dir, 'disk.qcow2');
const RAW_SECTORS = 8192; // 4 MiB
const QCOW2_SECTORS = 16384; // 8 MiB
/** The 4 KiB at 1 MiB that the guest reads back, and the sector it writes. */
const PATTERN_OFFSET = 1 << 20;
const WRITE_SECTOR = 4096;
const patterns = { raw: randomBytes(4096), qcow2: randomBytes(4096) };
const md5 = (bytes: Uint8Array) => createHash('md5').update(bytes).digest('hex');

/**
 * A persistent TAP, made and addressed inside the test's namespace before
 * tsvmm (started in the same namespace) attaches to it by name. The namespace
 * holds nothing else, so its name and subnet need not be unique.
 */
const tap = netnsUnavailable === null ? { name: 'tsvmm0', host: '10.0.2.1', guest: '10.0.2.2' } : null;
let ns: TestNetns | null = null;
let tsvmmProcess: ChildProcess | null = null;

function makeDisks(): void {
  const raw = Buffer.alloc(RAW_SECTORS * 512);
  patterns.raw.copy(raw, PATTERN_OFFSET);
  writeFileSync(RAW, raw);
  createQcow2(QCOW2, { size: QCOW2_SECTORS * 512 });
  const qcow2 = openDisk(QCOW2, { format: 'qcow2' });
  qcow2.write(PATTERN_OFFSET, patterns.qcow2);
  qcow2.flush();
  qcow2.close();
}

function guestArgs(): string[] {
  return [
    // Two vCPUs: the guest brings up its AP through KVM's local APIC and both serve the devices.
    '--cpus', '2',
    // A file for Linux's qemu_fw_cfg driver to show under /sys/firmware.
    '--fw-cfg', 'name=opt/tsvmm/greeting,string=hello from the host',
    '--disk', `${RAW},format=raw,serial=tsvmm-raw,transport=mmio`,
    '--disk', `${QCOW2},format=qcow2,serial=tsvmm-qcow2,transport=pci`,
    '--device', 'virtio-rng,transport=mmio',
    '--device', 'virtio-console,transport=pci',
    ...(tap ? ['--net', `tap=${tap.name},transport=mmio`] : []),
  ];
}

describe.skipIf(!hasKvm)('the default guest', () => {
  let console_: Console;
  let stderr = '';
  let exited: Promise<number | null>;
  const started = Date.now();

  beforeAll(async () => {
    await defaultLinuxGuest({ quiet: true });
    makeDisks();
    const command = [process.execPath, TSVMM, 'run', ...guestArgs()];
    if (tap) {
      ns = TestNetns.create();
      ns.ip('tuntap', 'add', 'dev', tap.name, 'mode', 'tap');
      ns.ip('addr', 'add', `${tap.host}/24`, 'dev', tap.name);
      ns.ip('link', 'set', 'dev', tap.name, 'up');
    } else {
      console.warn(`linux-full-boot: no virtio-net check: ${netnsUnavailable}`);
    }
    const [file, args] = ns ? ns.wrap(command) : [command[0]!, command.slice(1)];
    const child = tsvmmProcess = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stderr.on('data', (d) => (stderr += d));
    exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    console_ = new Console(child);
  }, 30 * 60_000);

  it('boots to the banner: kernel release, virtio devices, boot time', async () => {
    // The guest's tty ends lines with \r\n.
    const m = await console_.waitFor(/tsvmm guest: Linux (\S+)\r?\nvirtio devices:([\s\S]*?)\r?\nboot time: ([\d.]+) s/, 240_000);
    expect(m[1]).toMatch(/^6\.1\.\d+-tsvmm$/);
    // The guest's init lists what its virtio drivers made of each device.
    const devices = m[2]!.replace(/\r/g, '');
    expect(devices.match(/: block vd[ab]/g)).toHaveLength(2);
    expect(devices).toMatch(/: rng\b/);
    expect(devices).toMatch(/: console vport\d+p0/);
    if (tap) expect(devices).toMatch(/: net eth0/);
    console.log(`default guest: banner after ${((Date.now() - started) / 1000).toFixed(0)} s of wall time, ${m[3]} s of guest uptime`);
  }, 300_000);

  it('runs a command typed into tsvmm\'s stdin and shows its output', async () => {
    await console_.waitFor(/tsvmm:\/# /, 60_000);
    console_.type('echo "sum=$((6 * 7))"; uname -r\n');
    const m = await console_.waitFor(/\nsum=42\r?\n(\S+)\r?\n/, 60_000);
    expect(m[1]).toMatch(/-tsvmm$/);
  }, 120_000);

  /** Types a command and waits for the lines between two markers it prints. */
  async function guestRun(command: string, timeoutMs = 60_000): Promise<string> {
    const id = Math.random().toString(36).slice(2, 8);
    // The markers are built by the shell, so the echo of the typed line cannot match them.
    console_.type(`echo "<<$((1))${id}"; ${command}; echo "${id}$((1))>>"\n`);
    const m = await console_.waitFor(new RegExp(`<<1${id}\\r?\\n([\\s\\S]*?)${id}1>>`), timeoutMs);
    return m[1]!.replace(/\r/g, '');
  }

  it('virtio-blk: vda and vdb with the images\' capacities and serials, on virtio-mmio and virtio-pci', async () => {
    const out = await guestRun('for d in /sys/block/vd*; do read s < $d/size; read n < $d/serial; echo "disk ${d##*/} $s $n"; done; dmesg | grep "logical blocks"');
    const disks = [...out.matchAll(/^disk (vd\w) (\d+) (\S+)$/gm)].map((m) => ({ name: m[1], sectors: Number(m[2]), serial: m[3] }));
    expect(disks.map((d) => [d.serial, d.sectors]).sort()).toEqual([['tsvmm-qcow2', QCOW2_SECTORS], ['tsvmm-raw', RAW_SECTORS]]);
    expect(out).toMatch(new RegExp(`\\[vd\\w\\] ${RAW_SECTORS} 512-byte logical blocks`));
    expect(out).toMatch(new RegExp(`\\[vd\\w\\] ${QCOW2_SECTORS} 512-byte logical blocks`));
    // Which transport carries which disk: virtio-pci devices sit under a PCI function.
    const links = await guestRun('for d in /sys/block/vd*; do read n < $d/serial; echo "$n $(readlink -f $d/device)"; done');
    // A virtio-mmio device is the ACPI device the DSDT describes (LNRO0005).
    expect(links).toMatch(/tsvmm-raw \S*\/LNRO0005:\S*/);
    expect(links).toMatch(/tsvmm-qcow2 \S*pci0000:00\S*/);
  }, 120_000);

  it('virtio-blk: dd reads the host\'s pattern back from the raw and the qcow2 disk, and writes one', async () => {
    const out = await guestRun([
      'for d in /sys/block/vd*; do read n < $d/serial',
      `echo "md5 $n $(dd if=/dev/\${d##*/} bs=4096 skip=${PATTERN_OFFSET / 4096} count=1 2>/dev/null | md5sum)"`,
      `echo "written-by-guest-$n" | dd of=/dev/\${d##*/} bs=512 seek=${WRITE_SECTOR} conv=sync 2>/dev/null`,
      'done; sync; echo synced',
    ].join('; '), 120_000);
    expect(out).toContain(`md5 tsvmm-raw ${md5(patterns.raw)}`);
    expect(out).toContain(`md5 tsvmm-qcow2 ${md5(patterns.qcow2)}`);
    expect(out).toContain('synced');
  }, 150_000);

  it('virtio-rng: /dev/hwrng is the virtio device and delivers bytes', async () => {
    const out = await guestRun('read c < /sys/class/misc/hw_random/rng_current; echo "rng $c $(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -tx1 | tr -d \' \\n\')"');
    const m = /^rng (\S+) ([0-9a-f]*)$/m.exec(out);
    expect(m?.[1]).toMatch(/^virtio_rng/);
    expect(m?.[2]).toMatch(/^[0-9a-f]{32}$/);
  }, 60_000);

  it('virtio-console: a line written to hvc0 reaches tsvmm\'s stdout', async () => {
    await guestRun('echo "hvc0 says $((6 * 7))" > /dev/hvc0');
    // The typed command shows "$((6 * 7))"; only the guest's write through hvc0 shows 42.
    await console_.waitFor(/hvc0 says 42/, 30_000);
  }, 60_000);

  it.skipIf(!tap)('virtio-net: eth0 comes up on the TAP device and reaches the test\'s network namespace', async () => {
    const out = await guestRun(`ip link set eth0 up && ip addr add ${tap!.guest}/24 dev eth0 && ping -c 1 -W 10 ${tap!.host}`, 90_000);
    expect(out).toMatch(/1 packets transmitted, 1 packets received/);
  }, 120_000);

  it('SMP: two CPUs online, and both take interrupts and run work', async () => {
    // A busy loop pinned to each CPU (taskset), then the per-CPU counts of local timer interrupts.
    const out = await guestRun('echo "nproc $(nproc)"; for c in 0 1; do taskset -c $c sh -c \'i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; echo "cpu $0 done on $(cut -d" " -f39 /proc/self/stat)"\' $c & done; wait; grep -E "^ *(LOC|CPU)" /proc/interrupts; dmesg | grep -e "Brought up" -e "smpboot"', 120_000);
    expect(out).toMatch(/^nproc 2$/m);
    // Each loop ran where taskset put it (field 39 of /proc/self/stat: the CPU it last ran on).
    expect(out).toMatch(/^cpu 0 done on 0$/m);
    expect(out).toMatch(/^cpu 1 done on 1$/m);
    expect(out).toMatch(/smp: Brought up 1 node, 2 CPUs/);
    const loc = /^ *LOC:\s+(\d+)\s+(\d+)/m.exec(out);
    expect(loc).not.toBeNull();
    expect(Number(loc![1])).toBeGreaterThan(0);
    expect(Number(loc![2])).toBeGreaterThan(0);
  }, 180_000);

  it('fw_cfg: Linux\'s qemu_fw_cfg driver finds the device in the DSDT and lists tsvmm\'s files, --fw-cfg\'s among them', async () => {
    const out = await guestRun('ls /sys/firmware/qemu_fw_cfg/by_name/etc; cat /sys/firmware/qemu_fw_cfg/by_name/opt/tsvmm/greeting/raw; echo');
    expect(out).toMatch(/^e820$/m);
    expect(out).toMatch(/^hello from the host$/m);
  }, 60_000);

  it('ACPI: Linux found tsvmm\'s tables, the power button and the GED, with no ACPI errors', async () => {
    const out = await guestRun('dmesg | grep -i -e acpi -e ged -e "firmware bug"');
    for (const table of ['RSDP', 'XSDT', 'FACP', 'APIC', 'DSDT']) expect(out).toMatch(new RegExp(`ACPI: ${table} 0x00000000000E\\w+ `));
    expect(out).toMatch(/ACPI: Interpreter enabled/);
    expect(out).toMatch(/ACPI: PM: \(supports S0 S5\)/);
    expect(out).toMatch(/ACPI: button: Power Button \[PWRB\]/);
    expect(out).not.toMatch(/ACPI (BIOS )?Error|ACPI Warning|acpi-ged.*fail|Firmware Bug/i);
  }, 60_000);

  it('poweroff ends tsvmm with "guest powered off", status 0', async () => {
    console_.type('poweroff\n');
    const status = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 120_000))]);
    expect(status).toBe(0);
    // Through ACPI: the kernel writes S5 to the FADT's sleep control register.
    expect(stderr).toMatch(/tsvmm: guest powered off\n$/);
    expect(stderr).not.toMatch(/internal error|KVM internal/);
  }, 150_000);

  it('the host finds what the guest wrote, and the qcow2 image stays consistent', () => {
    const written = (name: string) => Buffer.from(`written-by-guest-${name}\n`);
    const raw = readFileSync(RAW).subarray(WRITE_SECTOR * 512, WRITE_SECTOR * 512 + 512);
    expect(raw.subarray(0, written('tsvmm-raw').length)).toEqual(written('tsvmm-raw'));
    const qcow2 = openDisk(QCOW2, { format: 'qcow2', readOnly: true });
    const sector = new Uint8Array(512);
    qcow2.read(WRITE_SECTOR * 512, sector);
    qcow2.close();
    expect(Buffer.from(sector.subarray(0, written('tsvmm-qcow2').length))).toEqual(written('tsvmm-qcow2'));
    const qemuImg = (() => { try { return execFileSync('qemu-img', ['check', QCOW2], { encoding: 'utf8' }); } catch (e) { return (e as { code?: string }).code === 'ENOENT' ? null : String((e as { stdout?: string }).stdout ?? e); } })();
    if (qemuImg !== null) expect(qemuImg).toMatch(/No errors were found/);
  });
});

afterAll(() => {
  // A failed test may leave the guest running; the namespace (and the TAP in it) goes either way.
  if (tsvmmProcess && tsvmmProcess.exitCode === null && tsvmmProcess.signalCode === null) tsvmmProcess.kill('SIGKILL');
  ns?.remove();
});
