import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { KeyPair, TestCa } from './tlsca.js';

/**
 * Test helpers: fronts that behave like hosted registries, over a real `docker-registry` (plain
 * HTTP on loopback) and with real TLS (certificates from a TestCa).
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

interface Server {
  port: number;
  stop(): Promise<void>;
}

async function listen(tls: KeyPair, handler: http.RequestListener): Promise<Server> {
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
function backendRequest(backend: string, method: string, path: string, headers: http.OutgoingHttpHeaders,
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
function relay(ur: http.IncomingMessage, res: http.ServerResponse, extra: http.OutgoingHttpHeaders = {}): void {
  const headers: http.OutgoingHttpHeaders = { ...extra };
  for (const h of ['content-type', 'content-length', 'docker-content-digest', 'content-range', 'accept-ranges', 'range', 'etag']) {
    if (ur.headers[h] !== undefined) headers[h] = ur.headers[h];
  }
  res.writeHead(ur.statusCode ?? 502, headers);
  ur.pipe(res);
}

function errorBody(code: string, message: string): string {
  return JSON.stringify({ errors: [{ code, message }] });
}

function passThroughHeaders(req: http.IncomingMessage): http.OutgoingHttpHeaders {
  const h: http.OutgoingHttpHeaders = {};
  for (const k of ['accept', 'range', 'content-type', 'content-length', 'content-range']) if (req.headers[k] !== undefined) h[k] = req.headers[k];
  return h;
}

const REPO_PATH = /^\/v2\/(.+?)\/(manifests|blobs|tags)\/(.+)$/;

// ----------------------------------------------------------------------------------------------
// hub-like

export interface HubLikeOptions {
  /** The docker-registry behind it (plain HTTP, `127.0.0.1:PORT`). */
  backend: string;
  /** Signs the registry's and the token realm's certificates. */
  ca: TestCa;
  /** Signs the storage origin's certificate (default: `ca`). */
  storageCa?: TestCa;
  /**
   * Names for the three origins in challenges and redirects (default 127.0.0.1). Names that
   * only an egress proxy resolves prove the traffic went through it.
   */
  names?: { registry: string; auth: string; storage: string };
  /** Answer manifest HEADs with 405 (a registry or proxy that refuses HEAD). */
  refuseHead?: boolean;
}

export interface HubLike {
  /** `name:port` of the registry (what image references name). */
  host: string;
  authHost: string;
  storageHost: string;
  readonly counts: {
    manifestGet: number;
    manifestHead: number;
    token: number;
    blobRedirect: number;
    storageServed: number;
    storageRefused: number;
  };
  reset(): void;
  stop(): Promise<void>;
}

