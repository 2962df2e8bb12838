/**
 * One error type for everything a user can act on. `code` is stable (tests and --json rely on it),
 * `message` is one line naming the thing that failed, `hint` says what to do about it.
 */
export type ErrorCode =
  | 'E_USAGE'            // bad flags or arguments
  | 'E_REFERENCE'        // malformed image reference
  | 'E_MANIFESTS'        // unreadable or malformed application manifests
  | 'E_LICENSE'          // license file missing or not a license
  | 'E_DIGEST_ONLY'      // limited-digest rule: reference pinned by digest only
  | 'E_NO_IMAGES'        // nothing to bundle
  | 'E_REGISTRY'         // registry answered with an error
  | 'E_AUTH'             // credentials missing or refused (401/403)
  | 'E_NOT_FOUND'        // manifest or blob not found
  | 'E_NETWORK'          // connection, DNS, TLS failures
  | 'E_TLS'              // certificate verification failed
  | 'E_UNSUPPORTED'      // schema 1, unknown media types
  | 'E_DIGEST_MISMATCH'  // content does not match its digest or size
  | 'E_BUNDLE'           // bundle is malformed or unsafe
  | 'E_OUTPUT'           // cannot write the output
  | 'E_COLLISION'        // two sources land on one pushed name
  | 'E_BASE_MISSING'     // a delta bundle's base blobs are not in the target registry
  | 'E_SIGNATURE'        // a bundle's signature is missing, wrong, or does not cover what it holds
  | 'E_INTERRUPTED'      // SIGINT / SIGTERM
  | 'E_INTERNAL';        // a bug: the run could not finish

export class AirgapError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, opts: { hint?: string; cause?: unknown } = {}) {
    // Messages quote what bundles and registries say (reference names, airgap.json fields): never
    // let one carry a terminal escape to the user's screen.
    super(printable(message, true), opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AirgapError';
    this.code = code;
    this.hint = opts.hint === undefined ? undefined : printable(opts.hint, true);
  }
}

export function isAirgapError(e: unknown, code?: ErrorCode): e is AirgapError {
  return e instanceof AirgapError && (code === undefined || e.code === code);
}

/**
 * Untrusted text made safe to print on a terminal: C0 and C1 control characters (ESC, CSI, BEL,
 * carriage return…), DEL and the bidirectional overrides are written as \xHH or \u{HHHH}, so a
 * reference name or an airgap.json field cannot clear the screen, retitle the window, or hide
 * text. `keepLines`: newlines and tabs stay (a message's own layout).
 */
export function printable(s: string, keepLines = false): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    if (keepLines && (c === '\n' || c === '\t')) return c;
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
  });
}

/** Every string inside `v` (objects, arrays) made printable: for the text form of a result whose JSON stays as read. */
export function printableFields<T>(v: T): T {
  if (typeof v === 'string') return printable(v) as T;
  if (Array.isArray(v)) return v.map((x: unknown) => printableFields(x)) as T;
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, printableFields(x)])) as T;
  }
  return v;
}
