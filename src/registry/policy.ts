import { AirgapError } from '../errors.js';
import { isLoopbackHost as isLoopback } from '../target.js';
import { DEFAULT_CONCURRENCY, DEFAULT_SMALL_REQUESTS, MAX_BULK_FACTOR } from '../concurrency.js';
import { type CredentialOptions, type Credentials, credentialFiles } from './credentials.js';
import { type OsStore, osTrustStore } from './truststore.js';

/**
 * How airgap reaches a registry host, and why: every network rule in one place. The source side
 * (build, plan, online) and the target side (push, install, verify) both build it with
 * `policyFromFlags`; the transport (transport.ts) only carries it out.
 *
 *   flags (cmd/commands.ts) ─┐
 *                            ├─ policyFromFlags ─► RegistryPolicy ─ .host(h), once per host ─► HostPolicy
 *   environment ─────────────┘                          │                                         │
 *   HTTPS_PROXY HTTP_PROXY NO_PROXY                     │ .route(url) per origin                  │
 *   NODE_EXTRA_CA_CERTS DOCKER_CONFIG …                 ▼                                         ▼
 *   AIRGAP_RETRY_BASE_MS AIRGAP_HTTP_TIMEOUT_MS    Transport: agents, the scheme probe, redirects, retries
 *                                                  RegistryClient: credentials (auth.ts, credentials.ts)
 *
 * The rules, per host:
 *   scheme       --plain-http: HTTP. A loopback host (localhost, 127.0.0.0/8, ::1): plain HTTP if
 *                it answers /v2/ as a registry over it, else HTTPS (the transport probes once).
 *                Any other host: HTTPS, never a fall-back.
 *   TLS          verified against Node's bundled CAs, the operating system's store (truststore.ts:
 *                what skopeo, podman and docker trust here) and NODE_EXTRA_CA_CERTS, plus the host's
 *                --ca-file (target side) or the --ca-file given for every source registry; the CA
 *                is trusted for every origin the registry sends us to (token realm, storage).
 *                --insecure-skip-tls-verify: only the registry's own endpoint goes unverified.
 *                No client certificate is ever sent.
 *   proxy        per origin (a token realm or blob storage may differ from the registry): a
 *                loopback origin is always direct; else NO_PROXY (host, .suffix, *.suffix,
 *                host:port, *) sends it direct; else https goes by https_proxy/HTTPS_PROXY (then
 *                the HTTP one), http by http_proxy/HTTP_PROXY; none set: direct. Lower case wins.
 *   credentials  --username/--password for the target registry; the license for images on the
 *                vendor's hosts (each image carries it: app/resolve.ts, access.ts); else looked up
 *                in the files credentials.ts lists.
 *   retries      connection errors, 408, 429 and 5xx, up to `retry.attempts` tries with
 *                exponential backoff (Retry-After honoured up to a cap), within `maxElapsedMs`.
 *   timeouts     for a response's headers and between two chunks of its body; the request that
 *                completes an upload waits longer for its answer (upload.ts: a registry on S3
 *                may take minutes to commit a big blob).
 */

/** A host's own flags, as plain data (the customer registry's --plain-http, --ca-file, …). */
export interface HostSettings {
  /** Registry host as the user wrote it: `quay.io`, `127.0.0.1:5000`, `docker.io`. */
  host: string;
  plainHttp?: boolean;
  insecureSkipTlsVerify?: boolean;
  caFile?: string;
}

export interface RetryPolicy {
  /** Total attempts per request, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** No new attempt starts after this much time since the first. */
  maxElapsedMs: number;
  /** A Retry-After longer than this is cut down to it. */
  retryAfterCapMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 5, baseDelayMs: 250, maxDelayMs: 8_000, maxElapsedMs: 120_000, retryAfterCapMs: 30_000,
};

const DEFAULT_TIMEOUT_MS = 120_000;

/** Which answers are worth asking again (with the same request, after a delay). */
export function isRetriableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** Which way one origin is reached: through `proxy` (a URL), or direct. `why` is for people. */
export interface Route {
  proxy?: string;
  why: string;
}

