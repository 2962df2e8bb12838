import { Transform, type TransformCallback } from 'node:stream';

/** Passes bytes through unchanged, reporting each chunk's length (progress events). */
export class ByteCounter extends Transform {
  readonly #onBytes: (n: number) => void;

  constructor(onBytes: (n: number) => void) {
    super();
    this.#onBytes = onBytes;
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.#onBytes(chunk.length);
    cb(null, chunk);
  }
}
