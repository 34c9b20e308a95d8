import { request } from 'node:https';
import { VERSION } from '../../version.js';

/** How ingress talks to SNS hosts (certificate downloads, subscription confirmations). */
export interface HttpsGetOptions {
  /** Hard limit on the whole exchange, connect to last byte (not an idle timeout). */
  timeoutMs: number;
  /** Bodies larger than this are abandoned. */
  maxBytes: number;
  /**
   * CAs to trust instead of the system store. Production leaves it unset, which also honours
   * NODE_EXTRA_CA_CERTS (how a relay child process in tests trusts the test CA).
   */
  ca?: string | Buffer | Array<string | Buffer>;
}

export type HttpsGetResult =
  | { ok: true; status: number; body: Buffer }
  | { ok: false; reason: 'timeout' | 'network' | 'too_large'; message: string };

/** The capability ingress fetches through; tests may pass their own. */
export type HttpsGet = (url: URL, opts: HttpsGetOptions) => Promise<HttpsGetResult>;

/**
 * One HTTPS GET with a hard deadline and a size cap; never follows redirects (an SNS host that
 * redirects elsewhere must not lead the relay off the allowed hosts). Resolves, never rejects.
 */
export const httpsGet: HttpsGet = (url, opts) =>
  new Promise((resolve) => {
    let settled = false;
    const finish = (result: HttpsGetResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
      req.destroy();
    };
    const req = request(
      url,
      {
        method: 'GET',
        // A fresh connection per fetch: these are rare, and a pooled socket would outlive the relay's shutdown.
        agent: false,
        headers: { 'user-agent': `pd-relay/${VERSION}`, accept: '*/*' },
        ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > opts.maxBytes) {
          finish(tooLarge(opts.maxBytes));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > opts.maxBytes) finish(tooLarge(opts.maxBytes));
          else chunks.push(chunk);
        });
        res.on('end', () => finish({ ok: true, status, body: Buffer.concat(chunks) }));
        res.on('error', (err) => finish({ ok: false, reason: 'network', message: err.message }));
      },
    );
    const timer = setTimeout(
      () =>
        finish({ ok: false, reason: 'timeout', message: `No complete answer within ${opts.timeoutMs} ms` }),
      opts.timeoutMs,
    );
    req.on('error', (err) => finish({ ok: false, reason: 'network', message: err.message }));
    req.end();
  });

function tooLarge(max: number): HttpsGetResult {
  return { ok: false, reason: 'too_large', message: `Response body over ${max} bytes` };
}
