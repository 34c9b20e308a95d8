// Summarises V8 CPU profiles (`node --cpu-prof`, or `BENCH_PROFILE=<dir> npm run bench ingest`):
// where the busy time went, by self time per function, by package or src/ stage, and inclusive
// time under the hot-path stages (signature verification, rules, commit, the request log line…).
//
//   npx tsx bench/cpu-profile.ts <file.cpuprofile | dir> [--top 25]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * Inclusive stages: a sample counts for a stage when any frame on its stack is the stage's function.
 * What each means is the function's whole subtree (e.g. `spool commit` includes the fsync).
 */
const STAGES: Array<{ label: string; file: string | RegExp; fn: RegExp }> = [
  { label: 'body read (readBody)', file: 'src/ingress/sns/body.ts', fn: /^readBody$/ },
  { label: 'signature verification', file: 'src/ingress/sns/signature.ts', fn: /^verify$/ },
  { label: 'decode (incl. JSON.parse of Message)', file: 'src/decode/decode.ts', fn: /^decodeNotification$/ },
  { label: 'rules evaluate (match + render + fit)', file: 'src/rules/engine.ts', fn: /^evaluate$/ },
  { label: '  of which fitEvent', file: 'src/pagerduty/limits.ts', fn: /^fitEvent$/ },
  { label: 'spool group commit (#flush)', file: 'src/spool/sqlite/spool.ts', fn: /flush$/ },
  {
    label: '  of which the entries (statements, body JSON)',
    file: 'src/spool/sqlite/spool.ts',
    fn: /insertEntry$/,
  },
  {
    label: 'spool group commit on PostgreSQL (#commitBatch: entries, JSON, query sent)',
    file: 'src/spool/postgres/spool.ts',
    fn: /commitBatch$/,
  },
  {
    label: 'node-postgres (pg, pg-protocol, pg-pool: values, socket writes, parsing answers)',
    file: /\/node_modules\/pg(-protocol|-pool)?\//,
    fn: /.*/,
  },
  { label: 'dispatcher place()', file: 'src/delivery/dispatcher.ts', fn: /^place$/ },
  { label: 'request log line + metrics', file: 'src/metrics/ingress.ts', fn: /^requestCompleted$/ },
  {
    label: 'ingress handle() (all of the above but I/O)',
    file: 'src/ingress/sns/handler.ts',
    fn: /^handle$/,
  },
];

const IDLE = new Set(['(idle)', '(program)', '(garbage collector)']);

function categoryOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (IDLE.has(functionName)) return functionName;
  if (!url) return '(native: V8 builtins and C++)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return (rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]) ?? url;
  }
  if (url.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([a-z_]+)/.exec(url);
    return `node:${m?.[1] ?? 'internal'}`;
  }
  const src = /\/(src\/[a-z]+(?:\/sns)?)\//.exec(url) ?? /\/(src)\/[a-z-]+\.ts$/.exec(url);
  if (src) return src[1] as string;
  return relative(process.cwd(), url.replace(/^file:\/\//, '')) || url;
}

function shortUrl(url: string): string {
  if (!url) return '';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const src = url.indexOf('/src/');
  if (src >= 0) return url.slice(src + 1);
  return url.replace(/^file:\/\//, '');
}

function summarise(profile: Profile, top = 25): string {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const selfUs = new Map<number, number>();
  let total = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    // timeDeltas[i] is the time since the previous sample: it belongs to sample i.
    const dt = Math.max(0, profile.timeDeltas[i] ?? 0);
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
    total += dt;
    const fn = byId.get(id)?.callFrame.functionName ?? '';
    if (fn === '(idle)') idle += dt;
  });
  const busy = total - idle;
  const pct = (us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)}%`;
  const lines: string[] = [];
  lines.push(
    `${(total / 1e6).toFixed(1)} s profiled, ${(busy / 1e6).toFixed(1)} s busy (${((busy / total) * 100).toFixed(0)}%); percentages are of busy time`,
  );

  const byFn = new Map<string, number>();
  const byCat = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = (byId.get(id) as ProfileNode).callFrame;
    if (frame.functionName === '(idle)') continue;
    const key = `${frame.functionName || '(anonymous)'}  ${shortUrl(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    byFn.set(key, (byFn.get(key) ?? 0) + us);
    const cat = categoryOf(frame);
    byCat.set(cat, (byCat.get(cat) ?? 0) + us);
  }
  const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]);

  lines.push('', `top ${top} functions by self time`);
  for (const [k, us] of sorted(byFn).slice(0, top)) lines.push(`  ${pct(us)}  ${k}`);
  lines.push('', 'self time by package / src stage');
  for (const [k, us] of sorted(byCat).slice(0, 20)) lines.push(`  ${pct(us)}  ${k}`);

  // Inclusive stage time: walk each sample's stack once.
  const stageUs = STAGES.map(() => 0);
  const matches = (frame: CallFrame, s: (typeof STAGES)[number]) =>
    (typeof s.file === 'string' ? frame.url.endsWith(s.file) : s.file.test(frame.url)) &&
    s.fn.test(frame.functionName.replace(/^.*\./, ''));
  profile.samples.forEach((id, i) => {
    const dt = Math.max(0, profile.timeDeltas[i] ?? 0);
    const hit = STAGES.map(() => false);
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = (byId.get(cur) as ProfileNode).callFrame;
      STAGES.forEach((s, j) => {
        if (!hit[j] && matches(frame, s)) hit[j] = true;
      });
    }
    hit.forEach((h, j) => {
      if (h) stageUs[j] = (stageUs[j] ?? 0) + dt;
    });
  });
  lines.push('', 'inclusive time under hot-path stages (synchronous work only)');
  for (const [j, s] of STAGES.entries()) lines.push(`  ${pct(stageUs[j] ?? 0)}  ${s.label}`);
  return lines.join('\n');
}

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args[topAt + 1]) : 25;
const targets = args.filter((_, i) => topAt < 0 || (i !== topAt && i !== topAt + 1));
if (!targets.length) {
  console.error('Expected a .cpuprofile file or a directory of them.');
  process.exit(2);
}
for (const t of targets) {
  const files = statSync(t).isDirectory()
    ? readdirSync(t)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => join(t, f))
    : [t];
  for (const f of files) {
    const profile = JSON.parse(readFileSync(f, 'utf8')) as Profile;
    // --cpu-prof also profiles the tsx loader's module-hooks thread: nothing of the relay runs there.
    const relay = profile.nodes.some((n) => n.callFrame.url.includes('/src/'));
    console.log(`\n=== ${f}${relay ? '' : ' (no pd-relay code: a loader thread, skipped)'}`);
    if (relay) console.log(summarise(profile, top));
  }
}
