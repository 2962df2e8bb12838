import type { Credential, Credentials } from './credentials.js';
import { readCapped } from './body.js';
import { type RequestSubject, authError, describe, httpError } from './errors.js';
import { hopRefusal } from './policy.js';
import { type Transport, headerAll, refusedHop } from './transport.js';

/**
 * The two wire pieces of registry auth: reading a `WWW-Authenticate` challenge, and asking a
 * Bearer realm (the token service) for a token for one scope set. See auth.ts for the flow.
 */

export interface Challenge {
  /** Lower-cased: `bearer`, `basic`, … */
  scheme: string;
  params: Record<string, string>;
}

/** Parses one or more WWW-Authenticate values (a header may hold several challenges). */
export function parseChallenges(values: string | string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of Array.isArray(values) ? values : [values]) {
    let i = 0;
    const s = value;
    let current: Challenge | undefined;
    const skip = (re: RegExp): void => {
      while (i < s.length && re.test(s[i]!)) i++;
    };
    while (i < s.length) {
      skip(/[\s,]/);
      const tokenMatch = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/.exec(s.slice(i));
      if (!tokenMatch) break;
      const token = tokenMatch[0];
      i += token.length;
      skip(/\s/);
      if (s[i] === '=' && current) {
        // auth-param: key=value or key="quoted value"
        i++;
        skip(/\s/);
        let v = '';
        if (s[i] === '"') {
          i++;
          while (i < s.length && s[i] !== '"') {
            if (s[i] === '\\' && i + 1 < s.length) i++;
            v += s[i];
            i++;
          }
          i++;
        } else {
          const m = /^[^,\s]*/.exec(s.slice(i));
          v = m ? m[0] : '';
          i += v.length;
        }
        current.params[token.toLowerCase()] = v;
      } else if (s[i] === '=' && !current) {
        break; // params before any scheme: malformed, stop
      } else {
        current = { scheme: token.toLowerCase(), params: {} };
        out.push(current);
      }
    }
  }
  return out;
}

export interface Token {
  value: string;
  /** Date.now() after which it is not sent any more. */
  expiresAt: number;
}

const DEFAULT_TOKEN_TTL_S = 60;
/** A token response is a few kilobytes (a JWT and its expiry); anything near this is not one. */
const MAX_TOKEN_RESPONSE = 1024 * 1024;
const MAX_ERROR_BODY = 16 * 1024;
/** Who we are to an OAuth2 token service (`client_id` is required there). */
const CLIENT_ID = 'airgap';

export interface TokenRequest {
  transport: Transport;
  /** The registry host the request is for (transport settings, messages). */
  host: string;
  realm: string | undefined;
  service: string | undefined;
  scopes: readonly string[];
  credential: Credential | undefined;
  /** The registry request that needs the token (its errors name it). */
  subject: RequestSubject;
  signal?: AbortSignal;
}

/**
 * One token from the realm. An identity token is exchanged with the OAuth2 refresh-token grant
 * (POST, form body); a user and password go as Basic on a GET (the distribution token spec);
 * without a credential the GET is anonymous.
 */
export async function fetchToken(r: TokenRequest): Promise<Token> {
  let url: URL;
  try {
    url = new URL(r.realm ?? '');
  } catch {
    throw authError(r.subject, `the registry's Bearer challenge has no usable realm ("${r.realm ?? ''}")`);
  }
  const c = r.credential;
  const oauth = c?.kind === 'identity-token';
  const tokenSubject: RequestSubject = { method: oauth ? 'POST' : 'GET', host: r.host, what: `token from ${url.host}` };
  // The realm gets the credential: never over plain HTTP when the registry itself is on TLS.
  const refusal = hopRefusal(await r.transport.baseUrl(r.host, r.subject, r.signal), url);
  if (refusal !== undefined) throw refusedHop(r.subject, 'token realm', url, refusal);
  let body: Uint8Array | undefined;
  const headers: Record<string, string> = {};
  if (oauth) {
    const form = new URLSearchParams({ grant_type: 'refresh_token', client_id: CLIENT_ID, refresh_token: c.token });
    if (r.service) form.set('service', r.service);
    if (r.scopes.length > 0) form.set('scope', r.scopes.join(' '));
    body = Buffer.from(form.toString(), 'utf8');
    headers['content-type'] = 'application/x-www-form-urlencoded';
  } else {
    if (r.service) url.searchParams.set('service', r.service);
    for (const s of r.scopes) url.searchParams.append('scope', s);
    if (c) headers.authorization = basic(c);
  }
  const started = Date.now();
  const res = await r.transport.send({
    method: oauth ? 'POST' : 'GET', host: r.host, url, subject: tokenSubject, headers,
    ...(body ? { body } : {}), ...(r.signal ? { signal: r.signal } : {}),
  });
  if (res.status !== 200) {
    const text = (await readCapped(res, MAX_ERROR_BODY, describe(tokenSubject), true).catch(() => Buffer.alloc(0))).toString('utf8');
    const e = httpError(tokenSubject, res.status, text, headerAll(res, 'content-type')[0]);
    if (res.status === 400 || res.status === 401 || res.status === 403) throw refused(r, url, res.status, e);
    throw e;
  }
  const text = (await readCapped(res, MAX_TOKEN_RESPONSE, `${describe(tokenSubject)}: the answer`)).toString('utf8');
  let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw authError(tokenSubject, 'the token service answered something that is not JSON');
  }
  const value = typeof parsed.token === 'string' && parsed.token ? parsed.token
    : typeof parsed.access_token === 'string' && parsed.access_token ? parsed.access_token : undefined;
  if (!value) throw authError(tokenSubject, 'the token service answered without a token');
  const ttl = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_TTL_S;
  // Renew a little early so a token does not expire between our check and the registry's.
  const margin = Math.min(10, ttl / 4);
  return { value, expiresAt: started + (ttl - margin) * 1000 };
}

function refused(r: TokenRequest, url: URL, status: number, cause: unknown): Error {
  const c = r.credential;
  const what = r.scopes.length > 0 ? ` for ${r.scopes.join(' ')}` : '';
  if (!c) {
    return authError(r.subject, `anonymous access refused by the token service at ${url.host}${what} (HTTP ${status})`, cause,
      `log in to ${r.host} (docker login, podman login) or pass --username/--password`);
  }
  if (c.kind === 'identity-token') {
    return authError(r.subject, `the token service at ${url.host} refused ${c.source}${what} (HTTP ${status})`, cause,
      `identity tokens expire: log in to ${r.host} again (az acr login, docker login), and check the account may access this repository`);
  }
  return authError(r.subject, `the token service at ${url.host} refused ${c.source}${what} (HTTP ${status})`, cause);
}

export function basic(c: Credentials): string {
  return 'Basic ' + Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64');
}
