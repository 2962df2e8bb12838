import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorld, type World } from '../src/testing/world.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { buildBundle, runCli, json, type CliResult } from '../src/testing/cli.js';
import { tarHeader } from '../src/testing/craft.js';

/**
 * Hostile and damaged bundles, made from a good one by a tar walker written here (independent of
 * src/bundle): inspect, verify, push and rewrite each refuse with one clear line (exit 3) or, for
 * verify, report every problem; none writes outside its --out; push never tags a corrupt image.
 */

interface Ctx { world: World; dir: string; good: Buffer; customer: TestRegistry; user: { username: string; password: string } }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  // Each resource goes into the context as soon as it exists, so that after.always stops it
  // even when a later step of this hook throws.
  const world = await startWorld();
  t.context.world = world;
  const dir = await mkdtemp(join(tmpdir(), 'airgap-badbundle-e2e-'));
  t.context.dir = dir;
  const bundle = join(dir, 'good.tar');
  await buildBundle(world, bundle);
  const user = { username: 'deployer', password: 'badbundle-pw-3' };
  t.context.user = user;
  t.context.customer = await startRegistry({ users: [user] });
  t.context.good = await readFile(bundle);
});

test.after.always(async (t) => {
  await t.context.world?.stop();
  await t.context.customer?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

// ---- a minimal tar reader/writer, for crafting ----

interface Entry { name: string; type: string; header: Buffer; body: Buffer }

function entries(tar: Buffer): Entry[] {
  const out: Entry[] = [];
  for (let pos = 0; pos + 512 <= tar.length;) {
    const h = tar.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.toString('utf8', 0, 100).replace(/\0.*$/s, '');
    const size = parseInt(h.toString('latin1', 124, 136).replace(/[\0 ]/g, '') || '0', 8);
    out.push({ name, type: String.fromCharCode(h[156]!), header: Buffer.from(h), body: Buffer.from(tar.subarray(pos + 512, pos + 512 + size)) });
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

const header = tarHeader;

function pack(list: Entry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of list) {
    parts.push(e.header, e.body, Buffer.alloc(Math.ceil(e.body.length / 512) * 512 - e.body.length));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

function file(name: string, content: string | Buffer, type = '0', linkname = ''): Entry {
  const body = Buffer.from(content);
  return { name, type, header: header(name, type === '0' ? body.length : 0, type, linkname), body: type === '0' ? body : Buffer.alloc(0) };
}

/** The largest blob: a layer. */
function layer(list: Entry[]): Entry {
  return list.filter((e) => e.name.startsWith('blobs/sha256/')).sort((a, b) => b.body.length - a.body.length)[0]!;
}

function withIndex(list: Entry[], content: string): Entry[] {
  return list.map((e) => (e.name === 'index.json' ? file('index.json', content) : e));
}

// ---- running the four commands on a bundle ----

interface Outcome { inspect: CliResult; verify: CliResult; push: CliResult; rewrite: CliResult; sandbox: string; ns: string }

/** Writes the bundle into a fresh sandbox, runs all four commands, and checks nothing appeared outside --out. */
async function runAll(t: ExecutionContext<Ctx>, name: string, bytes: Buffer): Promise<Outcome> {
  const sandbox = join(t.context.dir, name);
  await mkdir(sandbox);
  const bundle = join(sandbox, 'bundle.tar');
  await writeFile(bundle, bytes);
  const before = (await readdir(sandbox, { recursive: true })).sort();
  const ns = name.replace(/[^a-z0-9]/g, '');
  const registry = ['--registry', `${t.context.customer.host}/${ns}`, '--username', t.context.user.username, '--password-stdin'];
  const input = t.context.user.password + '\n';
  const out = join(sandbox, 'out');
  const [inspect, verify, push, rewrite] = await Promise.all([
    runCli(['inspect', bundle], { cwd: sandbox }),
    runCli(['verify', bundle], { cwd: sandbox }),
    runCli(['push', bundle, ...registry], { cwd: sandbox, input }),
    // The registry check would only say the (concurrent) push is not there yet: this is about the bundle.
    runCli(['rewrite', bundle, ...registry, '--out', out, '--skip-registry-check'], { cwd: sandbox, input }),
  ]);
  const after = (await readdir(sandbox, { recursive: true })).sort().filter((p) => p !== 'out' && !p.startsWith('out/'));
  t.deepEqual(after, before, `${name}: nothing written outside --out, no temporary left`);
  for (const evil of [join(t.context.dir, 'x'), join(sandbox, 'x'), '/tmp/airgap-evil', join(tmpdir(), 'x')]) {
    t.false(existsSync(evil), `${evil} was not written`);
  }
  return { inspect, verify, push, rewrite, sandbox, ns };
}

function refused(t: ExecutionContext<Ctx>, r: CliResult, what: string, pattern: RegExp): void {
  t.is(r.code, 3, `${what}: exit 3 (${r.stderr})`);
  const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('airgap:'));
  t.is(lines.length, 1, `${what}: one error line: ${r.stderr}`);
  t.notRegex(r.stderr, /\n\s+at |internal error/, `${what}: no stack trace`);
  t.regex(lines[0] ?? '', pattern, `${what}: ${lines[0]}`);
}

/** A structurally unsafe or unreadable bundle: all four commands refuse it the same way. */
async function allRefuse(t: ExecutionContext<Ctx>, name: string, bytes: Buffer, pattern: RegExp): Promise<void> {
  const o = await runAll(t, name, bytes);
  for (const cmd of ['inspect', 'verify', 'push', 'rewrite'] as const) refused(t, o[cmd], `${name} ${cmd}`, pattern);
  t.is(await tagCount(t, o.ns), 0, 'nothing was pushed');
}

async function tagCount(t: ExecutionContext<Ctx>, ns: string): Promise<number> {
  const auth = 'Basic ' + Buffer.from(`${t.context.user.username}:${t.context.user.password}`).toString('base64');
  const get = async (p: string) => (await fetch(`http://${t.context.customer.host}${p}`, { headers: { authorization: auth } })).json();
  const { repositories } = (await get('/v2/_catalog?n=1000')) as { repositories: string[] | null };
  let n = 0;
  for (const repo of (repositories ?? []).filter((r) => r.startsWith(`${ns}/`))) {
    n += (((await get(`/v2/${repo}/tags/list`)) as { tags: string[] | null }).tags ?? []).length;
  }
  return n;
}

test('a truncated tar is refused by every command', async (t) => {
  await allRefuse(t, 'truncated', t.context.good.subarray(0, Math.floor(t.context.good.length / 2)), /truncated/);
});

test('a tar cut exactly at an entry boundary (no end-of-archive marker) is refused', async (t) => {
  const list = entries(t.context.good);
  const full = pack(list);
  await allRefuse(t, 'noeof', full.subarray(0, full.length - 1024), /truncated/);
});

test('index.json that is not JSON is refused by every command', async (t) => {
  await allRefuse(t, 'indexnotjson', pack(withIndex(entries(t.context.good), '{"schemaVersion": 2, "manifests": [')), /index\.json is not valid JSON/);
});

test('entries named ../x, /abs, links, duplicates and a huge size are refused by every command', async (t) => {
  const list = entries(t.context.good);
  const cases: [string, Entry[], RegExp][] = [
    ['dotdot', [...list, file('app/../../x', 'evil')], /"\.\."|\.\. path/],
    ['dotdot2', [...list, file('../x', 'evil')], /"\.\."|\.\. path/],
    ['absolute', [...list, file('/tmp/airgap-evil', 'evil')], /absolute path/],
    ['symlink', [...list, file('app/link.yaml', '', '2', '/etc/passwd')], /symbolic link/],
    ['hardlink', [...list, file('app/hard.yaml', '', '1', 'oci-layout')], /hard link/],
    ['duplicate', [...list, file('app/' + list.find((e) => e.name.startsWith('app/') && e.type === '0')!.name.slice(4), 'kind: Secret\n')], /duplicate entry/],
  ];
  for (const [name, l, pattern] of cases) await allRefuse(t, name, pack(l), pattern);
  // A header that claims ~8 GiB in a file of a few hundred KB.
  const huge = Buffer.concat([pack(list).subarray(0, -1024), header('blobs/sha256/' + 'f'.repeat(64), 0o77777777777), Buffer.alloc(1024)]);
  await allRefuse(t, 'hugesize', huge, /truncated: entry .* needs \d+ bytes/);
});

test('a flipped byte inside a layer: verify names it, push refuses that image and tags nothing corrupt', async (t) => {
  const list = entries(t.context.good);
  const target = layer(list);
  target.body[Math.floor(target.body.length / 2)] ^= 0x01;
  const digest = 'sha256:' + target.name.slice('blobs/sha256/'.length);
  const o = await runAll(t, 'flipped', pack(list));
  t.is(o.verify.code, 3, o.verify.stderr);
  t.true(o.verify.stdout.includes(`blob ${digest} is damaged`), o.verify.stdout);
  refused(t, o.push, 'push', new RegExp(digest.slice(7)));
  // inspect and rewrite read manifests, not layers: they succeed, and say nothing untrue.
  t.is(o.inspect.code, 0, o.inspect.stderr);
  t.is(o.rewrite.code, 0, o.rewrite.stderr);
  // No image that uses the damaged layer is tagged (others may be).
  const v = json<{ problems: unknown[] }>(await runCli(['verify', join(o.sandbox, 'bundle.tar'), '--json']));
  t.true(v.problems.length >= 1);
  const users = await imagesUsing(t, join(o.sandbox, 'bundle.tar'), digest);
  t.true(users.length > 0);
  for (const ref of users) {
    const repo = `${o.ns}/${ref.split('/').pop()!.split(':')[0]}`;
    const tags = await fetch(`http://${t.context.customer.host}/v2/${repo}/tags/list`, {
      headers: { authorization: 'Basic ' + Buffer.from(`${t.context.user.username}:${t.context.user.password}`).toString('base64') },
    });
    const body = tags.status === 200 ? ((await tags.json()) as { tags: string[] | null }) : { tags: null };
    t.deepEqual(body.tags ?? [], [], `${ref} (uses the damaged layer) is not tagged`);
  }
});

/** Images of a bundle whose graph holds `digest`, found by reading the manifests with tar. */
async function imagesUsing(t: ExecutionContext<Ctx>, bundle: string, digest: string): Promise<string[]> {
  const list = entries(await readFile(bundle));
  const blob = (d: string) => list.find((e) => e.name === `blobs/sha256/${d.slice(7)}`)?.body;
  const holds = (d: string): boolean => {
    if (d === digest) return true;
    const b = blob(d);
    if (!b || b.length > 1 << 20) return false;
    try {
      const m = JSON.parse(b.toString()) as { manifests?: { digest: string }[]; layers?: { digest: string }[]; config?: { digest: string } };
      return [...(m.manifests ?? []), ...(m.layers ?? []), ...(m.config ? [m.config] : [])].some((c) => holds(c.digest));
    } catch {
      return false;
    }
  };
  const index = JSON.parse(list.find((e) => e.name === 'index.json')!.body.toString()) as
    { manifests: { digest: string; annotations: Record<string, string> }[] };
  t.true(index.manifests.length > 0);
  return index.manifests.filter((m) => holds(m.digest)).map((m) => m.annotations['org.opencontainers.image.ref.name']!);
}

test('verify reports every problem at once: a flipped blob, a missing blob and an index entry that refers to nothing', async (t) => {
  const list = entries(t.context.good);
  const blobs = list.filter((e) => e.name.startsWith('blobs/sha256/')).sort((a, b) => b.body.length - a.body.length);
  const flipped = blobs[0]!;
  const missing = blobs[1]!;
  flipped.body[0] ^= 0xff;
  const index = JSON.parse(list.find((e) => e.name === 'index.json')!.body.toString()) as { manifests: unknown[] };
  const nothing = 'sha256:' + '0'.repeat(64);
  index.manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: nothing, size: 1234,
    annotations: { 'org.opencontainers.image.ref.name': 'example.com/ghost/image:1' } });
  const damaged = withIndex(list.filter((e) => e !== missing), JSON.stringify(index));
  const o = await runAll(t, 'several', pack(damaged));
  t.is(o.verify.code, 3);
  for (const d of [flipped.name, missing.name]) t.true(o.verify.stdout.includes(d.slice('blobs/sha256/'.length)), `names ${d}: ${o.verify.stdout}`);
  t.true(o.verify.stdout.includes(nothing), 'names the index entry that refers to nothing');
  t.regex(o.verify.stdout, /missing/);
  // The others refuse: the ghost image cannot be read.
  for (const cmd of ['inspect', 'push'] as const) {
    t.not(o[cmd].code, 0, `${cmd} refuses`);
    t.regex(o[cmd].stderr, /^airgap: /m);
    t.notRegex(o[cmd].stderr, /\n\s+at |internal error/);
  }
});

test('an index.json entry that refers to nothing is refused by inspect, push and rewrite', async (t) => {
  const list = entries(t.context.good);
  const index = JSON.parse(list.find((e) => e.name === 'index.json')!.body.toString()) as { manifests: { digest: string }[] };
  index.manifests[0]!.digest = 'sha256:' + 'e'.repeat(64);
  const o = await runAll(t, 'ghost', pack(withIndex(list, JSON.stringify(index))));
  t.is(o.verify.code, 3);
  t.regex(o.verify.stdout, /e{64} is missing/);
  for (const cmd of ['inspect', 'push', 'rewrite'] as const) refused(t, o[cmd], cmd, /e{64}/);
  t.is(await tagCount(t, o.ns), 0, 'push refused before tagging anything');
});

test('a missing layer blob: verify reports it, push refuses with exit 3 and tags no image that needs it', async (t) => {
  const list = entries(t.context.good);
  const gone = layer(list);
  const o = await runAll(t, 'missing', pack(list.filter((e) => e !== gone)));
  const hex = gone.name.slice('blobs/sha256/'.length);
  t.is(o.verify.code, 3);
  t.regex(o.verify.stdout, new RegExp(`${hex} is missing`));
  refused(t, o.push, 'push', new RegExp(hex));
  t.is(await tagCount(t, o.ns), 0, 'push checks the whole bundle before tagging anything');
});
