import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPostgresBinaries, startPostgres, type TestPostgres, testDatabase } from './postgres.js';
import { tempDir, writeIn } from './temp.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Runs `sql` on a connection of its own and returns the rows. */
async function query(url: string, sql: string): Promise<unknown[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

// The last test's child starts its server while the others run: initdb is most of a server's
// start-up, and the two need not wait for each other.
let leaker: ReturnType<typeof startInChild>;
beforeAll(() => {
  leaker = startInChild();
});
afterAll(() => {
  leaker.child.kill('SIGKILL');
  leaker.cleanup();
});

describe('findPostgresBinaries()', () => {
  // In a hook, not at collection: a run filtered with -t collects this block without running it.
  let tmp: ReturnType<typeof tempDir>;
  beforeAll(() => {
    tmp = tempDir();
  });
  afterAll(() => tmp.cleanup());

  const fakeBin = (dir: string, names: string[]) => {
    mkdirSync(dir, { recursive: true });
    for (const name of names) {
      writeFileSync(join(dir, name), '#!/bin/sh\n');
      chmodSync(join(dir, name), 0o755);
    }
    return dir;
  };

  it('takes the highest version under the lib directory that has both binaries', () => {
    const lib = join(tmp.dir, 'lib');
    for (const version of ['9.6', '13', '16']) fakeBin(join(lib, version, 'bin'), ['initdb', 'postgres']);
    fakeBin(join(lib, '17', 'bin'), ['initdb']);
    expect(findPostgresBinaries({ path: '', libDir: lib })).toEqual({
      initdb: join(lib, '16', 'bin', 'initdb'),
      postgres: join(lib, '16', 'bin', 'postgres'),
    });
  });

  it('prefers PATH to the lib directory', () => {
    const onPath = fakeBin(join(tmp.dir, 'path-bin'), ['initdb', 'postgres']);
    expect(findPostgresBinaries({ path: `/nonexistent:${onPath}`, libDir: join(tmp.dir, 'lib') })).toEqual({
      initdb: join(onPath, 'initdb'),
      postgres: join(onPath, 'postgres'),
    });
  });

  it('says what to install when there are none', () => {
    expect(() => findPostgresBinaries({ path: '', libDir: join(tmp.dir, 'none') })).toThrow(
      "PostgreSQL server binaries not found (initdb): install Debian's `postgresql` package (`.ci/run` does) or set PDRELAY_TEST_POSTGRES_URL",
    );
  });
});

describe('startPostgres()', () => {
  let pg: TestPostgres;
  beforeAll(async () => {
    pg = await startPostgres();
  });
  afterAll(() => pg?.close());

  it('answers on 127.0.0.1 as postgres, with fsync on', async () => {
    expect(pg.url).toBe(`postgres://postgres@127.0.0.1:${pg.port}/postgres`);
    expect(await query(pg.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    expect(await query(pg.url, 'SHOW fsync')).toEqual([{ fsync: 'on' }]);
  });

  it('creates a different empty database each time', async () => {
    const a = await pg.createDatabase('spool');
    const b = await pg.createDatabase('spool');
    expect(a).not.toBe(b);
    for (const url of [a, b]) {
      const name = new URL(url).pathname.slice(1);
      expect(name).toMatch(/^spool_[0-9a-f]{12}$/);
      expect(await query(url, 'SELECT current_database() AS db')).toEqual([{ db: name }]);
      expect(
        await query(url, "SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'"),
      ).toEqual([{ n: 0 }]);
      await query(url, 'CREATE TABLE t (id int PRIMARY KEY)');
    }
  });

  it('refuses connections once stopped, says why start() failed, and keeps its data', async () => {
    const db = await pg.createDatabase();
    await query(db, 'CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept VALUES (7)');
    await pg.stop();
    expect(existsSync(join(pg.dir, 'data', 'postmaster.pid'))).toBe(false);
    await expect(query(db, 'SELECT 1')).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    const squatter = createServer().listen(pg.port, '127.0.0.1');
    await once(squatter, 'listening');
    const failure = await pg.start().then(
      () => 'started',
      (error: Error) => error.message,
    );
    squatter.close();
    expect(failure).toContain(`--- last lines of ${join(pg.dir, 'postgres.log')} ---`);
    expect(failure).toContain('Address already in use');

    await pg.start();
    expect(await query(db, 'SELECT id FROM kept')).toEqual([{ id: 7 }]);
  });

  it('removes its directory on close(), twice without complaint', async () => {
    expect(existsSync(pg.dir)).toBe(true);
    await pg.close();
    await pg.close();
    expect(existsSync(pg.dir)).toBe(false);
    await expect(query(pg.url, 'SELECT 1')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});

describe('testDatabase()', () => {
  it('creates a database on the shared server, and drop() removes it', async () => {
    const db = await testDatabase('helper');
    const name = new URL(db.url).pathname.slice(1);
    expect(await query(db.url, 'SELECT current_database() AS db')).toEqual([{ db: name }]);
    await query(db.url, 'CREATE TABLE t (id int)');
    await db.drop();
    const base = new URL(db.url);
    base.pathname = '/postgres';
    expect(await query(base.href, `SELECT datname FROM pg_database WHERE datname = '${name}'`)).toEqual([]);
    await expect(query(db.url, 'SELECT 1')).rejects.toMatchObject({ code: '3D000' });
  });
});

describe('a test process that dies without close()', () => {
  it('leaves no server and no directory behind', async () => {
    const { url, dir } = await leaker.server;
    expect(await query(url, 'SHOW fsync')).toEqual([{ fsync: 'off' }]);
    // What vitest does to its workers: no 'exit' handler runs.
    leaker.child.kill('SIGKILL');
    await once(leaker.child, 'exit');
    await expect
      .poll(async () => await query(url, 'SELECT 1').catch((error: { code?: string }) => error.code), {
        timeout: 10_000,
        interval: 100,
      })
      .toBe('ECONNREFUSED');
    await expect.poll(() => existsSync(dir), { timeout: 10_000, interval: 100 }).toBe(false);
  });
});

/** A process of its own that starts a server (fsync off), prints where, and waits to be killed. */
function startInChild(): {
  child: ChildProcess;
  server: Promise<{ url: string; dir: string }>;
  cleanup: () => void;
} {
  const { dir, cleanup } = tempDir();
  const file = writeIn(
    dir,
    'leak.mts',
    [
      `import { startPostgres } from ${JSON.stringify(join(ROOT, 'test/helpers/postgres.ts'))};`,
      'const pg = await startPostgres({ fsync: false });',
      'console.log(JSON.stringify({ url: pg.url, dir: pg.dir }));',
      'setInterval(() => {}, 1000);',
    ].join('\n'),
  );
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const server = Promise.race([
    once(child.stdout, 'data').then(([line]) => JSON.parse(String(line)) as { url: string; dir: string }),
    once(child, 'exit').then(([code]) => {
      throw new Error(
        `Expected the child to print its server's URL, got exit code ${code} (its stderr is above)`,
      );
    }),
  ]);
  // Awaited by the test; until then, a failure must not count as an unhandled rejection.
  server.catch(() => {});
  return { child, server, cleanup };
}
