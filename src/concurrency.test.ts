import test from 'ava';
import { BulkController, Limits, SMALL_BLOB } from './concurrency.js';

/**
 * A link where each connection carries `perConnection` bytes per window and the whole link at
 * most `link`: the controller sees what such a link would give at each level.
 */
function run(control: BulkController, perConnection: number, link: number, windows: number): number[] {
  const levels: number[] = [];
  for (let i = 0; i < windows; i++) {
    const bytes = Math.min(link, control.level * perConnection);
    levels.push(control.observe(bytes, true));
  }
  return levels;
}

test('a link that gives each connection its share: the bulk limit grows by half its start up to 4×', (t) => {
  const c = new BulkController(8, 32);
  const levels = run(c, 16, Infinity, 20);
  t.is(c.level, 32);
  t.is(c.peak, 32);
  t.true(c.growing);
  // Every step waits a window for its connections to ramp up, then is judged: 8, 12, 16 … 32.
  t.deepEqual([...new Set(levels)], [8, 12, 16, 20, 24, 28, 32]);
});

test('a link already full at the start: one trial step, taken back, and it stays', (t) => {
  const c = new BulkController(8, 32);
  run(c, 16, 8 * 16, 10);
  t.is(c.level, 8);
  t.is(c.peak, 12);
  t.false(c.growing);
});

test('a link that fills up halfway: it stops one step past the point where more stopped paying', (t) => {
  const c = new BulkController(8, 32);
  run(c, 16, 17 * 16, 20);
  // 8 → 12 → 16 pay (+50 %, +33 %); 20 brings 17/16 = +6 %, under the +12.5 % asked: back to 16.
  t.is(c.level, 16);
  t.false(c.growing);
});

test('not busy (nothing queued behind the slots): no step up', (t) => {
  const c = new BulkController(8, 32);
  for (let i = 0; i < 10; i++) c.observe(1000, false);
  t.is(c.level, 8);
  t.true(c.growing);
});

test('a pause between bursts is not judged as a step that did not pay', (t) => {
  const c = new BulkController(8, 32);
  c.observe(100, true); // ramp-up window
  c.observe(100, true); // step to 12
  c.idle(); // the queue ran dry before the step could be judged
  c.observe(10, true); // ramp-up again, not a verdict
  t.true(c.growing);
  t.is(c.level, 12);
});

test('--concurrency N: at most N small requests and N transfers at once, nothing adapts', async (t) => {
  const limits = new Limits({ concurrency: 3 });
  t.false(limits.adaptive);
  t.is(limits.small.concurrency, 3);
  t.is(limits.bulk.concurrency, 3);
  t.deepEqual(limits.report(), { adaptive: false, smallRequests: 3, bulkStart: 3, bulkPeak: 3, bulkMax: 3 });
  let running = 0;
  let most = 0;
  const job = (limit: typeof limits.small) => limit(async () => {
    most = Math.max(most, ++running);
    await new Promise((r) => setTimeout(r, 5));
    running--;
  });
  await Promise.all(Array.from({ length: 12 }, () => job(limits.small)));
  t.is(most, 3);
});

test('the default: 32 small requests, bulk from 8 up to 32; a blob under 1 MiB is a small request', (t) => {
  const limits = new Limits();
  t.true(limits.adaptive);
  t.is(limits.small.concurrency, 32);
  t.is(limits.bulk.concurrency, 8);
  t.is(limits.max, 32);
  t.is(limits.forBlob(SMALL_BLOB - 1), limits.small);
  t.is(limits.forBlob(SMALL_BLOB), limits.bulk);
});

test('Limits grows the bulk limit from the bytes its transfers report, while work is queued', async (t) => {
  const limits = new Limits({ windowMs: 20 });
  // 40 transfers that each move bytes at a fixed pace per connection: throughput grows with slots.
  const transfer = () => limits.bulk(async () => {
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 10));
      limits.moved(1000);
    }
  });
  await Promise.all(Array.from({ length: 200 }, transfer));
  limits.stop();
  t.true(limits.report().bulkPeak > 8, `peak ${limits.report().bulkPeak}`);
});
