// Every struct layout and ioctl number in src/kvm against the machine's
// <linux/kvm.h> (and struct flock and the OFD lock commands against <fcntl.h>):
// a C program prints sizeof/offsetof for each, and each must equal the
// TypeScript definition.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  Capability, ClockFlag, ExitReason, InternalError, Ioctl, IoDirection, Layouts, MemoryRegionFlag, MpState, SystemEvent,
} from '../src/kvm/index.ts';
import { FcntlCommand, FlockLayout, FlockType } from '../src/kvm/libc.ts';

const constants = {
  ...Capability, ...ExitReason, ...IoDirection, ...InternalError, ...SystemEvent, ...MpState, ...MemoryRegionFlag, ...ClockFlag,
  ...FcntlCommand, ...FlockType,
};
/** libc structs (image locking's struct flock), checked like the KVM ones. */
const libcLayouts = { flock: FlockLayout };

function cProgram(): string {
  const lines: string[] = [];
  for (const [struct, layout] of Object.entries({ ...Layouts, ...libcLayouts })) {
    lines.push(`  printf("size %s %zu\\n", "${struct}", sizeof(struct ${struct}));`);
    for (const [field, { size }] of Object.entries(layout.fields)) {
      lines.push(`  printf("offset %s.%s %zu\\n", "${struct}", "${field}", offsetof(struct ${struct}, ${field}));`);
      // Flexible array members (size 0 here) have no sizeof.
      if (size > 0) lines.push(`  printf("fieldsize %s.%s %zu\\n", "${struct}", "${field}", sizeof(((struct ${struct} *)0)->${field}));`);
    }
  }
  for (const name of Object.keys(Ioctl)) lines.push(`  printf("ioctl %s %lu\\n", "${name}", (unsigned long)${name});`);
  for (const name of Object.keys(constants)) lines.push(`  printf("const %s %lld\\n", "${name}", (long long)${name});`);
  return `#define _GNU_SOURCE\n#include <fcntl.h>\n#include <stddef.h>\n#include <stdio.h>\n#include <linux/kvm.h>\n#include <linux/if_tun.h>\n#include <linux/sockios.h>\nint main(void) {\n${lines.join('\n')}\n  return 0;\n}\n`;
}

function cFacts(): Map<string, number> {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-abi-'));
  writeFileSync(join(dir, 'abi.c'), cProgram());
  execFileSync('cc', ['-Wall', '-o', join(dir, 'abi'), join(dir, 'abi.c')]);
  const facts = new Map<string, number>();
  for (const line of execFileSync(join(dir, 'abi'), { encoding: 'utf8' }).trim().split('\n')) {
    const [kind, name, value] = line.split(' ');
    facts.set(`${kind} ${name}`, Number(value));
  }
  return facts;
}

describe('src/kvm matches <linux/kvm.h> and <fcntl.h>', () => {
  const facts = cFacts();

  for (const [struct, layout] of Object.entries({ ...Layouts, ...libcLayouts })) {
    it(`struct ${struct}`, () => {
      expect({ size: layout.size }).toEqual({ size: facts.get(`size ${struct}`) });
      for (const [field, { offset, size }] of Object.entries(layout.fields)) {
        expect({ field, offset }).toEqual({ field, offset: facts.get(`offset ${struct}.${field}`) });
        if (size > 0) expect({ field, size }).toEqual({ field, size: facts.get(`fieldsize ${struct}.${field}`) });
      }
    });
  }

  it('ioctl numbers', () => {
    for (const [name, value] of Object.entries(Ioctl)) {
      expect({ name, value }).toEqual({ name, value: facts.get(`ioctl ${name}`) });
    }
  });

  it('capabilities, exit reasons and their sub-codes, memory-slot and clock flags, fcntl lock commands and types', () => {
    for (const [name, value] of Object.entries(constants)) {
      expect({ name, value }).toEqual({ name, value: facts.get(`const ${name}`) });
    }
  });
});
