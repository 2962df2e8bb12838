import dns from 'node:dns';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { createRequire } from 'node:module';
import { Agent, type Dispatcher, ProxyAgent, buildConnector, request } from 'undici';
import { AirgapError } from '../errors.js';
import {
  type RequestSubject, RegistryError, causeText, describe, dnsError, errorCodes, isConnectionError, isDnsFailure, isNotTlsError,
  isTemporary, isTlsHandshakeError, isTlsVerifyError, networkError, tlsError, tlsHandshakeError,
} from './errors.js';
import {
  type HostPolicy, type HostSettings, type PolicyInput, type RetryPolicy, RegistryPolicy, type Route, endpointHost, hopRefusal,
  isEndpointOf, isLinkLocal, isRetriableStatus,
} from './policy.js';
import { shownUrl } from './foreign.js';
import { HostGate } from './gate.js';
import { type TrustSource, TrustReport, splitPem } from './truststore.js';

/**
 * HTTP for one process, carrying out a RegistryPolicy (policy.ts: scheme, TLS, proxy, retries and
 * timeouts per host, and why): keep-alive agents per host and route, the scheme probe of a
 * loopback registry, manual redirects that never carry Authorization to another host, and the
 * retries themselves. Auth sits above this.
 */

export interface TransportOptions extends PolicyInput {
  /** The run's policy; without it, one is made from the other options. */
  policy?: RegistryPolicy;
}

export type Method = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';

export interface HttpRequest {
  method: Method;
  /** Registry host (whose policy applies, and Authorization scope). */
  host: string;
  /** A path (`/v2/...`) resolved against the registry, or an absolute URL (upload Location, token realm). */
  url: string | URL;
  headers?: Record<string, string>;
  /** A byte body is resent on retry; a stream body is sent once (the caller restarts uploads). */
  body?: Uint8Array | Readable;
  signal?: AbortSignal;
  subject: RequestSubject;
  /** False for requests that must not be sent twice (PATCH of an upload chunk). */
  retry?: boolean;
  /**
   * How long to wait for the answer's headers once the request is sent (default: the transport's).
   * The request that completes an upload waits longer: an S3-backed registry may take minutes to
   * commit a big blob after its last byte.
   */
  headersTimeoutMs?: number;
}

