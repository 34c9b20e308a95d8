import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/pd-relay.js');

/** One JSON log line the relay wrote. */
export type LogLine = Record<string, unknown> & { level: string; msg: string };

/**
 * A real `pd-relay serve` child process (the built dist/, as users run it), with its log lines
 * parsed and kept. Ports come from its "Relay started." line, so configs can use port 0.
 */
export class RelayProcess {
  readonly logs: LogLine[] = [];
  /** Raw stdout+stderr text, for no-secret assertions. */
  output = '';
  snsUrl = '';
  metricsUrl = '';
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: Array<{ test: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];

  private constructor(readonly child: ChildProcess) {
    this.exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }));
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        this.output += `${line}\n`;
        let parsed: LogLine;
        try {
          parsed = JSON.parse(line) as LogLine;
        } catch {
          return;
        }
        this.logs.push(parsed);
        this.waiters = this.waiters.filter((w) => {
          if (!w.test(parsed)) return true;
          w.resolve(parsed);
          return false;
        });
      });
    }
  }

  /**
   * Starts the relay with `configYaml` written to a temp file and waits until it listens.
   * `env` is added to a minimal environment (PATH, NODE_EXTRA_CA_CERTS when given).
   */
  static async start(opts: {
    configYaml: string;
    env?: Record<string, string>;
    dir?: string;
    timeoutMs?: number;
  }): Promise<RelayProcess> {
    const ownDir = opts.dir === undefined;
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'pd-relay-proc-'));
    const configFile = join(dir, 'config.yaml');
    writeFileSync(configFile, opts.configYaml);
    const child = spawn(process.execPath, [BIN, 'serve', '--config', configFile], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const relay = new RelayProcess(child);
    // A directory this helper made is its own to remove; a caller's directory is the caller's.
    if (ownDir) void relay.exited.then(() => rmSync(dir, { recursive: true, force: true }));
    const started = await Promise.race([
      relay.waitForLog((l) => l.msg.startsWith('Relay started'), opts.timeoutMs ?? 15_000),
      relay.exited.then(({ code }) => {
        throw new Error(`pd-relay exited with code ${code} before listening:\n${relay.output}`);
      }),
    ]);
    relay.snsUrl = String(started.sns).replace('0.0.0.0', '127.0.0.1');
    relay.metricsUrl = String(started.metrics).replace('0.0.0.0', '127.0.0.1');
    return relay;
  }

  /** Resolves with the first log line (already seen or future) that passes `test`. */
  waitForLog(test: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    const seen = this.logs.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`No matching log line within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiters.push({
        test,
        resolve: (l) => {
          clearTimeout(timer);
          resolvePromise(l);
        },
      });
    });
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** Waits for the process to exit (after a signal, or by itself). */
  wait(timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return Promise.race([
      this.exited,
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`pd-relay did not exit within ${timeoutMs} ms`)),
          timeoutMs,
        ).unref(),
      ),
    ]);
  }

  /** SIGTERM and wait; SIGKILL if it does not stop in time. Safe to call twice. */
  async stop(timeoutMs = 20_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.signal('SIGTERM');
    try {
      await this.wait(timeoutMs);
    } catch {
      this.signal('SIGKILL');
      await this.exited;
    }
  }
}

export { tempDir, writeIn } from './temp.js';
