import type http from 'node:http';
import { type Front, type SeenRequest, startFront } from '../registry/testfront.js';

/**
 * Test-only: a fault-injecting front for a test registry (or the proxy emulator). It listens on
 * 127.0.0.1, forwards every request to `backend` by streaming, and breaks the requests that match
 * the active rules the way real links and registries break: bodies cut mid-stream, 5xx, 429 with
 * Retry-After, connections reset before any header, slow trickles, stalls, a flipped byte, a
 * redirect to another host. Rules are switched per test with set(); `injected` counts what was
 * actually done, so a test can assert that the fault really happened.
 *
 * Bounded: a stall ends when the client gives up or after STALL_MAX_MS; trickles end with the body.
 */

export type Fault =
  /** GET: the response body is cut after `fraction` of it (default ½). Upload PUT/PATCH: the request body is. */
  | { kind: 'cut'; fraction?: number }
  /** Answers `status` itself (HTML body when `html`), with Retry-After when given. */
  | { kind: 'status'; status: number; retryAfter?: string; html?: boolean }
  /** Closes the connection before sending any header. */
  | { kind: 'reset' }
  /** The response body in pieces of `bytes`, `ms` apart. */
  | { kind: 'slow'; bytes: number; ms: number }
  /** Accepts the request and never answers. */
  | { kind: 'stall' }
  /** Flips one byte of the response body: a blob's middle byte, or one hex digit of a manifest (still valid JSON). */
  | { kind: 'flip' }
  /** 307 to the same path on another host (blob storage, a CDN). */
  | { kind: 'redirect'; to: string };

export type FaultKind = Fault['kind'];

/** Which requests a rule applies to. */
export type Target =
  | 'blob'          // GET/HEAD of /v2/<repo>/blobs/<digest>
  | 'manifest'      // GET/HEAD of /v2/<repo>/manifests/<ref>
  | 'manifest-by-digest'
  | 'upload'        // POST/PATCH/PUT under /v2/<repo>/blobs/uploads/
  | 'manifest-put'  // PUT /v2/<repo>/manifests/<ref>
  | 'repo'          // anything under /v2/<repo>/
  | 'any';          // everything, /v2/ and token requests included

export interface FaultRule {
  on: Target;
  fault: Fault;
  /** GET only (default for blob/manifest targets): leave HEAD requests alone. */
  methods?: string[];
  /**
   * 'per-url': at most once per method + path, or per blob for an upload's PUT ?digest= (so the
   * retry of each goes through); a number: at most that many in all.
   */
  limit?: 'per-url' | number;
}

export interface FaultFront extends Front {
  /** Replaces the active rules (none = a transparent proxy). */
  set(rules: FaultRule | FaultRule[]): void;
  /** Faults actually injected, by kind. */
  injected: Record<FaultKind, number>;
  /** Requests that carried a Range header (resumed downloads). */
  ranged(): SeenRequest[];
}

export interface FaultFrontOptions {
  /** Authorization to add on the way to the backend (a "storage" host with its own access). */
  authorization?: string;
}

const STALL_MAX_MS = 60_000;

