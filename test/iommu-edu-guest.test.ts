// edu behind the VT-d unit, driven by a guest through real exits
// (firmware/iommu-edu.S): PCI scan, edu's registers, the unit's tables and
// handshakes, an invalidation wait, DMA through a 4 KiB and a 2 MiB mapping,
// a fault on an unmapped IOVA with its fault event, and edu's INTx (through
// KVM's IOAPIC, remappable entry) and MSI, both remapped into interrupts the
// guest takes.
import { describe, expect, it } from 'vitest';
import { firmwarePath } from '../bench/lib/artifacts.ts';
import { hasKvm, tsvmm } from './helpers/kvm.ts';

describe.skipIf(!hasKvm)('edu behind the VT-d unit (firmware/iommu-edu.S)', () => {
  it('a guest maps a page, DMAs through it, faults on an unmapped IOVA and takes the remapped INTx and MSI', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('iommu-edu'), '--irqchip', '--device', 'edu', '--device', 'intel-iommu,intremap=on']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe([
      'edu slot=01 bar=E0100000 line=10 id=010000ED alive=EDCBA987 fact=00000078',
      // TE, SRTP, QIE, IRE, SIRTP; the wait descriptor's status; IQH past the three descriptors.
      'vtd ver=10 gsts=C7000000 status=0000600D iqh=00000030',
      'dma 4k=CAFEF00D 2m=CAFEF00D',
      // PPF; the record: F, a write (T = 0), reason 5 (write not permitted); edu's source-id 00:01.0; the page.
      'fault fsts=00000002 frcd=80000005 sid=0008 page=00050000 events=01',
      'irq intx=01 msi=01',
      '',
    ].join('\n'));
    expect(r.status).toBe(1);
  });

  it('edu and the unit need the in-kernel irqchip: one line and status 2 without it', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('iommu-edu'), '--device', 'edu']);
    expect(r.stderr).toBe('tsvmm: --device edu needs the interrupt controllers: use --irqchip with a flat guest\n');
    expect(r.status).toBe(2);
  });
});
