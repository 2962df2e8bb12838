import test from 'ava';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { imageOf, multiPlatformImage } from './testimages.js';
import { BundleWriter } from './writer.js';
import { canRunContainerd, startContainerd } from '../testing/containerd.js';

(canRunContainerd() ? test : test.skip)('ctr images import reads a bundle: OCI manifest, OCI index and Docker v2 manifest', async (t) => {
  const containerd = await startContainerd();
  t.teardown(() => containerd.stop());
  const { ctr, dir } = containerd;

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
