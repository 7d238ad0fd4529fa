import { defineConfig } from 'vitest/config';

// In CI every vitest run also writes a JSON report; .ci/run sums them into its "N passed, N failed" line.
const ci = process.env['CI'] === 'true';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The default token store of `new OAuth()` in a temporary directory per test file.
    setupFiles: ['test/setup/default-store.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Real servers on loopback: keep parallelism modest on a 2-core machine.
    maxWorkers: 2,
    reporters: ci ? ['default', 'json'] : ['default'],
    ...(ci ? { outputFile: { json: `test-artifacts/vitest-${process.pid}.json` } } : {}),
  },
});
