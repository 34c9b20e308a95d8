import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Tests bind real sockets on 127.0.0.1 with port 0, so files can run in parallel.
    fileParallelism: true,
    // One PostgreSQL server for the run; test files take a database of their own (testDatabase()).
    globalSetup: ['test/helpers/postgres-global-setup.ts'],
  },
});
