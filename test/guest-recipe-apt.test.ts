// The default guest's recipe asks apt which package versions it would build
// from; that answer names the cache directory `tsvmm run` boots from, so it is
// asked on every run of the default guest. These tests pin how the answer is
// read and when it is asked again.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { aptCandidates, aptInputsFingerprint, parseAptPolicy } from '../guests/default/recipe.ts';

const POLICY = `linux-source-6.1:
  Installed: (none)
  Candidate: 6.1.192-3
  Version table:
     6.1.192-3 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
busybox-static:
  Installed: (none)
  Candidate: 1:1.35.0-4+deb12u1+b1
  Version table:
     1:1.35.0-4+deb12u1+b1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
`;
const PACKAGES = ['linux-source-6.1', 'busybox-static'];

describe('apt-cache policy output', () => {
  it('gives each package its own Candidate line', () => {
    expect(parseAptPolicy(POLICY, PACKAGES)).toEqual({ 'linux-source-6.1': '6.1.192-3', 'busybox-static': '1:1.35.0-4+deb12u1+b1' });
  });

  it('gives null for (none) and for a package apt did not list', () => {
    const none = 'linux-source-6.1:\n  Installed: (none)\n  Candidate: (none)\n';
    expect(parseAptPolicy(none, PACKAGES)).toEqual({ 'linux-source-6.1': null, 'busybox-static': null });
  });
});

describe('the remembered answer', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function counting(output: string) {
    const calls: string[][] = [];
    return { calls, query: (pkgs: readonly string[]) => (calls.push([...pkgs]), output) };
  }

  it('asks apt once for both packages, then not again while apt\'s inputs are the same', () => {
    dir = mkdtempSync(join(tmpdir(), 'tsvmm-apt-'));
    const memo = join(dir, 'apt-candidates.json');
    const apt = counting(POLICY);
    const first = aptCandidates(PACKAGES, memo, apt.query, () => 'lists-v1');
    const second = aptCandidates(PACKAGES, memo, apt.query, () => 'lists-v1');
    expect(apt.calls).toEqual([PACKAGES]);
    expect(second).toEqual(first);
    expect(first['linux-source-6.1']).toBe('6.1.192-3');
  });

  it('asks again after apt-get update changed the lists', () => {
    dir = mkdtempSync(join(tmpdir(), 'tsvmm-apt-'));
    const memo = join(dir, 'apt-candidates.json');
    aptCandidates(PACKAGES, memo, counting(POLICY).query, () => 'lists-v1');
    const apt = counting(POLICY.replace('6.1.192-3', '6.1.193-1'));
    expect(aptCandidates(PACKAGES, memo, apt.query, () => 'lists-v2')['linux-source-6.1']).toBe('6.1.193-1');
    expect(apt.calls).toHaveLength(1);
  });

  it('does not remember an answer without a candidate (no apt lists yet)', () => {
    dir = mkdtempSync(join(tmpdir(), 'tsvmm-apt-'));
    const memo = join(dir, 'apt-candidates.json');
    const apt = counting('');
    aptCandidates(PACKAGES, memo, apt.query, () => 'lists-v1');
    aptCandidates(PACKAGES, memo, apt.query, () => 'lists-v1');
    expect(apt.calls).toHaveLength(2);
  });

  it('asks apt when the memo file is damaged, and replaces it', () => {
    dir = mkdtempSync(join(tmpdir(), 'tsvmm-apt-'));
    const memo = join(dir, 'apt-candidates.json');
    writeFileSync(memo, '{"key": ');
    const apt = counting(POLICY);
    expect(aptCandidates(PACKAGES, memo, apt.query, () => 'lists-v1')['busybox-static']).toBe('1:1.35.0-4+deb12u1+b1');
    expect(apt.calls).toHaveLength(1);
    expect(JSON.parse(readFileSync(memo, 'utf8')).versions['busybox-static']).toBe('1:1.35.0-4+deb12u1+b1');
  });

  it('asks apt when the memo has the right key but not every package as a version', () => {
    dir = mkdtempSync(join(tmpdir(), 'tsvmm-apt-'));
    const memo = join(dir, 'apt-candidates.json');
    writeFileSync(memo, JSON.stringify({ key: `lists-v1 ${PACKAGES.join(' ')}`, versions: { 'linux-source-6.1': 7 } }));
    const apt = counting(POLICY);
    expect(aptCandidates(PACKAGES, memo, apt.query, () => 'lists-v1')['linux-source-6.1']).toBe('6.1.192-3');
    expect(apt.calls).toHaveLength(1);
  });

  it('fingerprints this host\'s apt inputs the same way twice', () => {
    expect(aptInputsFingerprint()).toBe(aptInputsFingerprint());
  });
});
