export type BodyResult =
  | { ok: true; text: string }
  | { ok: false; reason: 'too_large'; message: string }
  | { ok: false; reason: 'bad_encoding'; message: string };

/**
 * Reads a request body as UTF-8 text, at most `maxBytes`. A declared Content-Length over the limit
 * is refused before reading; a chunked (or lying) body is counted as it streams and abandoned at
 * the limit, so an oversized body never sits whole in memory.
 */
export async function readBody(request: Request, maxBytes: number): Promise<BodyResult> {
  const tooLarge = (): BodyResult => ({
    ok: false,
    reason: 'too_large',
    message: `Expected a body of at most ${maxBytes} bytes (server.maxBodyBytes).`,
  });
  const declared = request.headers.get('content-length');
  if (declared !== null && Number(declared) > maxBytes) return tooLarge();
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
  try {
    // SNS sends UTF-8 (text/plain; charset=UTF-8). Invalid bytes mean the body is not from SNS.
    return { ok: true, text: new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks, size)) };
  } catch {
    return { ok: false, reason: 'bad_encoding', message: 'Expected a UTF-8 body.' };
  }
}
