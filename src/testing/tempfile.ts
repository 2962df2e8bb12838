import { mkdtemp, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What a test gives for clean-up (AVA's ExecutionContext). */
export interface Teardown {
  teardown(fn: () => Promise<void>): void;
}

/** Test-only: `bytes` as a file `name` in a fresh directory, removed with it after the test. */
export async function tempFile(t: Teardown, bytes: Buffer, name = 'x.gz'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

/** As tempFile, opened for reading; closed after the test. */
export async function openTemp(t: Teardown, bytes: Buffer, name?: string): Promise<FileHandle> {
  const fh = await open(await tempFile(t, bytes, name), 'r');
  t.teardown(() => fh.close());
  return fh;
}
