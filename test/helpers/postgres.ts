import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
} from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Client, escapeIdentifier, escapeLiteral } from 'pg';
import { inject } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the run's shared server (postgres-global-setup.ts); empty when there is none. */
    postgresUrl: string;
    /** Why there is no shared server, when it failed to start; testDatabase() throws it. */
    postgresError: string;
  }
}

/** A private PostgreSQL server for tests: initdb into a temp dir, listening on 127.0.0.1 on a free port. */
export interface TestPostgres {
  /** Superuser URL of the `postgres` database, e.g. postgres://postgres@127.0.0.1:PORT/postgres (trust auth, no password). */
  readonly url: string;
  readonly port: number;
  /** The temp dir: `data/` (the cluster), the Unix socket and `postgres.log`, for a test to look into. */
  readonly dir: string;
  /** Creates a new empty database with a unique name and returns its URL. */
  createDatabase(prefix?: string): Promise<string>;
  /** Stops the server (fast shutdown: SIGINT to the postmaster) and resolves once it is down. Data kept. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it and removes its directory. Idempotent. */
  close(): Promise<void>;
}

/** The server binaries, both from one directory so that initdb and postgres are the same release. */
export interface PostgresBinaries {
  initdb: string;
  postgres: string;
}

const MISSING_BINARIES =
  "PostgreSQL server binaries not found (initdb): install Debian's `postgresql` package (`.ci/run` does) or set PDRELAY_TEST_POSTGRES_URL";

const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 20_000;
const PORT_ATTEMPTS = 5;

/**
 * Finds initdb and postgres: on PATH first, else in the highest version under
 * /usr/lib/postgresql/<version>/bin, where Debian puts them (not on PATH). Throws the error that says
 * what to install: a test that needs PostgreSQL must fail without it, never skip.
 */
export function findPostgresBinaries(search: { path?: string; libDir?: string } = {}): PostgresBinaries {
  const pathDirs = (search.path ?? process.env.PATH ?? '').split(delimiter).filter(Boolean);
  const initdb = pathDirs.map((d) => join(d, 'initdb')).find(isExecutable);
  if (initdb) {
    // /usr/local/bin/initdb may be a link into /usr/lib/postgresql/15/bin: take postgres from there.
    const beside = join(dirname(realpathSync(initdb)), 'postgres');
    const postgres = isExecutable(beside)
      ? beside
      : pathDirs.map((d) => join(d, 'postgres')).find(isExecutable);
    if (postgres) return { initdb, postgres };
  }
  const libDir = search.libDir ?? '/usr/lib/postgresql';
  const versions = existsSync(libDir) ? readdirSync(libDir).filter((v) => /^\d+(\.\d+)?$/.test(v)) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const bin = join(libDir, version, 'bin');
    const found = { initdb: join(bin, 'initdb'), postgres: join(bin, 'postgres') };
    if (isExecutable(found.initdb) && isExecutable(found.postgres)) return found;
  }
  throw new Error(MISSING_BINARIES);
}

/**
 * Starts a private server (initdb, then postgres on a free port of 127.0.0.1) and resolves once it
 * accepts connections. `fsync` is on by default, so that a test killing the server sees what
 * production would; turn it off for speed where durability is not under test.
 */
export async function startPostgres(opts: { fsync?: boolean } = {}): Promise<TestPostgres> {
  const binaries = findPostgresBinaries();
  const owner = postgresOwner();
  const dir = mkdtempSync(join(tmpdir(), 'pd-relay-pg-'));
  // From now on, so that a process killed during initdb leaves no directory behind either.
  watchdogNote({ dir, pid: null });
  let server: Server | undefined;
  try {
    if (owner) {
      chownSync(dir, owner.uid, owner.gid);
      assertReachable(dir, owner);
    }
    const logPath = join(dir, 'postgres.log');
    closeSync(openSync(logPath, 'a'));
    if (owner) chownSync(logPath, owner.uid, owner.gid);
    await initdb(binaries.initdb, join(dir, 'data'), owner);
    server = new Server(binaries.postgres, dir, owner, opts.fsync ?? true);
    await server.launchOnFreePort();
    return server;
  } catch (error) {
    if (server) await server.close();
    else {
      rmSync(dir, { recursive: true, force: true });
      watchdogNote({ dir, closed: true });
    }
    throw error;
  }
}

