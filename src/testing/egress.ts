import http from 'node:http';
import net, { type AddressInfo } from 'node:net';

/**
 * Test helper: a corporate egress proxy on 127.0.0.1. It answers `CONNECT host:port` (https,
 * tunnelled) and absolute-URI requests (`GET http://host:port/path`, plain http), and it alone
 * knows the names in `names`: each maps to a loopback address. Nothing else resolves those names
 * (they end in `.invalid`), so a request that reached its server went through this proxy. Any
 * other name gets 502, as a proxy whose DNS lookup failed answers. Every request is logged.
 * A mapping `name → address:port` also sends every port of the name to that port (a test server
 * posing as `name:443`, which a test cannot bind).
 */
export interface EgressProxy {
  /** `http://127.0.0.1:PORT` (what HTTPS_PROXY gets). */
  url: string;
  /** `host:port` targets of CONNECT requests, in order. */
  readonly tunnels: readonly string[];
  /** Absolute URIs of plain-http requests, in order. */
  readonly forwarded: readonly string[];
  /** Targets answered 502 (names it cannot resolve). */
  readonly refused: readonly string[];
  reset(): void;
  stop(): Promise<void>;
}

export async function startEgressProxy(names: Record<string, string>): Promise<EgressProxy> {
  const tunnels: string[] = [];
  const forwarded: string[] = [];
  const refused: string[] = [];
  const lookup = (host: string): string | undefined => {
    const h = host.replace(/^\[|\]$/g, '').toLowerCase();
    return names[h] ?? (h === '127.0.0.1' || h === 'localhost' ? '127.0.0.1' : undefined);
  };
  // `127.0.0.1:PORT` (IPv4 only: an IPv6 address has colons of its own).
  const resolve = (host: string): string | undefined => lookup(host)?.replace(/^([\d.]+):\d+$/, '$1');
  const portOf = (host: string, port: number): number => Number(/^[\d.]+:(\d+)$/.exec(lookup(host) ?? '')?.[1] ?? port);
  const sockets = new Set<net.Socket>();

  const server = http.createServer((req, res) => {
    let target: URL;
    try {
      target = new URL(req.url ?? '');
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('a proxy request needs an absolute URI\n');
      return;
    }
    forwarded.push(target.href);
    const address = resolve(target.hostname);
    if (target.protocol !== 'http:' || address === undefined) {
      refused.push(target.host);
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`cannot resolve ${target.hostname}\n`);
      return;
    }
    const headers = { ...req.headers };
    delete headers['proxy-connection'];
    delete headers['proxy-authorization'];
    const up = http.request({
      host: address, port: portOf(target.hostname, Number(target.port || 80)), method: req.method, path: `${target.pathname}${target.search}`, headers,
    }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });

  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const target = req.url ?? '';
    tunnels.push(target);
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(target);
    const address = m ? resolve(m[1]!) : undefined;
    if (!m || address === undefined) {
      refused.push(target);
      client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const up = net.connect(portOf(m[1]!, Number(m[2])), address, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    sockets.add(up);
    up.on('close', () => sockets.delete(up));
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
  });
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    tunnels, forwarded, refused,
    reset() {
      tunnels.length = 0;
      forwarded.length = 0;
      refused.length = 0;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
