import type { Readable } from 'node:stream';
import { AirgapError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { Transport } from './transport.js';

/**
 * A foreign layer that the registry does not hold is downloaded from its descriptor's `urls`, in
 * order, as skopeo and crane do: plain GETs, never with the registry's credentials. The caller
 * verifies size and digest while it streams, as for any blob.
 */

/** A URL as it may appear in a message: without query or fragment (signed URLs carry tokens there). */
export function shownUrl(u: URL): string {
  return `${u.protocol}//${u.host}${u.pathname}`;
}

export async function fetchFromUrls(transport: Transport, desc: Descriptor, registry: string,
  signal?: AbortSignal): Promise<Readable> {
  const tried: string[] = [];
  for (const raw of desc.urls ?? []) {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      tried.push(`"${raw.slice(0, 80)}": not a URL`);
      continue;
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      tried.push(`${url.protocol} URL: only http and https are fetched`);
      continue;
    }
    const what = shownUrl(url);
    try {
      const res = await transport.send({
        method: 'GET', host: url.host, url, subject: { method: 'GET', host: url.host, what },
        ...(signal ? { signal } : {}),
      });
      if (res.status === 200) return res.body;
      await res.body.dump().catch(() => undefined);
      tried.push(`${shownUrl(url)}: HTTP ${res.status}`);
    } catch (e) {
      if (signal?.aborted) throw e;
      tried.push(e instanceof Error ? e.message.replace(/\s*\n\s*/g, ' ') : String(e));
    }
  }
  throw new AirgapError('E_NOT_FOUND',
    `foreign layer ${desc.digest} is neither on registry ${registry} nor at its URLs (${tried.join('; ') || 'none given'})`,
    { hint: 'build on a host that can reach the layer URLs (a Windows base layer: its vendor servers), or build without --include-foreign-layers' });
}
