import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { formatProblem } from '../../src/errors.js';

const PASSWORD = 's3cret-Pa55word-of-the-database';
const dir = mkdtempSync(join(tmpdir(), 'pd-relay-pgconf-'));
writeFileSync(join(dir, 'db-url'), `postgres://relay:${PASSWORD}@db.internal:6432/alerts\n`);
writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\n');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function parse(yaml: string) {
  return parseConfig(yaml, 'c.yaml', { env: { DB_PASSWORD: PASSWORD }, baseDir: dir });
}

describe('config: spool.postgres', () => {
  it('reads the URL from a file, with defaults that work on RDS, and keeps the password a secret', () => {
    const { config, problems } = parse('spool:\n  postgres:\n    urlFile: db-url\n');
    expect(problems).toEqual([]);
    const pg = config?.spool.postgres;
    expect(pg).toMatchObject({
      host: 'db.internal',
      port: 6432,
      database: 'alerts',
      user: 'relay',
      display: 'postgres://relay@db.internal:6432/alerts',
      schema: 'pdrelay',
      poolSize: 8,
      statementTimeoutMs: 5000,
      connectTimeoutMs: 5000,
      sslmode: 'require',
    });
    expect(pg?.password.reveal()).toBe(PASSWORD);
    const shown = [JSON.stringify(config), inspect(config, { depth: 10 }), String(pg?.password)].join('\n');
    expect(shown).not.toContain(PASSWORD);
  });

  it('takes sslmode and the CA file from the URL as libpq does, and ${ENV} in the URL', () => {
    const { config, problems } = parse(
      'spool:\n  postgres:\n    url: "postgresql://relay:${DB_PASSWORD}@[::1]/alerts?sslmode=verify-full&sslrootcert=ca.pem&application_name=pd-relay-a"\n',
    );
    expect(problems).toEqual([]);
    expect(config?.spool.postgres).toMatchObject({
      host: '::1',
      port: 5432,
      sslmode: 'verify-full',
      caFile: join(dir, 'ca.pem'),
      applicationName: 'pd-relay-a',
    });
    expect(config?.spool.postgres?.password.reveal()).toBe(PASSWORD);
  });

  it.each([
    [
      'neither url nor urlFile',
      'postgres: { schema: relay }',
      'c.yaml:2:13 spool.postgres: Expected exactly one of url or urlFile',
    ],
    [
      'both url and urlFile',
      'postgres: { url: "postgres://a@h/d", urlFile: db-url }',
      'c.yaml:2:13 spool.postgres: Expected exactly one of url or urlFile',
    ],
    [
      'not a URL',
      `postgres: { url: "relay:${PASSWORD}@db" }`,
      'c.yaml:2:20 spool.postgres.url: Expected a postgres:// or postgresql:// URL, got a relay:// URL',
    ],
    [
      'another scheme',
      `postgres: { url: "mysql://relay:${PASSWORD}@db/alerts" }`,
      'c.yaml:2:20 spool.postgres.url: Expected a postgres:// or postgresql:// URL, got a mysql:// URL',
    ],
    [
      'no database',
      `postgres: { url: "postgres://relay:${PASSWORD}@db" }`,
      'c.yaml:2:20 spool.postgres.url: Expected a database name in the URL path (postgres://…@host:5432/database)',
    ],
    [
      'an option that would override the session settings',
      `postgres: { url: "postgres://relay:${PASSWORD}@db/a?options=-csearch_path%3Dx" }`,
      'c.yaml:2:20 spool.postgres.url: Unsupported URL parameter "options": use the spool.postgres keys (sslmode, caFile, statementTimeoutMs, …) instead',
    ],
    [
      'an unknown sslmode',
      'postgres: { urlFile: db-url, sslmode: prefer }',
      'c.yaml:2:41 spool.postgres.sslmode: Expected one of "disable", "require", "verify-ca", "verify-full", got the string "prefer"',
    ],
    [
      'a CA file with an sslmode that does not check it',
      'postgres: { urlFile: db-url, caFile: ca.pem }',
      'c.yaml:2:40 spool.postgres.caFile: A CA file is only checked with sslmode verify-ca or verify-full, got require: set sslmode: verify-full',
    ],
    [
      'a CA file that cannot be read',
      'postgres: { urlFile: db-url, caFile: nope.pem, sslmode: verify-full }',
      'c.yaml:2:40 spool.postgres.caFile: Cannot read nope.pem: no such file',
    ],
    [
      'a schema name that would need quoting',
      'postgres: { urlFile: db-url, schema: "Relay-Prod" }',
      'c.yaml:2:40 spool.postgres.schema: Expected a schema name of lowercase letters, digits and "_" (at most 63, not starting with a digit), got the string "Relay-Prod"',
    ],
    [
      'the SQLite size cap beside PostgreSQL',
      'maxSizeMiB: 100\n  postgres: { urlFile: db-url }',
      'c.yaml:2:15 spool.maxSizeMiB: spool.maxSizeMiB caps the SQLite spool only: remove it, or size the PostgreSQL database instead',
    ],
  ])('refuses %s, never echoing the URL', (_name, section, expected) => {
    const { config, problems } = parse(`spool:\n  ${section}\n`);
    const lines = problems.map(formatProblem);
    expect(config).toBeUndefined();
    expect(lines).toContain(expected);
    expect(lines.join('\n')).not.toContain(PASSWORD);
  });

  it('refuses two different sslmodes in the key and the URL', () => {
    const { problems } = parse(
      `spool:\n  postgres:\n    url: "postgres://relay:${PASSWORD}@db/a?sslmode=verify-full"\n    sslmode: disable\n`,
    );
    expect(problems.map(formatProblem)).toEqual([
      'c.yaml:4:14 spool.postgres.sslmode: Expected one sslmode, got disable here and verify-full in the URL: remove one',
    ]);
  });
});
