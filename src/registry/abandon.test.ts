import test from 'ava';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type EgressProxy, startEgressProxy } from '../testing/egress.js';
import { type TestRegistry, startRegistry } from '../testing/registry.js';
import { type TestCa, createTestCa } from '../testing/tlsca.js';
import type { OpenUpload } from './abandon.js';
import { type Front, startFront } from './testfront.js';

/**
 * What an interrupt sends to give open upload sessions back (abandon.ts), through an egress proxy
 * that alone resolves the registry's name, as on a network where HTTPS_PROXY is the only way out:
 * the DELETE goes through the proxy (an absolute URI for http, CONNECT and TLS inside the tunnel
 * for https) and the real registry behind forgets the session.
 */

const NAME = 'registry.abandon.invalid';
let registry: TestRegistry;
let ca: TestCa;
const cleanups: (() => Promise<unknown>)[] = [];

test.before(async () => {
  [registry, ca] = await Promise.all([startRegistry(), createTestCa()]);
  cleanups.push(() => registry.stop(), () => ca.remove());
  // The child is plain node: names under .invalid fail there without a DNS query (a direct attempt, as before this was fixed).
  const nodns = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'src', 'testing', 'nodns.js');
  process.env.NODE_OPTIONS = `--import=${nodns}`;
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

async function openSession(repo: string): Promise<string> {
  const res = await fetch(`http://${registry.host}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (res.status !== 202) throw new Error(`POST: HTTP ${res.status}`);
  const u = new URL(res.headers.get('location')!, `http://${registry.host}`);
  return u.pathname + u.search;
}

async function known(path: string): Promise<number> {
  return (await fetch(`http://${registry.host}${path}`)).status;
}

/**
 * Tracks the session and runs the interrupt's cleanups, on a thread of its own: they wait for the
 * DELETEs synchronously, and the proxy and front serving them run on this thread.
 */
async function interrupt(u: OpenUpload): Promise<void> {
  // The built modules (npm test builds first): a plain thread has no TypeScript loader.
  const built = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'src');
  const abandon = pathToFileURL(join(built, 'registry', 'abandon.js')).href;
  const cleanup = pathToFileURL(join(built, 'cleanup.js')).href;
  const w = new Worker(`(async () => {
    const a = await import(${JSON.stringify(abandon)});
    const c = await import(${JSON.stringify(cleanup)});
    a.trackUpload(${JSON.stringify(u)});
    c.runCleanupsSync();
    if (a.openUploads().length !== 0) throw new Error('sessions still tracked');
  })().catch((e) => { process.exitCode = 1; throw e; });`, { eval: true });
  const failed: unknown[] = [];
  w.on('error', (e) => failed.push(e));
  await once(w, 'exit');
  if (failed.length > 0) throw failed[0];
}

async function egress(target: string): Promise<EgressProxy> {
  const e = await startEgressProxy({ [NAME]: target });
  cleanups.push(() => e.stop());
  return e;
}

test.serial('an interrupt gives a session back through the proxy: absolute URI for http', async (t) => {
  const path = await openSession('abandon/plain');
  t.is(await known(path), 204);
  const front: Front = await startFront(registry.host, (_req, _res, ctx) => ctx.forward());
  cleanups.push(() => front.stop());
  const e = await egress(front.host);
  const port = front.host.split(':')[1];
  await interrupt({ url: `http://${NAME}:${port}${path}`, verify: true, proxy: e.url });
  t.true(e.forwarded.includes(`http://${NAME}:${port}${path}`), e.forwarded.join('\n'));
  t.true(front.seen.some((r) => r.method === 'DELETE' && r.url === path));
  t.is(await known(path), 404, 'the registry no longer knows the session');
});

test.serial('an interrupt gives a session back through the proxy: CONNECT, then TLS verified against the registry\'s CA', async (t) => {
  const path = await openSession('abandon/tls');
  const cert = await ca.server([NAME]);
  const front: Front = await startFront(registry.host, (_req, _res, ctx) => ctx.forward(), { tls: cert });
  cleanups.push(() => front.stop());
  const e = await egress(front.host);
  const port = front.host.split(':')[1];
  await interrupt({ url: `https://${NAME}:${port}${path}`, verify: true, ca: [await readFile(ca.caFile, 'utf8')], proxy: e.url });
  t.deepEqual(e.tunnels, [`${NAME}:${port}`]);
  t.true(front.seen.some((r) => r.method === 'DELETE' && r.url === path));
  t.is(await known(path), 404, 'the registry no longer knows the session');
});
