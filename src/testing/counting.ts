import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';

/**
 * A counting front: an HTTP front on 127.0.0.1 that forwards to a registry and counts what the
 * client really does, independently of the tool's own report: requests in flight at once (from
 * the request's arrival until its response is finished or abandoned) and their peak, connections
 * opened, and each request's arrival time. Each request waits `delayMs` before it is forwarded
 * (so that concurrency has room to show). `throttle`: the n-th request is answered 429 with
 * Retry-After, to see whether the client slows the whole host down.
 */

export interface CountingOptions {
  /** The registry behind the front: "127.0.0.1:PORT". */
  upstream: string;
  delayMs?: number;
  throttle?: { at: number; retryAfterSeconds: number };
}

export interface CountingFront {
  /** "127.0.0.1:PORT" */
  host: string;
  /** Most requests in flight at once since the last reset. */
  peak(): number;
  requests(): number;
  connections(): number;
  /** Arrival times (ms, performance.now()) of every request, and of the throttled one. */
  arrivals(): number[];
  throttledAt(): number | undefined;
  /** "METHOD /path?query" of every request, in arrival order. */
  log(): string[];
  reset(): void;
  stop(): Promise<void>;
}

export async function startCountingFront(opts: CountingOptions): Promise<CountingFront> {
  const [upHost, upPort] = opts.upstream.split(':');
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  let inFlight = 0;
  let peak = 0;
  let requests = 0;
  let connections = 0;
  let arrivals: number[] = [];
  let throttledAt: number | undefined;
  let log: string[] = [];
  const server = http.createServer((req, res) => {
    requests++;
    log.push(`${req.method} ${req.url}`);
    arrivals.push(performance.now());
    inFlight++;
    peak = Math.max(peak, inFlight);
    let counted = true;
    const done = (): void => {
      if (!counted) return;
      counted = false;
      inFlight--;
    };
    res.once('finish', done);
    res.once('close', done);
    if (opts.throttle && requests === opts.throttle.at) {
      throttledAt = performance.now();
      req.resume();
      res.writeHead(429, { 'retry-after': String(opts.throttle.retryAfterSeconds), 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}');
      return;
    }
    setTimeout(() => {
      // The Host header stays the front's, so the registry's Location URLs point back at it.
      const up = http.request({ host: upHost, port: Number(upPort), method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.rawHeaders);
        pipeline(ur, res).catch(() => {
          ur.destroy();
          res.destroy();
        });
      });
      up.on('error', () => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end();
      });
      pipeline(req, up).catch(() => up.destroy());
    }, opts.delayMs ?? 0);
  });
  server.on('connection', (_socket: Socket) => { connections++; });
  server.keepAliveTimeout = 30_000;
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    peak: () => peak,
    requests: () => requests,
    connections: () => connections,
    arrivals: () => [...arrivals],
    throttledAt: () => throttledAt,
    log: () => [...log],
    reset: () => {
      log = [];
      peak = inFlight;
      requests = 0;
      connections = 0;
      arrivals = [];
      throttledAt = undefined;
    },
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      agent.destroy();
      server.close(() => resolve());
    }),
  };
}