/** Everything about reaching one registry host, resolved once from the flags and the environment. */
export interface HostPolicy {
  /** As the user wrote it. */
  readonly host: string;
  /** What is dialled: `registry-1.docker.io` for `docker.io`, else the host itself. */
  readonly endpoint: string;
  /** `probe`: a loopback host, plain HTTP if it answers as a registry over it, else HTTPS. */
  readonly scheme: 'https' | 'http' | 'probe';
  readonly schemeWhy: string;
  readonly tls: {
    /** False only with --insecure-skip-tls-verify, and then for the registry's own endpoint only. */
    readonly verify: boolean;
    /** A CA trusted besides the system's, for every origin this registry sends us to. */
    readonly caFile?: string;
    /** Which flag gave caFile. */
    readonly caFrom?: string;
    /** NODE_EXTRA_CA_CERTS, kept in the trust when caFile replaces Node's default list. */
    readonly extraCaFile?: string;
    /** Where the operating system's store was read from (none found: empty). */
    readonly osStore: readonly string[];
  };
  /** The registry's own endpoint (other origins: RegistryPolicy.route). */
  readonly route: Route;
  readonly credentials: {
    /** Given on the command line; never printed. */
    readonly explicit?: Credentials;
    /** The vendor's hosts at build time: each image carries the license (app/resolve.ts), used instead. */
    readonly license?: true;
    /** Where to look when nothing is given (config dir, environment). */
    readonly lookup: Omit<CredentialOptions, 'explicit'>;
  };
  readonly retry: RetryPolicy;
  readonly timeouts: { readonly headersMs: number; readonly bodyMs: number };
}

/**
 * Requests in flight to one registry host when --concurrency is not given: the copy engine's
 * small requests and its adaptive bulk transfers at their most (src/concurrency.ts), and no more
 * sockets than that however many images a run has.
 */
export const REQUESTS_PER_HOST = DEFAULT_SMALL_REQUESTS + DEFAULT_CONCURRENCY * MAX_BULK_FACTOR;

/** What a RegistryPolicy is made from (tests give it directly; commands use policyFromFlags). */
export interface PolicyInput {
  /** Hosts with their own settings (the customer registry's flags). */
  hosts?: HostSettings[];
  /** A CA trusted, besides the system roots, for hosts without their own settings (build's --ca-file). */
  defaultCaFile?: string;
  /** Explicit credentials per registry host; others are looked up (credentials.ts). */
  credentials?: Record<string, Credentials>;
  /** Hosts whose images carry the license as their credentials (the vendor proxy and registry). */
  licensedHosts?: string[];
  credentialOptions?: Omit<CredentialOptions, 'explicit'>;
  retry?: Partial<RetryPolicy>;
  /** How long to wait for a response's headers (default 120 s). */
  headersTimeoutMs?: number;
  /** How long to wait between two chunks of a response's body (default 120 s). */
  bodyTimeoutMs?: number;
  /** Proxy and CA variables; default process.env, read once when the policy is made. */
  env?: NodeJS.ProcessEnv;
  /**
   * Requests in flight to one registry host at most (transport gate.ts): --concurrency when given,
   * else REQUESTS_PER_HOST, so that no run opens more sockets than that per registry.
   */
  requestsPerHost?: number;
  /** Called once per host when its policy is first resolved (--debug prints describeHostPolicy). */
  onResolve?: (p: HostPolicy) => void;
  /** Called once per TLS origin reached directly, saying which trusted root verified it (--debug). */
  onVerified?: (line: string) => void;
}

/** The network policy of one run: per-host answers, resolved once each. */
export class RegistryPolicy {
  readonly retry: RetryPolicy;
  readonly requestsPerHost: number;
  readonly #input: PolicyInput;
  readonly #settings = new Map<string, HostSettings>();
  readonly #resolved = new Map<string, HostPolicy>();
  readonly #proxy: ProxyEnv;
  readonly #extraCaFile: string | undefined;
  readonly #env: NodeJS.ProcessEnv;
  readonly onVerified: ((line: string) => void) | undefined;

  constructor(input: PolicyInput = {}) {
    this.#input = input;
    this.retry = { ...DEFAULT_RETRY, ...input.retry };
    this.requestsPerHost = Math.max(1, input.requestsPerHost ?? REQUESTS_PER_HOST);
    const env = input.env ?? process.env;
    this.#env = env;
    this.onVerified = input.onVerified;
    this.#proxy = proxyEnv(env);
    this.#extraCaFile = env.NODE_EXTRA_CA_CERTS || undefined;
    for (const s of input.hosts ?? []) this.configure(s);
  }

