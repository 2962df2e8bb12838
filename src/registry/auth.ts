import type { Credential } from './credentials.js';
import { type RequestSubject, authError } from './errors.js';
import { type Challenge, type Token, basic, fetchToken, parseChallenges } from './token.js';
import { type HttpResponse, type Transport, headerAll } from './transport.js';

/**
 * Registry auth as four small things:
 *
 *   Origin      scheme://host:port a request reaches: the registry, or another registry it redirects to
 *   ScopeSet    what ONE request needs: repository:<repo>:pull | pull,push (+ <from>:pull for a mount)
 *   Credential  for one host only, from one source (credentials.ts): user+password | identity token
 *   Token       per (origin, scope set), with its expiry
 *
 *   request(url, scope set)
 *      │
 *      ▼
 *   OriginAuth of the origin the URL names (one per origin)
 *      │  challenge not known yet ──► no Authorization (the first request goes alone, to learn it)
 *      │  Basic  ──► the user+password for this host
 *      │  Bearer ──► token for (origin, scope set) still fresh? reuse it; else ask the realm:
 *      │               identity token → POST grant_type=refresh_token (OAuth2) → access_token
 *      │               user+password  → GET ?service&scope, Basic            → token
 *      │               nothing        → GET ?service&scope, anonymous        → token
 *      ▼
 *   send ──► a redirect to another origin drops Authorization (transport.ts)
 *      │
 *      └─ 401 from origin O (the registry, or one it redirected to) ──► OriginAuth(O) learns O's
 *         challenge; send once more, straight to O, with O's own credential (looked up for O's
 *         host: the first host's never goes there). Each origin's challenge is answered once.
 *
 * Scopes are never pooled: a token is asked for exactly the scope set of the request that needs
 * it (plus what the registry's own challenge to that request named), so a token service that
 * refuses a denied scope fails only the request that wanted it.
 */

export type { Challenge } from './token.js';
export { basic, parseChallenges } from './token.js';

export type Access = 'pull' | 'push';

/** `repository:<name>:<actions>`, as the token service reads it. */
export type Scope = string;
/** The scopes of one request, canonical (scopeSet): the key its token is cached under. */
export type ScopeSet = readonly Scope[];

/** The scope a request on `repo` needs. */
export function repositoryScope(repo: string, access: Access): Scope {
  return `repository:${repo}:${access === 'push' ? 'pull,push' : 'pull'}`;
}

/**
 * A request's scopes as one canonical list (the key of its token): the actions asked for one
 * resource merged (`repository:a:pull` + `repository:a:pull,push` = `repository:a:pull,push`),
 * sorted. The name sits between the first and the last colon (a proxied path may hold a port).
 */
export function scopeSet(scopes: Iterable<Scope>): Scope[] {
  const actions = new Map<string, Set<string>>();
  for (const scope of scopes) {
    const last = scope.lastIndexOf(':');
    if (scope.indexOf(':') === last) {
      if (scope !== '') actions.set(scope, actions.get(scope) ?? new Set());
      continue;
    }
    const resource = scope.slice(0, last);
    const set = actions.get(resource) ?? new Set<string>();
    for (const a of scope.slice(last + 1).split(',')) if (a) set.add(a);
    actions.set(resource, set);
  }
  return [...actions].map(([resource, set]) => (set.size > 0 ? `${resource}:${[...set].sort().join(',')}` : resource)).sort();
}

/** The repository a `/v2/<name>/(manifests|blobs|tags)/…` URL is about (for a redirect target's scope). */
export function repositoryOfPath(pathname: string): string | undefined {
  const m = /^\/v2\/(.+?)\/(?:manifests|blobs|tags)\//.exec(pathname);
  return m?.[1];
}

/**
 * Auth state for one origin: its challenge (learnt from a 401), the credential for its host
 * (looked up lazily, once), and its tokens per scope set.
 */
