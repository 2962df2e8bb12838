import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

/**
 * Test helper: publishes signatures, attestations and SBOMs next to test images the way cosign
 * and OCI 1.1 clients do, with plain HTTP requests (no airgap code), into a real registry:
 *  - cosign tag scheme: an OCI manifest tagged `sha256-<hex>.sig` whose one layer is the
 *    simple-signing payload, its ECDSA P-256 signature (SHA-256, DER, base64) in the layer
 *    annotation `dev.cosignproject.cosign/signature`; `.att` and `.sbom` likewise;
 *  - OCI 1.1 referrers against a registry without the referrers API (distribution 2.8): an
 *    artifact manifest with `subject`, pushed by digest, listed in the `sha256-<hex>` tag's index.
 */

export interface SeedRegistry {
  host: string;
  users: { username: string; password: string }[];
}

export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const SIMPLESIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

export function cosignKeyPair(): { privateKey: KeyObject; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

function digestOf(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

function authHeader(reg: SeedRegistry): Record<string, string> {
  const u = reg.users[0];
  return u ? { authorization: 'Basic ' + Buffer.from(`${u.username}:${u.password}`).toString('base64') } : {};
}

async function pushBlob(reg: SeedRegistry, repo: string, bytes: Buffer): Promise<string> {
  const digest = digestOf(bytes);
  const start = await fetch(`http://${reg.host}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: authHeader(reg) });
  if (start.status !== 202) throw new Error(`POST upload to ${reg.host}/${repo}: ${start.status} ${await start.text()}`);
  const loc = new URL(start.headers.get('location')!, `http://${reg.host}`);
  loc.searchParams.set('digest', digest);
  const put = await fetch(loc, { method: 'PUT', headers: { ...authHeader(reg), 'content-type': 'application/octet-stream' }, body: bytes });
  if (put.status !== 201) throw new Error(`PUT blob to ${reg.host}/${repo}: ${put.status} ${await put.text()}`);
  return digest;
}

async function putManifest(reg: SeedRegistry, repo: string, ref: string, bytes: Buffer, mediaType: string): Promise<void> {
  const res = await fetch(`http://${reg.host}/v2/${repo}/manifests/${ref}`, {
    method: 'PUT', headers: { ...authHeader(reg), 'content-type': mediaType }, body: bytes,
  });
  if (res.status !== 201) throw new Error(`PUT manifest ${reg.host}/${repo}:${ref}: ${res.status} ${await res.text()}`);
}

export async function getManifest(reg: SeedRegistry, repo: string, ref: string): Promise<Buffer | undefined> {
  const res = await fetch(`http://${reg.host}/v2/${repo}/manifests/${ref}`, {
    headers: { ...authHeader(reg), accept: `${OCI_INDEX}, ${OCI_MANIFEST}` },
  });
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw new Error(`GET manifest ${reg.host}/${repo}:${ref}: ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

function json(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v));
}

/** An OCI manifest with one layer, as cosign writes signatures, attestations and SBOMs. */
async function pushOneLayer(reg: SeedRegistry, repo: string, tag: string, layer: Buffer, layerType: string,
  annotations: Record<string, string>): Promise<{ digest: string; manifest: Buffer }> {
  const config = json({
    architecture: '', config: {}, created: '0001-01-01T00:00:00Z', history: [{ created: '0001-01-01T00:00:00Z' }], os: '',
    rootfs: { type: 'layers', diff_ids: [digestOf(layer)] },
  });
  await pushBlob(reg, repo, config);
  await pushBlob(reg, repo, layer);
  const manifest = json({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: config.length, digest: digestOf(config) },
    layers: [{ mediaType: layerType, size: layer.length, digest: digestOf(layer), annotations }],
  });
  await putManifest(reg, repo, tag, manifest, OCI_MANIFEST);
  return { digest: digestOf(manifest), manifest };
}

/** The simple-signing payload cosign signs for an image digest. */
export function simpleSigningPayload(dockerReference: string, digest: string): Buffer {
  return json({
    critical: { identity: { 'docker-reference': dockerReference }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' },
    optional: null,
  });
}

/** `sha256-<hex>.sig`: a cosign signature of `digest`, made with `key`. */
export async function pushCosignSignature(reg: SeedRegistry, repo: string, digest: string, key: KeyObject,
  dockerReference = `${reg.host}/${repo}`): Promise<{ tag: string; digest: string }> {
  const payload = simpleSigningPayload(dockerReference, digest);
  const signature = sign('sha256', payload, key).toString('base64');
  const tag = `sha256-${digest.slice('sha256:'.length)}.sig`;
  const r = await pushOneLayer(reg, repo, tag, payload, SIMPLESIGNING, { [SIGNATURE_ANNOTATION]: signature });
  return { tag, digest: r.digest };
}

/** `sha256-<hex>.att`: a DSSE-enveloped in-toto statement about `digest`. */
export async function pushAttestation(reg: SeedRegistry, repo: string, digest: string, key: KeyObject): Promise<{ tag: string; digest: string }> {
  const statement = json({ _type: 'https://in-toto.io/Statement/v0.1', predicateType: 'https://slsa.dev/provenance/v0.2',
    subject: [{ name: `${reg.host}/${repo}`, digest: { sha256: digest.slice('sha256:'.length) } }], predicate: { builder: { id: 'test' } } });
  const envelope = json({ payloadType: 'application/vnd.in-toto+json', payload: statement.toString('base64'),
    signatures: [{ keyid: '', sig: sign('sha256', statement, key).toString('base64') }] });
  const tag = `sha256-${digest.slice('sha256:'.length)}.att`;
  const r = await pushOneLayer(reg, repo, tag, envelope, 'application/vnd.dsse.envelope.v1+json',
    { predicateType: 'https://slsa.dev/provenance/v0.2' });
  return { tag, digest: r.digest };
}

/** `sha256-<hex>.sbom`: an SPDX document, as `cosign attach sbom` stores it. */
export async function pushSbom(reg: SeedRegistry, repo: string, digest: string): Promise<{ tag: string; digest: string }> {
  const sbom = json({ spdxVersion: 'SPDX-2.3', name: `${repo}@${digest}`, packages: [{ name: 'busybox', versionInfo: '1.36' }] });
  const tag = `sha256-${digest.slice('sha256:'.length)}.sbom`;
  const r = await pushOneLayer(reg, repo, tag, sbom, 'text/spdx+json', {});
  return { tag, digest: r.digest };
}

/**
 * An OCI 1.1 referrer of `subject` (an SBOM artifact), pushed by digest; unless `fallbackTag` is
 * false (a registry with the referrers API), the `sha256-<hex>` tag's index lists it, as a 1.1
 * client does against a registry without the referrers API.
 */
export async function pushReferrer(reg: SeedRegistry, repo: string, subject: { digest: string; size: number; mediaType: string },
  artifactType = 'application/spdx+json', fallbackTag = true): Promise<{ digest: string; manifest: Buffer }> {
  const empty = Buffer.from('{}');
  await pushBlob(reg, repo, empty);
  const doc = json({ spdxVersion: 'SPDX-2.3', name: `referrer of ${subject.digest}` });
  await pushBlob(reg, repo, doc);
  const manifest = json({
    schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', size: 2, digest: digestOf(empty) },
    layers: [{ mediaType: artifactType, size: doc.length, digest: digestOf(doc) }],
    subject,
    annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' },
  });
  const digest = digestOf(manifest);
  await putManifest(reg, repo, digest, manifest, OCI_MANIFEST);
  if (!fallbackTag) return { digest, manifest };
  const tag = `sha256-${subject.digest.slice('sha256:'.length)}`;
  const current = await getManifest(reg, repo, tag);
  const manifests = current ? (JSON.parse(current.toString()) as { manifests: unknown[] }).manifests : [];
  manifests.push({ mediaType: OCI_MANIFEST, digest, size: manifest.length, artifactType });
  await putManifest(reg, repo, tag, json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }), OCI_INDEX);
  return { digest, manifest };
}
