import { defineConfig } from 'vitest/config';

// GPU tests: run on a machine with an NVIDIA GPU (`npm run test:gpu`); each suite reports itself
// skipped, with the reason, where there is none.
export default defineConfig({
  test: {
    include: ['test/gpu/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
