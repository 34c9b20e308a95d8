import type { ContentfulStatusCode } from 'hono/utils/http-status';

/**
 * The one error shape every pd-relay HTTP endpoint answers with. Its own module, so that the app
 * factory (src/app.ts) and the SNS intake (src/ingress/sns) both answer with it without importing
 * each other.
 */
export interface ErrorBody {
  /** A stable machine-readable code, e.g. "bad_signature". */
  error: string;
  /** A sentence for the human reading the SNS delivery log or curl output. */
  message: string;
}

/** A JSON response in the one error shape. */
export function errorResponse(
  status: ContentfulStatusCode,
  error: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify({ error, message } satisfies ErrorBody), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  });
}
