import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

/**
 * Test helper: an emulator of the vendor's license-authenticated registry proxy on 127.0.0.1.
 *
 * - `/v2/` and every image path answer 401 with a Bearer challenge whose realm is `/token`;
 * - `/token` wants Basic auth with username = password = the license ID and hands out a token;
 * - `/v2/proxy/<app-slug>/<upstream-host[:port]>/<repo>/(manifests|blobs|tags)/<ref>` with that
 *   token is forwarded to `<upstream-host>/v2/<repo>/…` with the vendor's upstream credentials,
 *   streaming both ways. Other slugs are refused (403), hosts outside the allow-list are unknown (404).
 *
 * Every request is logged so that tests can assert that an image really went through the proxy.
 */
export interface UpstreamCredentials {
  username: string;
  password: string;
  /** Set when the upstream speaks TLS with a certificate from this CA. */
  caFile?: string;
  /**
   * Where to connect when the allow-list key is an alias (default: the key itself). Lets tests
   * name an upstream without a port, which skopeo needs to parse the proxy path as a reference.
   */
  address?: string;
}

export interface StartProxyOptions {
  licenseId: string;
  appSlug: string;
  /** Allow-list: upstream "host:port" → the vendor's credentials for it. */
  upstreams: Record<string, UpstreamCredentials>;
  /** Token lifetime in seconds (default 300). */
  tokenTtl?: number;
}

export interface ProxyRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** 0 until the answer is complete. */
  status: number;
}

export interface TestProxy {
  /** "127.0.0.1:PORT" */
  host: string;
  /** Every request answered so far, in order. */
  readonly requests: readonly ProxyRequest[];
  /** How many requests' paths contain `match` (or match the RegExp). */
  count(match: string | RegExp): number;
  /** Requests per path. */
  counts(): Map<string, number>;
  /** Forgets the request log (between test steps). */
  reset(): void;
  stop(): Promise<void>;
}

const PROXY_PATH = /^\/v2\/proxy\/([^/]+)\/([^/]+)\/(.+)\/(manifests|blobs|tags)\/([^/]+)$/;
// Response headers a registry client relies on; everything else (notably the upstream's own
// WWW-Authenticate) stays behind the proxy.
const RELAYED = ['content-type', 'content-length', 'docker-content-digest', 'content-range', 'accept-ranges',
  'etag', 'docker-distribution-api-version', 'cache-control', 'last-modified'];

