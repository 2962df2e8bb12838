import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { imageOf, multiPlatformImage } from './testimages.js';
import { BundleWriter } from './writer.js';

const run = promisify(execFile);
const CONTAINERD = '/usr/bin/containerd';

// containerd runs as root; elsewhere this independent check is skipped rather than faked.
const canRun = existsSync(CONTAINERD) && process.getuid?.() === 0;

(canRun ? test : test.skip)('ctr images import reads a bundle: OCI manifest, OCI index and Docker v2 manifest', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-ctr-'));
  const sock = join(dir, 'containerd.sock');
  writeFileSync(join(dir, 'config.toml'), [
    'version = 2', `root = "${dir}/root"`, `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]', `  address = "${sock}"`, '[ttrpc]', `  address = "${sock}.ttrpc"`,
  ].join('\n'));
  const daemon = spawn(CONTAINERD, ['--config', join(dir, 'config.toml')], { stdio: 'ignore' });
  t.teardown(async () => {
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.exitCode !== null ? resolve(undefined) : daemon.once('exit', resolve));
    await rm(dir, { recursive: true, force: true });
  });
  const ctr = (...args: string[]) => run('ctr', ['--address', sock, ...args]);
  for (let i = 0; ; i++) {
    try { await ctr('version'); break; } catch (e) { if (i > 50) throw e; await sleep(100); }
  }

  const images = [
    { ref: 'quay.io/my-org/api:v1.0.1', image: await imageOf({ files: { 'hello.txt': 'hello' } }) },
    { ref: 'docker.io/library/redis:7', image: await multiPlatformImage() },
    { ref: 'registry.example.com:5000/team/worker:2', image: await imageOf({ docker: true, files: { 'w.txt': 'v2' } }) },
  ];
  const blobs = images.flatMap((i) => i.image.blobs);
  const out = join(dir, 'bundle.tar');
  const writer = await BundleWriter.create(out, { blobs: blobs.map((b) => b.descriptor), appFiles: [{ path: 'a.yaml', content: Buffer.from('a: 1\n') }] });
  await Promise.all(blobs.map((b) => writer.push(b.descriptor, async () => Readable.from([b.bytes]))));
  for (const { ref, image } of images) await writer.tag(image.root.descriptor, image.root.bytes, ref);
  await writer.finish({ schemaVersion: 1, tool: { name: 'airgap', version: '0' }, created: 'now', images: [], appFiles: ['a.yaml'] });

  await ctr('images', 'import', '--no-unpack', out);
  const { stdout } = await ctr('images', 'ls');
  for (const { ref, image } of images) {
    const line = stdout.split('\n').find((l) => l.startsWith(ref + ' '));
    t.truthy(line, `${ref} imported:\n${stdout}`);
    t.true(line!.includes(image.root.descriptor.digest));
    t.true(line!.includes(image.root.descriptor.mediaType));
  }
});
