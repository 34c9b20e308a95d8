import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Envelope } from '../../helpers/fake-sns.js';

/** What one POST to the relay produced, as SNS would see it. */
export interface PostResult {
  messageId: string;
  /** The final status, or null when no response arrived (connection refused or reset, timeout). */
  status: number | null;
  body: string;
  headers: IncomingHttpHeaders;
  /** The socket error when there was no response (ECONNRESET, ECONNREFUSED, …). */
  error: string | null;
  /** performance.now() when the request started, when the relay's "100 Continue" arrived (with `expectContinue`), and when it ended. */
  startedAt: number;
  continuedAt: number | null;
  endedAt: number;
  /** True when this request was first answered 401 with a Basic challenge and then sent again with the credentials. */
  challenged: boolean;
  /** Every status seen, in order (e.g. [401, 200] for a challenged request). */
  statuses: number[];
}

export interface SnsClientOptions {
  /** The relay's SNS origin, read at each request (a restarted relay has a new port). */
  origin: () => string;
  /** CA to trust for an HTTPS relay (the test CA). */
  ca?: string;
  /** The credentials of the subscription URL (`https://user:pass@host/sns`). */
  credentials?: { username: string; password: string };
  /** Called with every response as text (status, headers, body), for the no-secret grep. */
  record?: (where: string, text: string) => void;
  /** Give up on a request after this long (SNS waits 15 s). Default 15,000 ms. */
  timeoutMs?: number;
}

/**
 * Posts SNS envelopes to a relay the way SNS's HTTP(S) delivery does: `text/plain` JSON body,
 * `x-amz-sns-message-type` and `x-amz-sns-message-id` headers, keep-alive connections. With
 * credentials it behaves like SNS with a `https://user:pass@host/` subscription: it sends them
 * only after a 401 with a `WWW-Authenticate: Basic` challenge, then retries the request with them
 * (and, having been challenged once, sends them up front on later requests, as an HTTP client
 * with a credential cache does).
 */
export class SnsClient {
  readonly #opts: SnsClientOptions;
  readonly #httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
  readonly #httpsAgent: HttpsAgent;
  #challengedBefore = false;
  /** Responses with status 401 and a Basic challenge. */
  challenges = 0;

  constructor(opts: SnsClientOptions) {
    this.#opts = opts;
    this.#httpsAgent = new HttpsAgent({
      keepAlive: true,
      maxSockets: 64,
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
  }

  /** Forgets that the relay challenged before: the next request goes without credentials first. */
  forgetChallenge(): void {
    this.#challengedBefore = false;
  }

  /**
   * POSTs `envelope` to `path` (default /sns). With `expectContinue`, the body is sent only after
   * the relay answered "100 Continue", which proves that it read the request's headers.
   * `body` sends that text instead of `JSON.stringify(envelope)` (another JSON encoding of it).
   */
  async post(
    envelope: Envelope,
    opts: { path?: string; expectContinue?: boolean; password?: string; body?: string } = {},
  ): Promise<PostResult> {
    const body = opts.body ?? JSON.stringify(envelope);
    const startedAt = performance.now();
    const statuses: number[] = [];
    let challenged = false;
    let withAuth = this.#challengedBefore && this.#opts.credentials !== undefined;
    for (;;) {
      const r = await this.#send(body, envelope, opts, withAuth);
      if (r.status !== null) statuses.push(r.status);
      const challenge = String(r.headers['www-authenticate'] ?? '');
      if (r.status === 401 && /^Basic /i.test(challenge)) this.challenges++;
      if (r.status === 401 && /^Basic /i.test(challenge) && !withAuth && this.#opts.credentials) {
        // What SNS does with credentials in the subscription URL: answer the challenge once.
        this.#challengedBefore = true;
        challenged = true;
        withAuth = true;
        continue;
      }
      return {
        messageId: String(envelope.MessageId),
        ...r,
        startedAt,
        endedAt: performance.now(),
        challenged,
        statuses,
      };
    }
  }

  /** GETs `path` on the SNS origin (health checks), recording the answer. */
  async get(path: string): Promise<{ status: number | null; body: string; error: string | null }> {
    const r = await this.#raw('GET', path, undefined, {}, false);
    return { status: r.status, body: r.body, error: r.error };
  }

  close(): void {
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }

  #send(
    body: string,
    envelope: Envelope,
    opts: { path?: string; expectContinue?: boolean; password?: string },
    withAuth: boolean,
  ) {
    const headers: Record<string, string> = {
      'content-type': 'text/plain; charset=UTF-8',
      'x-amz-sns-message-type': String(envelope.Type),
      'x-amz-sns-message-id': String(envelope.MessageId),
      'x-amz-sns-topic-arn': String(envelope.TopicArn),
      'user-agent': 'Amazon Simple Notification Service Agent',
    };
    const creds = this.#opts.credentials;
    if (withAuth && creds) {
      const password = opts.password ?? creds.password;
      headers.authorization = `Basic ${Buffer.from(`${creds.username}:${password}`).toString('base64')}`;
    }
    return this.#raw('POST', opts.path ?? '/sns', body, headers, opts.expectContinue ?? false);
  }

  #raw(
    method: string,
    path: string,
    body: string | undefined,
    headers: Record<string, string>,
    expectContinue: boolean,
  ): Promise<{
    status: number | null;
    body: string;
    headers: IncomingHttpHeaders;
    error: string | null;
    continuedAt: number | null;
  }> {
    const url = new URL(path, this.#opts.origin());
    const https = url.protocol === 'https:';
    const payload = body === undefined ? undefined : Buffer.from(body);
    return new Promise((resolve) => {
      let continuedAt: number | null = null;
      let settled = false;
      const done = (r: {
        status: number | null;
        body: string;
        headers: IncomingHttpHeaders;
        error: string | null;
      }) => {
        if (settled) return;
        settled = true;
        resolve({ ...r, continuedAt });
      };
      const req = (https ? httpsRequest : httpRequest)(
        url,
        {
          method,
          agent: https ? this.#httpsAgent : this.#httpAgent,
          headers: {
            ...headers,
            ...(payload ? { 'content-length': String(payload.length) } : {}),
            ...(expectContinue && payload ? { expect: '100-continue' } : {}),
          },
          timeout: this.#opts.timeoutMs ?? 15_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            this.#opts.record?.(
              `response to ${method} ${url.pathname}`,
              `${res.statusCode}\n${JSON.stringify(res.headers)}\n${text}`,
            );
            done({ status: res.statusCode ?? null, body: text, headers: res.headers, error: null });
          });
          res.on('error', (err: NodeJS.ErrnoException) =>
            done({ status: null, body: '', headers: {}, error: err.code ?? err.message }),
          );
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) =>
        done({ status: null, body: '', headers: {}, error: err.code ?? err.message }),
      );
      if (expectContinue && payload) {
        req.on('continue', () => {
          continuedAt = performance.now();
          req.end(payload);
        });
        req.flushHeaders();
      } else {
        req.end(payload);
      }
    });
  }
}
