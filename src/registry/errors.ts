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
  readonly temporary: boolean;

  constructor(code: ErrorCode, message: string, opts: {
    hint?: string; cause?: unknown; status?: number; registryCode?: string; temporary?: boolean;
  } = {}) {
    super(code, message, {
      ...(opts.hint !== undefined ? { hint: opts.hint } : {}),
      ...(opts.cause !== undefined ? { cause: opts.cause } : {}),
    });
    this.name = 'RegistryError';
    this.status = opts.status;
    this.registryCode = opts.registryCode;
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
  tls: 'pass --ca-file with the CA that signed the registry certificate (or --insecure-skip-tls-verify if you accept the risk)',
  registry: 'the registry refused the request; see its message, and retry if it was temporary',
} as const;

/** Maps an HTTP error answer to the typed error. `body` is the (truncated) response text. */
export function httpError(s: RequestSubject, status: number, body: string, contentType: string | undefined): RegistryError {
  const diag = registryDiagnostics(body, contentType);
  const detail = diag.text ? ` (${diag.text})` : '';
  const message = `${describe(s)}: HTTP ${status}${detail}`;
  const base = { status, ...(diag.code ? { registryCode: diag.code } : {}) };
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

export function tlsError(s: RequestSubject, cause: unknown): RegistryError {
  return new RegistryError('E_TLS', `${describe(s)}: TLS certificate not trusted (${causeText(cause)})`,
    { cause, hint: HINTS.tls });
}

export function authError(s: RequestSubject, detail: string, cause?: unknown, hint: string = HINTS.auth): RegistryError {
  return new RegistryError('E_AUTH', `${describe(s)}: ${detail}`,
    { hint, ...(cause !== undefined ? { cause } : {}) });
}

/** The registry's own diagnostics: `{"errors":[{"code","message"}]}`, or a note that it was not JSON. */
function registryDiagnostics(body: string, contentType: string | undefined): { code?: string; text: string } {
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
      return { ...(typeof first.code === 'string' ? { code: first.code } : {}), text: parts.join('; ') };
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

/** The peer does not speak TLS at all (a plain-HTTP server answered our ClientHello). */
export function isNotTlsError(e: unknown): boolean {
  return errorCodes(e).some((c) => c === 'ERR_SSL_WRONG_VERSION_NUMBER' || c === 'ERR_SSL_PACKET_LENGTH_TOO_LONG'
    || c === 'ERR_SSL_HTTP_REQUEST' || c === 'EPROTO');
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'ERR_STREAM_PREMATURE_CLOSE',
]);

export function isConnectionError(e: unknown): boolean {
  if (e instanceof AirgapError) return false;
  return errorCodes(e).some((c) => NETWORK_CODES.has(c)) || isNotTlsError(e);
}

/**
 * Whether a retry could help: our own errors say so themselves (`temporary`), anything else
 * (undici, sockets) when it is a dropped or refused connection.
 */
export function isTemporary(e: unknown): boolean {
  return e instanceof RegistryError ? e.temporary : isConnectionError(e);
}
