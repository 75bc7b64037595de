// `npm run test:boots`: the tests that need a Linux boot of their own, kept
// out of the default suite so that `npm test` boots Linux once.
import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

export default defineConfig({
  test: { ...base.test, include: ['test/boots/**/*.boot.ts'] },
});