export interface HttpResponse {
  status: number;
  headers: Dispatcher.ResponseData['headers'];
  body: Dispatcher.ResponseData['body'];
  /** The URL that answered (after redirects). */
  url: URL;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 10;

export function header(res: { headers: HttpResponse['headers'] }, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

export function headerAll(res: { headers: HttpResponse['headers'] }, name: string): string[] {
  const v = res.headers[name.toLowerCase()];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

export class Transport {
  readonly policy: RegistryPolicy;
  /** One dispatcher per registry host, role (its own endpoint, or the origins it sends us to) and route. */
  readonly #agents = new Map<string, Dispatcher>();
  readonly #gates = new Map<string, HostGate>();
  readonly #schemes = new Map<string, Promise<'https' | 'http'>>();
  readonly #contexts = new Map<string, import('node:tls').SecureContext>();
  readonly #sources = new Map<string, TrustSource[]>();
  /** TLS origins already reported to onVerified. */
  readonly #reported = new Set<string>();

  constructor(opts: TransportOptions = {}) {
    this.policy = opts.policy ?? new RegistryPolicy(opts);
  }

  get retryPolicy(): RetryPolicy {
    return this.policy.retry;
  }

  /** Adds or replaces the settings for one host (before its first request); see RegistryPolicy.configure. */
  configure(s: HostSettings): void {
    this.policy.configure(s);
  }

  /** The resolved policy for a host (E_USAGE if the host is not HOST or HOST:PORT). */
  settings(host: string): HostPolicy {
    return this.policy.host(host);
  }

  /** `https://quay.io` or `http://127.0.0.1:5000`, after the scheme rule. */
  async baseUrl(host: string, subject: RequestSubject, signal?: AbortSignal): Promise<URL> {
    const scheme = await this.#scheme(host, subject, signal);
    return new URL(`${scheme}://${endpointHost(host)}`);
  }

  /** Sends one request with retries (connection errors, 408, 429, 5xx) and redirects. */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const started = Date.now();
    const retry = this.settings(req.host).retry;
    const replayable = req.retry !== false && (req.body === undefined || req.body instanceof Uint8Array);
    const gate = this.gate(req.host);
    for (let attempt = 1; ; attempt++) {
      let res: HttpResponse | undefined;
      let failure: unknown;
      // Every request to a registry host takes one of its slots (gate.ts), until its body is done.
      const release = await gate.acquire(req.signal);
      try {
        res = await this.#sendOnce(req);
        releaseWithBody(res, release);
      } catch (e) {
        release();
        failure = e;
      }
      // The first contact's scheme probe reports a dropped connection already as our (temporary) E_NETWORK error.
      const retriable = replayable && !req.signal?.aborted && (res ? isRetriableStatus(res.status) : isTemporary(failure));
      const retryAfter = res ? header(res, 'retry-after') : undefined;
      const delay = retriable ? retryDelay(retry, attempt, retryAfter) : 0;
      // The host says it is overloaded: slow all of it down, not only this request.
      if (res && (res.status === 429 || (res.status === 503 && retryAfter !== undefined))) gate.pause(retryDelay(retry, attempt, retryAfter));
      if (!retriable || attempt >= retry.attempts || Date.now() - started + delay > retry.maxElapsedMs) {
        if (res) return res;
        throw this.#mapFailure(req.subject, failure, req.signal);
      }
      if (res) await res.body.dump().catch(() => undefined);
      await sleep(delay, req.signal);
    }
  }

  /** The request gate of a registry host (gate.ts): at most the policy's requests in flight to it. */
  gate(host: string): HostGate {
    let g = this.#gates.get(host);
    if (!g) {
      g = new HostGate(this.policy.requestsPerHost);
      this.#gates.set(host, g);
    }
    return g;
  }

  async close(): Promise<void> {
    const agents = [...this.#agents.values()];
    this.#agents.clear();
    await Promise.all(agents.map((a) => a.close()));
  }

  async #sendOnce(req: HttpRequest): Promise<HttpResponse> {
    const relative = typeof req.url === 'string' && req.url.startsWith('/');
    let url = relative ? new URL(req.url, await this.baseUrl(req.host, req.subject, req.signal)) : new URL(req.url);
    // Authorization was meant for the first URL's origin (scheme, host, port): a redirect to blob
    // storage, or to plain HTTP on the same host, gets none.
    const authOrigin = url.origin;
    let method: Method = req.method;
    let body = req.body;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const headers = { ...req.headers };
      if (url.origin !== authOrigin) delete headers.authorization;
      let r: Dispatcher.ResponseData;
      try {
        r = await request(url, {
          method, headers, body: body ?? null, dispatcher: this.#agentFor(req.host, url),
          // Keep the connection after a HEAD too. undici closes it by default (for servers that
          // wrongly send a body with HEAD answers), which made every probe, tag check and blob
          // check open a new connection: a TCP and TLS handshake, 1–3 more round trips, each.
          // Registries answer HEAD as HTTP says (Go's client keeps these connections as well).
          reset: false,
          ...(req.headersTimeoutMs !== undefined ? { headersTimeout: req.headersTimeoutMs } : {}),
          ...(req.signal ? { signal: req.signal } : {}),
        });
      } catch (e) {
        const why = await this.#explainClose(req.host, url, e);
        throw isEndpointOf(req.host, url) ? why : new ForeignOriginError(url, why);
      }
      const location = header({ headers: r.headers }, 'location');
      const streaming = body !== undefined && !(body instanceof Uint8Array);
      if (!REDIRECTS.has(r.statusCode) || location === undefined || streaming || method === 'POST' || method === 'PATCH') {
        return { status: r.statusCode, headers: r.headers, body: r.body, url };
      }
      await r.body.dump().catch(() => undefined);
      const next = new URL(location, url);
      const refusal = hopRefusal(url, next);
      if (refusal !== undefined) throw refusedHop(req.subject, 'redirect', next, refusal);
      url = next;
      if (r.statusCode === 303 && method !== 'HEAD') {
        method = 'GET';
        body = undefined;
      }
    }
    throw new RegistryError('E_REGISTRY', `${describe(req.subject)}: more than ${MAX_REDIRECTS} redirects`,
      { hint: 'the registry or its storage redirects in a loop; report it to the registry operator' });
  }

  /** The scheme the policy gives a host; a loopback host is probed once and the answer remembered. */
  #scheme(host: string, subject: RequestSubject, signal?: AbortSignal): Promise<'https' | 'http'> {
    const { scheme } = this.settings(host);
    if (scheme !== 'probe') return Promise.resolve(scheme);
    let known = this.#schemes.get(host);
    if (!known) {
      known = this.#probeScheme(host, signal);
      this.#schemes.set(host, known);
      // A registry that is down now may be up later: do not remember failures.
      known.catch(() => this.#schemes.delete(host));
    }
    return known.catch((e: unknown) => {
      throw this.#mapFailure({ ...subject, what: '/v2/' }, e, signal);
    });
  }

  /**
   * A loopback registry may speak TLS or plain HTTP. Plain HTTP is asked first (a local registry
   * usually is one, and then no TLS code is loaded or handshake attempted): only a registry's
   * answer to `GET /v2/` (200, or 401 with a challenge) settles on it. Anything else, such as a
   * TLS server's 400 to plain HTTP or a closed connection, leads to HTTPS, where a certificate
   * problem is an error as for any host. A peer that speaks plain HTTP but answered /v2/ with
   * something else still gets plain HTTP, and its answers are reported as usual.
   */
  async #probeScheme(host: string, signal?: AbortSignal): Promise<'https' | 'http'> {
    const ping = async (scheme: string): Promise<number> => {
      const url = new URL(`${scheme}://${endpointHost(host)}/v2/`);
      const r = await request(url, { method: 'GET', dispatcher: this.#agentFor(host, url), ...(signal ? { signal } : {}) });
      await r.body.dump().catch(() => undefined);
      return r.statusCode;
    };
    try {
      const status = await ping('http');
      if (status === 200 || status === 401) return 'http';
    } catch (e) {
      // Refused, unreachable: the registry is not there under either scheme.
      if (!isPeerHangUp(e)) throw e;
    }
    try {
      await ping('https');
      return 'https';
    } catch (e) {
      // Only a peer that does not speak TLS at all gets plain HTTP; a bad certificate, a server
      // that wants a client certificate, any other TLS failure is an error.
      if (!isNotTlsError(e)) throw await this.#explainClose(host, new URL(`https://${endpointHost(host)}/v2/`), e);
    }
    return 'http';
  }

  /**
   * The dispatcher for a request of registry `host` to `url`: TLS as the host's policy says (its
   * CA for every origin, skipped verification for its own endpoint only), by the route the
   * policy gives that origin (direct, or through a proxy).
   */
  #agentFor(host: string, url: URL): Dispatcher {
    const own = isEndpointOf(host, url);
    const route = this.policy.route(url.protocol, url.host);
    const key = `${host}\n${own ? 'own' : 'foreign'}\n${url.protocol}\n${route.proxy ?? 'direct'}`;
    let agent = this.#agents.get(key);
    if (!agent) {
      const tls = url.protocol === 'https:' ? this.#tlsOptions(host, own) : {};
      // Another origin the registry sends us to (a redirect, an upload Location, a token realm) is
      // refused at a link-local address (hopRefusal); a name is checked where it resolves. Through
      // a proxy the proxy resolves it, and answers as it is configured to.
      const connect = own || route.proxy !== undefined ? tls : { ...tls, lookup: lookupNotLinkLocal };
      agent = this.#newAgent(this.settings(host), connect, route, url.protocol === 'https:' ? host : undefined);
      this.#agents.set(key, agent);
    }
    return agent;
  }

  /**
   * What another process needs to reach `url` as this transport would (abandon.ts): the CAs the
   * registry is trusted with when they are more than Node's own, and whether to verify.
   */
  trustFor(host: string, url: URL): { ca?: string[]; verify: boolean } {
    if (url.protocol !== 'https:') return { verify: true };
    const sources = this.#trustSources(host);
    const verify = this.settings(host).tls.verify || !isEndpointOf(host, url);
    return { ...(sources.length > 1 ? { ca: sources.flatMap((t) => t.pems) } : {}), verify };
  }

  #tlsOptions(host: string, own: boolean): TlsOptions {
    const { tls } = this.settings(host);
    const connect: TlsOptions = {};
    // One context per set of trusted CAs (most hosts share one): parsing the roots again for
    // every connection costs a noticeable time per TLS handshake. node:tls only for https (a
    // plain-HTTP run never loads it).
    const key = trustKey(tls);
    let context = this.#contexts.get(key);
    if (!context) {
      const sources = this.#trustSources(host);
      // Node's own list alone (no OS store found, no CA given) is its default context.
      if (sources.length > 1) {
        context = nodeTls().createSecureContext({ ca: sources.flatMap((t) => t.pems) });
        this.#contexts.set(key, context);
      }
    }
    if (context) connect.secureContext = context;
    if (!tls.verify && own) connect.rejectUnauthorized = false;
    return connect;
  }

