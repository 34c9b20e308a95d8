import { connect, type Socket } from 'node:net';

/** A parsed HTTP/1.1 response as it came off the wire. */
export interface RawResponse {
  status: number;
  /** Header names lower-cased; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * What one raw exchange ended with: a response; the server closing (or resetting) the connection
 * without a complete response; or our own give-up after `timeoutMs` with the connection still open.
 */
export type RawOutcome =
  | { kind: 'response'; response: RawResponse /** ms from the first byte written */; elapsedMs: number }
  | { kind: 'closed'; error: string | null; received: number; elapsedMs: number }
  | { kind: 'timeout'; received: number; elapsedMs: number };

export interface RawRequestOptions {
  /** Give up (and destroy the socket) after this long; the outcome is then "timeout". */
  timeoutMs?: number;
  /** Pause between the pieces of `request` when it is a list (slow-loris trickling). */
  pauseMs?: number;
  /** The request was a HEAD: the response has no body whatever its Content-Length says. */
  head?: boolean;
}

/**
 * Sends `request` byte-exact over a fresh TCP connection to 127.0.0.1:`port` and reads one response.
 * A hand-written client on purpose: fetch and node:http refuse to send the malformed framing, the
 * duplicate or conflicting headers and the trickled bodies the fuzz needs.
 */
export function rawRequest(
  port: number,
  request: Buffer | string | ReadonlyArray<Buffer | string>,
  opts: RawRequestOptions = {},
): Promise<RawOutcome> {
  const pieces = (Array.isArray(request) ? request : [request]).map((p) =>
    typeof p === 'string' ? Buffer.from(p, 'latin1') : (p as Buffer),
  );
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve) => {
    const started = performance.now();
    const socket: Socket = connect({ port, host: '127.0.0.1', noDelay: true });
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    let socketError: string | null = null;
    const timers: NodeJS.Timeout[] = [];
    const finish = (outcome: RawOutcome) => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      socket.destroy();
      resolve(outcome);
    };
    const elapsed = () => performance.now() - started;
    timers.push(setTimeout(() => finish({ kind: 'timeout', received, elapsedMs: elapsed() }), timeoutMs));

    socket.on('data', (data: Buffer) => {
      chunks.push(data);
      received += data.length;
      const parsed = parseResponse(Buffer.concat(chunks), opts.head ?? false, false);
      if (parsed) finish({ kind: 'response', response: parsed, elapsedMs: elapsed() });
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      socketError = err.code ?? err.message;
    });
    socket.on('close', () => {
      // A response delimited by the connection closing (no Content-Length, not chunked).
      const parsed = chunks.length ? parseResponse(Buffer.concat(chunks), opts.head ?? false, true) : null;
      if (parsed) finish({ kind: 'response', response: parsed, elapsedMs: elapsed() });
      else finish({ kind: 'closed', error: socketError, received, elapsedMs: elapsed() });
    });
    socket.on('connect', () => {
      let i = 0;
      const writeNext = () => {
        if (settled || socket.destroyed) return;
        const piece = pieces[i++];
        if (piece === undefined) return;
        socket.write(piece, () => {});
        if (i < pieces.length) timers.push(setTimeout(writeNext, opts.pauseMs ?? 0));
      };
      writeNext();
    });
  });
}

/** Parses one complete response from `buf`, or returns null when more bytes are needed. */
export function parseResponse(buf: Buffer, head: boolean, eof: boolean): RawResponse | null {
  let offset = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', offset, 'latin1');
    if (end < 0) return null;
    const lines = buf.subarray(offset, end).toString('latin1').split('\r\n');
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!match) return null;
    const status = Number(match[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    const bodyStart = end + 4;
    // 1xx answers (100 Continue) precede the real one.
    if (status >= 100 && status < 200) {
      offset = bodyStart;
      continue;
    }
    if (head || status === 204 || status === 304) return { status, headers, body: Buffer.alloc(0) };
    if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const body = dechunk(buf.subarray(bodyStart));
      return body ? { status, headers, body } : null;
    }
    const length = headers['content-length'];
    if (length !== undefined) {
      const n = Number(length);
      if (buf.length - bodyStart < n) return null;
      return { status, headers, body: buf.subarray(bodyStart, bodyStart + n) };
    }
    return eof ? { status, headers, body: buf.subarray(bodyStart) } : null;
  }
}

function dechunk(buf: Buffer): Buffer | null {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', at, 'latin1');
    if (eol < 0) return null;
    const size = Number.parseInt(buf.subarray(at, eol).toString('latin1'), 16);
    if (!Number.isFinite(size)) return null;
    const start = eol + 2;
    if (size === 0) return buf.indexOf('\r\n', start, 'latin1') >= 0 ? Buffer.concat(parts) : null;
    if (buf.length < start + size + 2) return null;
    parts.push(buf.subarray(start, start + size));
    at = start + size + 2;
  }
}
