import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeSns } from '../helpers/fake-sns.js';
import { RelayProcess } from '../helpers/relay-process.js';
import { type RawOutcome, rawRequest } from './raw-http.js';

// Slow-loris clients against the real relay process: connections that trickle their headers or
// their body, or send nothing at all, must be cut by the server (408 or a close) at
// server.headersTimeoutMs / server.requestTimeoutMs, while signed messages are still answered.
const HEADERS_TIMEOUT_MS = 1_000;
const REQUEST_TIMEOUT_MS = 2_000;
/**
 * Our own give-up: far beyond the configured limits (plus Node's 1 s check interval), far below
 * the 30 s that Node's default check interval would let a trickler live. Not a speed measurement:
 * a connection still open here was never cut.
 */
const CLIENT_GIVE_UP_MS = 15_000;
const COPIES = 3;

let sns: FakeSns;
let relay: RelayProcess;
let port: number;

beforeAll(async () => {
  sns = await FakeSns.start();
  relay = await RelayProcess.start({
    configYaml: [
      'server:',
      '  host: 127.0.0.1',
      '  port: 0',
      `  headersTimeoutMs: ${HEADERS_TIMEOUT_MS}`,
      `  requestTimeoutMs: ${REQUEST_TIMEOUT_MS}`,
      'metrics: { host: 127.0.0.1, port: 0 }',
      `sns: { certHostPattern: '${sns.certHostPattern}' }`,
      'spool: { dir: ./data }',
      '',
    ].join('\n'),
    env: { NODE_EXTRA_CA_CERTS: sns.caFile },
  });
  port = Number(new URL(relay.snsUrl).port);
});

afterAll(async () => {
  await relay?.stop();
  await sns?.close();
});

const bytes = (n: number, c = 'a') => Array.from({ length: n }, () => c);

/** Each client: its request in pieces and the pause between them (it never finishes in time). */
const CLIENTS: Record<string, { pieces: string[]; pauseMs: number }> = {
  'a connection that sends nothing': { pieces: [], pauseMs: 0 },
  'headers, one line at a time': {
    pieces: ['POST /sns HTTP/1.1\r\n', 'Host: relay\r\n', ...bytes(200).map((_, i) => `X-Slow-${i}: 1\r\n`)],
    pauseMs: 250,
  },
  'headers, one byte at a time': {
    pieces: [...'POST /sns HTTP/1.1\r\nHost: relay\r\nContent-Type: text/plain\r\n'.split('')],
    pauseMs: 250,
  },
  'a body, one byte at a time': {
    pieces: ['POST /sns HTTP/1.1\r\nHost: relay\r\nContent-Length: 5000\r\n\r\n', ...bytes(500, '{')],
    pauseMs: 100,
  },
  'a body shorter than its Content-Length': {
    pieces: ['POST /sns HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n\r\n{"Type":'],
    pauseMs: 0,
  },
  'chunks that never end': {
    pieces: [
      'POST /sns HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\n',
      ...bytes(500).map(() => '1\r\n{\r\n'),
    ],
    pauseMs: 100,
  },
};

describe('slow-loris clients', () => {
  it('are cut at the configured timeouts while signed messages are still answered', async () => {
    const slow = Object.entries(CLIENTS).flatMap(([name, c]) =>
      Array.from({ length: COPIES }, () =>
        rawRequest(port, c.pieces, { pauseMs: c.pauseMs, timeoutMs: CLIENT_GIVE_UP_MS }).then(
          (outcome): [string, RawOutcome] => [name, outcome],
        ),
      ),
    );

    // While the slow clients hold their sockets, SNS deliveries go through as usual.
    const answered: number[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${relay.snsUrl}/sns`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': 'Notification' },
        body: JSON.stringify(sns.notification({ message: `slow-loris bystander ${i}` })),
      });
      answered.push(res.status);
      await res.arrayBuffer();
    }
    expect(answered).toEqual(Array.from({ length: 20 }, () => 200));

    const outcomes = await Promise.all(slow);
    for (const [name, outcome] of outcomes) {
      const what = `${name}: ${JSON.stringify(outcome)}`;
      // Cut by the server: Node's 408 (empty body), or the connection closed under the client.
      expect(outcome.kind, what).not.toBe('timeout');
      if (outcome.kind === 'response') {
        expect(outcome.response.status, what).toBe(408);
        expect(outcome.response.body.length, what).toBe(0);
      }
    }
    expect((await fetch(`${relay.snsUrl}/healthz`)).status).toBe(200);
    expect(relay.child.exitCode).toBeNull();
  });
});
