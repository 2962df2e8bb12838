import { AirgapError } from '../errors.js';

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  urls?: string[];
  artifactType?: string;
}

const SHA256_HEX = /^[a-f0-9]{64}$/;

/** `sha256:` and 64 lower-case hex characters: the only digest we make or accept. */
export function isSha256Digest(digest: string): boolean {
  return digest.startsWith('sha256:') && isSha256Hex(digest.slice('sha256:'.length));
}

/** The hex half of a sha256 digest, as a blob's file name in a bundle or a part's checksum. */
export function isSha256Hex(hex: string): boolean {
  return SHA256_HEX.test(hex);
}

const ANY_DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** We hash with sha256 only; other algorithms are valid syntax but refused with a clear error. */
export function assertDigest(digest: string, what = 'digest'): void {
  if (isSha256Digest(digest)) return;
  if (ANY_DIGEST_RE.test(digest)) {
    throw new AirgapError('E_UNSUPPORTED', `${what} ${digest} uses an unsupported algorithm (only sha256 is supported)`);
  }
  throw new AirgapError('E_DIGEST_MISMATCH', `${what} "${digest}" is not a valid sha256 digest`);
}

export function digestHex(digest: string): string {
  assertDigest(digest);
  return digest.slice('sha256:'.length);
}

export function isDescriptor(v: unknown): v is Descriptor {
  if (typeof v !== 'object' || v === null) return false;
  const d = v as Record<string, unknown>;
  return typeof d.mediaType === 'string' && typeof d.digest === 'string' &&
    typeof d.size === 'number' && Number.isSafeInteger(d.size) && d.size >= 0;
}

export function platformString(p: Platform | undefined): string {
  if (!p) return 'unknown';
  return `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
}
