import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SEVERITY,
  DEFAULT_SOURCE,
  fitEvent,
  hashDedupKey,
  MAX_EVENT_BYTES,
  serialisedBody,
  TRUNCATION_MARKER,
} from '../../src/pagerduty/limits.js';
import type { AlertEventBody, ChangeEventBody, EventBody } from '../../src/pagerduty/types.js';

const BIG = 'y'.repeat(600_000);
const trigger = (
  payload: Partial<NonNullable<AlertEventBody['payload']>>,
  extra: Partial<AlertEventBody> = {},
) =>
  ({
    event_action: 'trigger',
    payload: { summary: 's', source: 'src', severity: 'info', ...payload },
    ...extra,
  }) as AlertEventBody;
/** What the client sends: the body plus `"routing_key":"<32 characters>",`. */
const wireBytes = (body: EventBody) =>
  Buffer.byteLength(JSON.stringify({ routing_key: 'r'.repeat(32), ...body }));
const details = (body: EventBody) =>
  (body as AlertEventBody).payload?.custom_details as Record<string, unknown>;

describe('fitEvent', () => {
  it('leaves an event within the limits as it is', () => {
    const body = trigger({ custom_details: { a: 1 } }, { dedup_key: 'd' });
    expect(fitEvent(body)).toEqual({ body, bytes: Buffer.byteLength(JSON.stringify(body)), truncations: [] });
  });

  it.each<[string, EventBody]>([
    [
      'a trigger',
      trigger({ summary: 'é'.repeat(1024), custom_details: { a: [1, 'ü'] } }, { dedup_key: 'd' }),
    ],
    ['a resolve', { event_action: 'resolve', dedup_key: 'k'.repeat(255) }],
    ['a change', { payload: { summary: 'deployed', custom_details: { v: 2 } } } as ChangeEventBody],
  ])('returns %s within the limits itself, uncopied, and keeps its JSON for the spool', (_name, body) => {
    const text = JSON.stringify(body);
    const fitted = fitEvent(body);
    expect(fitted.body).toBe(body);
    expect(fitted.bytes).toBe(Buffer.byteLength(text));
    expect(serialisedBody(fitted.body)).toBe(text);
  });

  it('serialises a body it did not fit, or one it had to copy, afresh', () => {
    const unfitted = trigger({ summary: 'plain' });
    expect(serialisedBody(unfitted)).toBe(JSON.stringify(unfitted));
    const input = trigger({ summary: 'x'.repeat(2000) });
    const fitted = fitEvent(input);
    expect(fitted.body).not.toBe(input);
    expect(serialisedBody(fitted.body)).toBe(JSON.stringify(fitted.body));
    expect(serialisedBody(input)).toBe(JSON.stringify(input));
  });

  it.each<[string, EventBody, string[], (b: EventBody) => void]>([
    [
      'a summary over 1024 characters is cut with "…"',
      trigger({ summary: 'x'.repeat(5000) }),
      ['summary'],
      (b) => expect((b as AlertEventBody).payload?.summary).toBe(`${'x'.repeat(1023)}…`),
    ],
    [
      'a cut never splits a surrogate pair',
      trigger({ summary: '😀'.repeat(600) }),
      ['summary'],
      (b) => expect((b as AlertEventBody).payload?.summary).toBe(`${'😀'.repeat(511)}…`),
    ],
    [
      'a dedup_key over 255 characters becomes its stable sha256 hex',
      { event_action: 'resolve', dedup_key: 'k'.repeat(300) },
      ['dedup_key'],
      (b) => expect((b as AlertEventBody).dedup_key).toBe(hashDedupKey('k'.repeat(300))),
    ],
    [
      'an unknown severity becomes the default',
      trigger({ severity: 'major' as 'info' }),
      ['severity'],
      (b) => expect((b as AlertEventBody).payload?.severity).toBe(DEFAULT_SEVERITY),
    ],
    [
      'an empty source becomes the default',
      trigger({ source: '  ' }),
      ['source'],
      (b) => expect((b as AlertEventBody).payload?.source).toBe(DEFAULT_SOURCE),
    ],
    [
      'oversized details are cut largest field first, the others kept, and the marker says what',
      trigger({ custom_details: { big: BIG, small: 'kept' } }),
      ['custom_details'],
      (b) => {
        expect(details(b).small).toBe('kept');
        expect(String(details(b).big).endsWith('…')).toBe(true);
        expect(details(b)[TRUNCATION_MARKER]).toMatchObject({ cut: ['big'] });
      },
    ],
    [
      'a nested object is cut as its JSON text',
      trigger({ custom_details: { outer: { inner: BIG } } }),
      ['custom_details'],
      (b) => expect(String(details(b).outer).startsWith('{"inner":"yyy')).toBe(true),
    ],
    [
      'details that are a string (a template) are cut as one field',
      trigger({ custom_details: BIG as unknown as Record<string, unknown> }),
      ['custom_details'],
      (b) => {
        expect(String(details(b).details).startsWith('yyy')).toBe(true);
        expect(details(b)[TRUNCATION_MARKER]).toMatchObject({ cut: ['details'] });
      },
    ],
    [
      'many medium fields: the largest go first, until it fits',
      trigger({
        custom_details: Object.fromEntries(
          Array.from({ length: 3000 }, (_, i) => [`f${i}`, 'z'.repeat(200)]),
        ),
      }),
      ['custom_details'],
      (b) =>
        expect((details(b)[TRUNCATION_MARKER] as { removed?: string[] }).removed?.length).toBeGreaterThan(
          400,
        ),
    ],
    [
      'links that alone break the limit are dropped',
      trigger(
        {},
        {
          links: Array.from({ length: 5000 }, (_, i) => ({
            href: `https://example.com/${'p'.repeat(100)}/${i}`,
          })),
        },
      ),
      ['links'],
      (b) => expect((b as AlertEventBody).links).toBeUndefined(),
    ],
    [
      'a change event keeps within the limits too',
      { payload: { summary: 's'.repeat(3000), custom_details: { a: BIG } } } as ChangeEventBody,
      ['summary', 'custom_details'],
      (b) => expect((b as ChangeEventBody).payload.summary).toHaveLength(1024),
    ],
  ])('%s', (_name, input, truncations, check) => {
    const copy = structuredClone(input);
    const fitted = fitEvent(input);
    expect(fitted.truncations.sort()).toEqual([...truncations].sort());
    expect(wireBytes(fitted.body)).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    expect(fitted.bytes).toBe(Buffer.byteLength(JSON.stringify(fitted.body)));
    expect(input).toEqual(copy);
    check(fitted.body);
    // Fitting is idempotent: a fitted event goes out as it is.
    expect(fitEvent(fitted.body).truncations).toEqual([]);
  });

  it('fits a 200 KB description of control characters, 6× its size when JSON-escaped', () => {
    const control = Array.from({ length: 200_000 }, (_, i) => String.fromCharCode(i % 32)).join('');
    const body = trigger({ custom_details: { AlarmDescription: control, Region: 'eu-west-1' } });
    expect(Buffer.byteLength(JSON.stringify(body))).toBeGreaterThan(1_000_000);
    const fitted = fitEvent(body);
    expect(wireBytes(fitted.body)).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    expect(wireBytes(fitted.body)).toBeGreaterThan(MAX_EVENT_BYTES - 2000);
    expect(details(fitted.body).Region).toBe('eu-west-1');
  });
});
