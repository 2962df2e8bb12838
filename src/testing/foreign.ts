import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { imageOf, layerOf, type Blob } from '../bundle/testimages.js';
import { createRegistryAccess } from '../registry/access.js';

/**
 * Test support for foreign (non-distributable) layers, as Windows base images have them: an image
 * whose first layer is not in the registry but at a URL its descriptor names, served by a small
 * loopback HTTP server that logs what it is asked for.
 */

export const FOREIGN_LAYER = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';
const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

export interface LayerServer {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** Paths asked for, in order. */
  requests: string[];
  serve(path: string, bytes: Buffer): void;
  stop(): Promise<void>;
}

export async function startLayerServer(): Promise<LayerServer> {
  const files = new Map<string, Buffer>();
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    requests.push(path);
    const body = files.get(path);
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  let stopped = false;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    serve: (path, bytes) => files.set(path, bytes),
    stop: () => {
      if (stopped) return Promise.resolve();
      stopped = true;
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface ForeignImage {
  ref: string;
  digest: string;
  /** The foreign layer (held only by the layer server) and the ordinary one (in the registry). */
  foreign: Blob;
  layer: Blob;
}

/**
 * Pushes `host/repo:tag`, a windows/amd64 Docker v2 image: a foreign base layer served only at
 * `server` (never uploaded to the registry, as Docker and the registry leave such layers) and an
 * ordinary layer on top.
 */
export async function pushForeignImage(host: string, repo: string, tag: string, server: LayerServer,
  foreignSize = 64 * 1024): Promise<ForeignImage> {
  const base = await layerOf({ 'Files/Windows/base.dll': randomBytes(foreignSize) }, FOREIGN_LAYER);
  const path = `/layers/${base.blob.descriptor.digest.slice('sha256:'.length)}`;
  base.blob.descriptor.urls = [`${server.url}${path}`];
  server.serve(path, base.blob.bytes);
  const top = await layerOf({ 'app/app.exe': `app ${repo}:${tag}` }, DOCKER_LAYER);
  const image = await imageOf({ os: 'windows', architecture: 'amd64', docker: true, sharedLayers: [base, top] });
  const access = createRegistryAccess();
  try {
    const store = access.open({ registry: host, repository: repo });
    for (const b of image.blobs) {
      if (b === base.blob || b === image.root) continue;
      await store.push(b.descriptor, async () => Readable.from([b.bytes]));
    }
    await store.tag(image.root.descriptor, image.root.bytes, tag);
  } finally {
    await access.close();
  }
  return { ref: `${host}/${repo}:${tag}`, digest: image.root.descriptor.digest, foreign: base.blob, layer: top.blob };
}
