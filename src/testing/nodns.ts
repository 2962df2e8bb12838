import dns from 'node:dns';

/**
 * Test-only preload (`node --import dist/src/testing/nodns.js`): every name under `.invalid`
 * fails to resolve with ENOTFOUND, as a DNS failure would, without a query leaving the machine.
 * Other names resolve as usual.
 */
type LookupCallback = (err: NodeJS.ErrnoException | null, address?: string | dns.LookupAddress[], family?: number) => void;

const original = dns.lookup.bind(dns) as (host: string, opts: dns.LookupOptions, cb: LookupCallback) => void;

function lookup(host: string, opts: dns.LookupOptions | number | LookupCallback, cb?: LookupCallback): void {
  const callback = (typeof opts === 'function' ? opts : cb) as LookupCallback;
  const options: dns.LookupOptions = typeof opts === 'object' ? opts : typeof opts === 'number' ? { family: opts } : {};
  if (String(host).endsWith('.invalid')) {
    const e = Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND', hostname: host, syscall: 'getaddrinfo' });
    process.nextTick(callback, e);
    return;
  }
  original(host, options, callback);
}

(dns as { lookup: unknown }).lookup = lookup;
