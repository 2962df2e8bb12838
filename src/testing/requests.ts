import { open, stat } from 'node:fs/promises';

/**
 * Counting a registry's requests by kind, from the access log a test registry writes when started
 * with `accessLog: true` (src/testing/registry.ts): one line per request in Apache combined format,
 * `127.0.0.1 - - [date] "HEAD /v2/app/blobs/sha256:… HTTP/1.1" 404 157 "" "agent"`. The benchmark
 * uses it to say how many requests of each kind build, push and re-push make per image.
 */

export type RequestCounts = Map<string, number>;

/**
 * The kind of one request: method, what it addresses and the status, e.g. "HEAD blob 404",
 * "GET manifest by tag 200", "POST mount 201", "PUT upload 201". A manifest is "by digest"
 * or "by tag" after its reference; an upload POST carrying `mount=` is a "mount".
 */
export function requestKind(method: string, url: string, status: number): string {
  const path = url.split('?')[0]!;
  const query = url.includes('?') ? url.slice(url.indexOf('?') + 1) : '';
  let what: string;
  if (path === '/v2/' || path === '/v2') what = 'ping /v2/';
  else if (/\/blobs\/uploads(\/|$)/.test(path)) what = method === 'POST' && /(^|&)mount=/.test(query) ? 'mount' : 'upload';
  else if (/\/blobs\/[^/]+$/.test(path)) what = 'blob';
  else if (/\/manifests\/[^/]+$/.test(path)) what = /\/manifests\/[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(path) ? 'manifest by digest' : 'manifest by tag';
  else if (/\/tags\/list$/.test(path)) what = 'tags';
  else if (/\/referrers\/[^/]+$/.test(path)) what = 'referrers';
  else what = 'other';
  return `${method} ${what} ${status}`;
}

const LINE = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) /;

/** Counts the access-log lines in `text` by kind; lines that are not requests are ignored. */
export function countRequests(text: string): RequestCounts {
  const counts: RequestCounts = new Map();
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const kind = requestKind(m[1]!, m[2]!, Number(m[3]));
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return counts;
}

export function totalRequests(counts: RequestCounts): number {
  let n = 0;
  for (const v of counts.values()) n += v;
  return n;
}

/**
 * An access log read in steps: mark() before a step, counts() after it gives the requests the
 * step made. The registry writes a line once it has answered, so counts() waits until the file
 * stops growing (the client may have seen its last response a moment before the line is written).
 */
export class AccessLog {
  readonly path: string;
  #offset = 0;

  constructor(path: string) {
    this.path = path;
  }

  async mark(): Promise<void> {
    this.#offset = await this.#size();
  }

  async counts(): Promise<RequestCounts> {
    let size = await this.#size();
    for (;;) {
      await new Promise((r) => setTimeout(r, 150));
      const now = await this.#size();
      if (now === size) break;
      size = now;
    }
    const fh = await open(this.path, 'r');
    try {
      const buf = Buffer.alloc(size - this.#offset);
      await fh.read(buf, 0, buf.length, this.#offset);
      // Only whole lines: a line being written is left for the next step.
      const text = buf.toString('utf8');
      const end = text.lastIndexOf('\n') + 1;
      this.#offset += Buffer.byteLength(text.slice(0, end));
      return countRequests(text.slice(0, end));
    } finally {
      await fh.close();
    }
  }

  async #size(): Promise<number> {
    return (await stat(this.path).catch(() => ({ size: 0 }))).size;
  }
}
