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
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AirgapError';
    this.code = code;
    this.hint = opts.hint;
  }
}

export function isAirgapError(e: unknown, code?: ErrorCode): e is AirgapError {
  return e instanceof AirgapError && (code === undefined || e.code === code);
}
