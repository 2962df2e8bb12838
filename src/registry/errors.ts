import { AirgapError, type ErrorCode } from '../errors.js';

/**
 * The one typed registry error. It is an AirgapError (stable code, one-line message, hint) that
 * also keeps what a caller may branch on: HTTP status, the registry's error code, and whether a
 * retry could help. Messages name the method, the registry host/repository and the status, never
 * credentials or token query strings.
 */
export class RegistryError extends AirgapError {
  readonly status: number | undefined;
  /** First error code from the registry's JSON body (MANIFEST_UNKNOWN, DENIED, …). */
  readonly registryCode: string | undefined;
  /** Every error code of the body, in its order (distribution lists one per refused descriptor). */
  readonly registryCodes: readonly string[];
  readonly temporary: boolean;

  constructor(code: ErrorCode, message: string, opts: {
    hint?: string; cause?: unknown; status?: number; registryCode?: string; registryCodes?: string[]; temporary?: boolean;
  } = {}) {
    super(code, message, {
      ...(opts.hint !== undefined ? { hint: opts.hint } : {}),
      ...(opts.cause !== undefined ? { cause: opts.cause } : {}),
    });
    this.name = 'RegistryError';
    this.status = opts.status;
    this.registryCode = opts.registryCode;
    this.registryCodes = opts.registryCodes ?? (opts.registryCode !== undefined ? [opts.registryCode] : []);
    this.temporary = opts.temporary ?? false;
  }
}

/** What a request was about, for messages: "GET manifest 127.0.0.1:5000/org/api:v1". */
export interface RequestSubject {
  method: string;
  /** Registry host as the user wrote it (not the endpoint it maps to). */
  host: string;
  /** "manifest org/api:v1", "blob org/api@sha256:…", "tags org/api", "/v2/". */
  what: string;
}

export function describe(s: RequestSubject): string {
  return `${s.method} ${s.what} on registry ${s.host}`;
}

const HINTS = {
  auth: 'check --username/--password (or the docker login for this registry) and that the account may access this repository',
  notFound: 'check the image name and tag, and that it exists in this registry',
  network: 'is the registry up? check the host and port, and that this machine can reach it',
  tls: 'pass --ca-file with the CA that signed the registry certificate, or install it in the system trust store (update-ca-certificates, update-ca-trust); --insecure-skip-tls-verify if you accept the risk',
  registry: 'the registry refused the request; see its message, and retry if it was temporary',
} as const;

/** Maps an HTTP error answer to the typed error. `body` is the (truncated) response text. */
export function httpError(s: RequestSubject, status: number, body: string, contentType: string | undefined): RegistryError {
  const diag = registryDiagnostics(body, contentType);
  const detail = diag.text ? ` (${diag.text})` : '';
  const message = `${describe(s)}: HTTP ${status}${detail}`;
  const base = { status, ...(diag.code ? { registryCode: diag.code, registryCodes: diag.codes ?? [diag.code] } : {}) };
  if (status === 401 || status === 403 || diag.code === 'DENIED' || diag.code === 'UNAUTHORIZED') {
    return new RegistryError('E_AUTH', message, { ...base, hint: HINTS.auth });
  }
  if (status === 404 || diag.code === 'MANIFEST_UNKNOWN' || diag.code === 'BLOB_UNKNOWN' || diag.code === 'NAME_UNKNOWN') {
    return new RegistryError('E_NOT_FOUND', message, { ...base, hint: HINTS.notFound });
  }
  const temporary = status === 408 || status === 429 || status >= 500;
  return new RegistryError('E_REGISTRY', message, { ...base, temporary, hint: HINTS.registry });
}

export function networkError(s: RequestSubject, cause: unknown): RegistryError {
  const reason = causeText(cause);
  return new RegistryError('E_NETWORK', `${describe(s)}: cannot connect (${reason})`,
    { cause, temporary: true, hint: HINTS.network });
}

