import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageOf, multiPlatformImage } from '../src/bundle/testimages.js';
import { craftBundle, named, nestedIndexes, type CraftBundle } from '../src/testing/craft.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { runCli, type CliResult } from '../src/testing/cli.js';

/**
 * One set of bundle rules (src/bundle/rules.ts): what push or inspect refuse or would read
 * differently, verify refuses too, and the other way round. Each bundle here is crafted byte by
 * byte (src/testing/craft.ts); every command must refuse it with exit 3 and one line naming why.
 */

interface Ctx { dir: string; registry: TestRegistry }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-bundlerules-e2e-'));
  t.context.registry = await startRegistry();
});

test.after.always(async (t) => {
  await t.context.registry?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

interface Outcome { inspect: CliResult; verify: CliResult; push: CliResult }

async function runAll(t: ExecutionContext<Ctx>, name: string, bundle: CraftBundle): Promise<Outcome> {
  const sandbox = join(t.context.dir, name);
  await mkdir(sandbox);
  const path = join(sandbox, 'bundle.tar');
  await writeFile(path, craftBundle(bundle));
  const [inspect, verify, push] = await Promise.all([
    runCli(['inspect', path]),
    runCli(['verify', path]),
    runCli(['push', path, '--registry', `${t.context.registry.host}/${name}`]),
  ]);
  return { inspect, verify, push };
}

function refusedByAll(t: ExecutionContext<Ctx>, o: Outcome, pattern: RegExp): void {
  for (const cmd of ['inspect', 'verify', 'push'] as const) {
    const r = o[cmd];
    t.is(r.code, 3, `${cmd}: exit 3 (stdout ${r.stdout.slice(0, 400)} stderr ${r.stderr.slice(0, 400)})`);
    t.notRegex(r.stderr, /\n\s+at |internal error|Maximum call stack/, `${cmd}: no crash`);
    t.regex(r.stdout + r.stderr, pattern, `${cmd}: says why`);
  }
}

async function tags(t: ExecutionContext<Ctx>, repo: string): Promise<string[]> {
  const res = await fetch(`http://${t.context.registry.host}/v2/${repo}/tags/list`);
  return res.status === 200 ? ((await res.json()) as { tags: string[] | null }).tags ?? [] : [];
}

test('an index.json entry that claims a layer as an image is refused by verify as by push and inspect', async (t) => {
  const img = await imageOf({ files: { 'bin/app': 'layer root' } });
  const layer = img.blobs[0]!;
  const o = await runAll(t, 'layerroot', { index: [named(layer.descriptor, 'example.com/acme/layer:1')], blobs: img.blobs });
  refusedByAll(t, o, /must be an image manifest or index/);
});

test('one reference bound to two digests is refused by every command, and nothing is pushed', async (t) => {
  const a = await imageOf({ files: { 'bin/app': 'first' } });
  const b = await imageOf({ files: { 'bin/app': 'second' } });
  const o = await runAll(t, 'tworefs', {
    index: [named(a.root.descriptor, 'example.com/acme/app:1'), named(b.root.descriptor, 'example.com/acme/app:1')],
    blobs: [...a.blobs, ...b.blobs],
  });
  refusedByAll(t, o, /binds example\.com\/acme\/app:1 to sha256:[a-f0-9]{64}, but an earlier entry binds it to/);
  t.deepEqual(await tags(t, 'tworefs/app'), []);
});

test('an attached entry that carries an application tag is refused by verify too', async (t) => {
  const img = await imageOf({ files: { 'bin/app': 'attached' } });
  const sig = await imageOf({ files: { 'sig': 'not really a signature' } });
  const o = await runAll(t, 'attachedtag', {
    index: [named(img.root.descriptor, 'example.com/acme/web:1.0'),
      { ...sig.root.descriptor, annotations: { 'io.airgap.subject': img.root.descriptor.digest, 'io.airgap.attached': 'signature', 'io.airgap.tag': '1.0' } }],
    blobs: [...img.blobs, ...sig.blobs],
  });
  refusedByAll(t, o, /under the tag "1\.0", which is not that digest's signature/);
  t.deepEqual(await tags(t, 'attachedtag/web'), []);
});

test('a root typed as a manifest whose body is an index is refused by every command', async (t) => {
  const img = await multiPlatformImage();
  const root = { ...img.root.descriptor, mediaType: 'application/vnd.oci.image.manifest.v1+json' };
  const o = await runAll(t, 'liartype', { index: [named(root, 'example.com/acme/multi:1')], blobs: img.blobs });
  refusedByAll(t, o, /referenced as an image manifest .* but its body is an image index/);
  t.deepEqual(await tags(t, 'liartype/multi'), []);
});

test('5,000 nested indexes: every command refuses the depth in one line, none blows the stack', async (t) => {
  const img = await imageOf({ files: { 'bin/app': 'deep' } });
  const chain = nestedIndexes(img.root.descriptor, 5000);
  const o = await runAll(t, 'nested', { index: [named(chain.at(-1)!.descriptor, 'example.com/acme/deep:1')], blobs: [...img.blobs, ...chain] });
  refusedByAll(t, o, /nest more than 16 levels deep/);
  t.deepEqual(await tags(t, 'nested/deep'), []);
});

test('a chain of 3 indexes (within the bound) is pushed and verifies', async (t) => {
  const img = await imageOf({ files: { 'bin/app': 'shallow' } });
  const chain = nestedIndexes(img.root.descriptor, 3);
  const o = await runAll(t, 'shallow', { index: [named(chain.at(-1)!.descriptor, 'example.com/acme/shallow:1')], blobs: [...img.blobs, ...chain] });
  for (const cmd of ['inspect', 'verify', 'push'] as const) t.is(o[cmd].code, 0, `${cmd}: ${o[cmd].stderr}`);
  t.deepEqual(await tags(t, 'shallow/shallow'), ['1']);
});
