import pLimit, { type LimitFunction } from 'p-limit';

/**
 * How many requests run at once. Two kinds of work share a registry's link and want different
 * things from it:
 *
 *  - small requests: manifests, HEADs, tag lists, referrers, and blobs under SMALL_BLOB. Their
 *    time is the round trip, not the bytes: 150 of them over a 40 ms link take 6 s one at a
 *    time and 0.2 s 32 at a time. Up to SMALL_PER_BULK × the starting bulk limit run at once.
 *  - bulk transfers: bigger blobs, and the parts of big ones (src/parts.ts). Their time is the
 *    bytes over what one connection carries. On a long fat link one TCP connection is held back
 *    by its window, so more connections move more bytes, until the link itself, the disk or
 *    the CPU is the limit; on a short link more connections only add contention.
 *
 * The bulk limit therefore adapts when the user did not set --concurrency: it starts at
 * DEFAULT_CONCURRENCY (8) and, while every slot is busy and work is queued, takes a step of
 * half that (4 more) each time the last step paid off: over a window after the step, the new
 * connections carried at least half as much each as the old ones did (GAIN_SHARE). The first step that does
 * not pay is taken back and growth stops for the rest of the run. It never goes beyond
 * MAX_BULK_FACTOR × the start (32 by default). So: a link that gives each connection its
 * share grows to 32; one already full at 8 stays at 8 (one trial step, taken back).
 *
 * An explicit --concurrency N is a promise to the user (a fragile registry, a shared link):
 * then at most N requests of each kind run at once and nothing adapts.
 */

export const DEFAULT_CONCURRENCY = 8;
/** Small requests in flight per bulk slot (default: 32 small requests). */
export const SMALL_PER_BULK = 4;
/** The adaptive bulk limit never goes beyond this many times its start. */
export const MAX_BULK_FACTOR = 4;
/** Small requests at once by default (probes of plan, online checks). */
export const DEFAULT_SMALL_REQUESTS = DEFAULT_CONCURRENCY * SMALL_PER_BULK;
/** A blob under this size is mostly round trip on any long link: it is a small request. */
export const SMALL_BLOB = 1024 * 1024;
/**
 * A step up is kept when the new connections carry at least this share of what the old ones
 * carried each (8 → 12 must bring +25 %, 28 → 32 +7 %).
 */
export const GAIN_SHARE = 0.5;
/** Throughput is measured over windows of this length. */
export const WINDOW_MS = 500;

export interface LimitsOptions {
  /** --concurrency as the user gave it; undefined: the default, which adapts. */
  concurrency?: number;
  /** For tests: the window length (ms). */
  windowMs?: number;
}

export interface ConcurrencyReport {
  /** False when --concurrency was given. */
  adaptive: boolean;
  smallRequests: number;
  bulkStart: number;
  /** The most bulk transfers allowed at once during the run. */
  bulkPeak: number;
  bulkMax: number;
}

/**
 * The decision alone, fed one window at a time (Limits runs it on a timer): returns the bulk
 * limit for the next window.
 */
export class BulkController {
  readonly start: number;
  readonly max: number;
  level: number;
  peak: number;
  growing = true;
  /** Throughput and level of the window before the last step up, while that step is being judged. */
  #before: { bytes: number; level: number } | undefined;
  /** Windows to let pass before judging (the first transfers, or a step's new connections, ramp up). */
  #settle = 1;

  constructor(start: number, max: number) {
    this.start = start;
    this.max = max;
    this.level = start;
    this.peak = start;
  }

  /**
   * One window: `bytes` moved in it, `busy` when every bulk slot was taken and work was queued
   * at its end.
   */
  observe(bytes: number, busy: boolean): number {
    if (!this.growing) return this.level;
    if (this.#settle > 0) {
      this.#settle--;
      return this.level;
    }
    if (this.#before !== undefined) {
      const { bytes: was, level: from } = this.#before;
      if (bytes < was * (1 + GAIN_SHARE * (this.level - from) / from)) {
        // The step did not pay: the link (or disk, or CPU) is full. Back, and stay.
        this.level = Math.max(this.start, this.level - this.#step());
        this.growing = false;
        return this.level;
      }
      this.#before = undefined;
    }
    if (busy && this.level < this.max) {
      this.#before = { bytes, level: this.level };
      this.level = Math.min(this.max, this.level + this.#step());
      this.peak = Math.max(this.peak, this.level);
      this.#settle = 1;
    }
    return this.level;
  }

  /** A pause (nothing queued): the next window starts over, without judging across the gap. */
  idle(): void {
    this.#before = undefined;
    this.#settle = 1;
  }

  #step(): number {
    return Math.max(1, Math.floor(this.start / 2));
  }
}

/** One set of limits for a whole run (shared by every copier of a push). */
export class Limits {
  readonly small: LimitFunction;
  readonly bulk: LimitFunction;
  /** Whether the bulk limit adapts (no --concurrency given). */
  readonly adaptive: boolean;
  readonly start: number;
  readonly max: number;
  readonly #control: BulkController;
  readonly #windowMs: number;
  #timer: NodeJS.Timeout | undefined;
  #bytes = 0;

  constructor(opts: LimitsOptions = {}) {
    const explicit = opts.concurrency !== undefined;
    this.start = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
    this.adaptive = !explicit;
    this.max = explicit ? this.start : this.start * MAX_BULK_FACTOR;
    this.small = pLimit(explicit ? this.start : this.start * SMALL_PER_BULK);
    this.bulk = pLimit(this.start);
    this.#control = new BulkController(this.start, this.max);
    this.#windowMs = opts.windowMs ?? WINDOW_MS;
  }

  /** The limiter for a blob of `size` bytes. */
  forBlob(size: number): LimitFunction {
    return size < SMALL_BLOB ? this.small : this.bulk;
  }

  /** Bytes moved by any transfer: what the adaptation measures. */
  moved(n: number): void {
    this.#bytes += n;
    if (this.adaptive && this.#control.growing && this.#timer === undefined) {
      this.#bytes = n;
      this.#timer = setInterval(() => this.#window(), this.#windowMs);
      this.#timer.unref();
    }
  }

  report(): ConcurrencyReport {
    return { adaptive: this.adaptive, smallRequests: this.small.concurrency, bulkStart: this.start, bulkPeak: this.#control.peak, bulkMax: this.max };
  }

  /** Stops measuring (the run is over). */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #window(): void {
    const bytes = this.#bytes;
    this.#bytes = 0;
    const bulk = this.bulk;
    if (bulk.activeCount === 0 && bulk.pendingCount === 0) {
      // Nothing to measure until bytes move again.
      this.stop();
      this.#control.idle();
      return;
    }
    const level = this.#control.observe(bytes, bulk.activeCount >= bulk.concurrency && bulk.pendingCount > 0);
    if (level !== bulk.concurrency) bulk.concurrency = level;
    if (!this.#control.growing) this.stop();
  }
}
