import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { REPO_PATH, backendRequest, errorBody, listen, passThroughHeaders, readBody, relay } from './hosted.js';
import type { TestCa } from './tlsca.js';

/** An ECR-like front (the upload side) over docker-registry (see hosted.ts). */

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
