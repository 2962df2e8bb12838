import type http from 'node:http';

/**
 * Test helper for fronts that never finish an answer: writes `piece` every `everyMs` until the
 * client goes away (a token service, tag list or error page that grows without end). Paced, so a
 * client that does not cap its reads fails a test's time limit long before it fills the machine.
 */
export function writeForever(res: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders,
  piece: string | Buffer, everyMs = 2): void {
  res.writeHead(status, headers);
  const timer = setInterval(() => {
    if (res.destroyed || res.writableEnded) {
      clearInterval(timer);
      return;
    }
    res.write(piece);
  }, everyMs);
  res.on('close', () => clearInterval(timer));
}

/** Rejects with `what` if `p` has not settled within `ms` (a read that would otherwise never end). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still running after ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
