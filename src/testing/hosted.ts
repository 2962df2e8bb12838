import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { KeyPair } from './tlsca.js';

/**
 * What the test fronts that behave like hosted registries (hublike.ts, ecrlike.ts) share. They
 * stand over a real `docker-registry` (plain HTTP on loopback) and speak real TLS (certificates
 * from a TestCa).
 *
 * - hub-like (Docker Hub's ways): a token realm on another origin handing out anonymous pull
 *   tokens; 401 for a repository that does not exist, 404 for a missing tag; manifest GETs and
 *   HEADs counted apart (GETs are what a pull quota counts); blob GETs redirected (307) to a
 *   storage origin of its own that refuses any Authorization header and checks a signature in
 *   the query.
 * - ecr-like (Amazon ECR's upload side): Basic auth only; a repository must exist; no
 *   cross-repository mount (the upload starts from scratch); no monolithic PUT; PATCH chunks of
 *   at least OCI-Chunk-Min-Length (5 MiB) but the last; each chunk is taken whole or not at all,
 *   and an upload's status (GET) says how far it got, so a cut upload can continue.
 */

export interface Server {
  port: number;
  stop(): Promise<void>;
}

export async function listen(tls: KeyPair, handler: http.RequestListener): Promise<Server> {
  const server = https.createServer({ key: tls.key, cert: tls.cert }, handler);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Sends a request to the plain-HTTP backend registry and returns its answer (body unread). */
export function backendRequest(backend: string, method: string, path: string, headers: http.OutgoingHttpHeaders,
  body?: Buffer | http.IncomingMessage): Promise<http.IncomingMessage> {
  const [hostname, port] = backend.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port: Number(port), method, path, headers: { ...headers, host: backend } }, resolve);
    req.on('error', reject);
    if (Buffer.isBuffer(body)) req.end(body);
    else if (body) (body as http.IncomingMessage).pipe(req);
    else req.end();
  });
}

/** Relays a backend answer, keeping the headers a registry client needs. */
export function relay(ur: http.IncomingMessage, res: http.ServerResponse, extra: http.OutgoingHttpHeaders = {}): void {
  const headers: http.OutgoingHttpHeaders = { ...extra };
  for (const h of ['content-type', 'content-length', 'docker-content-digest', 'content-range', 'accept-ranges', 'range', 'etag']) {
    if (ur.headers[h] !== undefined) headers[h] = ur.headers[h];
  }
  res.writeHead(ur.statusCode ?? 502, headers);
  ur.pipe(res);
}

export function errorBody(code: string, message: string): string {
  return JSON.stringify({ errors: [{ code, message }] });
}

export function passThroughHeaders(req: http.IncomingMessage): http.OutgoingHttpHeaders {
  const h: http.OutgoingHttpHeaders = {};
  for (const k of ['accept', 'range', 'content-type', 'content-length', 'content-range']) if (req.headers[k] !== undefined) h[k] = req.headers[k];
  return h;
}

export const REPO_PATH = /^\/v2\/(.+?)\/(manifests|blobs|tags)\/(.+)$/;

/** The whole body, or (cut) at most `limit` bytes of it. */
export function readBody(req: http.IncomingMessage, limit?: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (c: Buffer): void => {
      if (limit !== undefined && got + c.length >= limit) {
        chunks.push(c.subarray(0, limit - got));
        got = limit;
        req.off('data', onData);
        req.pause();
        resolve(Buffer.concat(chunks));
        return;
      }
      chunks.push(c);
      got += c.length;
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