  /** Adds or replaces one host's own settings (before its first request). */
  configure(s: HostSettings): void {
    const v = validateHostSettings(s);
    this.#settings.set(v.host, v);
    this.#resolved.delete(v.host);
  }

  /** The policy for a registry host (E_USAGE if it is not HOST or HOST:PORT). */
  host(host: string): HostPolicy {
    let p = this.#resolved.get(host);
    if (!p) {
      p = this.#resolve(host);
      this.#resolved.set(host, p);
      this.#input.onResolve?.(p);
    }
    return p;
  }

  /** The operating system's trusted certificates (read once per process). */
  osStore(): OsStore {
    return osTrustStore(this.#env);
  }

  /** How to reach one origin (`host:port`) over `protocol` (`https:` or `http:`). */
  route(protocol: string, origin: string): Route {
    return routeFor(this.#proxy, protocol, origin);
  }

  #resolve(host: string): HostPolicy {
    const own = this.#settings.get(host);
    const s = own ?? validateHostSettings({
      host, ...(this.#input.defaultCaFile !== undefined ? { caFile: this.#input.defaultCaFile } : {}),
    });
    const loopback = isLoopback(host);
    const scheme = s.plainHttp ? 'http' : loopback ? 'probe' : 'https';
    const schemeWhy = s.plainHttp ? '--plain-http' : loopback ? 'loopback' : 'not loopback';
    const endpoint = endpointHost(host);
    const explicit = this.#input.credentials?.[host];
    return {
      host, endpoint, scheme, schemeWhy,
      tls: {
        verify: !s.insecureSkipTlsVerify,
        ...(s.caFile !== undefined
          ? { caFile: s.caFile, caFrom: own?.caFile !== undefined ? '--ca-file of this registry' : '--ca-file for every source registry' }
          : {}),
        ...(this.#extraCaFile ? { extraCaFile: this.#extraCaFile } : {}),
        osStore: scheme === 'http' ? [] : this.osStore().from,
      },
      // A probed loopback host is direct under either scheme; else the scheme decides the variable.
      route: this.route(scheme === 'http' ? 'http:' : 'https:', endpoint),
      credentials: {
        ...(explicit ? { explicit } : {}),
        ...(this.#input.licensedHosts?.includes(host) ? { license: true as const } : {}),
        lookup: this.#input.credentialOptions ?? {},
      },
      retry: this.retry,
      timeouts: {
        headersMs: this.#input.headersTimeoutMs ?? DEFAULT_TIMEOUT_MS,
        bodyMs: this.#input.bodyTimeoutMs ?? DEFAULT_TIMEOUT_MS,
      },
    };
  }
}

/** What the command line says about the network; cmd/commands.ts fills it from the flags. */
export interface NetworkFlags {
  /** Source side (build, plan, online): --ca-file, trusted for every source registry. */
  caFile?: string;
  /** Source side with --license: the vendor proxy and registry, whose images carry the license. */
  licensedHosts?: string[];
  /** Target side (push, install, verify): the customer registry and its flags. */
  target?: HostSettings & { credentials?: Credentials };
  /** --concurrency: also the most requests in flight to any one registry host. */
  concurrency?: number;
  onResolve?: (p: HostPolicy) => void;
  onVerified?: (line: string) => void;
}

/** The one way a command turns its flags and the environment into a policy, on either side. */
export function policyFromFlags(flags: NetworkFlags, env: NodeJS.ProcessEnv = process.env): RegistryPolicy {
  const tuning = tuningFromEnv(env);
  const target = flags.target;
  return new RegistryPolicy({
    ...tuning, env,
    ...(flags.caFile !== undefined ? { defaultCaFile: flags.caFile } : {}),
    ...(flags.licensedHosts ? { licensedHosts: flags.licensedHosts } : {}),
    ...(target ? {
      hosts: [{
        host: target.host,
        ...(target.plainHttp ? { plainHttp: true } : {}),
        ...(target.insecureSkipTlsVerify ? { insecureSkipTlsVerify: true } : {}),
        ...(target.caFile !== undefined ? { caFile: target.caFile } : {}),
      }],
      ...(target.credentials ? { credentials: { [target.host]: target.credentials } } : {}),
    } : {}),
    ...(flags.concurrency !== undefined ? { requestsPerHost: flags.concurrency } : {}),
    ...(flags.onResolve ? { onResolve: flags.onResolve } : {}),
    ...(flags.onVerified ? { onVerified: flags.onVerified } : {}),
  });
}

/**
 * Network tuning from the environment (docs/failures.md: "Network, integrity, interruption").
 * AIRGAP_RETRY_BASE_MS scales the backoff between retries (default 250 ms, doubling up to 32×);
 * AIRGAP_HTTP_TIMEOUT_MS bounds the wait for a response's headers and for each chunk of its body
 * (default 120000). Tests set both small; users rarely need them.
 */
export function tuningFromEnv(env: NodeJS.ProcessEnv): Pick<PolicyInput, 'retry' | 'headersTimeoutMs' | 'bodyTimeoutMs'> {
  const num = (name: string, min: number, max: number): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new AirgapError('E_USAGE', `${name}="${v}" must be a whole number of milliseconds from ${min} to ${max}`);
    }
    return n;
  };
  const base = num('AIRGAP_RETRY_BASE_MS', 1, 60_000);
  const timeoutMs = num('AIRGAP_HTTP_TIMEOUT_MS', 100, 3_600_000);
  return {
    ...(base !== undefined ? { retry: { baseDelayMs: base, maxDelayMs: base * 32 } } : {}),
    ...(timeoutMs !== undefined ? { headersTimeoutMs: timeoutMs, bodyTimeoutMs: timeoutMs } : {}),
  };
}

/** One line saying how a host is reached and why (for --debug); never a secret. */
export function describeHostPolicy(p: HostPolicy): string {
  const scheme = p.scheme === 'http' ? 'plain HTTP (--plain-http)'
    : p.scheme === 'probe' ? 'plain HTTP if it answers as a registry, else HTTPS (loopback)' : 'HTTPS';
  const os = p.tls.osStore.length > 0 ? [`the OS store (${p.tls.osStore.join(', ')})`] : [];
  const trust = [`Node's bundled CAs`, ...os, ...(p.tls.extraCaFile ? [`${p.tls.extraCaFile} (NODE_EXTRA_CA_CERTS)`] : []),
    ...(p.tls.caFile ? [`${p.tls.caFile} (${p.tls.caFrom})`] : [])].join(' + ');
  const tls = p.scheme === 'http' ? 'no TLS'
    : p.tls.verify ? `certificates checked against ${trust}` : `certificate not verified (--insecure-skip-tls-verify)${p.tls.caFile ? `; other origins: ${trust}` : ''}`;
  const route = p.route.proxy ? `through ${redact(p.route.proxy)} (${p.route.why})` : `direct (${p.route.why})`;
  const files = credentialFiles(p.credentials.lookup);
  const creds = p.credentials.explicit ? 'credentials given on the command line'
    : p.credentials.license ? 'the license as credentials' : `credentials looked up in ${files.join(', ')}`;
  const secs = (ms: number): string => `${ms / 1000} s`;
  return `${p.host}${p.endpoint !== p.host ? ` (endpoint ${p.endpoint})` : ''}: ${scheme}; ${tls}; ${route}; ${creds}; ` +
    `${p.retry.attempts} attempts within ${secs(p.retry.maxElapsedMs)}; timeouts ${secs(p.timeouts.headersMs)} headers, ${secs(p.timeouts.bodyMs)} body`;
}

const HOST_RE = /^(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?)(?::[0-9]{1,5})?$/;

function validateHostSettings(s: HostSettings): HostSettings {
  if (!HOST_RE.test(s.host)) throw new AirgapError('E_USAGE', `registry host "${s.host}" is not HOST or HOST:PORT`);
  if (s.plainHttp && (s.caFile !== undefined || s.insecureSkipTlsVerify)) {
    throw new AirgapError('E_USAGE', `registry ${s.host}: --plain-http cannot be combined with --ca-file or --insecure-skip-tls-verify`);
  }
  return { ...s };
}

/** Docker Hub's names map to its API endpoint. */
export function endpointHost(host: string): string {
  return host === 'docker.io' || host === 'index.docker.io' ? 'registry-1.docker.io' : host;
}

/**
 * Whether `url` reaches the endpoint of registry `host`: same host name and port, the port that
 * the URL's scheme implies counted as written (`reg:443` is `https://reg`). The scheme itself is
 * not compared (TLS settings of the endpoint); who gets credentials compares whole origins.
 */
export function isEndpointOf(host: string, url: URL): boolean {
  try {
    return new URL(`${url.protocol}//${endpointHost(host)}`).host === url.host;
  } catch {
    return false;
  }
}

/**
 * Where a registry may send us (a redirect, an upload Location, a token realm), coming `from` an
 * origin: never from TLS to plain HTTP on a host other than loopback (credentials and content
 * would cross the network in clear: the usual TLS-terminating load balancer mistake), and never
 * to a link-local address (169.254.0.0/16, fe80::/10, where cloud metadata services answer),
 * which no registry's storage or token service has. Returns why not, or undefined.
 */
export function hopRefusal(from: URL, to: URL): string | undefined {
  if (to.protocol !== 'https:' && to.protocol !== 'http:') return `${to.protocol} is not HTTP`;
  if (isLinkLocal(to.hostname)) return `${to.hostname} is a link-local address (where cloud metadata services answer), never a registry's`;
  if (from.protocol === 'https:' && to.protocol === 'http:' && !isLoopback(to.host)) {
    return `it leads from ${from.origin} to plain HTTP (${to.origin}), where credentials and content would cross the network unencrypted`;
  }
  return undefined;
}

/** 169.254.0.0/16 and fe80::/10 (an IPv4-mapped IPv6 address counts as its IPv4 one). */
export function isLinkLocal(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(h);
  if (mapped) return (Number.parseInt(mapped[1]!, 16) >> 8) === 169 && (Number.parseInt(mapped[1]!, 16) & 0xff) === 254;
  if (/^169\.254\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:169\.254\./.test(h)) return true;
  return /^fe[89ab][0-9a-f]:/.test(h);
}


interface ProxyEnv {
  http?: { url: string; from: string };
  https?: { url: string; from: string };
  noProxy: { value: string; from: string; entries: { hostname: string; port: number }[] };
}

/** The proxy variables, lower case first (as curl); an https proxy falls back to the http one. */
function proxyEnv(env: NodeJS.ProcessEnv): ProxyEnv {
  const pick = (lower: string, upper: string): { value: string; from: string } | undefined => {
    if (env[lower] !== undefined) return { value: env[lower]!, from: lower };
    if (env[upper] !== undefined) return { value: env[upper]!, from: upper };
    return undefined;
  };
  const http = pick('http_proxy', 'HTTP_PROXY');
  const https = pick('https_proxy', 'HTTPS_PROXY');
  const httpProxy = http?.value ? { url: http.value, from: http.from } : undefined;
  const no = pick('no_proxy', 'NO_PROXY') ?? { value: '', from: 'NO_PROXY' };
  const entries = no.value.split(/[,\s]/).filter(Boolean).map((entry) => {
    const parsed = /^(.+):(\d+)$/.exec(entry);
    // `.corp` and `*.corp` both mean corp's subdomains (and corp itself).
    return { hostname: (parsed ? parsed[1]! : entry).replace(/^\*?\./, '').toLowerCase(), port: parsed ? Number(parsed[2]) : 0 };
  });
  return {
    ...(httpProxy ? { http: httpProxy } : {}),
    ...(https?.value ? { https: { url: https.value, from: https.from } } : httpProxy ? { https: httpProxy } : {}),
    noProxy: { value: no.value, from: no.from, entries },
  };
}

function routeFor(env: ProxyEnv, protocol: string, origin: string): Route {
  if (isLoopback(origin)) return { why: 'loopback is always reached directly' };
  const proxy = protocol === 'https:' ? env.https : env.http;
  if (!proxy) return { why: `no proxy set for ${protocol.replace(':', '')}` };
  // Brackets of an IPv6 address stay, as NO_PROXY entries write them.
  const hostname = origin.replace(/:\d*$/, '').toLowerCase();
  const port = Number.parseInt(/:(\d+)$/.exec(origin)?.[1] ?? '', 10) || (protocol === 'https:' ? 443 : 80);
  if (env.noProxy.value === '*') return { why: `${env.noProxy.from}=*` };
  for (const e of env.noProxy.entries) {
    if (e.port && e.port !== port) continue;
    if (hostname === e.hostname || hostname.endsWith(`.${e.hostname}`)) return { why: `${env.noProxy.from} lists ${e.hostname}` };
  }
  return { proxy: proxy.url, why: proxy.from };
}

/** A proxy URL without its user:password. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '';
      u.password = '';
    }
    return u.href.replace(/\/$/, '');
  } catch {
    return 'the proxy';
  }
}
