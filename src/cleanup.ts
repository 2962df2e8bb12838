/**
 * Process-wide cleanups for interrupted runs. The CLI calls runCleanupsSync() on SIGINT/SIGTERM
 * right before it exits, so every cleanup must be synchronous (fs.rmSync and the like): an
 * asynchronous one would never get to run.
 */

import { randomBytes } from 'node:crypto';
import { closeSync, lstatSync, openSync, readFileSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { AirgapError } from './errors.js';

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

/**
 * What SIGKILL or a power cut leaves behind cannot be cleaned by the run itself: temporary names
 * carry the pid that made them (`<pid>-<random>`), and a later run removes those whose process is
 * gone (removeLeftovers).
 */
export function leftoverTag(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

/**
 * An entry untouched for this long, whose process is gone, is a leftover. The delay covers a run
 * in another PID namespace (a container sharing the directory), whose pid means nothing here.
 */
export const LEFTOVER_AGE_MS = 10 * 60 * 1000;

/**
 * Removes, from `dir`, the entries named by `pattern` (its first group: the pid of the run that
 * made them) that this user owns, that no running process made, and that have not changed for
 * LEFTOVER_AGE_MS. Best effort: whatever cannot be read or removed is left. Returns the names removed.
 */
export function removeLeftovers(dir: string, pattern: RegExp): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  const uid = process.getuid?.();
  for (const name of names) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || running(pid)) continue;
    try {
      const st = lstatSync(join(dir, name));
      if ((uid !== undefined && st.uid !== uid) || Date.now() - st.mtimeMs < LEFTOVER_AGE_MS) continue;
      rmSync(join(dir, name), { recursive: true, force: true });
      removed.push(name);
    } catch {
      // Gone already (another run removed it), or not ours to remove.
    }
  }
  return removed;
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it runs, as another user.
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Claims an output directory for this run before anything is pushed or written: a claim file
 * beside it (`.<name>.airgap-claim`, created exclusively, holding the pid). A second run given
 * the same --out then stops at once instead of pushing everything and failing at the end; a claim
 * whose process is gone (SIGKILL) is taken over. The returned function gives the claim back; an
 * interrupt or the process's exit gives it back too.
 */
export function claimOutput(out: string): () => void {
  const file = join(dirname(resolve(out)), `.${basename(resolve(out))}.airgap-claim`);
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return () => undefined; // a parent that does not exist yet: checkOutDir's to report
      const holder = Number(readFileSync(file, 'utf8').trim().slice(0, 20) || 'NaN');
      if (attempt === 0 && (!Number.isSafeInteger(holder) || holder <= 0 || holder === process.pid || !running(holder))) {
        rmSync(file, { force: true }); // its run was killed outright (or is this process, trying again): take it over
        continue;
      }
      throw new AirgapError('E_OUTPUT', `--out ${out} is being written by another airgap run (pid ${holder})`,
        { hint: 'wait for it to finish, or choose another --out directory' });
    }
  }
  const give = (): void => rmSync(file, { force: true });
  const unregister = registerCleanup(give);
  process.once('exit', give);
  return () => {
    give();
    unregister();
    process.off('exit', give);
  };
}
