import http from 'node:http';
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
}

export interface FrontContext {
  /** Proxies the request to the backend; `cutAfter` sends the headers and only that many body bytes. */
  forward(opts?: { cutAfter?: number; headers?: Record<string, string | undefined> }): Promise<void>;
  /** The full request body (for handlers that answer on their own). */
  body(): Promise<Buffer>;
  /** Requests seen so far, this one included. */
  seen: SeenRequest[];
}

export type FrontHandler = (req: http.IncomingMessage, res: http.ServerResponse, ctx: FrontContext) => void | Promise<void>;

export interface Front {
  host: string;
  seen: SeenRequest[];
  stop(): Promise<void>;
}

export async function startFront(backend: string | undefined, handle: FrontHandler): Promise<Front> {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    const ctx: FrontContext = {
      seen,
      forward: (opts = {}) => forward(backend, req, res, opts),
      body: () => readAll(req),
    };
    Promise.resolve(handle(req, res, ctx)).catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(e));
    });
  });
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
  opts: { cutAfter?: number; headers?: Record<string, string | undefined> }): Promise<void> {
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
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      if (opts.cutAfter === undefined) {
        ur.pipe(res);
        ur.on('end', resolve);
        return;
      }
      let sent = 0;
      const limit = opts.cutAfter;
      ur.on('data', (chunk: Buffer) => {
        if (sent >= limit) return;
        const part = chunk.subarray(0, limit - sent);
        sent += part.length;
        res.write(part);
        if (sent >= limit) {
          // Cut the connection mid-body, as a flaky link would.
          ur.destroy();
          setTimeout(() => res.socket?.destroy(), 20);
          resolve();
        }
      });
      ur.on('end', () => { res.end(); resolve(); });
    });
    up.on('error', reject);
    req.pipe(up);
  });
}

function readAll(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
