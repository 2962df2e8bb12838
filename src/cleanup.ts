/**
 * Process-wide cleanups for interrupted runs. The CLI calls runCleanupsSync() on SIGINT/SIGTERM
 * right before it exits, so every cleanup must be synchronous (fs.rmSync and the like): an
 * asynchronous one would never get to run.
 */

type Cleanup = () => void;

const cleanups = new Set<Cleanup>();

/** Registers `fn`; the returned function unregisters it (call it once the resource is gone). */
export function registerCleanup(fn: Cleanup): () => void {
  // Wrap so registering the same function twice gives two independent registrations.
  const entry: Cleanup = () => fn();
  cleanups.add(entry);
  return () => {
    cleanups.delete(entry);
  };
}

/**
 * Runs every registered cleanup once, newest first, and forgets them. A failing cleanup does not
 * stop the others: on the way out, removing as much as possible matters more than reporting.
 */
export function runCleanupsSync(): void {
  const pending = [...cleanups].reverse();
  cleanups.clear();
  for (const fn of pending) {
    try {
      fn();
    } catch {
      // Nothing useful to do while the process is exiting.
    }
  }
}
