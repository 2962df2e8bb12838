import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageOf } from '../src/bundle/testimages.js';
import { craftBundle, named, sha256Hex } from '../src/testing/craft.js';
import { runCli, type CliResult } from '../src/testing/cli.js';

/**
 * Issue 24 item 18: verify of a split bundle reads it once. Each part is hashed against the parts
 * manifest and each blob against its name in the same pass (it hashed every part, then read every
 * blob again: twice the bundle's size). Bytes read are counted inside the CLI's process by a
 * preloaded script that wraps fs.read and fs.readSync.
 */

interface Ctx { dir: string; tar: Buffer; counter: string }
const test = anyTest as TestFn<Ctx>;
const PART = 700 * 1024;

const COUNTER = `
const fs = require('node:fs');
let n = 0;
const read = fs.read;
fs.read = function (fd, ...args) {
  const cb = args[args.length - 1];
  args[args.length - 1] = (err, bytes, buf) => { if (!err) n += bytes; cb(err, bytes, buf); };
  return read.call(fs, fd, ...args);
};
const readSync = fs.readSync;
fs.readSync = function (...args) { const got = readSync.apply(fs, args); n += got; return got; };
process.on('exit', () => fs.writeFileSync(process.env.READ_COUNT_FILE, String(n)));
`;

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-splitverify-e2e-'));
  const images = await Promise.all([0, 1, 2].map((i) => imageOf({ files: { [`data${i}.bin`]: randomBytes(1 << 20) } })));
  t.context.tar = craftBundle({ index: images.map((img, i) => named(img.root.descriptor, `example.com/acme/app${i}:1`)), blobs: images.flatMap((i) => i.blobs) });
  t.context.counter = join(t.context.dir, 'count-reads.cjs');
  await writeFile(t.context.counter, COUNTER);
});

test.after.always(async (t) => {
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

/** Writes `tar` as a split bundle: parts of PART bytes and the parts manifest. */
async function split(t: ExecutionContext<Ctx>, name: string, tar: Buffer): Promise<string> {
  const dir = join(t.context.dir, name);
  await mkdir(dir);
  const parts = [];
  for (let i = 0, start = 0; start < tar.length; i++, start += PART) {
    const bytes = tar.subarray(start, start + PART);
    const part = `app.tar.part${String(i + 1).padStart(3, '0')}`;
    await writeFile(join(dir, part), bytes);
    parts.push({ name: part, size: bytes.length, sha256: sha256Hex(bytes) });
  }
  await writeFile(join(dir, 'app.tar'), JSON.stringify({ format: 'airgap.split.v1', size: tar.length, parts }));
  return join(dir, 'app.tar');
}

async function counted(t: ExecutionContext<Ctx>, args: string[]): Promise<CliResult & { read: number }> {
  const file = join(t.context.dir, `reads-${Math.random().toString(36).slice(2)}`);
  const r = await runCli(args, { env: { NODE_OPTIONS: `--require ${t.context.counter}`, READ_COUNT_FILE: file } });
  return { ...r, read: Number(await readFile(file, 'utf8')) };
}

test('verify of a split bundle reads each byte once, and still checks every part', async (t) => {
  const bundle = await split(t, 'good', t.context.tar);
  const r = await counted(t, ['verify', bundle]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /\d+ part\(s\) match their sha256/);
  t.log(`read ${r.read} bytes for a ${t.context.tar.length}-byte bundle`);
  t.true(r.read < t.context.tar.length * 1.3, `read ${(r.read / t.context.tar.length).toFixed(2)} times the bundle's size`);
});

test('a damaged part is named, with the blob it damages', async (t) => {
  const tar = Buffer.from(t.context.tar);
  const at = PART + 1000; // inside part 2, inside a layer
  tar[at] ^= 0xff;
  // The parts manifest records the good bytes' hashes: the copy went wrong, not the build.
  const bundle = await split(t, 'damaged', t.context.tar);
  await writeFile(join(bundle, '..', 'app.tar.part002'), tar.subarray(PART, 2 * PART));
  const r = await runCli(['verify', bundle]);
  t.is(r.code, 3, r.stderr);
  t.regex(r.stdout, /part app\.tar\.part002 is damaged/);
  t.regex(r.stdout, /blob sha256:[a-f0-9]{64} is damaged: .*\(in part .*app\.tar\.part002\)/);
});
