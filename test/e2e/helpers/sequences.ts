import { expect } from 'vitest';
import type { AcceptedEvent, FakePagerDuty } from '../../helpers/fake-pagerduty.js';
import type { PostResult, SnsClient } from './sns-client.js';
import { type E2eWorld, parseSummary } from './world.js';

/** The action of step `seq` of an alert's life: trigger, resolve, trigger, resolve, … */
export const lifeAction = (seq: number): 'trigger' | 'resolve' => (seq % 2 === 0 ? 'trigger' : 'resolve');

/**
 * Posts `steps` messages for each of `alerts` alerts (`<prefix><i>`), each alert's messages one
 * after the other (each waits for the previous one's 200, as the order of an alarm's state changes
 * does), different alerts concurrently. Returns every result.
 */
export async function postLives(
  world: E2eWorld,
  client: SnsClient,
  opts: { prefix: string; alerts: number; steps: number },
): Promise<PostResult[]> {
  const results: PostResult[] = [];
  await Promise.all(
    Array.from({ length: opts.alerts }, async (_, i) => {
      for (let seq = 0; seq < opts.steps; seq++) {
        const r = await client.post(
          world.notification({ e2e: 1, alert: `${opts.prefix}${i}`, seq, action: lifeAction(seq) }),
        );
        results.push(r);
      }
    }),
  );
  return results;
}

/**
 * What PagerDuty's record of an alert's step looks like: `T<seq>` for a trigger (its summary
 * carries the step), `R` for a resolve (a resolve has no payload, so the step is not in it).
 */
export function stepOf(e: AcceptedEvent): string {
  return e.action === 'trigger' ? `T${parseSummary(e.body).seq}` : 'R';
}

/**
 * Asserts that PagerDuty accepted every step of every alert exactly once, each alert's steps in
 * order and through one routing key, so that each alert ended in the state of its last step.
 */
export function expectLivesDelivered(
  pd: FakePagerDuty,
  opts: { prefix: string; alerts: number; steps: number },
): void {
  const byAlert = new Map<string, AcceptedEvent[]>();
  for (const e of pd.accepted) {
    const list = byAlert.get(e.dedupKey as string) ?? [];
    list.push(e);
    byAlert.set(e.dedupKey as string, list);
  }
  for (let i = 0; i < opts.alerts; i++) {
    const dedupKey = `e2e/${opts.prefix}${i}`;
    const events = byAlert.get(dedupKey) ?? [];
    expect(events.map(stepOf), dedupKey).toEqual(
      Array.from({ length: opts.steps }, (_, seq) => (lifeAction(seq) === 'trigger' ? `T${seq}` : 'R')),
    );
    expect(new Set(events.map((e) => e.routingKey)).size, dedupKey).toBe(1);
    expect(pd.alertState(events[0]?.routingKey as string, dedupKey), dedupKey).toBe(
      lifeAction(opts.steps - 1) === 'resolve' ? 'resolved' : 'triggered',
    );
  }
  expect(pd.accepted).toHaveLength(opts.alerts * opts.steps);
  expect(pd.droppedFollowUps()).toEqual([]);
}
