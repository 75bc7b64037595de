// A device reads and writes its state through the views object on every
// exit, so the object must stay a plain fast-properties object: views built
// by adding properties under computed names fall into V8's dictionary mode,
// where each access is a hash lookup (it made the PIT's port reads 5x slower).
// V8's own predicate says which mode an object is in; it needs
// --allow-natives-syntax, hence a child node.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('DeviceStateLayout.views', () => {
  it('gives an object in V8\'s fast-properties mode, also for a layout of many fields', () => {
    const script = `
      import { DeviceStateLayout } from ${JSON.stringify(new URL('../../src/devices/device-state.ts', import.meta.url).href)};
      const fields = {};
      for (let i = 0; i < 40; i++) fields['field' + i] = ['u8', 1];
      const layout = new DeviceStateLayout('many', 1, fields);
      console.log(%HasFastProperties(layout.views(layout.create())));
    `;
    const out = execFileSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)), // where tsx is installed
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out.trim()).toBe('true');
  });
});