export async function startProxy(opts: StartProxyOptions): Promise<TestProxy> {
  const ttl = opts.tokenTtl ?? 300;
  const tokens = new Map<string, number>();
  const log: ProxyRequest[] = [];
  const agents = new Map<string, http.Agent>();
  let origin = '';

  const agentFor = (host: string, up: UpstreamCredentials): http.Agent => {
    let a = agents.get(host);
    if (!a) {
      a = up.caFile ? new https.Agent({ keepAlive: true, ca: readFileSync(up.caFile) }) : new http.Agent({ keepAlive: true });
      agents.set(host, a);
    }
    return a;
  };

  const validToken = (req: http.IncomingMessage): boolean => {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    const exp = m ? tokens.get(m[1]!) : undefined;
    return exp !== undefined && exp > Date.now();
  };

  const challenge = (res: http.ServerResponse, scope?: string): void => {
    res.setHeader('WWW-Authenticate',
      `Bearer realm="${origin}/token",service="proxy"${scope ? `,scope="${scope}"` : ''}`);
    sendError(res, 401, 'UNAUTHORIZED', 'authentication required');
  };

  const issueToken = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const m = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    const decoded = m ? Buffer.from(m[1]!, 'base64').toString('utf8') : '';
    const sep = decoded.indexOf(':');
    const user = decoded.slice(0, sep);
    const pass = decoded.slice(sep + 1);
    if (sep < 0 || user !== opts.licenseId || pass !== opts.licenseId) {
      res.setHeader('WWW-Authenticate', 'Basic realm="proxy"');
      sendError(res, 401, 'UNAUTHORIZED', 'invalid license credentials');
      return;
    }
    const token = randomBytes(24).toString('base64url');
    tokens.set(token, Date.now() + ttl * 1000);
    sendJson(res, 200, { token, access_token: token, expires_in: ttl, issued_at: new Date().toISOString() });
  };

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, upHost: string, up: UpstreamCredentials,
    repo: string, kind: string, ref: string, query: string): void => {
    const scheme = up.caFile ? 'https' : 'http';
    const upPath = `/v2/${repo}/${kind}/${ref}${query}`;
    const headers: http.OutgoingHttpHeaders = {
      authorization: 'Basic ' + Buffer.from(`${up.username}:${up.password}`).toString('base64'),
    };
    for (const h of ['accept', 'range', 'if-none-match', 'user-agent']) {
      if (req.headers[h] !== undefined) headers[h] = req.headers[h];
    }
    const url = new URL(`${scheme}://${up.address ?? upHost}${upPath}`);
    const client = scheme === 'https' ? https : http;
    const upReq = client.request(url, { method: req.method, headers, agent: agentFor(upHost, up) }, (upRes) => {
      const status = upRes.statusCode ?? 502;
      if (status === 401 || status === 403) {
        upRes.resume();
        sendError(res, 403, 'DENIED', `upstream ${upHost} refused the vendor's credentials`);
        return;
      }
      for (const h of RELAYED) {
        const v = upRes.headers[h];
        if (v !== undefined) res.setHeader(h, v);
      }
      const location = upRes.headers.location;
      // A relative redirect means "on the upstream": make it absolute so the client goes there.
      if (location) res.setHeader('Location', new URL(location, url).toString());
      const link = upRes.headers.link;
      if (typeof link === 'string') {
        res.setHeader('Link', link.split(`/v2/${repo}/`).join(`/v2/proxy/${opts.appSlug}/${upHost}/${repo}/`));
      }
      res.writeHead(status);
      upRes.pipe(res);
    });
    upReq.on('error', (e) => {
      if (!res.headersSent) sendError(res, 502, 'UNAVAILABLE', `upstream ${upHost} unreachable: ${e.message}`);
      else res.destroy(e);
    });
    // The client went away: stop pulling from the upstream too.
    res.on('close', () => {
      if (!res.writableFinished) upReq.destroy();
    });
    upReq.end();
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://proxy.invalid');
    const path = url.pathname;
    // Logged on arrival (counts are right as soon as a client has its answer); status at the end.
    const entry: ProxyRequest = { method: req.method ?? '', path, status: 0 };
    log.push(entry);
    res.on('finish', () => { entry.status = res.statusCode; });
    if (path === '/token') {
      if (req.method !== 'GET') return sendError(res, 405, 'UNSUPPORTED', 'the token endpoint accepts GET only');
      return issueToken(req, res);
    }
    if (path === '/v2/' || path === '/v2') {
      if (!validToken(req)) return challenge(res);
      return sendJson(res, 200, {});
    }
    const m = PROXY_PATH.exec(path);
    if (!m) return sendError(res, 404, 'NAME_UNKNOWN', `not a proxy path: ${path}`);
    const [, slug, upHost, repo, kind, ref] = m as unknown as [string, string, string, string, string, string];
    if (kind === 'tags' && ref !== 'list') return sendError(res, 404, 'NAME_UNKNOWN', `not a proxy path: ${path}`);
    if (!validToken(req)) return challenge(res, `repository:proxy/${slug}/${upHost}/${repo}:pull`);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return sendError(res, 405, 'UNSUPPORTED', 'the proxy is read-only');
    }
    if (slug !== opts.appSlug) return sendError(res, 403, 'DENIED', `the license does not grant access to app "${slug}"`);
    const up = opts.upstreams[upHost];
    if (!up) return sendError(res, 404, 'NAME_UNKNOWN', `upstream registry ${upHost} is not configured for app "${slug}"`);
    forward(req, res, upHost, up, repo, kind, ref, url.search);
  };

  const server = http.createServer((req, res) => {
    try {
      handle(req, res);
    } catch (e) {
      if (!res.headersSent) sendError(res, 500, 'UNKNOWN', e instanceof Error ? e.message : String(e));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = `127.0.0.1:${port}`;
  origin = `http://${host}`;
  let stopped = false;

  return {
    host,
    requests: log,
    count(match) {
      return log.filter((r) => (typeof match === 'string' ? r.path.includes(match) : match.test(r.path))).length;
    },
    counts() {
      const byPath = new Map<string, number>();
      for (const r of log) byPath.set(r.path, (byPath.get(r.path) ?? 0) + 1);
      return byPath;
    },
    reset() {
      log.length = 0;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      for (const a of agents.values()) a.destroy();
    },
  };
}

/**
 * Does what a registry client does against the proxy: fetch a token with the license as Basic
 * credentials, then send the request with it. Returns the token endpoint's answer when that
 * fails (401 for a wrong license). For tests that cannot use skopeo: an upstream host with a port
 * makes `proxy/<slug>/<host:port>/<repo>` an invalid Docker reference for skopeo and containerd.
 */
export async function fetchThroughProxy(proxyHost: string, licenseId: string, path: string,
  init: { method?: 'GET' | 'HEAD'; headers?: Record<string, string> } = {}): Promise<Response> {
  const basic = Buffer.from(`${licenseId}:${licenseId}`).toString('base64');
  const tokenRes = await fetch(`http://${proxyHost}/token?service=proxy`, { headers: { authorization: `Basic ${basic}` } });
  if (tokenRes.status !== 200) return tokenRes;
  const { token } = (await tokenRes.json()) as { token: string };
  return fetch(`http://${proxyHost}${path}`, {
    method: init.method ?? 'GET',
    headers: { ...init.headers, authorization: `Bearer ${token}` },
    redirect: 'manual',
  });
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': data.length });
  res.end(data);
}

/** Errors in the registry API's shape, so clients can show the code and message. */
function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { errors: [{ code, message, detail: null }] });
}
