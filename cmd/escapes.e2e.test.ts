import anyTest, { type TestFn } from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageOf } from '../src/bundle/testimages.js';
import { craftBundle, named } from '../src/testing/craft.js';
import { runCli } from '../src/testing/cli.js';

/**
 * What an unsigned bundle says (index.json reference names, airgap.json fields, part names) is
 * the bundle author's text: printed, its control characters are escaped, so `inspect` cannot
 * clear the screen or retitle the terminal (`inspect | cat -v` used to show both).
 */

interface Ctx { dir: string; bundle: string }
const test = anyTest as TestFn<Ctx>;

const CLEAR = '\u001b[2J';
const TITLE = '\u001b]0;pwned\u0007';
const CSI = '\u009b31m';
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-escapes-e2e-'));
  const img = await imageOf({ files: { 'bin/app': 'escapes' } });
  const ref = `example.com/acme/app:1${TITLE}`;
  const bundle = join(t.context.dir, 'bundle.tar');
  await writeFile(bundle, craftBundle({
    index: [named(img.root.descriptor, ref)],
    // The layer is left out: verify then names the image in a problem.
    blobs: img.blobs.slice(1),
    metadata: {
      schemaVersion: 1, tool: { name: `airgap${CLEAR}`, version: `1${CSI}` }, created: `2026${TITLE}`,
      appSlug: `slug${CLEAR}`, release: `1.0${CSI}`, id: `sha256:${TITLE}`,
      images: [{ ref, digest: img.root.descriptor.digest, mediaType: img.root.descriptor.mediaType, platforms: [], size: 1 }], appFiles: [],
    },
  }));
  t.context.bundle = bundle;
});

test.after.always(async (t) => {
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

test('inspect prints the bundle\'s reference names and airgap.json fields with control characters escaped', async (t) => {
  const r = await runCli(['inspect', t.context.bundle]);
  t.is(r.code, 0, r.stderr);
  t.notRegex(r.stdout + r.stderr, RAW, 'no raw control character reaches the terminal');
  t.true(r.stdout.includes('example.com/acme/app:1\\x1b]0;pwned\\x07'), r.stdout);
  t.true(r.stdout.includes('slug\\x1b[2J (release 1.0\\x9b31m)'), r.stdout);
  t.true(r.stdout.includes('by airgap\\x1b[2J 1\\x9b31m'), r.stdout);
  // --json carries the values as read (JSON escapes C0 itself).
  const j = await runCli(['inspect', t.context.bundle, '--json']);
  t.is(j.code, 0, j.stderr);
  t.is((JSON.parse(j.stdout) as { appSlug: string }).appSlug, `slug${CLEAR}`);
});

test('verify and push name the image with control characters escaped', async (t) => {
  const [verify, push] = await Promise.all([
    runCli(['verify', t.context.bundle]),
    runCli(['push', t.context.bundle, '--registry', '127.0.0.1:9/acme']),
  ]);
  t.is(verify.code, 3, verify.stderr);
  t.true(verify.stdout.includes('\\x1b]0;pwned\\x07'), verify.stdout);
  t.not(push.code, 0);
  for (const r of [verify, push]) t.notRegex(r.stdout + r.stderr, RAW, `no raw control character: ${JSON.stringify(r.stdout + r.stderr)}`);
});