export async function startHubLike(opts: HubLikeOptions): Promise<HubLike> {
  const names = opts.names ?? { registry: '127.0.0.1', auth: '127.0.0.1', storage: '127.0.0.1' };
  const secret = randomBytes(16);
  const tokens = new Map<string, Set<string>>();
  const counts = { manifestGet: 0, manifestHead: 0, token: 0, blobRedirect: 0, storageServed: 0, storageRefused: 0 };
  const sign = (path: string, expires: string): string => createHmac('sha256', secret).update(`${path}\n${expires}`).digest('hex');
  const servers: Server[] = [];
  const service = 'hub-like.test';
  let authOrigin = '';
  let storageOrigin = '';

  try {
    const auth = await listen(await opts.ca.server([names.auth]), (req, res) => {
      const url = new URL(req.url ?? '/', 'https://x');
      if (url.pathname !== '/token' || req.method !== 'GET') {
        res.writeHead(404).end();
        return;
      }
      counts.token++;
      // Anonymous (or any credentials): a pull token for the requested repositories.
      const granted = new Set(url.searchParams.getAll('scope').filter((s) => /^repository:[^:]+:pull$/.test(s)));
      const token = randomUUID();
      tokens.set(token, granted);
      res.writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
    });
    servers.push(auth);
    authOrigin = `https://${names.auth}:${auth.port}`;

    const storage = await listen(await (opts.storageCa ?? opts.ca).server([names.storage]), (req, res) => {
      void (async () => {
        const url = new URL(req.url ?? '/', 'https://x');
        // Like S3 with a presigned URL: a second auth mechanism is an error.
        if (req.headers.authorization !== undefined) {
          counts.storageRefused++;
          res.writeHead(400, { 'content-type': 'application/xml' })
            .end('<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>');
          return;
        }
        const expires = url.searchParams.get('expires') ?? '';
        if (url.searchParams.get('sig') !== sign(url.pathname, expires) || Number(expires) < Date.now()) {
          counts.storageRefused++;
          res.writeHead(403, { 'content-type': 'application/xml' }).end('<Error><Code>AccessDenied</Code></Error>');
          return;
        }
        counts.storageServed++;
        const m = /^\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(url.pathname);
        if (!m) {
          res.writeHead(404).end();
          return;
        }
        const ur = await backendRequest(opts.backend, req.method ?? 'GET', `/v2/${m[1]}/blobs/${m[2]}`, passThroughHeaders(req));
        relay(ur, res);
      })().catch(() => res.destroy());
    });
    servers.push(storage);
    storageOrigin = `https://${names.storage}:${storage.port}`;

    const challenge = (res: http.ServerResponse, scope: string | undefined, code = 'UNAUTHORIZED', message = 'authentication required'): void => {
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer realm="${authOrigin}/token",service="${service}"${scope ? `,scope="${scope}"` : ''}`,
      }).end(errorBody(code, message));
    };

    const registry = await listen(await opts.ca.server([names.registry]), (req, res) => {
      void (async () => {
        const url = new URL(req.url ?? '/', 'https://x');
        const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
        const granted = bearer ? tokens.get(bearer) : undefined;
        if (url.pathname === '/v2/' || url.pathname === '/v2') {
          if (!granted) challenge(res, undefined);
          else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
          return;
        }
        const m = REPO_PATH.exec(url.pathname);
        const method = req.method ?? 'GET';
        if (!m || (method !== 'GET' && method !== 'HEAD')) {
          // A pull-only front: pushes are not what it emulates.
          res.writeHead(405, { 'content-type': 'application/json' }).end(errorBody('UNSUPPORTED', 'pull only'));
          return;
        }
        const [, repo, kind, rest] = m as unknown as [string, string, string, string];
        const scope = `repository:${repo}:pull`;
        if (!granted?.has(scope)) {
          challenge(res, scope);
          return;
        }
        if (kind === 'manifests') {
          if (method === 'HEAD') counts.manifestHead++;
          else counts.manifestGet++;
          if (method === 'HEAD' && opts.refuseHead) {
            res.writeHead(405).end();
            return;
          }
          // Docker Hub answers 401, not 404, for a repository that does not exist.
          const tags = await backendRequest(opts.backend, 'GET', `/v2/${repo}/tags/list`, {});
          tags.resume();
          if (tags.statusCode === 404) {
            challenge(res, scope, 'UNAUTHORIZED', 'authentication required');
            return;
          }
        }
        if (kind === 'blobs' && method === 'GET') {
          counts.blobRedirect++;
          const path = `/${repo}/blobs/${rest}`;
          const expires = String(Date.now() + 60_000);
          res.writeHead(307, { location: `${storageOrigin}${path}?expires=${expires}&sig=${sign(path, expires)}`, 'content-length': '0' }).end();
          return;
        }
        const ur = await backendRequest(opts.backend, method, `${url.pathname}${url.search}`, passThroughHeaders(req));
        relay(ur, res);
      })().catch(() => res.destroy());
    });
    servers.push(registry);

    return {
      host: `${names.registry}:${registry.port}`,
      authHost: `${names.auth}:${auth.port}`,
      storageHost: `${names.storage}:${storage.port}`,
      counts,
      reset() {
        for (const k of Object.keys(counts) as (keyof typeof counts)[]) counts[k] = 0;
      },
      async stop() {
        await Promise.all(servers.map((s) => s.stop()));
      },
    };
  } catch (e) {
    await Promise.all(servers.map((s) => s.stop()));
    throw e;
  }
}

// ----------------------------------------------------------------------------------------------
// ecr-like

export interface EcrLikeOptions {
  backend: string;
  ca: TestCa;
  /** Name in Locations and the certificate (default 127.0.0.1). */
  name?: string;
  user: { username: string; password: string };
  /** Repositories that exist (others: 404 NAME_UNKNOWN, as ECR before `create-repository`). */
  repositories: string[];
  /** OCI-Chunk-Min-Length (default 5 MiB). */
  minChunk?: number;
  /** For the n-th PATCH (1-based), read this many body bytes and then cut the connection. */
  cutPatch?: (n: number) => number | undefined;
  /** How long the completing PUT takes to answer (an S3-backed commit). */
  commitDelayMs?: number;
  /** This many completing PUTs commit the blob and then lose their answer (the connection drops). */
  loseCommitAnswers?: number;
}

export interface EcrUploadEvent {
  method: string;
  /** `/v2/<repo>/blobs/uploads/...` or `/v2/<repo>/blobs/<digest>` etc., without query. */
  path: string;
  /** Content-Range of a PATCH. */
  range?: string;
  /** Body bytes the front received (a cut PATCH: what arrived before the cut). */
  bytes?: number;
  status?: number;
}

export interface EcrLike {
  host: string;
  /** Every request, in order. */
  readonly events: readonly EcrUploadEvent[];
  reset(): void;
  stop(): Promise<void>;
}

interface EcrSession {
  repo: string;
  upstream: URL;
  offset: number;
  chunks: number[];
}

export async function startEcrLike(opts: EcrLikeOptions): Promise<EcrLike> {
  const name = opts.name ?? '127.0.0.1';
  const minChunk = opts.minChunk ?? 5 * 1024 * 1024;
  const sessions = new Map<string, EcrSession>();
  const events: EcrUploadEvent[] = [];
  const basic = 'Basic ' + Buffer.from(`${opts.user.username}:${opts.user.password}`).toString('base64');
  let patches = 0;
  let losesLeft = opts.loseCommitAnswers ?? 0;

  const server = await listen(await opts.ca.server([name]), (req, res) => {
    const url = new URL(req.url ?? '/', 'https://x');
    const event: EcrUploadEvent = { method: req.method ?? '', path: url.pathname };
    events.push(event);
    const answer = (status: number, headers: http.OutgoingHttpHeaders = {}, body = ''): void => {
      event.status = status;
      res.writeHead(status, { 'content-length': String(Buffer.byteLength(body)), ...headers }).end(body);
    };
    void (async () => {
      if (req.headers.authorization !== basic) {
        req.resume();
        answer(401, { 'www-authenticate': `Basic realm="${name}"`, 'content-type': 'application/json' },
          errorBody('UNAUTHORIZED', 'authentication required'));
        return;
      }
      if (url.pathname === '/v2/' || url.pathname === '/v2') {
        answer(200, { 'content-type': 'application/json' }, '{}');
        return;
      }
      const upload = /^\/v2\/(.+?)\/blobs\/uploads\/([^/]*)$/.exec(url.pathname);
      const repo = upload?.[1] ?? REPO_PATH.exec(url.pathname)?.[1];
      if (repo === undefined || !opts.repositories.includes(repo)) {
        req.resume();
        answer(404, { 'content-type': 'application/json' },
          errorBody('NAME_UNKNOWN', `The repository with name '${repo ?? ''}' does not exist in the registry`));
        return;
      }
      if (!upload) {
        const ur = await backendRequest(opts.backend, req.method ?? 'GET', `${url.pathname}${url.search}`, passThroughHeaders(req), req);
        event.status = ur.statusCode;
        relay(ur, res);
        return;
      }
      const id = upload[2]!;
      if (req.method === 'POST' && id === '') {
        // ?mount=&from= is ignored: a new upload starts, from scratch.
        req.resume();
        const ur = await backendRequest(opts.backend, 'POST', `/v2/${repo}/blobs/uploads/`, { 'content-length': '0' });
        ur.resume();
        const location = ur.headers.location;
        if (ur.statusCode !== 202 || !location) {
          answer(502, {}, 'backend refused the upload');
          return;
        }
        const sid = randomUUID();
        sessions.set(sid, { repo, upstream: new URL(location, `http://${opts.backend}`), offset: 0, chunks: [] });
        answer(202, { location: `/v2/${repo}/blobs/uploads/${sid}`, 'docker-upload-uuid': sid, range: '0-0', 'oci-chunk-min-length': String(minChunk) });
        return;
      }
      const session = sessions.get(id);
      if (!session || session.repo !== repo) {
        req.resume();
        answer(404, { 'content-type': 'application/json' }, errorBody('BLOB_UPLOAD_UNKNOWN', 'upload unknown'));
        return;
      }
      const own = `/v2/${repo}/blobs/uploads/${id}`;
      const status = (): http.OutgoingHttpHeaders => ({ location: own, range: `0-${Math.max(0, session.offset - 1)}`, 'docker-upload-uuid': id });
      if (req.method === 'GET') {
        answer(204, status());
        return;
      }
      if (req.method === 'DELETE') {
        sessions.delete(id);
        const ur = await backendRequest(opts.backend, 'DELETE', `${session.upstream.pathname}${session.upstream.search}`, {});
        ur.resume();
        answer(204);
        return;
      }
      if (req.method === 'PATCH') {
        const n = ++patches;
        event.range = req.headers['content-range'];
        const start = Number(/^(\d+)-/.exec(req.headers['content-range'] ?? '')?.[1]);
        if (start !== session.offset) {
          req.resume();
          answer(416, { ...status(), 'content-type': 'application/json' }, errorBody('BLOB_UPLOAD_INVALID', `expected a chunk at offset ${session.offset}`));
          return;
        }
        const cut = opts.cutPatch?.(n);
        const body = await readBody(req, cut);
        event.bytes = body.length;
        if (cut !== undefined) {
          // The link drops mid-chunk: like an S3 part, the chunk is not taken at all.
          req.socket.destroy();
          return;
        }
        const ur = await backendRequest(opts.backend, 'PATCH', `${session.upstream.pathname}${session.upstream.search}`, {
          'content-type': 'application/octet-stream', 'content-length': String(body.length),
          'content-range': `${session.offset}-${session.offset + body.length - 1}`,
        }, body);
        ur.resume();
        if (ur.statusCode !== 202 || !ur.headers.location) {
          answer(502, {}, `backend answered ${ur.statusCode} to PATCH`);
          return;
        }
        session.upstream = new URL(ur.headers.location, `http://${opts.backend}`);
        session.offset += body.length;
        session.chunks.push(body.length);
        answer(202, status());
        return;
      }
      if (req.method === 'PUT') {
        const body = await readBody(req);
        event.bytes = body.length;
        if (body.length > 0) {
          answer(400, { 'content-type': 'application/json' }, errorBody('UNSUPPORTED', 'monolithic uploads are not supported: upload in chunks (PATCH)'));
          return;
        }
        const small = session.chunks.slice(0, -1).find((c) => c < minChunk);
        if (small !== undefined) {
          answer(400, { 'content-type': 'application/json' }, errorBody('BLOB_UPLOAD_INVALID', `chunk of ${small} bytes is smaller than ${minChunk}`));
          return;
        }
        if (opts.commitDelayMs) await new Promise((r) => setTimeout(r, opts.commitDelayMs));
        const target = new URL(session.upstream);
        target.searchParams.set('digest', url.searchParams.get('digest') ?? '');
        const ur = await backendRequest(opts.backend, 'PUT', `${target.pathname}${target.search}`, { 'content-length': '0' });
        ur.resume();
        if (ur.statusCode === 201) sessions.delete(id);
        if (ur.statusCode === 201 && losesLeft > 0) {
          losesLeft--;
          event.status = -1;
          res.socket?.destroy();
          return;
        }
        answer(ur.statusCode ?? 502, {
          ...(ur.headers['docker-content-digest'] ? { 'docker-content-digest': ur.headers['docker-content-digest'] } : {}),
          location: `/v2/${repo}/blobs/${url.searchParams.get('digest') ?? ''}`,
        });
        return;
      }
      req.resume();
      answer(405);
    })().catch(() => res.destroy());
  });

  return {
    host: `${name}:${server.port}`,
    events,
    reset() {
      events.length = 0;
    },
    stop: () => server.stop(),
  };
}

/** The whole body, or (cut) at most `limit` bytes of it. */
function readBody(req: http.IncomingMessage, limit?: number): Promise<Buffer> {
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
