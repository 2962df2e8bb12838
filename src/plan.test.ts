import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProbeResult, RegistryProbe } from './app/resolve.js';
import { makePlan, manifestRequestsInFlight, type RegistryAccess } from './plan.js';

/** A probe that answers after a while and records how many probes were in flight at most. */
function slowProbe(): { probe: RegistryProbe; maxInFlight: () => number; calls: () => number } {
  let now = 0;
  let max = 0;
  let calls = 0;
  return {
    probe: {
      async probe(): Promise<ProbeResult> {
        calls++;
        max = Math.max(max, ++now);
        await new Promise((r) => setTimeout(r, 20));
        now--;
        return 'readable';
      },
      tagFor: async () => undefined,
    },
    maxInFlight: () => max,
    calls: () => calls,
  };
}

test('the plan probes many images at once: four per --concurrency slot, 32 by default', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-plan-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const containers = Array.from({ length: 100 }, (_, i) => `        - name: c${i}\n          image: registry.example.com/app/c${i}:1.0\n`).join('');
  await writeFile(join(dir, 'deployment.yaml'), ['apiVersion: apps/v1', 'kind: Deployment', 'metadata:', '  name: many', 'spec:',
    '  template:', '    spec:', '      containers:', containers].join('\n'));
  const run = async (probesInFlight?: number) => {
    const p = slowProbe();
    const registries: RegistryAccess = { open: () => { throw new Error('the plan opens no store'); }, probe: p.probe };
    const plan = await makePlan({ manifestsDir: dir, proxyHost: 'proxy.example.com', replicatedRegistry: 'registry.example.org', registries,
      ...(probesInFlight !== undefined ? { probesInFlight } : {}) });
    t.is(plan.images.length, 100);
    t.true(plan.images.every((i) => i.kind === 'public'));
    t.is(p.calls(), 100);
    return p.maxInFlight();
  };
  t.is(manifestRequestsInFlight(8), 32);
  t.is(await run(), 32);
  t.is(await run(manifestRequestsInFlight(1)), 4);
});
