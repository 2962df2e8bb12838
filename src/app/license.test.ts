import test from 'ava';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLicense } from './license.js';
import { isAirgapError } from '../errors.js';

const ID = 'SECRET-license-id-2f9a77';

async function file(t: { teardown(fn: () => Promise<void>): void }, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-license-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'license.yaml');
  await writeFile(path, text);
  return path;
}

const good = `apiVersion: kots.io/v1beta1
kind: License
metadata:
  name: acme
spec:
  licenseID: ${ID}
  appSlug: my-kots-app
  customerName: Acme Corp
  signature: abc=
`;

test('reads id, slug and customer', async (t) => {
  t.deepEqual(await readLicense(await file(t, good)), {
    licenseId: ID, appSlug: 'my-kots-app', customerName: 'Acme Corp',
    spec: { licenseID: ID, appSlug: 'my-kots-app', customerName: 'Acme Corp', signature: 'abc=' },
  });
});

test('customerName is optional', async (t) => {
  const lic = await readLicense(await file(t, good.replace(/ {2}customerName.*\n/, '')));
  t.like(lic, { licenseId: ID, appSlug: 'my-kots-app' });
  t.is(lic.customerName, undefined);
});

const bad: [string, string, RegExp][] = [
  ['missing appSlug', good.replace(/ {2}appSlug.*\n/, ''), /missing spec\.appSlug$/],
  ['missing licenseID', good.replace(/ {2}licenseID.*\n/, ''), /missing spec\.licenseID$/],
  ['no spec', 'apiVersion: kots.io/v1beta1\nkind: License\n', /missing spec\.licenseID and spec\.appSlug$/],
  ['wrong kind', good.replace('kind: License', 'kind: Application'), /kind is "Application", not License/],
  ['wrong apiVersion', good.replace('kots.io/v1beta1', 'v1'), /apiVersion is "v1"/],
  ['not YAML', `spec:\n  licenseID: ${ID}\n  appSlug: [x\n: :\n`, /not valid YAML/],
  ['not a mapping', `just a string ${ID}\n`, /no document with kind: License/],
  ['empty', '', /no document with kind: License/],
];

for (const [name, text, want] of bad) {
  test(`refuses a license: ${name}, without quoting the ID`, async (t) => {
    const path = await file(t, text);
    const e = await t.throwsAsync(readLicense(path));
    t.true(isAirgapError(e, 'E_LICENSE'));
    t.regex(e?.message ?? '', want);
    t.true(e?.message.startsWith(`license ${path}: `));
    t.false(e?.message.includes('\n'));
    t.false(JSON.stringify({ m: e?.message, h: (e as { hint?: string }).hint, c: String(e?.cause) }).includes(ID));
  });
}

test('a missing file is E_LICENSE naming the file', async (t) => {
  const path = join(tmpdir(), `airgap-no-license-${process.pid}.yaml`);
  const e = await t.throwsAsync(readLicense(path));
  t.true(isAirgapError(e, 'E_LICENSE'));
  t.is(e?.message, `license ${path}: cannot read it (ENOENT)`);
});
