import test from 'ava';
import { registerCleanup, runCleanupsSync } from './cleanup.js';

test('cleanups run once, newest first, a failing one does not stop the rest, unregister removes one', (t) => {
  const ran: string[] = [];
  registerCleanup(() => ran.push('first'));
  const unregister = registerCleanup(() => ran.push('removed'));
  registerCleanup(() => { throw new Error('boom'); });
  registerCleanup(() => ran.push('last'));
  unregister();
  runCleanupsSync();
  t.deepEqual(ran, ['last', 'first']);
  runCleanupsSync();
  t.deepEqual(ran, ['last', 'first'], 'a second run has nothing left to do');
});
