import { AirgapError } from '../errors.js';
import { type HttpResponse, header } from './transport.js';

/**
 * Every answer read whole (manifests, token responses, tag and referrer pages, error bodies) is
 * read through here, with a cap: a registry or a proxy that never ends a body must not grow the
 * heap until the process dies.
 */

/** Reads a whole (small) body, refusing more than `cap` bytes; `truncate` keeps the first `cap` instead. */
export async function readCapped(res: HttpResponse, cap: number, what: string, truncate = false): Promise<Buffer> {
  const declared = Number(header(res, 'content-length'));
  if (!truncate && Number.isFinite(declared) && declared > cap) {
    res.body.destroy();
    throw new AirgapError('E_UNSUPPORTED', `${what} is ${declared} bytes, more than the ${cap}-byte limit`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > cap) {
      res.body.destroy();
      if (truncate) break;
      throw new AirgapError('E_UNSUPPORTED', `${what} is more than the ${cap}-byte limit`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

