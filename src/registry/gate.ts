import { AirgapError } from '../errors.js';

/**
 * How many requests one registry host has in flight: at most `limit`, counted from the moment a
 * request is sent until its response body is read, dumped or destroyed (a streaming blob holds
 * its slot while it streams, as it holds a connection). Waiters are served in order. A 429 (or a
 * 503 with Retry-After) pauses the whole host: nothing new is sent to it until the pause ends.
 *
 * Deadlock: a holder never waits for a slot of its own host. Every caller reads or dumps a
 * response body before its next request to that host, and token, probe and mount requests are
 * made before the request they serve takes its slot (client.ts, auth.ts); the copy engine's
 * blob bodies are consumed by a store that makes no request to the source host (the bundle
 * writer writes a file; push reads from the bundle).
 */
export class HostGate {
  readonly limit: number;
  #active = 0;
  #peak = 0;
  readonly #queue: { grant: () => void }[] = [];
  #pausedUntil = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(limit: number) {
    this.limit = Math.max(1, limit);
  }

  /** The most requests this host had in flight at once. */
  get peak(): number {
    return this.#peak;
  }

  /** Waits for a slot; the returned function gives it back (calling it twice is harmless). */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.#queue.length === 0 && this.#active < this.limit && Date.now() >= this.#pausedUntil) this.#take();
    else await this.#wait(signal);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.#active--;
      this.#drain();
    };
  }

  /** Nothing new goes to this host for `ms` (its 429 or Retry-After says it is overloaded). */
  pause(ms: number): void {
    this.#pausedUntil = Math.max(this.#pausedUntil, Date.now() + ms);
  }

  #take(): void {
    this.#active++;
    this.#peak = Math.max(this.#peak, this.#active);
  }

  #wait(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(interrupted());
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#queue.indexOf(waiter);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(interrupted());
      };
      const waiter = { grant: () => { signal?.removeEventListener('abort', onAbort); resolve(); } };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(waiter);
      this.#drain();
    });
  }

  /** Grants slots in order (counted at once, so no one overtakes a granted waiter). */
  #drain(): void {
    const wait = this.#pausedUntil - Date.now();
    if (wait > 0) {
      if (this.#queue.length > 0 && this.#timer === undefined) {
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.#drain();
        }, wait);
      }
      return;
    }
    while (this.#queue.length > 0 && this.#active < this.limit) {
      this.#take();
      this.#queue.shift()!.grant();
    }
  }
}

function interrupted(): AirgapError {
  return new AirgapError('E_INTERRUPTED', 'interrupted');
}
