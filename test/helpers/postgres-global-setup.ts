import type { TestProject } from 'vitest/node';
import { startPostgres } from './postgres.js';

/**
 * vitest globalSetup: one PostgreSQL server for the whole run, so that each test file only pays for
 * a CREATE DATABASE (testDatabase()), not for an initdb. Skipped when PDRELAY_TEST_POSTGRES_URL
 * names a server. When it cannot start (no binaries), the run goes on: the files that need no
 * PostgreSQL pass, and testDatabase() fails with the reason.
 */
export async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  project.provide('postgresUrl', '');
  project.provide('postgresError', '');
  if (process.env.PDRELAY_TEST_POSTGRES_URL) return undefined;
  try {
    // fsync off: the shared server is for behaviour; tests that kill a server to check durability
    // start their own, with fsync on.
    const server = await startPostgres({ fsync: false });
    project.provide('postgresUrl', server.url);
    return () => server.close();
  } catch (error) {
    project.provide('postgresError', error instanceof Error ? error.message : String(error));
    return undefined;
  }
}
