import anyTest, { type TestFn } from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageOf } from '../src/bundle/testimages.js';
import { craftBundle, named } from '../src/testing/craft.js';
import { startCountingFront } from '../src/testing/counting.js';
import { startLink } from '../src/testing/link.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { runCli } from '../src/testing/cli.js';

/**
 * An interrupted push gives its open upload sessions back: SIGINT or SIGTERM while a blob is
 * being uploaded sends DELETE to the session's Location before the process exits, and the
 * registry no longer knows the session. The push goes through a slow link (src/testing/link.ts)
 * so that an upload is under way when the signal comes; a counting front records the requests.
 */

interface Ctx { dir: string; registry: TestRegistry; bundle: string; layer: string }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-interrupt-e2e-'));
  t.context.registry = await startRegistry();
  // Random bytes do not compress: a 6 MB layer takes seconds over a 512 KB/s link.
  const img = await imageOf({ files: { 'big.bin': randomBytes(6 << 20) } });
  t.context.layer = img.blobs[0]!.descriptor.digest;
  t.context.bundle = join(t.context.dir, 'bundle.tar');
  await writeFile(t.context.bundle, craftBundle({ index: [named(img.root.descriptor, 'example.com/acme/big:1')], blobs: img.blobs }));
});

test.after.always(async (t) => {
  await t.context.registry?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test.serial(`${signal} during an upload cancels its session with DELETE`, async (t) => {
    const link = await startLink({ upstream: t.context.registry.host, delayMs: 0, bytesPerSecond: 512 * 1024 });
    t.teardown(() => link.stop());
    const front = await startCountingFront({ upstream: link.host });
    t.teardown(() => front.stop());
    const ns = signal.toLowerCase();
    const r = await runCli(['push', t.context.bundle, '--registry', `${front.host}/${ns}`], {
      onSpawn: (child) => {
        const poll = setInterval(() => {
          // The big layer's PUT is streaming: interrupt now.
          if (front.log().some((l) => l.startsWith('PUT ') && l.includes(encodeURIComponent(t.context.layer)))) {
            clearInterval(poll);
            setTimeout(() => child.kill(signal), 300);
          }
        }, 20);
        child.once('exit', () => clearInterval(poll));
      },
    });
    t.is(r.code, 130, r.stderr);
    const put = front.log().find((l) => l.startsWith('PUT ') && l.includes(encodeURIComponent(t.context.layer)))!;
    const session = new URL(put.slice(4), 'http://x').pathname;
    // The DELETE went out before the process exited.
    t.true(front.log().some((l) => l.startsWith(`DELETE ${session}`)), front.log().join('\n'));
    const status = await fetch(`http://${t.context.registry.host}${session}`);
    t.is(status.status, 404, 'the registry no longer knows the session');
  });
}
