import test from 'ava';
import { parseReference } from '../reference.js';
import { imageEntries, jsonPointer } from './kustomize.js';

const img = (written: string, target: string) => ({ written, ref: parseReference(written), target });

test('Docker Hub images get every spelling kustomize matches literally', (t) => {
  const names = imageEntries([img('redis:7', 'r/ns/redis:7')]).map((e) => e.name);
  t.deepEqual(names, [
    'docker.io/library/redis:7', 'docker.io/redis:7', 'index.docker.io/library/redis:7', 'index.docker.io/redis:7',
    'library/redis:7', 'redis:7',
  ]);
  t.deepEqual(imageEntries([img('quay.io/org/app:1', 'r/ns/app:1')]), [{ name: 'quay.io/org/app:1', newName: 'r/ns/app', newTag: '1' }]);
});

test('tags stay apart, untagged names come last, digests are dropped through newTag', (t) => {
  const entries = imageEntries([
    img('gcr.io/x/app', 'r/ns/app:latest'),
    img('gcr.io/x/app:2@sha256:' + 'a'.repeat(64), 'r/ns/app:2'),
    img('[::1]:5000/y:1', 'r/ns/y:1'),
  ]);
  t.deepEqual(entries.map((e) => `${e.name} -> ${e.newName}:${e.newTag}`), [
    '\\[::1\\]:5000/y:1 -> r/ns/y:1',
    'gcr.io/x/app:2 -> r/ns/app:2',
    'gcr.io/x/app -> r/ns/app:latest',
  ]);
});

test('two targets for one source is a collision', (t) => {
  t.throws(() => imageEntries([img('redis:7', 'r/a/redis:7'), img('docker.io/library/redis:7', 'r/b/redis:7')]), { code: 'E_COLLISION' });
});

test('JSON pointers escape ~ and /', (t) => {
  t.is(jsonPointer(['spec', 'a/b', 'c~d', 0]), '/spec/a~1b/c~0d/0');
});
