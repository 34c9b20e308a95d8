import { randomUUID } from 'node:crypto';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type Config, loadConfig, type PostgresConfig } from '../config/load.js';
import { KeyRing } from '../delivery/key-ring.js';
import { formatProblem } from '../errors.js';
import { PagerDutyClient } from '../pagerduty/client.js';
import { loadRulesForConfig } from '../rules/reload.js';
import { runRuleTests } from '../rules/rule-tests.js';
import { inspectPostgres } from '../spool/postgres/inspect.js';
import type { SpoolCounts } from '../spool/spool.js';
import { SPOOL_FILE, SpoolOpenError, SqliteSpool } from '../spool/sqlite/spool.js';
import { type Command, configPath, type Io, parseCommandArgs } from './command.js';

type Status = 'ok' | 'warn' | 'skip' | 'FAIL';

/** One line of the report: `ok    spool      /data/spool.db: ...`. */
interface Finding {
  status: Status;
  check: string;
  message: string;
}

export const checkCommand: Command = {
  summary: 'Validate config, rules and spool; with --send-test, prove each routing key is accepted',
  usage: [
    'Usage: pd-relay check [--config FILE] [--send-test]',
    '',
    'Validates the configuration, the rules and the spool, and exits 1 if anything is wrong.',
    'The spool is the SQLite file in spool.dir, or with spool.postgres the PostgreSQL database:',
    'its reachability and schema version are read, nothing is created or migrated there.',
    '',
    'Options:',
    '  --config FILE  Configuration file (default: $PD_RELAY_CONFIG, else built-in defaults)',
    '  --send-test    Send each routing key a resolve for a random dedup key: PagerDuty',
    '                 accepts it (202) only for a working key, and it pages nobody',
  ].join('\n'),
  async run(args, io) {
    const { values } = parseCommandArgs(args, {
      config: { type: 'string', short: 'c' },
      'send-test': { type: 'boolean' },
    });
    // A config with problems ends here: the CLI prints every problem with its location, exit 1.
    const config = loadConfig({ file: configPath(values.config) });
    const findings: Finding[] = [configFinding(config)];
    findings.push(...rulesFindings(config));
    findings.push(await spoolFinding(config));
    if (values['send-test']) findings.push(...(await sendTest(config)));
    return report(findings, io);
  },
};

function configFinding(config: Config): Finding {
  const routes = Object.values(config.routes);
  const keys = routes.reduce((n, r) => n + r.keys.length, 0);
  const where = config.file ?? 'built-in defaults';
  return {
    status: 'ok',
    check: 'config',
    message: `${where}: ${routes.length} route${routes.length === 1 ? '' : 's'}, ${keys} key${keys === 1 ? '' : 's'}${config.dryRun ? ' (dry-run: nothing will be sent)' : ''}`,
  };
}

/** The rules `serve` would load (built-ins plus rules.paths, routes checked) and their tests: blocks. */
function rulesFindings(config: Config): Finding[] {
  const loaded = loadRulesForConfig(config);
  if (!loaded.ok) {
    return loaded.problems.map((p) => ({ status: 'FAIL', check: 'rules', message: formatProblem(p) }));
  }
  const { rules, files } = loaded.ruleSet;
  const results = runRuleTests(loaded.ruleSet);
  const failed = results.filter((r) => !r.ok);
  const findings: Finding[] = [
    {
      status: failed.length ? 'FAIL' : 'ok',
      check: 'rules',
      message: `${rules.length} rules from ${files.length} file${files.length === 1 ? '' : 's'}; ${results.length - failed.length}/${results.length} rule tests pass`,
    },
  ];
  for (const r of failed) {
    const where = `${r.location.file}:${r.location.line}:${r.location.col}`;
    findings.push({
      status: 'FAIL',
      check: 'rules',
      message: `${where} ${r.rule} › ${r.name}: ${r.failures.join('; ')}`,
    });
  }
  return findings;
}

