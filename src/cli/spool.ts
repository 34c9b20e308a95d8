import { type Config, loadConfig } from '../config/load.js';
import { KeyRing } from '../delivery/key-ring.js';
import type { AlertEventBody } from '../pagerduty/types.js';
import { openAdminSpool } from '../spool/open.js';
import type { DeadLetter, Spool } from '../spool/spool.js';
import { type Command, configPath, type Io, parseCommandArgs, UsageError } from './command.js';

const USAGE = [
  'Usage: pd-relay spool <subcommand> [--config FILE] [options]',
  '',
  'Inspect and repair the spool: the SQLite file in spool.dir, or with spool.postgres the',
  'PostgreSQL database every replica shares. Safe while relays run; never creates or migrates it.',
  '',
  'Subcommands:',
  '  stats                 Pending events per route and key, oldest age, dead letters',
  '  dead-letters          List dead letters with their reason (--json, --limit N)',
  '  retry-dead-letters    Queue dead letters again (all, or --id ID, repeatable);',
  '                        a running relay picks them up within a second (on',
  '                        PostgreSQL, the replica that owns their key, notified at once)',
  '  discard-dead-letters  Delete dead letters for good (--id ID, repeatable, or --all)',
  '',
  'Options:',
  '  --config FILE  Configuration file (default: $PD_RELAY_CONFIG, else built-in defaults)',
  '  --json         Machine-readable output (stats, dead-letters)',
  '  --limit N      Show at most N dead letters',
  '  --id ID        A dead letter to retry or discard (repeatable)',
  '  --all          Discard every dead letter',
].join('\n');

export const spoolCommand: Command = {
  summary: 'Spool stats, dead letters, and retrying them (works while the relay runs)',
  usage: USAGE,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(
      args,
      {
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean' },
        limit: { type: 'string' },
        id: { type: 'string', multiple: true },
        all: { type: 'boolean' },
      },
      { positionals: true },
    );
    const [sub, ...extra] = positionals;
    if (extra.length) throw new UsageError(`Unexpected argument '${extra[0]}'.`);
    if (!SUBCOMMANDS.includes(sub as (typeof SUBCOMMANDS)[number])) {
      throw new UsageError(
        sub === undefined
          ? 'Expected a subcommand.'
          : `Expected stats, dead-letters, retry-dead-letters or discard-dead-letters, got "${sub}".`,
      );
    }
    if (values.id && sub !== 'retry-dead-letters' && sub !== 'discard-dead-letters')
      throw new UsageError('--id goes with retry-dead-letters and discard-dead-letters.');
    if (values.all && sub !== 'discard-dead-letters')
      throw new UsageError('--all goes with discard-dead-letters.');
    // Discarding cannot be undone: it never defaults to everything.
    if (sub === 'discard-dead-letters' && !values.id === !values.all)
      throw new UsageError(
        'Expected --id ID (repeatable) or --all: discarding dead letters cannot be undone.',
      );
    if (values.limit !== undefined && sub !== 'dead-letters')
      throw new UsageError('--limit goes with dead-letters.');
    const limit = values.limit === undefined ? undefined : positiveInt('--limit', values.limit);
    const ids = values.id?.map((v) => positiveInt('--id', v));

    const config = loadConfig({ file: configPath(values.config) });
    const ring = new KeyRing(config.routes);
    if (sub === 'retry-dead-letters') return retry(config, ids, io);
    if (sub === 'discard-dead-letters') return discard(config, ids, io);
    const spool = await openAdminSpool(config, { write: false });
    try {
      return sub === 'stats'
        ? await stats(spool, ring, io, values.json ?? false)
        : await deadLetters(spool, ring, io, values.json ?? false, limit);
    } finally {
      await spool.close();
    }
  },
};

const SUBCOMMANDS = ['stats', 'dead-letters', 'retry-dead-letters', 'discard-dead-letters'] as const;

function positiveInt(flag: string, value: string): number {
  if (!/^[1-9]\d*$/.test(value))
    throw new UsageError(`Expected ${flag} to be a positive integer, got "${value}".`);
  return Number(value);
}

