import test from 'ava';
import type http from 'node:http';
import { isAirgapError } from '../errors.js';
import { MediaType } from '../oci/mediatypes.js';
import { within, writeForever } from '../testing/endless.js';
import { MAX_PAGES, RegistryClient } from './client.js';
import { type Front, type FrontHandler, startFront } from './testfront.js';

// Issue 24, item 5: every answer read whole is capped, and so is the number of pages. Fronts that
// paginate forever, repeat their Link, or never end a body; the reads must fail in one line,
// quickly, with the process's memory untouched.

const FAST = { attempts: 2, baseDelayMs: 5, maxDelayMs: 20, maxElapsedMs: 5_000, retryAfterCapMs: 50 };
const USER = { username: 'limits', password: 'limits-pw' };
const DIGEST = `sha256:${'a'.repeat(64)}`;
const cleanups: (() => Promise<unknown>)[] = [];

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

/** A registry of its own (no backend): /v2/ answers 200 so the loopback probe settles on plain HTTP. */
async function registry(handle: (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void): Promise<Front> {
  const handler: FrontHandler = (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/v2/') return void res.writeHead(200, { 'content-length': '2' }).end('{}');
    handle(req, res, url);
  };
  const f = await startFront(undefined, handler);
  cleanups.push(() => f.stop());
  return f;
}

function client(host: string, credentials = false): RegistryClient {
  const c = new RegistryClient({
    host, retry: FAST, credentialOptions: { configDir: '/nonexistent-airgap', env: {} }, ...(credentials ? { credentials: USER } : {}),
  });
  cleanups.push(() => c.close());
  return c;
}

const json = (body: unknown, extra: http.OutgoingHttpHeaders = {}): [http.OutgoingHttpHeaders, string] => {
  const text = JSON.stringify(body);
  return [{ 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...extra }, text];
};

test('a tag list that paginates forever stops at the page cap with one line', async (t) => {
  const f = await registry((_req, res, url) => {
    const n = Number(url.searchParams.get('last')?.slice(1) ?? 0) + 1;
    const [headers, body] = json({ name: 'big/app', tags: [`t${n}`] }, { link: `</v2/big/app/tags/list?n=1000&last=t${n}>; rel="next"` });
    res.writeHead(200, headers).end(body);
  });
  const err = await t.throwsAsync(within(client(f.host).listTags('big/app'), 20_000, 'listTags'));
  t.true(isAirgapError(err, 'E_REGISTRY'), String(err));
  t.regex(err!.message, new RegExp(`tags of big/app on registry ${f.host.replace(/\./g, '\\.')}: more than ${MAX_PAGES} pages`));
  t.notRegex(err!.message, /\n/);
  t.true(f.seen.filter((r) => r.url.includes('/tags/list')).length <= MAX_PAGES);
});

test('listTags with a limit stops reading pages once it has that many tags', async (t) => {
  const f = await registry((_req, res, url) => {
    const n = Number(url.searchParams.get('last')?.slice(1) ?? 0);
    const tags = Array.from({ length: 50 }, (_, i) => `t${n + i + 1}`);
    const [headers, body] = json({ name: 'big/app', tags }, { link: `</v2/big/app/tags/list?n=50&last=t${n + 50}>; rel="next"` });
    res.writeHead(200, headers).end(body);
  });
  const tags = await within(client(f.host).listTags('big/app', { max: 120 }), 20_000, 'listTags');
  t.is(tags.length, 120);
  t.is(f.seen.filter((r) => r.url.includes('/tags/list')).length, 3);
});

test('a tag list whose Link names a page already read is an error, not a loop', async (t) => {
  const f = await registry((_req, res) => {
    const [headers, body] = json({ name: 'loop/app', tags: ['a'] }, { link: '</v2/loop/app/tags/list?n=1000>; rel="next"' });
    res.writeHead(200, headers).end(body);
  });
  const err = await t.throwsAsync(within(client(f.host).listTags('loop/app'), 20_000, 'listTags'));
  t.regex(err!.message, /tags of loop\/app on registry .*: page 1 links back to a page already read/);
  t.is(f.seen.filter((r) => r.url.includes('/tags/list')).length, 1);
});

test('a tag list page that never ends is refused at 4 MiB', async (t) => {
  const f = await registry((_req, res) => writeForever(res, 200, { 'content-type': 'application/json' }, `{"tags":[${'"x",'.repeat(16_000)}`));
  const err = await t.throwsAsync(within(client(f.host).listTags('endless/app'), 20_000, 'listTags'));
  t.regex(err!.message, /tags of endless\/app on registry .*: a page is more than the 4194304-byte limit/);
});

test('referrers whose Link repeats the page are an error after one page', async (t) => {
  const f = await registry((_req, res) => {
    const [headers, body] = json({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] },
      { 'content-type': MediaType.OciIndex, link: `</v2/r/app/referrers/${DIGEST}>; rel="next"` });
    res.writeHead(200, headers).end(body);
  });
  const err = await t.throwsAsync(within(client(f.host).getReferrers('r/app', DIGEST), 20_000, 'getReferrers'));
  t.regex(err!.message, /referrers of r\/app@sha256:a+ on registry .*: page 1 links back to a page already read/);
  t.is(f.seen.filter((r) => r.url.includes('/referrers/')).length, 1);
});

/** A registry whose Bearer realm (on itself) answers `token` for /token. */
async function tokenRegistry(token: (res: http.ServerResponse) => void): Promise<Front> {
  const f: Front = await registry((req, res, url) => {
    if (url.pathname === '/token') return token(res);
    res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${req.headers.host}/token",service="limits"`, 'content-length': '0' }).end();
  });
  return f;
}

test('a token response that never ends is refused at 1 MiB, in one line', async (t) => {
  const f = await tokenRegistry((res) => writeForever(res, 200, { 'content-type': 'application/json' }, `{"token":"${'x'.repeat(65_536)}`));
  const err = await t.throwsAsync(within(client(f.host, true).getManifest('tok/app', '1'), 20_000, 'getManifest'));
  t.regex(err!.message, /GET token from 127\.0\.0\.1:\d+ on registry .*: the answer is more than the 1048576-byte limit/);
  t.notRegex(err!.message, /\n/);
});

test('a token service refusal whose body never ends is read only in part: E_AUTH at once', async (t) => {
  const f = await tokenRegistry((res) => writeForever(res, 401, { 'content-type': 'text/plain' }, 'denied '.repeat(8192)));
  const err = await t.throwsAsync(within(client(f.host, true).getManifest('tok/app', '1'), 20_000, 'getManifest'));
  t.true(isAirgapError(err, 'E_AUTH'), String(err));
  t.regex(err!.message, /token service at 127\.0\.0\.1:\d+ refused/);
});