/**
 * A database for one test file: on the server named by PDRELAY_TEST_POSTGRES_URL when set (a URL
 * with rights to CREATE DATABASE), else on the server that postgres-global-setup.ts started for the
 * whole run. Returns the new database's URL and a drop(), which terminates the connections still
 * open to it (WITH (FORCE)): end your pools first, or their clients emit 'error'.
 */
export async function testDatabase(prefix = 'test'): Promise<{ url: string; drop(): Promise<void> }> {
  const base = process.env.PDRELAY_TEST_POSTGRES_URL || sharedServerUrl();
  const { url, name } = await createDatabaseOn(base, prefix);
  return {
    url,
    drop: async () => {
      await withClient(base, (client) =>
        client.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`),
      );
    },
  };
}

/**
 * A login role of its own on the server of `dbUrl` (a superuser URL, as testDatabase() gives),
 * owning nothing and granted nothing beyond PUBLIC's: what a least-privileged relay user may do.
 * `url` is `dbUrl` as that role, `password` in it (the test servers trust 127.0.0.1 and never ask
 * for it; a PDRELAY_TEST_POSTGRES_URL server may). drop() drops what the role owns in that
 * database, then the role (roles belong to the whole server).
 */
export async function testRole(
  dbUrl: string,
  password: string,
): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `relay_${randomBytes(6).toString('hex')}`;
  await withClient(dbUrl, (client) =>
    client.query(`CREATE ROLE ${escapeIdentifier(name)} LOGIN PASSWORD ${escapeLiteral(password)}`),
  );
  const url = new URL(dbUrl);
  url.username = name;
  url.password = password;
  return {
    name,
    url: url.href,
    drop: () =>
      withClient(dbUrl, async (client) => {
        await client.query(`DROP OWNED BY ${escapeIdentifier(name)}`);
        await client.query(`DROP ROLE ${escapeIdentifier(name)}`);
      }),
  };
}

function sharedServerUrl(): string {
  const url = inject('postgresUrl');
  if (url) return url;
  throw new Error(
    inject('postgresError') ||
      'Expected the URL of the shared PostgreSQL server from test/helpers/postgres-global-setup.ts, got none: is it in vitest.config.ts test.globalSetup?',
  );
}

/** Who runs initdb and postgres when we are root, which PostgreSQL refuses to run as. */
interface Owner {
  uid: number;
  gid: number;
}

function postgresOwner(): Owner | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    throw new Error(
      "Expected a `postgres` user to run PostgreSQL as (it refuses to run as root), got none: install Debian's `postgresql` package or run the tests as another user",
    );
  }
}

// initdb and postgres run as the postgres user, which must be able to walk down to the directory
// that mkdtemp made under os.tmpdir() (a TMPDIR under /root would not do).
function assertReachable(dir: string, owner: Owner): void {
  for (let up = dirname(dir); ; up = dirname(up)) {
    const { mode, uid, gid } = statSync(up);
    const searchable =
      mode & 0o001 || (uid === owner.uid && mode & 0o100) || (gid === owner.gid && mode & 0o010);
    if (!searchable) {
      throw new Error(
        `Expected the postgres user to be able to reach ${dir}, got ${up} with mode ${(mode & 0o777).toString(8)}: set TMPDIR to a directory that others can traverse, such as /tmp`,
      );
    }
    if (up === dirname(up)) return;
  }
}

async function initdb(binary: string, dataDir: string, owner: Owner | undefined): Promise<void> {
  // --no-sync: a test cluster that a power cut loses is simply made again.
  const args = ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'];
  try {
    await promisify(execFile)(binary, args, { ...owner, env: childEnv() });
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`Expected ${binary} to create ${dataDir}, got ${String(error)}\n${stdout}${stderr}`);
  }
}

function childEnv(): NodeJS.ProcessEnv {
  // Messages in English, so that "Address already in use" can be recognised in the log.
  return { ...process.env, LC_ALL: 'C', LANG: 'C' };
}

type Exit = { code: number | null; signal: NodeJS.Signals | null } | { error: Error };

class PortInUse extends Error {}

class Server implements TestPostgres {
  port = 0;
  private child: ChildProcess | undefined;
  private exited: Promise<Exit> | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly binary: string,
    readonly dir: string,
    private readonly owner: Owner | undefined,
    private readonly fsync: boolean,
  ) {}

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  async createDatabase(prefix = 'test'): Promise<string> {
    return (await createDatabaseOn(this.url, prefix)).url;
  }

  async launchOnFreePort(): Promise<void> {
    // Between closing the probe socket and postgres binding the port, another process may take it.
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort();
      try {
        return await this.launch();
      } catch (error) {
        if (!(error instanceof PortInUse) || attempt === PORT_ATTEMPTS) throw error;
      }
    }
  }

  async start(): Promise<void> {
    if (this.closing) throw new Error(`Expected an open TestPostgres, got one closed (${this.dir})`);
    if (!this.child) await this.launch();
  }

  async stop(): Promise<void> {
    const { child, exited } = this;
    if (!child || !exited) return;
    // Unreferenced while it runs (see launch()), but a script whose last step is awaiting stop()
    // must not end before the server has.
    child.ref();
    // SIGINT is PostgreSQL's fast shutdown: roll back open transactions, disconnect, checkpoint.
    child.kill('SIGINT');
    const timeout = new AbortController();
    const timedOut = sleep(STOP_TIMEOUT_MS, undefined, { ref: false, signal: timeout.signal }).catch(
      () => undefined,
    );
    const exit = await Promise.race([exited, timedOut]);
    timeout.abort();
    if (!exit) {
      child.kill('SIGQUIT');
      await exited;
    }
    if (!exit) {
      throw new Error(
        `Expected PostgreSQL on port ${this.port} to stop within ${STOP_TIMEOUT_MS / 1000} s of SIGINT (fast shutdown), got no exit: sent SIGQUIT\n${this.logTail(0)}`,
      );
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.stop();
      } finally {
        rmSync(this.dir, { recursive: true, force: true });
        live.delete(this);
        watchdogNote({ dir: this.dir, closed: true });
      }
    })();
    return this.closing;
  }

  /** Kills the postmaster at once, for process 'exit', where nothing asynchronous runs any more. */
  killSync(): void {
    // SIGQUIT (immediate shutdown) rather than SIGKILL: the postmaster takes its backends with it.
    this.child?.kill('SIGQUIT');
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async launch(): Promise<void> {
    const logPath = join(this.dir, 'postgres.log');
    const logFrom = statSync(logPath).size;
    const log = openSync(logPath, 'a');
    const args = [
      ['-D', join(this.dir, 'data')],
      ['-p', String(this.port)],
      // The socket in our own directory, so that nothing touches /var/run/postgresql.
      ['-k', this.dir],
      ['-c', 'listen_addresses=127.0.0.1'],
      ['-c', `fsync=${this.fsync ? 'on' : 'off'}`],
      ['-c', 'max_connections=200'],
      ['-c', 'shared_buffers=32MB'],
    ].flat();
    let child: ChildProcess;
    try {
      child = spawn(this.binary, args, { ...this.owner, env: childEnv(), stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    // The server must not keep a test process alive; process 'exit' and the watchdog stop it.
    child.unref();
    const state: { exit?: Exit } = {};
    const exited = new Promise<Exit>((resolve) => {
      // Here rather than in stop(), so that a server that died by itself can be start()ed again.
      const settle = (exit: Exit) => {
        state.exit = exit;
        if (this.child === child) {
          this.child = undefined;
          this.exited = undefined;
          watchdogNote({ dir: this.dir, pid: null });
        }
        resolve(exit);
      };
      child.once('error', (error) => settle({ error }));
      child.once('exit', (code, signal) => settle({ code, signal }));
    });
    this.child = child;
    this.exited = exited;
    live.add(this);
    ensureExitHook();
    if (child.pid !== undefined) watchdogNote({ dir: this.dir, pid: child.pid });

    const deadline = Date.now() + READY_TIMEOUT_MS;
    let lastError: unknown;
    while (!state.exit) {
      try {
        await withClient(this.url, (client) => client.query('SELECT 1'), { connectionTimeoutMillis: 1_000 });
        return;
      } catch (error) {
        // ECONNREFUSED until it listens, then 57P03 "the database system is starting up".
        lastError = error;
      }
      if (Date.now() > deadline) {
        await this.stop().catch(() => {});
        throw new Error(
          `Expected PostgreSQL to accept connections on 127.0.0.1:${this.port} within ${READY_TIMEOUT_MS / 1000} s, got ${String(lastError)}\n${this.logTail(logFrom)}`,
        );
      }
      await Promise.race([exited, sleep(50)]);
    }
    const exit = state.exit;
    const tail = this.logTail(logFrom);
    const how = 'error' in exit ? String(exit.error) : `exit code ${exit.code}, signal ${exit.signal}`;
    const message = `Expected PostgreSQL to start on 127.0.0.1:${this.port}, got ${how}\n${tail}`;
    throw tail.includes('Address already in use') ? new PortInUse(message) : new Error(message);
  }

  private logTail(from: number): string {
    const path = join(this.dir, 'postgres.log');
    const lines = readFileSync(path).subarray(from).toString('utf8').trimEnd().split('\n').slice(-30);
    return `--- last lines of ${path} ---\n${lines.join('\n')}`;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error(`Expected a TCP address from the port probe, got ${String(address)}`));
      });
    });
  });
}

async function withClient<T>(
  url: string,
  use: (client: Client) => Promise<T>,
  opts: { connectionTimeoutMillis?: number } = {},
): Promise<T> {
  const client = new Client({ connectionString: url, ...opts });
  // A connection the server drops between queries is reported as an event; the query that needs
  // it rejects anyway, so the event itself must not crash the test process.
  client.on('error', () => {});
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** CREATE DATABASE "<prefix>_<12 hex digits>" through `base`; the URL is `base` naming the new one. */
async function createDatabaseOn(base: string, prefix: string): Promise<{ url: string; name: string }> {
  // NAMEDATALEN is 64: the prefix, "_" and 12 hex digits stay well below it.
  if (!/^[a-z][a-z0-9_]{0,39}$/.test(prefix)) {
    throw new Error(
      `Expected a database name prefix of up to 40 lowercase letters, digits and _, got ${prefix}`,
    );
  }
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await withClient(base, (client) => client.query(`CREATE DATABASE ${escapeIdentifier(name)}`));
  const url = new URL(base);
  url.pathname = `/${name}`;
  return { url: url.href, name };
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Servers with a postmaster running or data on disk, for process 'exit'. */
const live = new Set<Server>();
let exitHooked = false;

function ensureExitHook(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const server of live) server.killSync();
  });
}

type WatchdogNote = { dir: string; pid: number | null } | { dir: string; closed: true };
let watchdog: ChildProcess | undefined;

// process 'exit' does not run when a signal ends the process, which is how vitest stops its
// workers: a second process, which sees our end as the end of its stdin, covers that case.
function watchdogNote(note: WatchdogNote): void {
  if (!watchdog) {
    watchdog = spawn(process.execPath, [fileURLToPath(new URL('./postgres-watchdog.mjs', import.meta.url))], {
      // Its own process group, so that the Ctrl-C which ends the run does not end it first.
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    watchdog.unref();
    (watchdog.stdin as unknown as Socket).unref();
    // A safety net only: losing it must not fail a test.
    watchdog.on('error', () => {});
    watchdog.stdin?.on('error', () => {});
  }
  watchdog.stdin?.write(`${JSON.stringify(note)}\n`);
}
