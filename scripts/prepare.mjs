// Builds dist/ on `npm ci` / `npm install` so that `npm start` and the `pd-relay` bin work right after
// the README's install command. Skipped when TypeScript is absent (`npm ci --omit=dev` in the image,
// which copies a dist/ built in an earlier stage).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc');
} catch {
  console.log('pd-relay: TypeScript not installed (production install); using the prebuilt dist/.');
  process.exit(0);
}
const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
process.exit(r.status ?? 1);
