import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/metrics/registry.js';
import { PROMTOOL_INSTALL, requireTool } from '../k8s/tools.js';

describe('the metrics registry', () => {
  it('exposes only what `promtool check metrics` accepts, process metrics included', async () => {
    requireTool('promtool', ['--version'], PROMTOOL_INSTALL);
    const exposition = await createRegistry().metrics();
    // The by-type process gauges stay; only their `_total` siblings (gauges misnamed as counters) go.
    expect(exposition).toContain('# TYPE nodejs_active_handles gauge');
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
    expect(`${lint.stdout}${lint.stderr}`.trim()).toBe('');
    expect(lint.status).toBe(0);
  });
});