async function spoolFinding(config: Config): Promise<Finding> {
  // spool.dir is not looked at: on Kubernetes with PostgreSQL it may well be a read-only path.
  if (config.spool.postgres) return postgresFinding(config.spool.postgres);
  const file = join(config.spool.dir, SPOOL_FILE);
  if (!existsSync(file)) {
    // Do not create it: say whether serve will be able to.
    let dir = config.spool.dir;
    while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
    if (!statSync(dir).isDirectory())
      return {
        status: 'FAIL',
        check: 'spool',
        message: `${file} cannot be created: ${dir} is not a directory`,
      };
    try {
      accessSync(dir, constants.W_OK);
      return { status: 'ok', check: 'spool', message: `${file} does not exist yet; serve will create it` };
    } catch {
      return { status: 'FAIL', check: 'spool', message: `${file} cannot be created: ${dir} is not writable` };
    }
  }
  let spool: SqliteSpool;
  try {
    spool = new SqliteSpool({ dir: config.spool.dir, busyTimeoutMs: 2000 });
  } catch (err) {
    return {
      status: 'FAIL',
      check: 'spool',
      message: err instanceof SpoolOpenError ? err.message : String(err),
    };
  }
  try {
    return countsFinding(`${file}: writable`, await spool.counts());
  } finally {
    spool.closeNow();
  }
}

/** Reachable, and the schema this binary uses or none yet; read only, nothing created or migrated. */
async function postgresFinding(pg: PostgresConfig): Promise<Finding> {
  const found = await inspectPostgres(pg);
  if ('problem' in found) return { status: 'FAIL', check: 'spool', message: found.problem };
  if (!found.counts)
    return {
      status: 'ok',
      check: 'spool',
      message: `${found.location}: reachable; no pd-relay schema yet: serve will create it`,
    };
  return countsFinding(`${found.location}: reachable, schema version ${found.schemaVersion}`, found.counts);
}

function countsFinding(where: string, c: SpoolCounts): Finding {
  const msg = `${where}, ${c.pending} pending, ${c.deadLetters} dead letter${c.deadLetters === 1 ? '' : 's'}, ${c.openAlerts} open alert${c.openAlerts === 1 ? '' : 's'}`;
  if (c.deadLetters)
    return { status: 'warn', check: 'spool', message: `${msg} (see pd-relay spool dead-letters)` };
  return { status: 'ok', check: 'spool', message: msg };
}

async function sendTest(config: Config): Promise<Finding[]> {
  const ring = new KeyRing(config.routes);
  const keys = ring.lanes();
  if (!keys.length)
    return [{ status: 'skip', check: 'send-test', message: 'dry-run: no routing keys to test' }];
  const client = new PagerDutyClient({ url: config.pagerduty.url, timeoutMs: config.pagerduty.timeoutMs });
  try {
    return await Promise.all(
      keys.map(async (k): Promise<Finding> => {
        // A resolve for a dedup key that never existed: PagerDuty validates the key, answers 202,
        // and drops the event, so nobody is paged and no incident changes.
        const r = await client.send(k.key, 'resolve', {
          event_action: 'resolve',
          dedup_key: `pd-relay-check-${randomUUID()}`,
        });
        const who = `${k.route}/${k.alias}`;
        const ms = Math.round(r.durationMs);
        switch (r.outcome) {
          case 'delivered':
            return { status: 'ok', check: 'send-test', message: `${who}: accepted (${r.status}, ${ms} ms)` };
          case 'failed':
            return {
              status: 'FAIL',
              check: 'send-test',
              message: `${who}: ${r.reason === 'bad_key' ? 'key refused' : 'event refused'} (${r.detail})`,
            };
          case 'retry':
            return {
              status: 'FAIL',
              check: 'send-test',
              message: `${who}: no answer from ${config.pagerduty.url} (${r.reason}: ${r.detail})`,
            };
          default:
            return { status: 'FAIL', check: 'send-test', message: `${who}: aborted` };
        }
      }),
    );
  } finally {
    await client.close();
  }
}

function report(findings: Finding[], io: Io): number {
  const width = Math.max(...findings.map((f) => f.check.length));
  for (const f of findings) {
    const line = `${f.status.padEnd(5)} ${f.check.padEnd(width)}  ${f.message}`;
    (f.status === 'FAIL' ? io.err : io.out)(line);
  }
  const failed = findings.filter((f) => f.status === 'FAIL').length;
  if (failed) {
    io.err(`${failed} check${failed === 1 ? '' : 's'} failed.`);
    return 1;
  }
  io.out('All checks passed.');
  return 0;
}
