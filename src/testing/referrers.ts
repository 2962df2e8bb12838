import { createHash } from 'node:crypto';
import { startFront, type Front } from '../registry/testfront.js';

/**
 * Test-only: an emulating front that gives a real docker-registry (distribution 2.8, which has no
 * referrers API) the OCI 1.1 referrers API, as distribution 3, Harbor, Zot or a cloud registry
 * serve it. Every manifest PUT through the front is forwarded unchanged; one that carries a
 * `subject` is remembered, and `GET /v2/<repo>/referrers/<digest>` lists those of that subject
 * (an OCI image index of descriptors with artifactType and annotations). Everything else is the
 * registry's own answer.
 */
export interface ReferrersFront extends Front {
  /** `GET …/referrers/…` requests served, and requests for `sha256-<hex>` fall-back tags seen. */
  apiCalls(): number;
  fallbackTagCalls(): number;
}

interface Stored { mediaType: string; digest: string; size: number; artifactType?: string; annotations?: Record<string, string> }

const REFERRERS = /^\/v2\/(.+)\/referrers\/(sha256:[a-f0-9]{64})(?:\?.*)?$/;
const MANIFEST = /^\/v2\/(.+)\/manifests\/([^/?]+)$/;

export async function startReferrersFront(backend: string): Promise<ReferrersFront> {
  const byRepoSubject = new Map<string, Stored[]>();
  const front = await startFront(backend, async (req, res, ctx) => {
    const url = req.url ?? '';
    const ref = REFERRERS.exec(url);
    if (ref && req.method === 'GET') {
      const list = byRepoSubject.get(`${ref[1]} ${ref[2]}`) ?? [];
      const body = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: list });
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const m = MANIFEST.exec(url);
    if (m && req.method === 'PUT') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c)); // beside the pipe to the registry: both see every chunk
      await ctx.forward();
      if (res.statusCode !== 201) return;
      const bytes = Buffer.concat(chunks);
      const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; artifactType?: string; config?: { mediaType?: string };
        subject?: { digest?: string }; annotations?: Record<string, string> };
      const subject = doc.subject?.digest;
      if (!subject) return;
      const key = `${m[1]} ${subject}`;
      const digest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
      const list = (byRepoSubject.get(key) ?? []).filter((d) => d.digest !== digest);
      const artifactType = doc.artifactType ?? doc.config?.mediaType;
      list.push({ mediaType: doc.mediaType ?? 'application/vnd.oci.image.manifest.v1+json', digest, size: bytes.length,
        ...(artifactType ? { artifactType } : {}), ...(doc.annotations ? { annotations: doc.annotations } : {}) });
      byRepoSubject.set(key, list);
      return;
    }
    await ctx.forward();
  });
  return Object.assign(front, {
    apiCalls: () => front.seen.filter((s) => s.method === 'GET' && REFERRERS.test(s.url)).length,
    fallbackTagCalls: () => front.seen.filter((s) => /\/manifests\/sha256-[a-f0-9]{64}$/.test(s.url)).length,
  });
}
