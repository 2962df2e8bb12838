import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { type Front, type FrontContext, startFront } from '../registry/testfront.js';

/**
 * Test-only: a registry front with its own Bearer token realm, over a real `docker-registry`.
 * The realm is on the front's origin (`/oauth2/token`, as ACR has it) and issues tokens for
 * users (Basic on a GET) and identity tokens (the OAuth2 refresh-token grant, a POST); the
 * registry side demands a token that grants the repository and action of each request.
 * Variations a hosted registry shows are options: no anonymous access, a token service that
 * refuses any scope the user may not have (instead of granting the allowed part), a mount
 * ignored (the upload starts from scratch), a redirect of some paths to another registry.
 *
 * Everything is logged (token requests with the credential they carried, registry requests
 * with their Authorization) so a test can prove what reached whom.
 */

export type Action = 'pull' | 'push';

export interface TokenFrontOptions {
  /** The docker-registry behind (host:port, plain HTTP). */
  backend: string;
  tls?: { certFile: string; keyFile: string };
  /** `service` in the challenge. */
  service: string;
  /** Users that may get tokens with Basic at the realm (GET). */
  users?: Record<string, string>;
  /** Identity (refresh) tokens → the user they stand for (POST grant_type=refresh_token only). */
  identityTokens?: Record<string, string>;
  /** Whether tokens are given without credentials (for what `allow(undefined, …)` says). */
  anonymous?: boolean;
  /** May `user` (undefined: anonymous) do `action` on `repo`? Default: any known user, anything. */
  allow?: (user: string | undefined, repo: string, action: Action) => boolean;
  /** Refuse a token request naming any scope not allowed (some token services do), instead of granting the rest. */
  strictScopes?: boolean;
  /** Ignore `?mount=&from=` (ACR, ECR): the POST opens an ordinary upload. */
  ignoreMount?: boolean;
  /** After auth, answer 307 to this URL (a registry gateway); undefined: serve it. */
  redirect?: (path: string) => string | undefined;
  /** Token prefix, to tell whose tokens went where. */
  tokenPrefix?: string;
}

export interface TokenLog {
  method: string;
  /** The Authorization header the token request carried (Basic …), if any. */
  authorization: string | undefined;
  grantType: string | undefined;
  clientId: string | undefined;
  /** The refresh token of a POST grant. */
  refreshToken: string | undefined;
  scopes: string[];
  /** Who it was for; undefined = anonymous. */
  user: string | undefined;
  /** The HTTP status the realm answered. */
  status: number;
}

export interface TokenFront extends Front {
  /** `https://host/oauth2/token` */
  realm: string;
  tokens: TokenLog[];
  /** Requests to /v2/ (not the realm). */
  registryRequests(): { method: string; url: string; authorization: string | undefined }[];
}

const REALM_PATH = '/oauth2/token';
const TOKEN_TTL_S = 300;

