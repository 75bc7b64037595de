import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    reporters: ['default', './test/plain-summary-reporter.ts'],
    // Guests run real-mode setup code under PVM's instruction emulator: allow for it.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: KVM guests in parallel files would measure each other.
    fileParallelism: false,
  },
});
