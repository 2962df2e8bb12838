import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * A link emulator for benchmarks: an HTTP front on 127.0.0.1 that forwards to a registry and
 * makes loopback behave like a long fat link. Every request waits `delayMs` before it is
 * forwarded (the round trip), and every client connection carries at most `bytesPerSecond` in
 * each direction (a token bucket per connection, as a long link's TCP window caps one stream).
 * Bodies stream through with backpressure: memory stays a few buffers per connection.
 */

export interface LinkOptions {
  /** The registry behind the link: "127.0.0.1:PORT". */
  upstream: string;
  delayMs: number;
  /** Per connection and direction. */
  bytesPerSecond: number;
  /** Port to listen on (0: any free port). */
  port?: number;
}

export interface Link {
  /** "127.0.0.1:PORT" */
  host: string;
  stats(): { requests: number; connections: number; bytesDown: number; bytesUp: number };
  stop(): Promise<void>;
}

/** Largest slice sent at once: 64 KiB is 4 ms at 16 MB/s, fine-grained enough to stay smooth. */
const SLICE = 64 * 1024;

/**
 * A token bucket on a virtual clock: `#free` is when the link has sent everything so far. A slice
 * waits until its own bytes fit; timer lateness never accumulates, because the clock is exact
 * and only the waits are late. A burst of one slice is allowed after an idle spell.
 */
export class Pacer {
  readonly #rate: number;
  #free = 0;

  constructor(bytesPerSecond: number) {
    if (!(bytesPerSecond > 0)) throw new RangeError(`rate ${bytesPerSecond} is not positive`);
    this.#rate = bytesPerSecond / 1000;
  }

  /** Milliseconds to wait before sending `n` more bytes. */
  reserve(n: number, now = performance.now()): number {
    this.#free = Math.max(this.#free, now - SLICE / this.#rate) + n / this.#rate;
    return Math.max(0, this.#free - now);
  }
}

class Throttle extends Transform {
  readonly #pacer: Pacer;
  readonly #count: (n: number) => void;

  constructor(pacer: Pacer, count: (n: number) => void) {
    super({ highWaterMark: SLICE });
    this.#pacer = pacer;
    this.#count = count;
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    const send = async (): Promise<void> => {
      for (let i = 0; i < chunk.length; i += SLICE) {
        const slice = chunk.subarray(i, i + SLICE);
        const wait = this.#pacer.reserve(slice.length);
        if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
        this.#count(slice.length);
        this.push(slice);
      }
    };
    send().then(() => cb(), cb);
  }
}

export async function startLink(opts: LinkOptions): Promise<Link> {
  const [upHost, upPort] = opts.upstream.split(':');
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const pacers = new WeakMap<Socket, { down: Pacer; up: Pacer }>();
  const stats = { requests: 0, connections: 0, bytesDown: 0, bytesUp: 0 };
  const server = http.createServer((req, res) => {
    stats.requests++;
    const pacer = pacers.get(req.socket)!;
    setTimeout(() => {
      // The Host header stays the link's, so the registry's Location URLs point back at the link.
      const up = http.request({ host: upHost, port: Number(upPort), method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.rawHeaders);
        pipeline(ur, new Throttle(pacer.down, (n) => { stats.bytesDown += n; }), res).catch(() => {
          ur.destroy();
          res.destroy();
        });
      });
      up.on('error', () => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end();
      });
      pipeline(req, new Throttle(pacer.up, (n) => { stats.bytesUp += n; }), up).catch(() => up.destroy());
    }, opts.delayMs);
  });
  server.on('connection', (socket: Socket) => {
    stats.connections++;
    pacers.set(socket, { down: new Pacer(opts.bytesPerSecond), up: new Pacer(opts.bytesPerSecond) });
  });
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 60_000;
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    stats: () => ({ ...stats }),
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      agent.destroy();
      server.close(() => resolve());
    }),
  };
}
