import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../src/delivery/backoff.js';
import { Fifo } from '../../src/delivery/fifo.js';
import { parseRetryAfter } from '../../src/pagerduty/client.js';

describe('backoffDelay', () => {
  it.each([
    // attempt, random, expected
    [1, 0, 1000],
    [1, 1, 2000],
    [2, 1, 4000],
    [5, 1, 32_000],
    [10, 1, 300_000],
    [10, 0.5, 150_500],
    [1000, 1, 300_000],
  ])('attempt %i with random %d waits %i ms (min 1 s, max 300 s)', (attempt, random, expected) => {
    expect(backoffDelay(attempt, 1000, 300_000, () => random)).toBe(expected);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it.each([
    ['30', 30_000],
    [' 0 ', 0],
    ['Thu, 01 Jan 2026 00:00:10 GMT', 10_000],
    ['Wed, 31 Dec 2025 23:59:00 GMT', 0],
    ['soon', undefined],
    [undefined, undefined],
  ])('reads %j as %j ms', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });
});

describe('Fifo', () => {
  it('keeps order across compaction', () => {
    const q = new Fifo<number>();
    for (let i = 0; i < 5000; i++) q.push(i);
    for (let i = 0; i < 3000; i++) expect(q.shift()).toBe(i);
    for (let i = 5000; i < 6000; i++) q.push(i);
    expect(q.length).toBe(3000);
    expect(q.peek()).toBe(3000);
    expect([...q].slice(0, 3)).toEqual([3000, 3001, 3002]);
    let expected = 3000;
    while (q.length) expect(q.shift()).toBe(expected++);
    expect(expected).toBe(6000);
    expect(q.shift()).toBeUndefined();
  });
});
