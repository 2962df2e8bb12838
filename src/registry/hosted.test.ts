import test from 'ava';
import dns from 'node:dns';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import '../testing/nodns.js';
import { isAirgapError } from '../errors.js';
import { childrenOf, parseManifest } from '../oci/manifest.js';
import { seedImage } from '../testing/fixtures.js';
import { type EcrLike, type EcrLikeOptions, startEcrLike } from '../testing/ecrlike.js';
import { type HubLike, type HubLikeOptions, startHubLike } from '../testing/hublike.js';
import { type TestRegistry, startRegistry } from '../testing/registry.js';
import { type TestCa, createTestCa } from '../testing/tlsca.js';
import { RegistryClient } from './client.js';
import { RegistryError } from './errors.js';
import { Transport } from './transport.js';

// The registry client against fronts that behave like Docker Hub and Amazon ECR (real TLS over a
// real docker-registry), and against a registry that wants a client certificate.

const FAST = { attempts: 4, baseDelayMs: 10, maxDelayMs: 50, maxElapsedMs: 20_000, retryAfterCapMs: 300 };
const USER = { username: 'AWS', password: 'ecr-token-1' };
const MiB = 1024 * 1024;

let backend: TestRegistry;
let ca: TestCa;
let otherCa: TestCa;
const cleanups: (() => Promise<unknown>)[] = [];

test.before(async () => {
  [backend, ca, otherCa] = await Promise.all([startRegistry(), createTestCa(), createTestCa('another test CA')]);
  cleanups.push(() => backend.stop(), () => ca.remove(), () => otherCa.remove());
  await seedImage(backend, { repo: 'library/app', tag: '1', layers: [{ seed: 'hub-app', size: 300_000 }] });
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

function client(host: string, caFile: string, extra: { credentials?: typeof USER; transport?: Transport } = {}): RegistryClient {
  const c = new RegistryClient({
    host, retry: FAST, credentialOptions: { configDir: '/nonexistent-airgap' },
    ...(extra.transport ? { transport: extra.transport } : { settings: { caFile } }),
    ...(extra.credentials ? { credentials: extra.credentials } : {}),
  });
  cleanups.push(() => c.close());
  return c;
}

async function hub(opts: Partial<HubLikeOptions> = {}): Promise<HubLike> {
  const h = await startHubLike({ backend: backend.host, ca, ...opts });
  cleanups.push(() => h.stop());
  return h;
}

async function ecr(opts: Partial<EcrLikeOptions> = {}): Promise<EcrLike> {
  const e = await startEcrLike({ backend: backend.host, ca, user: USER, repositories: ['team/app', 'team/other'], ...opts });
  cleanups.push(() => e.stop());
  return e;
}

function blobOf(size: number, seed: number): { bytes: Buffer; desc: { mediaType: string; digest: string; size: number } } {
  const bytes = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i += 4) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes.writeUInt32LE(x, i);
  }
  return { bytes, desc: { mediaType: 'application/octet-stream', digest: 'sha256:' + createHash('sha256').update(bytes).digest('hex'), size } };
}