export async function startFaultFront(backend: string, opts: FaultFrontOptions = {}): Promise<FaultFront> {
  let rules: { rule: FaultRule; done: Set<string>; count: number }[] = [];
  const injected: Record<FaultKind, number> = { cut: 0, status: 0, reset: 0, slow: 0, stall: 0, flip: 0, redirect: 0 };
  const stalled = new Set<http.ServerResponse>();
  const headers = opts.authorization ? { authorization: opts.authorization } : {};

  const pick = (req: http.IncomingMessage): Fault | undefined => {
    for (const r of rules) {
      if (!matches(r.rule, req)) continue;
      // An upload's URL changes with every session: key its closing PUT by the blob's digest.
      const digest = /[?&]digest=([^&]+)/.exec(req.url ?? '')?.[1];
      const key = `${req.method} ${digest ? decodeURIComponent(digest) : (req.url ?? '').split('?')[0]}`;
      if (r.rule.limit === 'per-url') {
        if (r.done.has(key)) continue;
        r.done.add(key);
      } else if (typeof r.rule.limit === 'number') {
        if (r.count >= r.rule.limit) continue;
      }
      r.count++;
      return r.rule.fault;
    }
    return undefined;
  };

  const front = await startFront(backend, async (req, res, ctx) => {
    const fault = pick(req);
    if (!fault) return ctx.forward({ headers });
    switch (fault.kind) {
      case 'status': {
        injected.status++;
        await ctx.body();
        const h: Record<string, string> = { 'content-type': fault.html ? 'text/html' : 'application/json' };
        if (fault.retryAfter !== undefined) h['retry-after'] = fault.retryAfter;
        res.writeHead(fault.status, h);
        res.end(fault.html ? `<html><body><h1>${fault.status}</h1>nginx</body></html>`
          : JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected fault' }] }));
        return;
      }
      case 'reset':
        injected.reset++;
        req.socket.destroy();
        return;
      case 'stall':
        injected.stall++;
        stalled.add(res);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, STALL_MAX_MS);
          res.once('close', () => { clearTimeout(timer); resolve(); });
        });
        stalled.delete(res);
        if (!res.writableEnded) res.socket?.destroy();
        return;
      case 'redirect':
        injected.redirect++;
        await ctx.body();
        res.writeHead(307, { location: `http://${fault.to}${req.url ?? '/'}` });
        res.end();
        return;
      case 'slow':
        injected.slow++;
        return ctx.forward({ headers, trickleBytes: fault.bytes, trickleMs: fault.ms });
      case 'cut':
        if (req.method === 'PUT' || req.method === 'PATCH') return cutUpload(req, fault.fraction ?? 0.5, () => injected.cut++);
        return ctx.forward({
          headers,
          cutAfter: (up) => {
            const len = Number(up.headers['content-length']);
            if (up.statusCode !== 200 && up.statusCode !== 206) return Number.MAX_SAFE_INTEGER;
            if (!Number.isSafeInteger(len) || len < 2) return Number.MAX_SAFE_INTEGER;
            injected.cut++;
            return Math.max(1, Math.floor(len * (fault.fraction ?? 0.5)));
          },
        });
      case 'flip': {
        const manifest = (req.url ?? '').includes('/manifests/');
        return ctx.forward({
          headers,
          transform: (chunk, offset, up) => {
            if (up.statusCode !== 200) return chunk;
            const at = manifest ? hexDigitIn(chunk) : Math.floor(Number(up.headers['content-length'] ?? 0) / 2) - offset;
            if (at < 0 || at >= chunk.length || (manifest && offset > 0)) return chunk;
            injected.flip++;
            const out = Buffer.from(chunk);
            out[at] = manifest ? (out[at] === 0x30 ? 0x31 : 0x30) : out[at]! ^ 0x01;
            return out;
          },
        });
      }
    }
  });

  return {
    ...front,
    injected,
    set(r) {
      rules = (Array.isArray(r) ? r : [r]).map((rule) => ({ rule, done: new Set<string>(), count: 0 }));
    },
    ranged: () => front.seen.filter((s) => s.headers.range !== undefined),
    async stop() {
      for (const res of stalled) res.destroy();
      await front.stop();
    },
  };
}

function matches(rule: FaultRule, req: http.IncomingMessage): boolean {
  const method = req.method ?? '';
  const path = (req.url ?? '').split('?')[0]!;
  const methods = rule.methods ?? (['blob', 'manifest', 'manifest-by-digest'].includes(rule.on) ? ['GET'] : undefined);
  if (methods && !methods.includes(method)) return false;
  const uploads = /^\/v2\/.+\/blobs\/uploads\//.test(path);
  switch (rule.on) {
    case 'blob': return !uploads && /^\/v2\/.+\/blobs\/[a-z0-9]+:[a-f0-9]+$/.test(path);
    case 'manifest': return /^\/v2\/.+\/manifests\/[^/]+$/.test(path);
    case 'manifest-by-digest': return /^\/v2\/.+\/manifests\/sha256:[a-f0-9]{64}$/.test(path);
    case 'upload': return uploads && method !== 'DELETE';
    case 'manifest-put': return method === 'PUT' && /^\/v2\/.+\/manifests\/[^/]+$/.test(path);
    case 'repo': return /^\/v2\/.+\//.test(path);
    case 'any': return true;
  }
}

/** Index of the last hex digit inside a `sha256:…` string of a JSON body, or -1. */
function hexDigitIn(chunk: Buffer): number {
  const text = chunk.toString('latin1');
  const at = text.lastIndexOf('sha256:');
  return at === -1 ? -1 : at + 'sha256:'.length + 10;
}

/** Reads `fraction` of an upload's body, then drops the connection, as a link that dies mid-upload. */
async function cutUpload(req: http.IncomingMessage, fraction: number, count: () => void): Promise<void> {
  const total = Number(req.headers['content-length'] ?? 0);
  const stopAt = Math.max(1, Math.floor(total * fraction));
  let seen = 0;
  count();
  await new Promise<void>((resolve) => {
    req.on('data', (c: Buffer) => {
      seen += c.length;
      if (seen >= stopAt) {
        req.socket.destroy();
        resolve();
      }
    });
    req.on('end', resolve);
    req.on('close', resolve);
  });
}