async function stats(spool: Spool, ring: KeyRing, io: Io, json: boolean): Promise<number> {
  const now = Date.now();
  const counts = await spool.counts();
  const groups = (await spool.pendingGroups()).map((g) => ({
    route: g.route,
    key: ring.aliasOf(g.keyFp),
    count: g.count,
    oldestAgeSeconds: Math.max(0, Math.round((now - g.oldestReceivedAt) / 1000)),
    headAttempts: g.headAttempts,
    nextAttemptAt: g.nextAttemptAt > now ? new Date(g.nextAttemptAt).toISOString() : null,
  }));
  const oldest = groups.reduce((m, g) => Math.max(m, g.oldestAgeSeconds), 0);
  if (json) {
    io.out(
      JSON.stringify(
        {
          spool: spool.location,
          schema: spool.schemaVersion,
          pending: { total: counts.pending, oldestAgeSeconds: counts.pending ? oldest : null, groups },
          deadLetters: { total: counts.deadLetters, byReason: counts.deadLettersByReason },
          openAlerts: counts.openAlerts,
          messageIds: counts.messageIds,
        },
        null,
        2,
      ),
    );
    return 0;
  }
  // Not "(schema N)": a PostgreSQL location names its schema already.
  io.out(`Spool: ${spool.location}, schema version ${spool.schemaVersion}`);
  io.out(
    counts.pending
      ? `Pending: ${counts.pending} event${counts.pending === 1 ? '' : 's'}, oldest ${formatDuration(oldest)}`
      : 'Pending: none',
  );
  if (groups.length) {
    const rows = groups.map((g) => [
      g.route,
      g.key,
      String(g.count),
      formatDuration(g.oldestAgeSeconds),
      String(g.headAttempts),
      g.nextAttemptAt
        ? `in ${formatDuration(Math.round((Date.parse(g.nextAttemptAt) - now) / 1000))}`
        : 'now',
    ]);
    for (const line of table(['ROUTE', 'KEY', 'PENDING', 'OLDEST', 'HEAD ATTEMPTS', 'NEXT ATTEMPT'], rows))
      io.out(`  ${line}`);
  }
  const reasons = Object.entries(counts.deadLettersByReason)
    .map(([r, n]) => `${r} ${n}`)
    .join(', ');
  io.out(`Dead letters: ${counts.deadLetters}${reasons ? ` (${reasons})` : ''}`);
  io.out(`Open alerts: ${counts.openAlerts}`);
  io.out(`SNS MessageIds remembered: ${counts.messageIds}`);
  return 0;
}

async function deadLetters(
  spool: Spool,
  ring: KeyRing,
  io: Io,
  json: boolean,
  limit: number | undefined,
): Promise<number> {
  const letters = await spool.deadLetters(limit === undefined ? {} : { limit });
  if (json) {
    io.out(JSON.stringify({ deadLetters: letters.map((d) => describe(d, ring)) }, null, 2));
    return 0;
  }
  if (!letters.length) {
    io.out('No dead letters.');
    return 0;
  }
  for (const d of letters) {
    const x = describe(d, ring);
    io.out(
      `#${x.id}  ${x.deadAt}  ${x.reason}  ${x.route}/${x.key}  ${x.action}${x.dedupKey ? `  dedup_key=${x.dedupKey}` : ''}  attempts=${x.attempts}`,
    );
    io.out(`    ${x.detail}`);
    if (x.summary) io.out(`    summary: ${x.summary}`);
  }
  io.out(
    `${letters.length} dead letter${letters.length === 1 ? '' : 's'}; retry with: pd-relay spool retry-dead-letters [--id ID]`,
  );
  return 0;
}

function describe(d: DeadLetter, ring: KeyRing) {
  const summary = (d.body as AlertEventBody).payload?.summary;
  return {
    id: d.id,
    deadAt: new Date(d.deadAt).toISOString(),
    reason: d.reason,
    detail: d.detail,
    route: d.route,
    key: ring.aliasOf(d.keyFp),
    action: d.action,
    dedupKey: d.dedupKey,
    attempts: d.attempts,
    receivedAt: new Date(d.receivedAt).toISOString(),
    messageId: d.messageId,
    rule: d.rule,
    summary: typeof summary === 'string' ? summary : null,
    body: d.body,
  };
}

function retry(config: Config, ids: number[] | undefined, io: Io): Promise<number> {
  return onDeadLetters(config, ids, io, (spool, found) => spool.retryDeadLetters(found), {
    none: 'No dead letters to retry.',
    done: (n) =>
      `Queued ${n} dead letter${n === 1 ? '' : 's'} again: a running relay picks ${n === 1 ? 'it' : 'them'} up within a second, else the next start does.`,
  });
}

function discard(config: Config, ids: number[] | undefined, io: Io): Promise<number> {
  return onDeadLetters(config, ids, io, (spool, found) => spool.discardDeadLetters(found), {
    none: 'No dead letters to discard.',
    done: (n) => `Discarded ${n} dead letter${n === 1 ? '' : 's'} for good.`,
  });
}

/**
 * Retry or discard: `act` on the dead letters asked for (all when `ids` is undefined); each id
 * that is not a dead letter is reported, and makes the exit code 1.
 */
async function onDeadLetters(
  config: Config,
  ids: number[] | undefined,
  io: Io,
  act: (spool: Spool, ids: number[] | undefined) => Promise<number>,
  say: { none: string; done: (n: number) => string },
): Promise<number> {
  const spool = await openAdminSpool(config, { write: true });
  try {
    const found = ids ? new Set((await spool.deadLetters({ ids })).map((d) => d.id)) : undefined;
    const missing = ids ? ids.filter((id) => !found?.has(id)) : [];
    const n = await act(
      spool,
      ids?.filter((id) => !missing.includes(id)),
    );
    for (const id of missing) io.err(`No dead letter with id ${id}.`);
    if (n === 0 && !missing.length) {
      io.out(say.none);
      return 0;
    }
    if (n) io.out(say.done(n));
    return missing.length ? 1 : 0;
  } finally {
    await spool.close();
  }
}

/** 75 → "1m 15s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}
