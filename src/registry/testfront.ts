import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

/**
 * Test-only: a tiny HTTP front on 127.0.0.1 that sees every request first and may forward it to
 * a real registry behind it, cut a response body part-way, or answer on its own (challenges,
 * 503s, redirects). Used by the registry tests to inject faults a real registry never makes.
 */

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  /** Date.now() when it arrived. */
  at: number;
}

export interface FrontContext {
  /** Proxies the request to the backend; `cutAfter` sends the headers and only that many body bytes. */
  forward(opts?: ForwardOptions): Promise<void>;
  /** The full request body (for handlers that answer on their own). */
  body(): Promise<Buffer>;
  /** Requests seen so far, this one included. */
  seen: SeenRequest[];
}

export interface ForwardOptions {
  /** Send the response headers and only this many body bytes, then cut the connection. */
  cutAfter?: number | ((res: http.IncomingMessage) => number);
  /** Request headers to set (a string) or remove (undefined) on the way to the backend. */
  headers?: Record<string, string | undefined>;
  /** Response headers to set (a string) or remove (undefined) on the way back (a registry that misreports). */
  responseHeaders?: Record<string, string | undefined>;
  /** Rewrites each response body chunk (same length keeps Content-Length true); `offset` is the chunk's start. */
  transform?: (chunk: Buffer, offset: number, res: http.IncomingMessage) => Buffer;
  /** Sends the response body in pieces of this many bytes, waiting `trickleMs` between them (a slow link). */
  trickleBytes?: number;
  trickleMs?: number;
}

export type FrontHandler = (req: http.IncomingMessage, res: http.ServerResponse, ctx: FrontContext) => void | Promise<void>;

export interface Front {
  host: string;
  seen: SeenRequest[];
  stop(): Promise<void>;
}

export interface FrontOptions {
  /** Serve HTTPS with this certificate (the backend is still reached over plain HTTP). */
  tls?: { certFile: string; keyFile: string };
}

export async function startFront(backend: string | undefined, handle: FrontHandler, opts: FrontOptions = {}): Promise<Front> {
  const seen: SeenRequest[] = [];
  const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers }, at: Date.now() });
    const ctx: FrontContext = {
      seen,
      // The registry writes Location URLs with the scheme it was reached by: the front's.
      forward: (fo = {}) => forward(backend, req, res, opts.tls ? { ...fo, headers: { 'x-forwarded-proto': 'https', ...fo.headers } } : fo),
      body: () => readAll(req),
    };
    Promise.resolve(handle(req, res, ctx)).catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(e));
    });
  };
  const server = opts.tls
    ? https.createServer({ cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) }, listener)
    : http.createServer(listener);
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    seen,
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function forward(backend: string | undefined, req: http.IncomingMessage, res: http.ServerResponse,
  opts: ForwardOptions): Promise<void> {
  if (!backend) throw new Error('this front has no backend');
  const [hostname, port] = backend.split(':');
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { ...req.headers };
    for (const [k, v] of Object.entries(opts.headers ?? {})) {
      if (v === undefined) delete headers[k];
      else headers[k] = v;
    }
    // The Host header stays the front's, so the registry's Location URLs point back at the front.
    const up = http.request({ hostname, port: Number(port), method: req.method, path: req.url, headers }, (ur) => {
      const back: http.IncomingHttpHeaders = { ...ur.headers };
      for (const [k, v] of Object.entries(opts.responseHeaders ?? {})) {
        if (v === undefined) delete back[k];
        else back[k] = v;
      }
      res.writeHead(ur.statusCode ?? 502, back);
      if (opts.transform === undefined && opts.trickleBytes === undefined && opts.cutAfter === undefined) {
        ur.pipe(res);
        ur.on('end', resolve);
        return;
      }
      pump(ur, res, opts).then(resolve, reject);
    });
    up.on('error', reject);
    req.pipe(up);
  });
}

/** The slow path of forward: transform, trickle and cut chunk by chunk, honouring backpressure. */
async function pump(ur: http.IncomingMessage, res: http.ServerResponse, opts: ForwardOptions): Promise<void> {
  let offset = 0;
  const cutAfter = typeof opts.cutAfter === 'function' ? opts.cutAfter(ur) : opts.cutAfter;
  const write = async (b: Buffer): Promise<void> => {
    if (res.destroyed) return;
    if (!res.write(b)) await new Promise<void>((r) => { res.once('drain', r); res.once('close', r); });
  };
  try {
    for await (const raw of ur as AsyncIterable<Buffer>) {
      let chunk = opts.transform ? opts.transform(raw, offset, ur) : raw;
      const cut = cutAfter !== undefined && offset + chunk.length >= cutAfter;
      if (cut) chunk = chunk.subarray(0, Math.max(0, cutAfter - offset));
      offset += raw.length;
      const piece = opts.trickleBytes ?? chunk.length;
      for (let i = 0; i < chunk.length; i += Math.max(1, piece)) {
        await write(chunk.subarray(i, i + Math.max(1, piece)));
        if (opts.trickleMs) await new Promise((r) => setTimeout(r, opts.trickleMs));
      }
      if (cut) {
        // Cut the connection mid-body, as a flaky link would.
        ur.destroy();
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      if (res.destroyed) {
        ur.destroy();
        return;
      }
    }
    res.end();
  } catch {
    res.socket?.destroy();
  }
}

function readAll(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
