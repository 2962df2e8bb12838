import test from 'ava';
import { KeptBlobs } from './kept.js';

test('a kept blob is handed out once, then it is gone (the copy would ask the source)', (t) => {
  const kept = new KeptBlobs();
  kept.keep('sha256:a', Buffer.from('kept a'));
  t.is(kept.size, 6);
  t.is(kept.take('sha256:a')?.toString(), 'kept a');
  t.is(kept.size, 0);
  t.is(kept.take('sha256:a'), undefined);
});

test('the store never holds more than its budget; what does not fit is not kept', (t) => {
  const kept = new KeptBlobs(10);
  kept.keep('sha256:a', Buffer.alloc(6));
  kept.keep('sha256:b', Buffer.alloc(6));
  t.is(kept.size, 6);
  t.truthy(kept.take('sha256:a'));
  t.is(kept.take('sha256:b'), undefined);
});