  /**
   * What a registry's TLS is checked against (truststore.ts): Node's bundled CAs, the OS store,
   * NODE_EXTRA_CA_CERTS (Node adds it to its default trust, but an explicit list replaces that
   * default, so it is read again here) and the registry's --ca-file.
   */
  #trustSources(host: string): TrustSource[] {
    const { tls } = this.settings(host);
    const known = this.#sources.get(trustKey(tls));
    if (known) return known;
    const os = this.policy.osStore();
    const sources: TrustSource[] = [
      { name: "Node's bundled CAs", pems: tlsRootCertificates() },
      ...(os.pems.length > 0 ? [{ name: `the OS store (${os.from.join(', ')})`, pems: os.pems }] : []),
      ...(tls.extraCaFile ? [{ name: `NODE_EXTRA_CA_CERTS (${tls.extraCaFile})`, pems: splitPem(extraCaCertificates(tls.extraCaFile)) }] : []),
      ...(tls.caFile !== undefined ? [{ name: `${tls.caFile} (${tls.caFrom ?? '--ca-file'})`, pems: splitPem(readCa(tls.caFile, host)) }] : []),
    ];
    this.#sources.set(trustKey(tls), sources);
    return sources;
  }

  /**
   * A TLS 1.3 server that wants a client certificate completes the handshake, then sends an alert
   * and closes, which undici reports only as "other side closed". When an https connection is
   * closed that way, one direct TLS connection reads the server's alert, so the error says what
   * the server wanted (and is not retried as a dropped connection). Anything else: `e` as it was.
   */
  async #explainClose(host: string, url: URL, e: unknown): Promise<unknown> {
    if (url.protocol !== 'https:' || !errorCodes(e).includes('UND_ERR_SOCKET') || this.policy.route(url.protocol, url.host).proxy) return e;
    const alert = await readTlsAlert(url, this.#tlsOptions(host, isEndpointOf(host, url)));
    return alert ?? e;
  }

  #newAgent(p: HostPolicy, connect: TlsOptions, route: Route, tlsHost: string | undefined): Dispatcher {
    const report = this.policy.onVerified;
    const opts = {
      // With --debug, a direct TLS connection says which trusted root verified it (once per origin).
      connect: report && tlsHost !== undefined && route.proxy === undefined ? this.#reportingConnector(tlsHost, connect, report) : connect,
      keepAliveTimeout: 30_000,
      headersTimeout: p.timeouts.headersMs,
      bodyTimeout: p.timeouts.bodyMs,
    };
    // Through a proxy: CONNECT for https (the TLS settings apply to the registry inside the
    // tunnel), absolute-URI requests for plain http, as curl and Go do.
    return route.proxy !== undefined ? new ProxyAgent({ ...opts, uri: route.proxy, requestTls: connect, proxyTunnel: false }) : new Agent(opts);
  }

  #reportingConnector(host: string, connect: TlsOptions, report: (line: string) => void): buildConnector.connector {
    const base = buildConnector({ ...connect });
    return (options, callback) => base(options, (...args) => {
      const [err, socket] = args;
      const origin = `${options.hostname}:${options.port || 443}`;
      if (!err && 'getPeerCertificate' in socket && !this.#reported.has(origin)) {
        this.#reported.add(origin);
        const trust = new TrustReport(this.#trustSources(host));
        report(`${host}: TLS of ${origin}: ${trust.whoVerified(socket)}`);
      }
      callback(...args);
    });
  }

  #mapFailure(subject: RequestSubject, e: unknown, signal?: AbortSignal): unknown {
    if (signal?.aborted) return signal.reason ?? e;
    if (e instanceof AirgapError) return e;
    const origin = e instanceof ForeignOriginError ? e.url.host : undefined;
    const { caFile } = this.settings(subject.host).tls;
    if (isTlsVerifyError(e)) return tlsError(subject, e, { ...(origin ? { origin } : {}), ...(caFile ? { caFile } : {}) });
    if (isTlsHandshakeError(e)) return tlsHandshakeError(subject, e, origin);
    if (errorCodes(e).includes(LINK_LOCAL)) {
      return new RegistryError('E_REGISTRY', `${describe(subject)}: refused to connect to ${origin ?? endpointHost(subject.host)}: ${linkLocalWhy(e)}`, {
        hint: 'the registry, or a load balancer in front of it, sends us to an address no registry has; ask its operator to fix the URLs it sends',
      });
    }
    if (isDnsFailure(e)) return dnsError(subject, e, origin);
    const proxied = /Proxy response \((\d+)\)/.exec(causeText(e));
    if (proxied) {
      return new RegistryError('E_NETWORK', `${describe(subject)}: the proxy answered HTTP ${proxied[1]} to CONNECT ${origin ?? endpointHost(subject.host)}`, {
        cause: e, status: Number(proxied[1]),
        hint: 'the proxy (HTTPS_PROXY) could not resolve or reach that host, or refuses it: check the name, the proxy, and NO_PROXY for hosts reached directly',
      });
    }
    // undici and socket errors carry codes (UND_ERR_*, ECONNRESET…); anything else is not ours to relabel.
    if (isConnectionError(e) || errorCodes(e).some((c) => c.startsWith('UND_ERR_') || /^E[A-Z]+$/.test(c))) {
      return networkError(subject, e);
    }
    return e;
  }
}