/**
 * A certificate that failed verification. `origin` names another origin than the registry's own
 * (its token realm, its blob storage); `caFile` is the CA the user already gave, so the hint does
 * not tell them to pass the flag they passed.
 */
export function tlsError(s: RequestSubject, cause: unknown, at: { origin?: string; caFile?: string } = {}): RegistryError {
  const where = at.origin ? ` at ${at.origin}` : '';
  const hint = at.caFile
    ? `the certificate${where || ` of ${s.host}`} is signed neither by the CA in ${at.caFile} nor by a CA this system trusts; give the CA that signed it (a PEM file may hold several)`
    : HINTS.tls;
  return new RegistryError('E_TLS', `${describe(s)}: TLS certificate${where} not trusted (${causeText(cause)})`, { cause, hint });
}

/** The TLS handshake itself failed (the server wants a client certificate, no common protocol…). */
export function tlsHandshakeError(s: RequestSubject, cause: unknown, origin?: string): RegistryError {
  const where = origin ? ` with ${origin}` : '';
  return new RegistryError('E_TLS', `${describe(s)}: TLS handshake${where} failed (${causeText(cause)})`, {
    cause,
    hint: 'the server may require a client certificate (mutual TLS), which airgap does not send; ask for a registry endpoint without client certificates',
  });
}

/** A name that does not resolve: not worth retrying for seconds like a dropped connection. */
export function dnsError(s: RequestSubject, cause: unknown, origin?: string): RegistryError {
  const name = dnsName(cause) ?? origin ?? s.host;
  return new RegistryError('E_NETWORK', `${describe(s)}: cannot resolve ${name} (${errorCodes(cause).find((c) => c === 'ENOTFOUND') ?? 'DNS'})`, {
    cause,
    hint: `check the name ${name}; behind a proxy, set HTTPS_PROXY (and NO_PROXY for hosts reached directly)`,
  });
}

function dnsName(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 5 && typeof cur === 'object' && cur !== null; i++) {
    const h = (cur as { hostname?: unknown }).hostname;
    if (typeof h === 'string' && h) return h;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

export function authError(s: RequestSubject, detail: string, cause?: unknown, hint: string = HINTS.auth): RegistryError {
  return new RegistryError('E_AUTH', `${describe(s)}: ${detail}`,
    { hint, ...(cause !== undefined ? { cause } : {}) });
}

/**
 * Every `code` of a distribution error body (`{"errors":[{"code":"NAME_UNKNOWN",…}]}`); none for
 * anything else. (errorCodes() below is another thing: the Node error codes along a cause chain.)
 */
export function registryErrorCodes(body: string): string[] {
  try {
    const doc = JSON.parse(body) as { errors?: unknown };
    return Array.isArray(doc.errors)
      ? doc.errors.map((e) => (e as { code?: unknown } | null)?.code).filter((c): c is string => typeof c === 'string')
      : [];
  } catch {
    return [];
  }
}

/** The registry's own diagnostics: `{"errors":[{"code","message"}]}`, or a note that it was not JSON. */
function registryDiagnostics(body: string, contentType: string | undefined): { code?: string; codes?: string[]; text: string } {
  const trimmed = body.trim();
  if (trimmed === '') return { text: '' };
  try {
    const parsed: unknown = JSON.parse(trimmed);
    const errors = typeof parsed === 'object' && parsed !== null ? (parsed as { errors?: unknown }).errors : undefined;
    if (Array.isArray(errors) && errors.length > 0) {
      const parts = errors.slice(0, 3).map((e: unknown) => {
        const o = (typeof e === 'object' && e !== null ? e : {}) as { code?: unknown; message?: unknown };
        const code = typeof o.code === 'string' ? o.code : 'UNKNOWN';
        return typeof o.message === 'string' && o.message ? `${code}: ${oneLine(o.message)}` : code;
      });
      const first = (errors[0] ?? {}) as { code?: unknown };
      const codes = errors.map((e: unknown) => (typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined))
        .filter((c): c is string => typeof c === 'string');
      return { ...(typeof first.code === 'string' ? { code: first.code } : {}), codes, text: parts.join('; ') };
    }
    const msg = typeof parsed === 'object' && parsed !== null
      ? ((parsed as { message?: unknown; error?: unknown }).message ?? (parsed as { error?: unknown }).error) : undefined;
    if (typeof msg === 'string') return { text: oneLine(msg) };
  } catch {
    // fall through: not JSON
  }
  const kind = /html/i.test(contentType ?? '') || /^<(!doctype|html)/i.test(trimmed) ? 'an HTML page' : 'a non-JSON body';
  return { text: `the registry answered ${kind}` };
}

function oneLine(s: string): string {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > 200 ? flat.slice(0, 197) + '...' : flat;
}

/** The most specific error code/message along the cause chain, without URLs' query strings. */
export function causeText(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur instanceof Error; i++) {
    const code = (cur as { code?: unknown }).code;
    const text = typeof code === 'string' && !cur.message.includes(code) ? `${code}: ${cur.message}` : cur.message;
    if (text && !parts.includes(text)) parts.push(text.replace(/\?[^\s]*/g, ''));
    cur = (cur as { cause?: unknown }).cause;
  }
  return parts.length > 0 ? oneLine(parts.join(': ')) : String(e);
}

