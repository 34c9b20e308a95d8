import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { AcceptedEvent } from '../../helpers/fake-pagerduty.js';
import type { Envelope } from '../../helpers/fake-sns.js';
import type { RelayProcess } from '../../helpers/relay-process.js';
import { lifeAction, stepOf } from './sequences.js';
import type { PostResult, SnsClient } from './sns-client.js';
import { type E2eWorld, metricValue, type RelayOptions, sleep } from './world.js';

/** One SNS delivery as SNS makes it: tries until a 2xx–4xx, on any replica, like SNS's retries. */
export interface Delivery {
  messageId: string;
  envelope: Envelope;
  /** The answer SNS finally got (null: it gave up). */
  final: PostResult | null;
  /** Every attempt, in order, with the replica slot it went to. */
  attempts: Array<PostResult & { slot: number }>;
}

/**
 * Several `pd-relay serve` processes on one PostgreSQL database behind one SNS: each delivery goes
 * to a replica picked at random, and a 5xx or no answer is tried again on another one after a
 * short pause (SNS's immediate-retry phase), until `giveUpMs`.
 */
export class Replicas {
  readonly slots: Array<RelayProcess | undefined> = [];
  readonly #clients: SnsClient[] = [];
  readonly #dirs: string[] = [];
  #random = 1;

  constructor(
    private readonly world: E2eWorld,
    private readonly opts: RelayOptions & { postgresUrl: string },
  ) {}

  /** Starts `n` replicas at once (on an empty database, they migrate it together). */
  async start(n: number): Promise<void> {
    await Promise.all(Array.from({ length: n }, (_, i) => this.startSlot(i)));
  }

  /** Starts (or restarts) the replica of slot `i`. */
  async startSlot(i: number): Promise<RelayProcess> {
    this.#dirs[i] ??= this.world.dir(`pd-relay-replica-${i}-`);
    const relay = await this.world.startRelay(this.#dirs[i] as string, this.opts);
    this.slots[i] = relay;
    this.#clients[i] ??= this.world.client(() => this.slots[i] as RelayProcess);
    return relay;
  }

  /** The slots whose process runs. */
  live(): number[] {
    return this.slots.flatMap((r, i) =>
      r && r.child.exitCode === null && r.child.signalCode === null ? [i] : [],
    );
  }

  /** Rewrites the config of slot `i` with `opts` (on top of the ones it started with) and sends SIGHUP. */
  reconfigure(i: number, opts: RelayOptions): void {
    const dir = this.#dirs[i] as string;
    writeFileSync(join(dir, 'config.yaml'), this.world.writeConfig(dir, { ...this.opts, ...opts }));
    this.slots[i]?.signal('SIGHUP');
  }

  /** SIGKILL, as a node loss does it. */
  async kill(i: number): Promise<void> {
    const relay = this.slots[i];
    if (!relay) return;
    relay.signal('SIGKILL');
    await relay.wait();
  }

  /** SIGTERM and wait: Kubernetes' rolling update. */
  async stop(i: number): Promise<void> {
    await this.slots[i]?.stop();
  }

  /** Keys each live replica dispatches now (pdrelay_delivery_keys_owned), by slot. */
  async owned(): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    for (const i of this.live()) {
      const text = await this.world.metrics(this.slots[i] as RelayProcess).catch(() => '');
      out.set(i, metricValue(text, 'pdrelay_delivery_keys_owned'));
    }
    return out;
  }