/** Exponential backoff with jitter, which spreads many parallel clients hitting one registry. */
export function backoffDelay(policy: RetryPolicy, attempt: number): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(exp / 2 + Math.random() * (exp / 2));
}

/** The wait before attempt `attempt + 1`: the server's Retry-After (capped), else the backoff. */
/** The slot goes back once the response body is read to its end, dumped or destroyed. */
function releaseWithBody(res: HttpResponse, release: () => void): void {
  const body = res.body;
  if (body.destroyed || body.readableEnded) {
    release();
    return;
  }
  body.once('close', release);
  body.once('end', release);
  body.once('error', release);
}

function retryDelay(policy: RetryPolicy, attempt: number, retryAfter: string | undefined): number {
  const fromHeader = parseRetryAfter(retryAfter);
  if (fromHeader !== undefined) return Math.min(fromHeader, policy.retryAfterCapMs);
  return backoffDelay(policy, attempt);
}

/** Retry-After is seconds or an HTTP date; returns milliseconds from now. */
export function parseRetryAfter(v: string | undefined, now = Date.now()): number | undefined {
  if (v === undefined) return undefined;
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  const at = Date.parse(t);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** What sent us to another URL. */
export type HopKind = 'redirect' | 'upload Location' | 'next-page Link' | 'token realm';

/**
 * A registry sent us where we do not go (policy.ts hopRefusal): one line saying where and why.
 * Not temporary: asking again gets the same answer.
 */
export function refusedHop(subject: RequestSubject, kind: HopKind, to: URL, why: string): RegistryError {
  return new RegistryError('E_REGISTRY', `${describe(subject)}: refused to follow the registry's ${kind} to ${shownUrl(to)}: ${why}`, {
    hint: 'the registry, or a load balancer in front of it, names the wrong address (often http:// behind a TLS-terminating proxy); ask its operator to fix the URLs it sends',
  });
}

const LINK_LOCAL = 'EAIRGAP_LINK_LOCAL';

type LookupCallback = (err: NodeJS.ErrnoException | null, address?: string | dns.LookupAddress[], family?: number) => void;

/**
 * dns.lookup for the sockets of other origins than the registry's own: a name that resolves to a
 * link-local address (169.254.0.0/16, fe80::/10: cloud metadata services) fails before any
 * connection, as the address written in a URL does (hopRefusal). Every address is looked at,
 * whichever the socket would have tried first.
 */
function lookupNotLinkLocal(hostname: string, options: dns.LookupOptions, callback: LookupCallback): void {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) { callback(err); return; }
    const bad = addresses.find((a) => isLinkLocal(a.address.replace(/%.*$/, '')));
    if (bad) {
      callback(Object.assign(new Error(`${hostname} resolves to ${bad.address}, a link-local address (where cloud metadata services answer), never a registry's`),
        { code: LINK_LOCAL }));
      return;
    }
    if (options.all) callback(null, addresses);
    else callback(null, addresses[0]!.address, addresses[0]!.family);
  });
}