export class OriginAuth {
  readonly #transport: Transport;
  readonly #host: string;
  /** Per repository: an auth.json key may hold credentials for one namespace of a host. */
  readonly #credential: (repository: string | undefined) => Promise<Credential | undefined>;
  /** Scheme, realm and service. A challenge's `scope` belongs to one request: kept in #wanted. */
  #challenge: Challenge | undefined;
  #contacted = false;
  #gate: Promise<void> | undefined;
  readonly #tokens = new Map<string, Promise<Token>>();
  /** Scope set key → the wider set the registry's challenge to such a request asked for. */
  readonly #wanted = new Map<string, ScopeSet>();

  /** `host` names the registry (transport settings, messages); `credential` is called once per repository. */
  constructor(transport: Transport, host: string, credential: (repository: string | undefined) => Promise<Credential | undefined>) {
    this.#transport = transport;
    this.#host = host;
    const memo = new Map<string, Promise<Credential | undefined>>();
    this.#credential = (repository) => {
      const key = repository ?? '';
      let found = memo.get(key);
      if (!found) memo.set(key, (found = credential(repository)));
      return found;
    };
  }

  /**
   * Until the origin has answered once, requests wait for that first answer: one of them learns
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

  /** The Authorization header for a request on `repository` needing `scopes`, or undefined when none is known. */
  async authorization(scopes: ScopeSet, repository: string | undefined, subject: RequestSubject,
    signal?: AbortSignal): Promise<string | undefined> {
    const ch = this.#challenge;
    if (!ch) return undefined;
    if (ch.scheme === 'basic') {
      const c = await this.#credential(repository);
      if (c?.kind === 'identity-token') {
        throw authError(subject, `the registry asks for a user and password, and ${c.source} can only be exchanged at a Bearer token service`,
          undefined, `log in to ${this.#host} with a user and password, or pass --username/--password`);
      }
      return c ? basic(c) : undefined;
    }
    if (ch.scheme !== 'bearer') return undefined;
    const set = scopeSet(scopes);
    const key = set.join(' ');
    let pending = this.#tokens.get(key);
    if (pending) {
      const cached = await pending.catch(() => undefined);
      if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.value}`;
      if (this.#tokens.get(key) === pending) this.#tokens.delete(key);
    }
    pending = this.#tokens.get(key);
    if (!pending) {
      const want = this.#wanted.get(key) ?? set;
      pending = this.#credential(repository).then((credential) => fetchToken({
        transport: this.#transport, host: this.#host, realm: ch.params.realm, service: ch.params.service,
        scopes: want, credential, subject, ...(signal ? { signal } : {}),
      }));
      this.#tokens.set(key, pending);
      pending.catch(() => {
        if (this.#tokens.get(key) === pending) this.#tokens.delete(key);
      });
    }
    return `Bearer ${(await pending).value}`;
  }

  /**
   * Learns from a 401 this origin gave to a request needing `scopes`. Returns true when sending
   * again with fresh authorization can help (a new challenge, or a token the registry no longer
   * accepts); false when what was sent is all we have (wrong password, no credential for Basic).
   */
  async unauthorized(res: HttpResponse, scopes: ScopeSet, repository: string | undefined, sent: string | undefined): Promise<boolean> {
    const challenges = parseChallenges(headerAll(res, 'www-authenticate'));
    const ch = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
    if (!ch) return false;
    const { scope, ...params } = ch.params;
    this.#challenge = { scheme: ch.scheme, params };
    if (ch.scheme === 'basic') {
      const c = await this.#credential(repository);
      return c !== undefined && (c.kind === 'identity-token' || sent !== basic(c));
    }
    const set = scopeSet(scopes);
    const key = set.join(' ');
    // The registry may name what this request needs (a wider action set): ask for it next time too.
    const widened = scopeSet([...set, ...(scope ?? '').split(' ')]);
    if (widened.join(' ') !== key) this.#wanted.set(key, widened);
    this.#tokens.delete(key);
    return true;
  }
}
