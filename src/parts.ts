import { setMaxListeners } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { ByteCounter } from './bytecounter.js';
import type { LimitFunction } from 'p-limit';
import type { Descriptor } from './oci/descriptor.js';
import type { BlobParts, SourceStore } from './store.js';

/**
 * Big blobs as parallel byte ranges. Over a long fat link one connection is capped well below
 * what the link carries, so a single big layer would be the long pole of a build: cut into parts,
 * it spreads over every free connection. Each part takes one slot of the engine's limiter (so
 * --concurrency still bounds the connections), parts are queued in blob order (so the target's
 * in-order hash follows close behind), and the target writes each part at its own offset.
 */

/** Default part size: large enough that the per-request round trip is a few percent of a part. */
export const DEFAULT_PART_SIZE = 16 * 1024 * 1024;

/** Blobs of at least this many part sizes go in parts; smaller ones are one stream. */
export const PARTS_FROM = 2;

/** [start, end) ranges of at most `partSize` bytes covering `size` bytes. */
export function splitRanges(size: number, partSize: number): [number, number][] {
  if (!Number.isSafeInteger(partSize) || partSize <= 0) throw new RangeError(`part size ${partSize} is not a positive integer`);
  const out: [number, number][] = [];
  for (let start = 0; start < size; start += partSize) out.push([start, Math.min(size, start + partSize)]);
  return out;
}

export interface CopyPartsOptions {
  limit: LimitFunction;
  partSize: number;
  signal?: AbortSignal;
  /** Bytes as they arrive, for progress. */
  onBytes: (n: number) => void;
}

/**
 * Streams every part of `desc` from `src` into `parts`; the first failure stops the others and
 * abandons the blob. The caller commits (verifies) once this resolves.
 */
export async function copyParts(src: SourceStore, parts: BlobParts, desc: Descriptor, opts: CopyPartsOptions): Promise<void> {
  const fetchRange = src.fetchRange?.bind(src);
  // The caller picks parts only for a source with fetchRange: this is a programming error, not the user's.
  if (!fetchRange) throw new Error(`copyParts: ${src.label} has no fetchRange`);
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const ranges = splitRanges(desc.size, opts.partSize);
  // Every part in flight listens on this signal (undici adds a listener per request): with the
  // adaptive limit that can be more than Node's default warning threshold of 10.
  setMaxListeners(Math.max(10, ranges.length + 1), signal);
  const transfers = ranges.map(([start, end]) => opts.limit(async () => {
    signal.throwIfAborted();
    const body = await fetchRange(desc, start, end, { signal });
    const counted = new ByteCounter(opts.onBytes);
    // Errors reach the writer through `counted`; pipeline carries them both ways.
    pipeline(body, counted).catch(() => undefined);
    await parts.write(start, end, counted);
  }));
  let failure: { error: unknown } | undefined;
  await Promise.all(transfers).catch((error: unknown) => {
    failure = { error };
    stop.abort(error);
  });
  if (failure) {
    // Parts still running see the abort; wait for them so nothing writes after the blob is abandoned.
    await Promise.allSettled(transfers);
    parts.abort();
    throw failure.error;
  }
}