export async function startTokenFront(o: TokenFrontOptions): Promise<TokenFront> {
  const tokens: TokenLog[] = [];
  const granted = new Map<string, { user: string | undefined; access: Set<string> }>();
  const allow = o.allow ?? ((user) => user !== undefined);
  const prefix = o.tokenPrefix ?? 'tok';
  let realm = '';

  const challenge = (res: http.ServerResponse, scope: string | undefined, message: string): void => {
    res.writeHead(401, {
      'content-type': 'application/json',
      'www-authenticate': `Bearer realm="${realm}",service="${o.service}"${scope ? `,scope="${scope}"` : ''}`,
    });
    res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message }] }));
  };

  const issue = async (req: http.IncomingMessage, res: http.ServerResponse, ctx: FrontContext): Promise<void> => {
    const url = new URL(req.url ?? '/', realm);
    const authorization = req.headers.authorization;
    const log: TokenLog = {
      method: req.method ?? '', authorization, grantType: undefined, clientId: undefined, refreshToken: undefined,
      scopes: [], user: undefined, status: 0,
    };
    tokens.push(log);
    const answer = (status: number, body: object): void => {
      log.status = status;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    let user: string | undefined;
    if (req.method === 'POST') {
      const form = new URLSearchParams((await ctx.body()).toString('utf8'));
      log.grantType = form.get('grant_type') ?? undefined;
      log.clientId = form.get('client_id') ?? undefined;
      log.refreshToken = form.get('refresh_token') ?? undefined;
      log.scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
      if (log.grantType !== 'refresh_token') return answer(400, { error: 'unsupported_grant_type' });
      if (!log.clientId) return answer(400, { error: 'invalid_request', error_description: 'client_id is required' });
      user = o.identityTokens?.[log.refreshToken ?? ''];
      if (user === undefined) return answer(401, { error: 'invalid_grant' });
    } else {
      log.scopes = url.searchParams.getAll('scope');
      const m = /^Basic (.+)$/i.exec(authorization ?? '');
      if (m) {
        const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        const [name, password] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
        // An identity token is a refresh token, not a password: ACR refuses it here.
        if (o.users?.[name] === undefined || o.users[name] !== password) {
          return answer(401, { errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] });
        }
        user = name;
      } else if (!o.anonymous) {
        return answer(401, { errors: [{ code: 'UNAUTHORIZED', message: 'anonymous access is not allowed' }] });
      }
    }
    log.user = user;
    const access = new Set<string>();
    for (const scope of log.scopes) {
      const m = /^repository:(.+):([a-z,*]+)$/.exec(scope);
      if (!m) continue;
      for (const action of m[2]!.split(',')) {
        if (action !== 'pull' && action !== 'push') continue;
        if (allow(user, m[1]!, action)) access.add(`${m[1]!}:${action}`);
        else if (o.strictScopes) return answer(403, { errors: [{ code: 'DENIED', message: `${scope} is not allowed` }] });
      }
    }
    const token = `${prefix}.${randomBytes(12).toString('hex')}`;
    granted.set(token, { user, access });
    answer(200, req.method === 'POST'
      ? { access_token: token, expires_in: TOKEN_TTL_S, token_type: 'Bearer' }
      : { token, expires_in: TOKEN_TTL_S });
  };

  const front = await startFront(o.backend, async (req, res, ctx) => {
    const url = new URL(req.url ?? '/', realm);
    if (url.pathname === REALM_PATH) return issue(req, res, ctx);
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    const grant = bearer ? granted.get(bearer[1]!) : undefined;
    const route = /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(url.pathname);
    if (!route) {
      // /v2/ itself: any valid token.
      if (!grant) return challenge(res, undefined, 'authentication required');
      return ctx.forward({ headers: { authorization: undefined } });
    }
    const repo = route[1]!;
    const action: Action = req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'push';
    const from = url.searchParams.get('mount') !== null ? url.searchParams.get('from') : null;
    const needs = [`${repo}:${action}`, ...(action === 'push' ? [`${repo}:pull`] : []),
      ...(from !== null && !o.ignoreMount ? [`${from}:pull`] : [])];
    if (!grant || !needs.every((n) => grant.access.has(n))) {
      return challenge(res, `repository:${repo}:${action === 'push' ? 'pull,push' : 'pull'}`, 'authentication required');
    }
    const to = o.redirect?.(url.pathname + url.search);
    if (to !== undefined) {
      res.writeHead(307, { location: to, 'content-length': '0' });
      res.end();
      return;
    }
    if (from !== null && o.ignoreMount) {
      url.searchParams.delete('mount');
      url.searchParams.delete('from');
      req.url = url.pathname + (url.search || '');
    }
    return ctx.forward({ headers: { authorization: undefined } });
  }, o.tls ? { tls: o.tls } : {});
  realm = `${o.tls ? 'https' : 'http'}://${front.host}${REALM_PATH}`;
  return {
    ...front,
    realm,
    tokens,
    registryRequests: () => front.seen
      .filter((s) => !s.url.startsWith(REALM_PATH))
      .map((s) => ({ method: s.method, url: s.url, authorization: s.headers.authorization })),
  };
}
