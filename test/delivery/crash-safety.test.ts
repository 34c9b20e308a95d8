import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { PoolKeyAssigner } from '../../src/delivery/key-assigner.js';
import { KeyRing } from '../../src/delivery/key-ring.js';
import { SqliteSpool } from '../../src/spool/sqlite/spool.js';
import { tempDir } from '../helpers/delivery.js';

let tmp: ReturnType<typeof tempDir> | undefined;
afterEach(() => tmp?.cleanup());

describe('spool crash safety', () => {
  it('keeps every acknowledged commit of a process killed with SIGKILL mid-stream, whole', async () => {
    tmp = tempDir();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/delivery/fixtures/commit-child.ts', tmp.dir],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const acked: string[] = [];
    const lines = createInterface({ input: child.stdout });
    const enough = new Promise<void>((resolve) => {
      lines.on('line', (line) => {
        if (line.startsWith('ack ')) acked.push(line.slice(4));
        if (acked.length >= 2000) resolve();
      });
    });
    const exited = once(child, 'exit');
    await Promise.race([enough, exited.then(() => Promise.reject(new Error('The child exited on its own')))]);
    child.kill('SIGKILL');
    const [code, signal] = await exited;
    expect([code, signal]).toEqual([null, 'SIGKILL']);
    lines.close();

    const spool = new SqliteSpool({ dir: tmp.dir, assigner: new PoolKeyAssigner(new KeyRing({})) });
    try {
      const missing: string[] = [];
      for (const id of acked) if (!(await spool.hasMessage(id))) missing.push(id);
      expect(missing).toEqual([]);
      // Each message carried a trigger and a resolve: both or neither made it, never half.
      const pending = await spool.pending();
      const counts = await spool.counts();
      expect(pending.length).toBe(counts.messageIds * 2);
      const byDedup = new Map<string, string[]>();
      for (const e of pending)
        byDedup.set(e.dedupKey as string, [...(byDedup.get(e.dedupKey as string) ?? []), e.action]);
      for (const id of acked) expect(byDedup.get(id)).toEqual(['trigger', 'resolve']);
    } finally {
      spool.closeNow();
    }
  });
});
