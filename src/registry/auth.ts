import type { Credentials } from './credentials.js';
import { type RequestSubject, authError, httpError } from './errors.js';
import { type HttpResponse, type Transport, headerAll } from './transport.js';

/**
 * Registry authentication for one host: learns the challenge from a 401, then sends Basic
 * credentials on every request (Basic challenge) or a bearer token per scope set fetched from the
 * realm (Bearer challenge), anonymously when no credentials are known.
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

interface CachedToken {
  value: string;
  expiresAt: number;
}

const DEFAULT_TOKEN_TTL_S = 60;

export class Authenticator {
  readonly #transport: Transport;
  readonly #host: string;
  readonly #credentials: () => Promise<Credentials | undefined>;
  #challenge: Challenge | undefined;
  #contacted = false;
  #gate: Promise<void> | undefined;
  readonly #tokens = new Map<string, Promise<CachedToken>>();

  /** `credentials` is called lazily (docker config, helpers) and at most once. */
  constructor(transport: Transport, host: string, credentials: () => Promise<Credentials | undefined>) {
    this.#transport = transport;
    this.#host = host;
    let memo: Promise<Credentials | undefined> | undefined;
    this.#credentials = () => (memo ??= credentials());
  }

  /**
   * Until the registry has answered once, requests wait for that first answer: one of them learns
   * the challenge instead of every concurrent request meeting a 401. The caller that gets a
   * function back is the first; it calls it once its request has an answer (or failed).
   */
  async firstContact(): Promise<(() => void) | undefined> {
    if (this.#contacted || this.#challenge) return undefined;
    if (this.#gate) {
      await this.#gate;
      return undefined;
    }
    let open!: () => void;
    this.#gate = new Promise<void>((resolve) => (open = resolve));
    return () => {
      this.#contacted = true;
      open();
    };
  }

  /** The Authorization header for a request needing `scopes`, or undefined when none is known. */
  async authorization(scopes: string[], subject: RequestSubject, signal?: AbortSignal): Promise<string | undefined> {
    const ch = this.#challenge;
    if (!ch) return undefined;
    if (ch.scheme === 'basic') {
      const creds = await this.#credentials();
      return creds ? basic(creds) : undefined;
    }
    if (ch.scheme !== 'bearer') return undefined;
    const key = [...new Set(scopes)].sort().join(' ');
    let pending = this.#tokens.get(key);
    if (pending) {
      const cached = await pending.catch(() => undefined);
      if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.value}`;
      if (this.#tokens.get(key) === pending) this.#tokens.delete(key);
    }
    pending = this.#tokens.get(key);
    if (!pending) {
      pending = this.#fetchToken(ch, scopes, subject, signal);
      this.#tokens.set(key, pending);
      pending.catch(() => {
        if (this.#tokens.get(key) === pending) this.#tokens.delete(key);
      });
    }
    return `Bearer ${(await pending).value}`;
  }

  /**
   * Learns from a 401. Returns true when sending again with fresh authorization can help (a new
   * challenge, or a cached token the registry no longer accepts); false when what was sent is
   * what we have (wrong password, no credentials for a Basic challenge).
   */
  async unauthorized(res: HttpResponse, scopes: string[], sent: string | undefined): Promise<boolean> {
    const challenges = parseChallenges(headerAll(res, 'www-authenticate'));
    const ch = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
    if (!ch) return false;
    this.#challenge = ch;
    if (ch.scheme === 'basic') {
      const creds = await this.#credentials();
      return creds !== undefined && sent !== basic(creds);
    }
    // Bearer: the token (cached or fresh) was refused or missing; re-challenge once with a new one.
    this.#tokens.delete([...new Set(scopes)].sort().join(' '));
    return true;
  }

  /** True when no credentials are configured (used to word errors). */
  async anonymous(): Promise<boolean> {
    return (await this.#credentials()) === undefined;
  }

  async #fetchToken(ch: Challenge, scopes: string[], subject: RequestSubject, signal?: AbortSignal): Promise<CachedToken> {
    const realm = ch.params.realm;
    let url: URL;
    try {
      url = new URL(realm ?? '');
    } catch {
      throw authError(subject, `the registry's Bearer challenge has no usable realm ("${realm ?? ''}")`);
    }
    if (ch.params.service) url.searchParams.set('service', ch.params.service);
    const all = new Set(scopes);
    // The registry may name the scope it wants in the challenge (e.g. a wider action set).
    for (const s of (ch.params.scope ?? '').split(' ')) if (s) all.add(s);
    for (const s of all) url.searchParams.append('scope', s);
    const creds = await this.#credentials();
    const tokenSubject: RequestSubject = { method: 'GET', host: this.#host, what: `token from ${url.host}` };
    const started = Date.now();
    const res = await this.#transport.send({
      method: 'GET', host: this.#host, url, subject: tokenSubject,
      headers: creds ? { authorization: basic(creds) } : {},
      ...(signal ? { signal } : {}),
    });
    const text = await res.body.text();
    if (res.status !== 200) {
      const e = httpError(tokenSubject, res.status, text.slice(0, 8192), headerAll(res, 'content-type')[0]);
      if (res.status === 401 || res.status === 403) {
        throw authError(subject, creds
          ? `the token service at ${url.host} refused the credentials (HTTP ${res.status})`
          : `anonymous access refused by the token service at ${url.host} (HTTP ${res.status})`, e);
      }
      throw e;
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw authError(tokenSubject, 'the token service answered something that is not JSON');
    }
    const value = typeof body.token === 'string' && body.token ? body.token
      : typeof body.access_token === 'string' && body.access_token ? body.access_token : undefined;
    if (!value) throw authError(tokenSubject, 'the token service answered without a token');
    const ttl = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_TTL_S;
    // Renew a little early so a token does not expire between our check and the registry's.
    const margin = Math.min(10, ttl / 4);
    return { value, expiresAt: started + (ttl - margin) * 1000 };
  }
}

export function basic(c: Credentials): string {
  return 'Basic ' + Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64');
}
