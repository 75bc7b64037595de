// Boots the default guest under QEMU + KVM (no tsvmm involved) and checks it:
// the banner appears, a command typed on the serial console runs, and
// `poweroff` ends QEMU. Prints the timings.
//
//   npx tsx guests/default/qemu-smoke.ts [--kernel vmlinux --initrd initramfs.cpio] [--timeout 600] [--smp N]
//
// Without --kernel/--initrd it uses (and if needed builds) the cached default
// guest. With --smp N the guest gets N CPUs (microvm's MP table lists them)
// and its `nproc` must say N. Needs qemu-system-x86 (apt-get install
// qemu-system-x86) and /dev/kvm.
// On a PVM host it hides the CPUID features PVM's emulator cannot run and adds
// the guest's PVM parameters, as tsvmm does.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDefaultGuest, defaultGuestCmdline } from './recipe.ts';

interface Args { kernel?: string; initrd?: string; timeoutSeconds: number; extraAppend: string; cpus: number }

function parseArgs(argv: string[]): Args {
  const args: Args = { timeoutSeconds: 600, extraAppend: '', cpus: 1 };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    switch (argv[i]) {
      case '--kernel': args.kernel = value; i++; break;
      case '--initrd': args.initrd = value; i++; break;
      case '--timeout': args.timeoutSeconds = Number(value); i++; break;
      case '--append': args.extraAppend = value ?? ''; i++; break;
      case '--smp': args.cpus = Number(value); i++; break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!Number.isInteger(args.cpus) || args.cpus < 1) throw new Error(`--smp needs a positive whole number, not ${args.cpus}`);
  return args;
}

const isPvm = existsSync('/sys/module/kvm_pvm');

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  let kernel = args.kernel;
  let initrd = args.initrd;
  if (!kernel || !initrd) {
    const guest = await buildDefaultGuest({ log: (line) => process.stderr.write(`${line}\n`) });
    kernel ??= guest.kernel;
    initrd ??= guest.initrd;
  }
  if (spawnSync('qemu-system-x86_64', ['--version']).error) {
    process.stderr.write('qemu-system-x86_64 not found: apt-get install qemu-system-x86\n');
    return 2;
  }
  const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-smoke-'));
  const disk = join(scratch, 'disk.img');
  writeFileSync(disk, Buffer.alloc(1 << 20));
  const append = `${defaultGuestCmdline({ pvm: isPvm })}${args.extraAppend ? ` ${args.extraAppend}` : ''}`;
  const qemuArgs = [
    '-accel', 'kvm',
    // No ACPI: QEMU then lists the virtio-mmio devices on the command line itself.
    '-M', 'microvm,acpi=off,rtc=on',
    // On PVM also without KVM's hypercall-based PV features (src/vcpu/cpuid.ts PVM_HIDDEN).
    '-cpu', isPvm ? 'host,-cx16,-popcnt,-smap,-xsave,kvm-pv-unhalt=off,kvm-pv-ipi=off,kvm-pv-sched-yield=off' : 'host',
    '-m', '256',
    '-smp', String(args.cpus),
    '-kernel', kernel, '-initrd', initrd, '-append', append,
    '-display', 'none', '-serial', 'stdio', '-monitor', 'none',
    '-no-reboot',
    // The keyboard controller: its reset (0xFE to port 0x64) is how the guest ends the VM.
    '-device', 'i8042',
    '-device', 'virtio-rng-device',
    '-drive', `if=none,id=d0,format=raw,file=${disk}`, '-device', 'virtio-blk-device,drive=d0',
    '-netdev', 'user,id=n0', '-device', 'virtio-net-device,netdev=n0',
  ];
  process.stderr.write(`qemu-system-x86_64 ${qemuArgs.map((a) => (/[\s"]/.test(a) ? JSON.stringify(a) : a)).join(' ')}\n`);

  const started = Date.now();
  const since = () => ((Date.now() - started) / 1000).toFixed(1);
  const qemu = spawn('qemu-system-x86_64', qemuArgs, { stdio: ['pipe', 'pipe', 'inherit'] });
  let output = '';
  const marks: { [what: string]: string } = {};
  const steps: Array<{ name: string; until: RegExp; then?: string }> = [
    { name: 'first kernel output', until: /Linux version/ },
    { name: 'banner', until: /tsvmm guest: Linux \S+[\s\S]*boot time: \S+ s/ },
    { name: 'shell prompt', until: /tsvmm:\/# /, then: 'echo typed-$((6*7)) nproc=$(nproc); ls /sys/bus/virtio/devices\n' },
    { name: 'typed command ran', until: new RegExp(`typed-42 nproc=${args.cpus}\\b`), then: 'poweroff\n' },
  ];
  let step = 0;
  let from = 0;
  qemu.stdout!.setEncoding('utf8');
  qemu.stdout!.on('data', (chunk: string) => {
    process.stdout.write(chunk);
    output += chunk;
    while (step < steps.length && steps[step]!.until.test(output.slice(from))) {
      const s = steps[step]!;
      marks[s.name] = since();
      from = output.length;
      if (s.then) qemu.stdin!.write(s.then);
      step++;
    }
  });
  const timer = setTimeout(() => {
    process.stderr.write(`\nqemu-smoke: timed out after ${args.timeoutSeconds} s waiting for: ${steps[step]?.name ?? 'QEMU to exit'}\n`);
    qemu.kill('SIGKILL');
  }, args.timeoutSeconds * 1000);
  const status = await new Promise<number | null>((resolve) => qemu.on('close', (code) => resolve(code)));
  clearTimeout(timer);
  marks['QEMU exited'] = since();
  rmSync(scratch, { recursive: true, force: true });

  process.stderr.write('\nqemu-smoke timings (s since QEMU started):\n');
  for (const [what, at] of Object.entries(marks)) process.stderr.write(`  ${what.padEnd(20)} ${at}\n`);
  const ok = step === steps.length && status === 0;
  process.stderr.write(ok ? 'qemu-smoke: OK (banner, typed command, poweroff ended QEMU)\n' : `qemu-smoke: FAILED (reached ${step}/${steps.length} steps, QEMU status ${status})\n`);
  return ok ? 0 : 1;
}

main().then((code) => { process.exitCode = code; }, (e: Error) => { process.stderr.write(`qemu-smoke: ${e.message}\n`); process.exitCode = 2; });
