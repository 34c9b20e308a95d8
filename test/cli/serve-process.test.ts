import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RelayProcess, tempDir, writeIn } from '../helpers/relay-process.js';

const BIN = resolve(import.meta.dirname, '../../bin/pd-relay.js');

const MINIMAL = ['server: { host: 127.0.0.1, port: 0 }', 'metrics: { host: 127.0.0.1, port: 0 }', ''].join(
  '\n',
);

describe('pd-relay serve as a process', () => {
  let relay: RelayProcess | undefined;
  afterEach(async () => {
    await relay?.stop();
    relay = undefined;
  });

  it('starts, answers health checks on the SNS port and metrics on the other, and exits 0 on SIGTERM', async () => {
    relay = await RelayProcess.start({ configYaml: MINIMAL });
    const health = await fetch(`${relay.snsUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${relay.snsUrl}/readyz`);
    expect(ready.status).toBe(200);
    const metricsOnSnsPort = await fetch(`${relay.snsUrl}/metrics`);
    expect(metricsOnSnsPort.status).toBe(404);
    const metrics = await fetch(`${relay.metricsUrl}/metrics`);
    expect(await metrics.text()).toMatch(/^pdrelay_build_info\{version="[^"]+",node="[^"]+"\} 1$/m);

    relay.signal('SIGTERM');
    expect(await relay.wait()).toEqual({ code: 0, signal: null });
    expect(relay.logs.map((l) => l.msg)).toContain('Relay stopped.');
  });

  it('refuses to start on a broken config: exit 1, every problem located, nothing listening', () => {
    const { dir, cleanup } = tempDir();
    try {
      const file = writeIn(
        dir,
        'broken.yaml',
        'server:\n  port: high\nroutes:\n  default:\n    keys: ["${PD_RELAY_MISSING}"]\n',
      );
      const r = spawnSync(process.execPath, ['bin/pd-relay.js', 'serve', '--config', file], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH },
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`${file}:2:9 server.port: Expected a number, got the string "high"`);
      expect(r.stderr).toContain(
        `${file}:5:12 routes.default.keys[0]: Environment variable PD_RELAY_MISSING is not set or empty`,
      );
      expect(r.stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace for a user error
    } finally {
      cleanup();
    }
  });

  it('refuses to start on broken rules: exit 1, every problem of every rule', () => {
    const { dir, cleanup } = tempDir();
    try {
      const rules = resolve(import.meta.dirname, '../fixtures/rules/two-files');
      const file = writeIn(
        dir,
        'config.yaml',
        [
          MINIMAL,
          'routes: { default: { keys: [] }, payments: { keys: [] } }',
          `rules: { paths: [${JSON.stringify(rules)}] }`,
          `spool: { dir: ${JSON.stringify(join(dir, 'data'))} }`,
          '',
        ].join('\n'),
      );
      const r = spawnSync(process.execPath, [BIN, 'serve', '--config', file], {
        cwd: dir,
        encoding: 'utf8',
        env: { PATH: process.env.PATH },
        timeout: 15_000,
      });
      expect(r.status).toBe(1);
      const problems = r.stderr.split('\n').filter((l) => l.startsWith(rules));
      expect(problems).toEqual([
        `${rules}/a.yaml:4:16 [0].match.source[0].prefx: Unknown operator "prefx" (did you mean "prefix"?)`,
        `${rules}/a.yaml:6:3 [0].severty: Unknown key "severty" (expected one of: name, description, enabled, match, continue, fallback, for_each, route, action, dedup_key, payload, links, images, client, client_url, tests)`,
        `${rules}/b.yaml:2:10 [0].route: Unknown route "paymnets" (did you mean "payments"?); configured routes: default, payments`,
        `${rules}/b.yaml:4:15 [0].payload.summary: Liquid: tag {% if message.x %} not closed`,
      ]);
      expect(r.stderr).toContain('The rules have 4 problems; fix them and retry:');
      expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
    } finally {
      cleanup();
    }
  });

  it('refuses a second relay on the same spool.dir, takes it over once the first is killed (-9), and leaves the spool CLI usable', async () => {
    const { dir, cleanup } = tempDir();
    try {
      relay = await RelayProcess.start({ configYaml: MINIMAL, dir });
      const second = spawnSync(process.execPath, [BIN, 'serve', '--config', join(dir, 'config.yaml')], {
        cwd: dir,
        encoding: 'utf8',
        env: { PATH: process.env.PATH },
        timeout: 15_000,
      });
      expect(second.status).toBe(1);
      expect(second.stderr).toContain(
        `Another pd-relay process is serving the spool in ${join(dir, 'data')} (it holds ${join(dir, 'data', 'spool.lock')}): stop it first, or give this one its own spool.dir.`,
      );
      expect(second.stderr).not.toMatch(/at .*\.js:\d+/);
      // The spool commands are meant to run beside the relay.
      const stats = spawnSync(
        process.execPath,
        [BIN, 'spool', 'stats', '--config', join(dir, 'config.yaml')],
        {
          cwd: dir,
          encoding: 'utf8',
          env: { PATH: process.env.PATH },
        },
      );
      expect(stats.status).toBe(0);
      // The kernel drops the lock of a killed process: a restart does not wait for anything.
      relay.signal('SIGKILL');
      await relay.wait();
      relay = await RelayProcess.start({ configYaml: MINIMAL, dir });
      expect((await fetch(`${relay.snsUrl}/readyz`)).status).toBe(200);
    } finally {
      await relay?.stop();
      relay = undefined;
      cleanup();
    }
  });

  it('reads the config path from PD_RELAY_CONFIG', () => {
    const { dir, cleanup } = tempDir();
    try {
      const file = writeIn(dir, 'c.yaml', 'log:\n  level: chatty\n');
      const r = spawnSync(process.execPath, ['bin/pd-relay.js', 'serve'], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, PD_RELAY_CONFIG: file },
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`${file}:2:10 log.level: Expected one of`);
    } finally {
      cleanup();
    }
  });
});
