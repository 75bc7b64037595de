// What the machine says about its VT-d unit and edu: the DMAR table (read at
// the VT-d spec's offsets, and decoded by ACPICA's `iasl -d` where it is
// installed), edu's interrupt in the DSDT's _PRT, the `--device` options,
// and the kvm-unit-tests runner's spelling of QEMU's options for them.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tsvmmCommand } from '../bench/kut/commands.ts';
import type { KutTest } from '../bench/kut/unittests-cfg.ts';
import { AcpiLayout, buildAcpiTables } from '../src/boot/acpi/index.ts';
import { platformConfigFromOptions } from '../src/cli/platform-options.ts';
import { InputError } from '../src/errors.ts';
import { IrqLayout, MmioLayout } from '../src/layout.ts';
import { linuxAcpiPlatform, machineDevices } from '../src/machine/builder.ts';

const hasIasl = spawnSync('iasl', ['-v'], { encoding: 'utf8' }).status === 0;
if (!hasIasl) console.warn('intel-iommu-platform: iasl is not installed (Debian package acpica-tools): skipping the DMAR decode');

function tablesOf(platform: Parameters<typeof linuxAcpiPlatform>[2]) {
  const tables = buildAcpiTables(linuxAcpiPlatform([], 2, platform), AcpiLayout.TABLES_ADDRESS, AcpiLayout.TABLES_MAX_SIZE);
  const find = (signature: string) => {
    const entry = tables.tables.find((t) => t.signature === signature);
    return entry ? tables.image.subarray(entry.address - tables.rsdpAddress, entry.address - tables.rsdpAddress + entry.length) : null;
  };
  return { tables, find };
}

describe('the DMAR table', () => {
  it('is in the XSDT with a VT-d unit only', () => {
    expect(tablesOf({}).find('DMAR')).toBeNull();
    const { tables, find } = tablesOf({ iommu: { interruptRemapping: true } });
    const dmar = tables.tables.find((t) => t.signature === 'DMAR')!;
    const xsdt = find('XSDT')!;
    const entries = new DataView(xsdt.buffer, xsdt.byteOffset + 36, xsdt.length - 36);
    expect(Array.from({ length: entries.byteLength / 8 }, (_, i) => Number(entries.getBigUint64(i * 8, true)))).toContain(dmar.address);
    expect(find('DMAR')!.reduce((sum, b) => (sum + b) & 0xff, 0)).toBe(0);
  });

  it('has the host address width, INTR_REMAP, and one DRHD for every PCI device with the IOAPIC in its scope', () => {
    const dmar = tablesOf({ iommu: { interruptRemapping: true } }).find('DMAR')!;
    const view = new DataView(dmar.buffer, dmar.byteOffset, dmar.length);
    expect(view.getUint8(36)).toBe(47);
    expect(view.getUint8(37)).toBe(1);
    // DRHD at 48: type 0, length 24, INCLUDE_PCI_ALL, segment 0, the register base.
    expect([view.getUint16(48, true), view.getUint16(50, true), view.getUint8(52), view.getUint16(54, true)]).toEqual([0, 24, 1, 0]);
    expect(Number(view.getBigUint64(56, true))).toBe(MmioLayout.INTEL_IOMMU);
    // IOAPIC scope: type 3, length 8, enumeration ID 0, start bus 0xff, path 00.0.
    expect(Array.from(dmar.subarray(64, 72))).toEqual([3, 8, 0, 0, 0, 0xff, 0, 0]);
    expect(tablesOf({ iommu: { interruptRemapping: false } }).find('DMAR')![37]).toBe(0);
  });

  const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-dmar-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  it.skipIf(!hasIasl)('iasl -d decodes it as a DRHD with an IOAPIC scope', () => {
    writeFileSync(join(scratch, 'dmar.dat'), tablesOf({ iommu: { interruptRemapping: true } }).find('DMAR')!);
    const run = spawnSync('iasl', ['-d', 'dmar.dat'], { cwd: scratch, encoding: 'utf8' });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    const dsl = readFileSync(join(scratch, 'dmar.dsl'), 'utf8');
    expect(dsl).not.toMatch(/incorrect checksum|invalid|unknown/i);
    expect(dsl).toMatch(/Host Address Width : 2F/);
    expect(dsl).toMatch(/Hardware Unit Definition/);
    expect(dsl).toMatch(/Register Base Address : 00000000FED90000/);
    expect(dsl).toMatch(/Device Scope Type : 03/);
  });
});

describe('edu and the VT-d unit on the machine', () => {
  it('puts edu after the virtio-pci functions, INTA# on IOAPIC input 16, in the _PRT; the unit before it', () => {
    const devices = machineDevices({ pit: 'kernel', edu: true, iommu: { interruptRemapping: true } }, false, { pciSlotsTaken: 2 });
    const kinds = devices.map((d) => d.kind);
    expect(kinds.indexOf('intel-iommu')).toBeLessThan(kinds.indexOf('edu'));
    expect(devices.find((d) => d.kind === 'edu')).toMatchObject({ slot: 3, gsi: IrqLayout.EDU });
    expect(devices.find((d) => d.kind === 'intel-iommu')).toMatchObject({ address: 0xfed9_0000 });
    expect(linuxAcpiPlatform([], 1, { edu: true }).pci?.interrupts).toEqual([{ slot: 1, gsi: 16 }]);
    expect(machineDevices({ pit: 'kernel' }, false).some((d) => d.kind === 'edu' || d.kind === 'intel-iommu')).toBe(false);
  });

  it('--device edu and --device intel-iommu[,intremap=on|off][,eim=off]', () => {
    expect(platformConfigFromOptions(['edu', 'intel-iommu,intremap=on,eim=off'])).toEqual({ edu: true, iommu: { interruptRemapping: true } });
    expect(platformConfigFromOptions(['intel-iommu'])).toEqual({ iommu: { interruptRemapping: false } });
    const refused = (specs: string[]) => {
      try {
        platformConfigFromOptions(specs);
      } catch (e) {
        expect(e).toBeInstanceOf(InputError);
        return (e as Error).message;
      }
      throw new Error(`accepted ${specs.join(' ')}`);
    };
    expect(refused(['intel-iommu,eim=on'])).toMatch(/eim=on .* not implemented/);
    expect(refused(['intel-iommu,caching-mode=on'])).toMatch(/unknown setting "caching-mode"/);
    expect(refused(['intel-iommu,intremap=maybe'])).toMatch(/neither on nor off/);
    expect(refused(['edu', 'edu'])).toMatch(/more than once/);
    expect(refused(['edu,dma_mask=1'])).toMatch(/has no settings/);
  });

  it("the kvm-unit-tests runner turns intel_iommu's QEMU options into tsvmm's, and refuses a machine setting it cannot honour", () => {
    const test: KutTest = {
      name: 'intel_iommu', file: 'intel-iommu.flat', smp: 4, args: '', arch: 'x86_64', groups: [], timeoutSeconds: 30, checks: [], accel: null,
      qemuParams: ['-M', 'q35,kernel-irqchip=split', '-device', 'intel-iommu,intremap=on,eim=off', '-device', 'edu'],
    };
    const command = tsvmmCommand(test, '/kut', { pcTestdev: true, cpu: true });
    expect(Array.isArray(command) && command.join(' ')).toMatch(/--device intel-iommu,intremap=on,eim=off --device edu$/);
    expect(tsvmmCommand({ ...test, qemuParams: ['-M', 'q35,smm=on'] }, '/kut', { pcTestdev: true, cpu: true })).toEqual({ untranslatable: '-M smm=on' });
  });
});