/** The blob as the registry behind the front holds it (an independent read, plain HTTP). */
async function backendHas(repo: string, digest: string): Promise<number | undefined> {
  const res = await fetch(`http://${backend.host}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
  return res.status === 200 ? Number(res.headers.get('content-length')) : undefined;
}

test('hub-like: the public/private probe is a HEAD (no manifest GET is spent); 404 for a missing tag, 401 for a missing repository', async (t) => {
  const h = await hub();
  const c = client(h.host, ca.caFile);
  t.is(await c.probe('library/app', '1'), 'readable');
  t.is(await c.probe('library/app', 'nosuchtag'), 'not-found');
  t.is(await c.probe('library/nosuchrepo', '1'), 'unauthorized');
  t.is(h.counts.manifestGet, 0);
  t.true(h.counts.manifestHead >= 3); // a missing repository is asked twice: its 401 earns one fresh token
  t.true(h.counts.token >= 1, 'anonymous pull tokens from the realm on another origin');
});

test('hub-like: where HEAD is refused (405) the probe falls back to one GET', async (t) => {
  const h = await hub({ refuseHead: true });
  const c = client(h.host, ca.caFile);
  t.is(await c.probe('library/app', '1'), 'readable');
  t.is(h.counts.manifestHead, 1);
  t.is(h.counts.manifestGet, 1);
});

test('hub-like: blobs come from the storage origin (307), signed, without Authorization, trusted through --ca-file', async (t) => {
  const h = await hub();
  const c = client(h.host, ca.caFile);
  const manifest = await c.getManifest('library/app', '1');
  const layer = childrenOf(parseManifest(manifest.bytes)).at(-1)!;
  const chunks: Buffer[] = [];
  for await (const chunk of await c.getBlob('library/app', layer)) chunks.push(chunk as Buffer);
  t.is('sha256:' + createHash('sha256').update(Buffer.concat(chunks)).digest('hex'), layer.digest);
  t.is(h.counts.blobRedirect, 1);
  t.is(h.counts.storageServed, 1);
  t.is(h.counts.storageRefused, 0);
});

test('hub-like: storage signed by a CA that is not the --ca-file one is E_TLS naming the storage origin, and the hint does not ask for the flag already given', async (t) => {
  const h = await hub({ storageCa: otherCa });
  const c = client(h.host, ca.caFile);
  const manifest = await c.getManifest('library/app', '1');
  const layer = childrenOf(parseManifest(manifest.bytes)).at(-1)!;
  const e = await t.throwsAsync(async () => {
    for await (const _ of await c.getBlob('library/app', layer)) { /* drain */ }
  });
  t.true(isAirgapError(e, 'E_TLS'), String(e));
  t.true(e!.message.includes(h.storageHost), e!.message);
  t.true((e as RegistryError).hint?.includes(ca.caFile), (e as RegistryError).hint);
  t.is(h.counts.storageServed, 0);
});

test('ecr-like: no monolithic PUT, no mount; chunks of at least 5 MiB (the last may be smaller)', async (t) => {
  const e = await ecr();
  const c = client(e.host, ca.caFile, { credentials: USER });
  const { bytes, desc } = blobOf(12 * MiB, 1);
  let opens = 0;
  const outcome = await c.pushBlob('team/app', desc, async () => { opens++; return Readable.from([bytes]); }, { mountFrom: ['team/other'] });
  t.is(outcome, 'uploaded');
  t.is(await backendHas('team/app', desc.digest), desc.size);
  const patches = e.events.filter((x) => x.method === 'PATCH').map((x) => x.range);
  t.deepEqual(patches, [`0-${5 * MiB - 1}`, `${5 * MiB}-${10 * MiB - 1}`, `${10 * MiB}-${12 * MiB - 1}`]);
  t.is(opens, 2, 'one monolithic try, refused; one chunked upload');
  // The blob is known in team/other: the mount goes first, no HEAD before it. ECR answers it 202
  // (a new session, OCI-Chunk-Min-Length), so the HEAD follows and the monolithic try goes into
  // that very session; refused, it is cancelled and the chunked upload opens its own.
  t.deepEqual(e.events.filter((x) => x.path !== '/v2/' && x.status !== 401).map((x) => x.method).slice(0, 6),
    ['POST', 'HEAD', 'PUT', 'DELETE', 'POST', 'PATCH']);
  t.is(e.events.filter((x) => x.method === 'POST' && x.status !== 401).length, 2, 'the mount\'s session, then one for the chunks');
});

test('ecr-like: a larger OCI-Chunk-Min-Length is honoured', async (t) => {
  const e = await ecr({ minChunk: 6 * MiB });
  const c = client(e.host, ca.caFile, { credentials: USER });
  const { bytes, desc } = blobOf(13 * MiB, 2);
  t.is(await c.pushBlob('team/app', desc, async () => Readable.from([bytes])), 'uploaded');
  const patches = e.events.filter((x) => x.method === 'PATCH').map((x) => x.range);
  t.deepEqual(patches, [`0-${6 * MiB - 1}`, `${6 * MiB}-${12 * MiB - 1}`, `${12 * MiB}-${13 * MiB - 1}`]);
});

test('ecr-like: a chunk cut mid-way continues from the offset the registry reports, not from byte 0', async (t) => {
  const e = await ecr({ cutPatch: (n) => (n === 2 ? MiB : undefined) });
  const c = client(e.host, ca.caFile, { credentials: USER });
  const { bytes, desc } = blobOf(12 * MiB, 3);
  let opens = 0;
  t.is(await c.pushBlob('team/app', desc, async () => { opens++; return Readable.from([bytes]); }), 'uploaded');
  t.is(await backendHas('team/app', desc.digest), desc.size);
  const requests = e.events.filter((x) => x.method === 'PATCH' || (x.method === 'GET' && x.path.includes('/uploads/')));
  t.deepEqual(requests.map((x) => `${x.method} ${x.range ?? ''}`.trim()), [
    `PATCH 0-${5 * MiB - 1}`,
    `PATCH ${5 * MiB}-${10 * MiB - 1}`, // cut after 1 MiB
    'GET', // the upload's status: 5 MiB held
    `PATCH ${5 * MiB}-${10 * MiB - 1}`,
    `PATCH ${10 * MiB}-${12 * MiB - 1}`,
  ]);
  t.is(opens, 2, 'the chunked upload was not restarted');
  t.is(e.events.filter((x) => x.method === 'POST').length, 2, 'one session for the refused PUT, one for the chunks');
});

test('ecr-like: a completing PUT whose answer is lost is HEAD-checked, not uploaded again', async (t) => {
  const e = await ecr({ loseCommitAnswers: 1 });
  const c = client(e.host, ca.caFile, { credentials: USER });
  const { bytes, desc } = blobOf(6 * MiB, 4);
  t.is(await c.pushBlob('team/app', desc, async () => Readable.from([bytes])), 'uploaded');
  const lost = e.events.findIndex((x) => x.status === -1);
  t.true(lost >= 0);
  const after = e.events.slice(lost + 1).filter((x) => x.path !== '/v2/');
  t.is(after[0]?.method, 'HEAD');
  t.true(after[0]?.path.endsWith(desc.digest));
  t.false(after.some((x) => x.method === 'POST' || x.method === 'PATCH'), 'nothing was sent again');
});

test('ecr-like: the header timeout does not cut a commit that takes longer than it', async (t) => {
  const e = await ecr({ commitDelayMs: 3000 });
  const transport = new Transport({ retry: FAST, headersTimeoutMs: 1000, bodyTimeoutMs: 1000, hosts: [{ host: e.host, caFile: ca.caFile }] });
  cleanups.push(() => transport.close());
  const c = client(e.host, ca.caFile, { credentials: USER, transport });
  const { bytes, desc } = blobOf(MiB, 5);
  t.is(await c.pushBlob('team/app', desc, async () => Readable.from([bytes])), 'uploaded');
  const commits = e.events.filter((x) => x.method === 'PUT' && x.bytes === 0);
  t.is(commits.length, 1, 'one completing PUT, waited for');
  t.is(commits[0]!.status, 201);
  t.is(await backendHas('team/app', desc.digest), desc.size);
});

test('ecr-like: a repository that does not exist is an error naming it, with the remedy', async (t) => {
  const e = await ecr();
  const c = client(e.host, ca.caFile, { credentials: USER });
  const { bytes, desc } = blobOf(1000, 6);
  const err = await t.throwsAsync(c.pushBlob('team/missing', desc, async () => Readable.from([bytes])));
  t.true(isAirgapError(err, 'E_NOT_FOUND'), String(err));
  t.regex(err!.message, /team\/missing/);
  t.regex(err!.message, /NAME_UNKNOWN/);
  t.regex((err as RegistryError).hint ?? '', /created first/);
});

test('a registry that requires a client certificate (mutual TLS) is a TLS error, never retried over plain HTTP', async (t) => {
  const mtls = await startRegistry({ mutualTls: true });
  cleanups.push(() => mtls.stop());
  const c = client(mtls.host, mtls.caFile!);
  const err = await t.throwsAsync(c.probe('library/app', '1'));
  t.true(isAirgapError(err, 'E_TLS'), `${String(err)} ${(err as RegistryError).code}`);
  t.regex(err!.message, /TLS handshake/);
  t.regex((err as RegistryError).hint ?? '', /client certificate/);
  // The same through the scheme probe of a transport that never saw the host (loopback: HTTP first).
  const fresh = new Transport({ retry: FAST, hosts: [{ host: mtls.host, caFile: mtls.caFile! }] });
  cleanups.push(() => fresh.close());
  const e2 = await t.throwsAsync(fresh.baseUrl(mtls.host, { method: 'GET', host: mtls.host, what: '/v2/' }));
  t.true(isAirgapError(e2, 'E_TLS'), String(e2));
});

test('a name that does not resolve fails at once, naming the host (no retries as for a dropped connection)', async (t) => {
  const transport = new Transport({ retry: { ...FAST, attempts: 5 } });
  cleanups.push(() => transport.close());
  let lookups = 0;
  const original = dns.lookup;
  (dns as { lookup: unknown }).lookup = (...args: unknown[]) => {
    if (String(args[0]).endsWith('.invalid')) lookups++;
    return (original as (...a: unknown[]) => unknown)(...args);
  };
  try {
    const err = await t.throwsAsync(transport.send({
      method: 'GET', host: 'nosuch.invalid', url: '/v2/', subject: { method: 'GET', host: 'nosuch.invalid', what: '/v2/' },
    }));
    t.true(isAirgapError(err, 'E_NETWORK'), String(err));
    t.regex(err!.message, /cannot resolve nosuch\.invalid/);
    t.false(err!.message.includes('\n'));
    t.is(lookups, 1);
  } finally {
    (dns as { lookup: unknown }).lookup = original;
  }
});
