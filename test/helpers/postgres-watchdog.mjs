// Spawned by postgres.ts, one per test process that starts a PostgreSQL server. The test process
// holds our stdin open and writes one JSON line per change ({ dir, pid } when a postmaster starts,
// { dir, pid: null } when it stops, { dir, closed: true } when its directory is gone). End of file
// means the test process is gone; if it left servers behind (vitest stops its workers with SIGTERM,
// then SIGKILL, which no 'exit' handler sees), we shut them down and remove their directories.
import { readFileSync, rmSync } from 'node:fs';

/** @type {Map<string, number | null>} directory → postmaster pid */
const servers = new Map();
let pending = '';

process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  pending += chunk;
  for (let end = pending.indexOf('\n'); end >= 0; end = pending.indexOf('\n')) {
    const line = pending.slice(0, end);
    pending = pending.slice(end + 1);
    const note = JSON.parse(line);
    if (note.closed) servers.delete(note.dir);
    else servers.set(note.dir, note.pid);
  }
});
process.stdin.on('end', async () => {
  const running = [...servers].filter(([dir, pid]) => pid !== null && isPostmaster(pid, dir));
  // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its backends down with it,
  // which SIGKILL would not.
  for (const [, pid] of running) signal(pid, 'SIGQUIT');
  const deadline = Date.now() + 5_000;
  while (running.some(([dir, pid]) => isPostmaster(pid, dir)) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  for (const [dir] of servers) rmSync(dir, { recursive: true, force: true });
});

// The pid could have been reused since the note was written: only a process whose command line
// names the server's directory is ours. A zombie has an empty command line, which counts as gone.
function isPostmaster(pid, dir) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

function signal(pid, name) {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}
