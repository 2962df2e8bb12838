import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import type http from 'node:http';
import { REPO_PATH, type Server, backendRequest, errorBody, listen, passThroughHeaders, relay } from './hosted.js';
import type { TestCa } from './tlsca.js';

/** A Docker-Hub-like front over docker-registry (see hosted.ts). */

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