function linkLocalWhy(e: unknown): string {
  for (let cur: unknown = e, i = 0; i < 5 && cur instanceof Error; i++, cur = cur.cause) {
    if ((cur as { code?: unknown }).code === LINK_LOCAL) return cur.message;
  }
  return 'the name resolves to a link-local address';
}

/** A request to another origin than the registry's own endpoint failed: which one, for messages. */
class ForeignOriginError extends Error {
  readonly url: URL;
  constructor(url: URL, cause: unknown) {
    super(`${url.host}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.url = url;
  }
}

/** Hosts trusting the same CAs share them (and one TLS context). */
function trustKey(tls: HostPolicy['tls']): string {
  return `${tls.caFile ?? ''}\n${tls.caFrom ?? ''}\n${tls.extraCaFile ?? ''}`;
}

/** NODE_EXTRA_CA_CERTS (a corporate inspection CA), as text. */
function extraCaCertificates(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    // Node itself only warns about an unreadable NODE_EXTRA_CA_CERTS; so do we, by not adding it.
    return '';
  }
}

interface TlsOptions {
  secureContext?: import('node:tls').SecureContext;
  rejectUnauthorized?: boolean;
}

function nodeTls(): typeof import('node:tls') {
  return createRequire(import.meta.url)('node:tls') as typeof import('node:tls');
}

function tlsRootCertificates(): readonly string[] {
  return nodeTls().rootCertificates;
}

/** Connects once with TLS, sends a request, and returns the server's TLS alert if it answers with one. */
function readTlsAlert(url: URL, connect: TlsOptions): Promise<Error | undefined> {
  const tls = nodeTls();
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: hostname, port: Number(url.port || 443), ALPNProtocols: ['http/1.1'], ...connect,
      ...(/^[\d.]+$|:/.test(hostname) ? {} : { servername: hostname }),
    });
    const timer = setTimeout(() => done(undefined), 5_000);
    function done(e: Error | undefined): void {
      clearTimeout(timer);
      socket.destroy();
      resolve(e);
    }
    socket.once('secureConnect', () => socket.write(`HEAD /v2/ HTTP/1.1\r\nhost: ${url.host}\r\nconnection: close\r\n\r\n`));
    socket.once('data', () => done(undefined));
    socket.once('error', (e) => done(isTlsHandshakeError(e) ? e : undefined));
    socket.once('close', () => done(undefined));
  });
}

/** The peer closed or reset the connection instead of answering (what a TLS server may do with plain HTTP). */
function isPeerHangUp(e: unknown): boolean {
  return errorCodes(e).some((c) => c === 'ECONNRESET' || c === 'EPIPE' || c === 'UND_ERR_SOCKET' || c === 'UND_ERR_CLOSED');
}

function readCa(file: string, host: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new AirgapError('E_USAGE', `cannot read CA file ${file} for registry ${host}: ${(e as Error).message}`,
      { hint: 'pass --ca-file with a readable PEM file', cause: e });
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
