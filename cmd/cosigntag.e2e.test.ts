import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blobOf, imageOf, type Blob, type TestImage } from '../src/bundle/testimages.js';
import { craftBundle, named } from '../src/testing/craft.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { json, runCli } from '../src/testing/cli.js';

/**
 * Issue 24 item 6: a re-push never replaces a customer's own signature. After the customer
 * counter-signs (cosign appends a layer to the `.sig` manifest) or signs on their own, pushing
 * the vendor's bundle again keeps their signatures: left alone when it already holds the
 * vendor's, the vendor's appended otherwise; a tag that cannot be merged (an SBOM) is left as it
 * is with a warning.
 */

interface Ctx { dir: string; registry: TestRegistry; bundle: string; image: TestImage; sig: Blob[]; sbom: Blob[] }
const test = anyTest as TestFn<Ctx>;

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const SIMPLESIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';

/** A cosign-style manifest over `layers` (config diff_ids = the layers' digests, as cosign writes). */
function cosignManifest(layers: { bytes: Buffer; mediaType: string; annotations: Record<string, string> }[]): Blob[] {
  const blobs = layers.map((l) => blobOf(l.bytes, l.mediaType, { annotations: l.annotations }));
  const config = blobOf(Buffer.from(JSON.stringify({ architecture: '', config: {}, created: '0001-01-01T00:00:00Z', os: '',
    rootfs: { type: 'layers', diff_ids: blobs.map((b) => b.descriptor.digest) } })), 'application/vnd.oci.image.config.v1+json');
  const manifest = blobOf(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: config.descriptor,
    layers: blobs.map((b) => b.descriptor) })), OCI_MANIFEST);
  return [...blobs, config, manifest];
}

const signature = (who: string) => ({ bytes: Buffer.from(`{"critical":{"who":"${who}"}}`), mediaType: SIMPLESIGNING,
  annotations: { 'dev.cosignproject.cosign/signature': Buffer.from(`signed by ${who}`).toString('base64') } });

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-cosigntag-e2e-'));
  t.context.registry = await startRegistry();
  const image = await imageOf({ files: { 'bin/web': 'signed web' } });
  const sig = cosignManifest([signature('vendor')]);
  const sbom = cosignManifest([{ bytes: Buffer.from('{"spdxVersion":"SPDX-2.3","name":"vendor"}'), mediaType: 'text/spdx+json', annotations: {} }]);
  const hex = image.root.descriptor.digest.slice(7);
  const attached = (b: Blob[], kind: string, suffix: string) => ({ ...b.at(-1)!.descriptor,
    annotations: { 'io.airgap.subject': image.root.descriptor.digest, 'io.airgap.attached': kind, 'io.airgap.tag': `sha256-${hex}.${suffix}` } });
  t.context.bundle = join(t.context.dir, 'bundle.tar');
  await writeFile(t.context.bundle, craftBundle({
    index: [named(image.root.descriptor, 'example.com/acme/web:1'), attached(sig, 'signature', 'sig'), attached(sbom, 'sbom', 'sbom')],
    blobs: [...image.blobs, ...sig, ...sbom],
  }));
  Object.assign(t.context, { image, sig, sbom });
});