/** Error codes anywhere along the cause chain (undici wraps Node's socket errors). */
export function errorCodes(e: unknown): string[] {
  const codes: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 5 && typeof cur === 'object' && cur !== null; i++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
    cur = (cur as { cause?: unknown }).cause;
  }
  return codes;
}

const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT', 'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH',
  'INVALID_CA', 'CERT_CHAIN_TOO_LONG', 'PATH_LENGTH_EXCEEDED', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
]);

export function isTlsVerifyError(e: unknown): boolean {
  return errorCodes(e).some((c) => TLS_VERIFY_CODES.has(c));
}

const NOT_TLS_CODES = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_SSL_HTTP_REQUEST']);
const NOT_TLS_REASONS = /wrong version number|packet length too long|http request/i;

/**
 * The peer does not speak TLS at all (a plain-HTTP server answered our ClientHello). Only that
 * may lead to plain HTTP; any other TLS failure (an alert, a client certificate the server wants:
 * EPROTO) is a TLS server refusing us, never a reason to downgrade.
 */
export function isNotTlsError(e: unknown): boolean {
  if (errorCodes(e).some((c) => NOT_TLS_CODES.has(c))) return true;
  return errorCodes(e).includes('EPROTO') && causeMessages(e).some((m) => NOT_TLS_REASONS.test(m));
}

/** A TLS failure other than a certificate we do not trust and other than "not TLS at all". */
export function isTlsHandshakeError(e: unknown): boolean {
  if (isNotTlsError(e) || isTlsVerifyError(e)) return false;
  return errorCodes(e).some((c) => c.startsWith('ERR_SSL_') || c === 'EPROTO');
}

export function isDnsFailure(e: unknown): boolean {
  return errorCodes(e).includes('ENOTFOUND');
}

function causeMessages(e: unknown): string[] {
  const out: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 5 && cur instanceof Error; i++) {
    out.push(cur.message);
    cur = (cur as { cause?: unknown }).cause;
  }
  return out;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'ERR_STREAM_PREMATURE_CLOSE',
]);

export function isConnectionError(e: unknown): boolean {
  if (e instanceof AirgapError) return false;
  if (isDnsFailure(e) || isTlsHandshakeError(e)) return false;
  return errorCodes(e).some((c) => NETWORK_CODES.has(c)) || isNotTlsError(e);
}

/**
 * Whether a retry could help: our own errors say so themselves (`temporary`), anything else
 * (undici, sockets) when it is a dropped or refused connection.
 */
export function isTemporary(e: unknown): boolean {
  return e instanceof RegistryError ? e.temporary : isConnectionError(e);
}