  /** Delivers `envelope` as SNS would, to any live replica, retrying 5xx and no-answers. */
  async deliver(envelope: Envelope, opts: { giveUpMs?: number; avoid?: number } = {}): Promise<Delivery> {
    const attempts: Delivery['attempts'] = [];
    const deadline = performance.now() + (opts.giveUpMs ?? 60_000);
    for (;;) {
      const live = this.live().filter((i) => i !== opts.avoid);
      const slot = live.length ? (live[this.#next() % live.length] as number) : undefined;
      if (slot !== undefined) {
        const r = await (this.#clients[slot] as SnsClient).post(envelope);
        attempts.push({ ...r, slot });
        if (r.status !== null && r.status < 500)
          return { messageId: String(envelope.MessageId), envelope, final: r, attempts };
      }
      if (performance.now() > deadline)
        return { messageId: String(envelope.MessageId), envelope, final: null, attempts };
      await sleep(100 + (this.#next() % 200));
    }
  }

  /** A small deterministic generator: the picks differ from run to run only by timing. */
  #next(): number {
    this.#random = (this.#random * 1103515245 + 12345) % 2147483648;
    return this.#random >>> 8;
  }
}

/**
 * Alarm lives (trigger, resolve, trigger, …) posted as SNS posts them: each alert's steps one after
 * the other (an alarm's state changes are minutes apart), different alerts concurrently, every
 * delivery to any replica. `during` runs alongside (a kill, a restart…) once `startAfter` deliveries
 * got their 200.
 */
export async function stormOfLives(
  world: E2eWorld,
  replicas: Replicas,
  opts: { prefix: string; alerts: number; steps: number; during?: () => Promise<void>; startAfter?: number },
): Promise<Delivery[]> {
  const deliveries: Delivery[] = [];
  let ok = 0;
  let during: Promise<void> | undefined;
  await Promise.all(
    Array.from({ length: opts.alerts }, async (_, i) => {
      for (let seq = 0; seq < opts.steps; seq++) {
        const env = world.notification({ e2e: 1, alert: `${opts.prefix}${i}`, seq, action: lifeAction(seq) });
        const d = await replicas.deliver(env);
        deliveries.push(d);
        if (d.final?.status === 200) ok++;
        if (opts.during && !during && ok >= (opts.startAfter ?? 0)) during = opts.during();
        if (d.final?.status !== 200) return;
      }
    }),
  );
  await during;
  return deliveries;
}

/** Waits until PagerDuty accepted every step of every alert at least once (duplicates aside). */
export async function waitForEveryStep(
  world: E2eWorld,
  opts: { prefix: string; alerts: number; steps: number },
  timeoutMs = 60_000,
): Promise<void> {
  // Steps of one alert, a request repeated right after itself (a failover's duplicate) counted once.
  const distinct = () => {
    const last = new Map<string, string>();
    let n = 0;
    for (const e of world.pd.accepted) {
      const key = String(e.dedupKey);
      if (!key.startsWith(`e2e/${opts.prefix}`)) continue;
      const step = stepOf(e);
      if (last.get(key) !== step) n++;
      last.set(key, step);
    }
    return n;
  };
  try {
    await world.pd.waitFor(
      () => distinct() >= opts.alerts * opts.steps,
      timeoutMs,
      'every step of every alert',
    );
  } catch (err) {
    // Say which alerts are short, and what the relays logged about them.
    const have = new Map<string, string[]>();
    for (const e of world.pd.accepted)
      have.set(String(e.dedupKey), [...(have.get(String(e.dedupKey)) ?? []), stepOf(e)]);
    const want = Array.from({ length: opts.steps }, (_, seq) =>
      lifeAction(seq) === 'trigger' ? `T${seq}` : 'R',
    ).join(' ');
    const short = Array.from({ length: opts.alerts }, (_, i) => `e2e/${opts.prefix}${i}`).filter(
      (k) => (have.get(k) ?? []).filter((step, n, all) => n === 0 || all[n - 1] !== step).join(' ') !== want,
    );
    const logs = short
      .slice(0, 3)
      .map((k) => `${k}: ${(have.get(k) ?? []).join(' ')}\n${explain(world.relays, k)}`);
    throw new Error(`${(err as Error).message}; incomplete:\n${logs.join('\n')}`);
  }
}

/** Every log line of every relay process about `dedupKey` (and about keys changing hands), in time order. */
export function explain(relays: readonly RelayProcess[], dedupKey: string): string {
  return relays
    .flatMap((relay, i) =>
      relay.logs
        .filter((l) => l.dedupKey === dedupKey || Array.isArray(l.keys) || /database|Internal/.test(l.msg))
        .map(
          (l) =>
            `${String(l.time)} #${i} ${l.msg} ${JSON.stringify({ id: l.id, key: l.key, action: l.action, keys: l.keys, err: l.err })}`,
        ),
    )
    .sort()
    .join('\n');
}

/**
 * Waits for every step at PagerDuty, then a moment for duplicates to show, and checks what several
 * replicas promise (expectReplicaGuarantees).
 */
export async function settleAndCheck(
  world: E2eWorld,
  deliveries: readonly Delivery[],
  opts: {
    prefix: string;
    alerts: number;
    steps: number;
    limit: number;
    keys: string[];
    maxDuplicates: number;
  },
): Promise<{ duplicates: number }> {
  await waitForEveryStep(world, opts);
  await sleep(1500);
  return expectReplicaGuarantees(world, deliveries, opts);
}

/**
 * What several replicas promise, checked on what PagerDuty received: every acknowledged step of
 * every alert delivered, in order, each alert through one routing key (so no follow-up dropped),
 * no 429, never more than `limit` requests per key in any window, and duplicates only as a
 * failover allows (the request in flight per key): at most `maxDuplicates`.
 */
export function expectReplicaGuarantees(
  world: E2eWorld,
  deliveries: readonly Delivery[],
  opts: {
    prefix: string;
    alerts: number;
    steps: number;
    limit: number;
    keys: string[];
    maxDuplicates: number;
  },
): { duplicates: number } {
  expect(
    deliveries.filter((d) => d.final?.status !== 200).map((d) => d.attempts.map((a) => a.status)),
  ).toEqual([]);
  const byAlert = new Map<string, AcceptedEvent[]>();
  for (const e of world.pd.accepted) {
    const list = byAlert.get(e.dedupKey as string) ?? [];
    list.push(e);
    byAlert.set(e.dedupKey as string, list);
  }
  let duplicates = 0;
  for (let i = 0; i < opts.alerts; i++) {
    const dedupKey = `e2e/${opts.prefix}${i}`;
    const events = byAlert.get(dedupKey) ?? [];
    // A repeat of the same request right after itself is what a failover may cause; anything
    // else out of order is a bug.
    const steps = events.map(stepOf).filter((s, k, all) => {
      const repeat = k > 0 && all[k - 1] === s;
      if (repeat) duplicates++;
      return !repeat;
    });
    const want = Array.from({ length: opts.steps }, (_, seq) =>
      lifeAction(seq) === 'trigger' ? `T${seq}` : 'R',
    );
    if (steps.join(' ') !== want.join(' '))
      expect.fail(
        `${dedupKey}: expected ${want.join(' ')}, got ${steps.join(' ')}\n${explain(world.relays, dedupKey)}`,
      );
    if (new Set(events.map((e) => e.routingKey)).size !== 1)
      expect.fail(
        `${dedupKey} went through ${new Set(events.map((e) => e.routingKey)).size} keys: ${events.map((e) => `${stepOf(e)}@${e.routingKey.slice(0, 6)}`).join(' ')}\n${explain(world.relays, dedupKey)}`,
      );
  }
  // A follow-up PagerDuty dropped because the same request came just before it (a failover's
  // duplicate of a resolve) is a duplicate, counted above; any other is an event sent through the
  // wrong key, or before its trigger.
  const repeats = (e: AcceptedEvent) => {
    const before = world.pd.accepted.filter((x) => x.dedupKey === e.dedupKey && x.seq < e.seq).at(-1);
    return before?.raw === e.raw;
  };
  expect(world.pd.droppedFollowUps().filter((e) => !repeats(e))).toEqual([]);
  expect(world.pd.count(429)).toBe(0);
  for (const key of opts.keys)
    expect(world.pd.maxInWindow(key), 'requests to one key in a window').toBeLessThanOrEqual(opts.limit);
  if (duplicates > opts.maxDuplicates) {
    const repeated = [...byAlert].filter(([, events]) =>
      events.some((e, k) => k > 0 && stepOf(events[k - 1] as AcceptedEvent) === stepOf(e)),
    );
    expect.fail(
      `${duplicates} duplicates (at most ${opts.maxDuplicates}):\n${repeated
        .slice(0, 2)
        .map(
          ([k, events]) =>
            `${k}: ${events.map((e) => `${stepOf(e)}@${e.routingKey.slice(0, 6)}`).join(' ')}\n${explain(world.relays, k)}`,
        )
        .join('\n')}`,
    );
  }
  return { duplicates };
}
