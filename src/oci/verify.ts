import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { AirgapError } from '../errors.js';
import type { Descriptor } from './descriptor.js';

/**
 * A pass-through that hashes and counts the bytes and fails the stream when they do not match
 * the descriptor (too many bytes fail at once; too few or a wrong hash fail at the end).
 */
export class VerifyingStream extends Transform {
  readonly #desc: Descriptor;
  readonly #what: string;
  readonly #hash = createHash('sha256');
  #seen = 0;

  constructor(desc: Descriptor, what: string) {
    super();
    this.#desc = desc;
    this.#what = what;
  }

  get bytesSeen(): number {
    return this.#seen;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.#desc.size) {
      cb(mismatch(this.#what, this.#desc, `more than the expected ${this.#desc.size} bytes`));
      return;
    }
    this.#hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.#seen !== this.#desc.size) {
      cb(mismatch(this.#what, this.#desc, `${this.#seen} bytes, expected ${this.#desc.size}`));
      return;
    }
    const got = 'sha256:' + this.#hash.digest('hex');
    if (got !== this.#desc.digest) {
      cb(mismatch(this.#what, this.#desc, `content hashes to ${got}`));
      return;
    }
    cb();
  }
}

function mismatch(what: string, desc: Descriptor, detail: string): AirgapError {
  return new AirgapError('E_DIGEST_MISMATCH', `${what}: ${desc.digest} does not match its content (${detail})`,
    { hint: 'the source served corrupt or tampered data; retry, and report it to the registry operator if it persists' });
}

export function sha256Digest(bytes: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(bytes).digest('hex');
}

/** Verifies a fully buffered manifest or blob. */
export function verifyBytes(bytes: Uint8Array, desc: Descriptor, what: string): void {
  if (bytes.length !== desc.size) throw mismatch(what, desc, `${bytes.length} bytes, expected ${desc.size}`);
  const got = sha256Digest(bytes);
  if (got !== desc.digest) throw mismatch(what, desc, `content hashes to ${got}`);
}
