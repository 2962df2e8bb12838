import test from 'ava';
import { Readable } from 'node:stream';
import { KeptBlobs } from './kept.js';
import type { SourceStore } from './store.js';

const source = (fetched: string[]): SourceStore => ({
  label: 'fake source',
  resolve: () => Promise.reject(new Error('not used')),
  fetch: (d) => {
    fetched.push(d.digest);
    return Promise.resolve(Readable.from([Buffer.from(`from source ${d.digest}`)]));
  },
});

const read = async (r: Readable): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
};

test('a kept blob is served from memory once, then asked of the source', async (t) => {
  const kept = new KeptBlobs();
  kept.keep('sha256:a', Buffer.from('kept a'));
  const fetched: string[] = [];
  const src = kept.over(source(fetched));
  const desc = { mediaType: 'application/octet-stream', digest: 'sha256:a', size: 6 };
  t.is(await read(await src.fetch(desc)), 'kept a');
  t.deepEqual(fetched, []);
  t.is(kept.size, 0);
  t.is(await read(await src.fetch(desc)), 'from source sha256:a');
  t.deepEqual(fetched, ['sha256:a']);
});

test('the store never holds more than its budget; what does not fit is fetched again', async (t) => {
  const kept = new KeptBlobs(10);
  kept.keep('sha256:a', Buffer.alloc(6));
  kept.keep('sha256:b', Buffer.alloc(6));
  t.is(kept.size, 6);
  t.truthy(kept.take('sha256:a'));
  t.is(kept.take('sha256:b'), undefined);
});
