import { describe, expect, it } from 'vitest';
import { rendezvousPick } from '../../src/delivery/rendezvous.js';

const id = (s: string) => s;
const items = Array.from({ length: 4000 }, (_, i) => `arn:aws:cloudwatch:eu-west-1:123456789012:alarm:a${i}`);

describe('rendezvousPick', () => {
  it('is stable: the same item gets the same candidate whatever the order of the pool', () => {
    const pool = ['k1', 'k2', 'k3', 'k4'];
    for (const item of items.slice(0, 200)) {
      expect(rendezvousPick(pool, item, id)).toBe(rendezvousPick([...pool].reverse(), item, id));
    }
  });

  it('spreads items about evenly over the pool', () => {
    const pool = ['k1', 'k2', 'k3', 'k4'];
    const counts = new Map<string, number>();
    for (const item of items) {
      const k = rendezvousPick(pool, item, id) as string;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    for (const k of pool) expect(counts.get(k)).toBeGreaterThan(900);
  });

  it('moves only items the new candidate wins when the pool grows, about 1/n of them', () => {
    const before = ['k1', 'k2', 'k3', 'k4'];
    const after = [...before, 'k5'];
    let moved = 0;
    for (const item of items) {
      const a = rendezvousPick(before, item, id);
      const b = rendezvousPick(after, item, id);
      if (a !== b) {
        moved++;
        expect(b).toBe('k5');
      }
    }
    expect(moved).toBeGreaterThan(items.length * 0.15);
    expect(moved).toBeLessThan(items.length * 0.25);
  });

  it('moves only the removed candidate’s items when the pool shrinks', () => {
    const before = ['k1', 'k2', 'k3', 'k4'];
    const after = ['k1', 'k2', 'k4'];
    for (const item of items) {
      const a = rendezvousPick(before, item, id);
      if (a !== 'k3') expect(rendezvousPick(after, item, id)).toBe(a);
    }
  });

  it('returns undefined for an empty pool', () => {
    expect(rendezvousPick([], 'x', id)).toBeUndefined();
  });
});
