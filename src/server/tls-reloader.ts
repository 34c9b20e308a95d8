import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import type { Logger } from '../log/logger.js';

/** How often the certificate files are checked. stat polling follows Kubernetes' symlink swaps. */
const POLL_MS = 5_000;

/**
 * Re-reads the TLS certificate and key when either file changes (cert-manager renewals, Secret
 * updates) and swaps them into the running server. A pair that does not load — a half-written
 * file, a key that does not match — is logged and the previous pair stays in use.
 */
export function watchTlsFiles(
  server: HttpsServer,
  files: { certFile: string; keyFile: string },
  logger: Logger,
  pollMs = POLL_MS,
): () => void {
  const reload = () => {
    try {
      const cert = readFileSync(files.certFile);
      const key = readFileSync(files.keyFile);
      createSecureContext({ cert, key }); // throws on a mismatched or malformed pair
      server.setSecureContext({ cert, key });
      logger.info({ certFile: files.certFile }, 'TLS certificate reloaded.');
    } catch (err) {
      logger.error(
        { certFile: files.certFile, keyFile: files.keyFile, err: (err as Error).message },
        'TLS certificate change could not be loaded; keeping the previous certificate.',
      );
    }
  };
  const onChange = (cur: { mtimeMs: number }, prev: { mtimeMs: number }) => {
    if (cur.mtimeMs !== prev.mtimeMs) reload();
  };
  watchFile(files.certFile, { interval: pollMs, persistent: false }, onChange);
  watchFile(files.keyFile, { interval: pollMs, persistent: false }, onChange);
  return () => {
    unwatchFile(files.certFile, onChange);
    unwatchFile(files.keyFile, onChange);
  };
}