test.after.always(async (t) => {
  await t.context.registry?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

async function putBlobs(t: ExecutionContext<Ctx>, repo: string, blobs: Blob[]): Promise<void> {
  const host = t.context.registry.host;
  for (const b of blobs.slice(0, -1)) {
    const start = await fetch(`http://${host}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    const loc = new URL(start.headers.get('location')!, `http://${host}`);
    loc.searchParams.set('digest', b.descriptor.digest);
    t.is((await fetch(loc, { method: 'PUT', body: b.bytes })).status, 201);
  }
}

async function putManifest(t: ExecutionContext<Ctx>, repo: string, tag: string, blobs: Blob[]): Promise<string> {
  await putBlobs(t, repo, blobs);
  const m = blobs.at(-1)!;
  const res = await fetch(`http://${t.context.registry.host}/v2/${repo}/manifests/${tag}`, { method: 'PUT', headers: { 'content-type': OCI_MANIFEST }, body: m.bytes });
  t.is(res.status, 201);
  return m.descriptor.digest;
}

async function manifestAt(t: ExecutionContext<Ctx>, repo: string, tag: string): Promise<{ digest: string; layers: string[]; diffIds: string[] }> {
  const host = t.context.registry.host;
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, { headers: { accept: OCI_MANIFEST } });
  const body = (await res.json()) as { config: { digest: string }; layers: { digest: string }[] };
  const config = (await (await fetch(`http://${host}/v2/${repo}/blobs/${body.config.digest}`)).json()) as { rootfs: { diff_ids: string[] } };
  return { digest: res.headers.get('docker-content-digest')!, layers: body.layers.map((l) => l.digest), diffIds: config.rootfs.diff_ids };
}

interface Summary { attached: { tag?: string; existing?: string; digest: string }[]; warnings: string[] }

async function push(t: ExecutionContext<Ctx>, ns: string): Promise<Summary> {
  const r = await runCli(['push', t.context.bundle, '--registry', `${t.context.registry.host}/${ns}`, '--json']);
  t.is(r.code, 0, r.stderr);
  return json<Summary>(r);
}

test('a re-push keeps the customer\'s counter-signature, merges the vendor\'s into their own, and leaves an SBOM it cannot merge', async (t) => {
  const { image, sig, sbom } = t.context;
  const repo = 'shop/web';
  const sigTag = `sha256-${image.root.descriptor.digest.slice(7)}.sig`;
  const sbomTag = `sha256-${image.root.descriptor.digest.slice(7)}.sbom`;
  const vendorLayer = sig[0]!.descriptor.digest;

  await push(t, 'shop');
  t.is((await manifestAt(t, repo, sigTag)).digest, sig.at(-1)!.descriptor.digest, 'the first push writes the vendor\'s signature');

  // The customer counter-signs: cosign appends their layer to the manifest under the tag.
  const counter = cosignManifest([signature('vendor'), signature('customer')]);
  const counterDigest = await putManifest(t, repo, sigTag, counter);
  const again = await push(t, 'shop');
  t.is((await manifestAt(t, repo, sigTag)).digest, counterDigest, 'the counter-signed manifest is left as it is');
  t.is(again.attached.find((a) => a.tag === sigTag)?.existing, 'contains');

  // The customer signs on their own (the vendor's layer is gone): the vendor's is appended to theirs.
  const own = cosignManifest([signature('customer')]);
  await putManifest(t, repo, sigTag, own);
  const third = await push(t, 'shop');
  const merged = await manifestAt(t, repo, sigTag);
  t.deepEqual(merged.layers, [own[0]!.descriptor.digest, vendorLayer], 'their signature first, the vendor\'s appended');
  t.deepEqual(merged.diffIds, merged.layers, 'the config lists both layers');
  t.is(third.attached.find((a) => a.tag === sigTag)?.existing, 'merged');
  t.is(third.attached.find((a) => a.tag === sigTag)?.digest, merged.digest);

  // An SBOM of their own is never merged nor replaced: left, with a warning naming the tag.
  const theirSbom = cosignManifest([{ bytes: Buffer.from('{"spdxVersion":"SPDX-2.3","name":"customer"}'), mediaType: 'text/spdx+json', annotations: {} }]);
  const theirSbomDigest = await putManifest(t, repo, sbomTag, theirSbom);
  const fourth = await push(t, 'shop');
  t.is((await manifestAt(t, repo, sbomTag)).digest, theirSbomDigest);
  t.is(fourth.attached.find((a) => a.tag === sbomTag)?.existing, 'left');
  t.true(fourth.warnings.some((w) => w.includes(sbomTag) && w.includes(theirSbomDigest)), JSON.stringify(fourth.warnings));
  t.not(sbom.at(-1)!.descriptor.digest, theirSbomDigest);
  // The text output says so too.
  const text = await runCli(['push', t.context.bundle, '--registry', `${t.context.registry.host}/shop`]);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, new RegExp(`warning: .*${sbomTag.replace(/\./g, '\\.')} already holds ${theirSbomDigest}`));
});
