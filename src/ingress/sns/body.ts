export type BodyResult =
  | { ok: true; text: string }
  | { ok: false; reason: 'too_large'; message: string }
  | { ok: false; reason: 'bad_encoding' | 'unreadable'; message: string };

/**
 * Reads a request body as UTF-8 text, at most `maxBytes`. A declared Content-Length over the limit
 * is refused before reading; within it, the body is read whole (Node's parser stops at the declared
 * length, and @hono/node-server reads it straight from the socket: the fast path, and what SNS
 * sends). A body without Content-Length (chunked) is counted as it streams and abandoned at the
 * limit, so an oversized body never sits whole in memory.
 */
export async function readBody(request: Request, maxBytes: number): Promise<BodyResult> {
  try {
    return await read(request, maxBytes);
  } catch (err) {
    // The client went away or sent less than it declared: nothing to answer to, but not a bug.
    return { ok: false, reason: 'unreadable', message: `Could not read the body: ${(err as Error).message}` };
  }
}

async function read(request: Request, maxBytes: number): Promise<BodyResult> {
  const tooLarge = (): BodyResult => ({
    ok: false,
    reason: 'too_large',
    message: `Expected a body of at most ${maxBytes} bytes (server.maxBodyBytes).`,
  });
  const declared = request.headers.get('content-length');
  let bytes: Uint8Array;
  if (declared !== null && /^\d+$/.test(declared.trim())) {
    if (Number(declared) > maxBytes) return tooLarge();
    bytes = new Uint8Array(await request.arrayBuffer());
  } else {
    if (!request.body) return { ok: true, text: '' };
    const reader = request.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => {});
        return tooLarge();
      }
      chunks.push(value);
    }
    bytes = Buffer.concat(chunks, size);
  }
  try {
    // SNS sends UTF-8 (text/plain; charset=UTF-8). Invalid bytes mean the body is not from SNS.
    return { ok: true, text: utf8.decode(bytes) };
  } catch {
    return { ok: false, reason: 'bad_encoding', message: 'Expected a UTF-8 body.' };
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
