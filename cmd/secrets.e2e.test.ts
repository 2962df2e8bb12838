import anyTest, { type TestFn } from 'ava';
import { cp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type World } from '../src/testing/world.js';
import type { TestRegistry } from '../src/testing/registry.js';
import { startStage, stopStage } from '../src/testing/stage.js';
import { startFaultFront } from '../src/testing/faults.js';
import { resolveFlags, runCli, type CliResult } from '../src/testing/cli.js';

/**
 * Secrets: the license ID and every password used never appear in the bundle, in any output line
 * or in any error message (with --debug too, which prints causes and stacks), in plain text or as
 * the base64 of a Basic Authorization header. Authorization never follows a redirect to another host.
 */

interface Ctx { world: World; dir: string; customer: TestRegistry; user: { username: string; password: string } }
const test = anyTest as TestFn<Ctx>;
const ENV = { AIRGAP_RETRY_BASE_MS: '5' };

test.before(async (t) => {
  await startStage(t.context, 'secrets', { passwordPrefix: 'Cust0mer-Secret-' });
});

test.after.always((t) => stopStage(t.context));

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** Every spelling of every secret worth looking for. */
function spellings(secrets: string[], pairs: [string, string][]): string[] {
  return [...secrets, ...secrets.map(b64), ...pairs.map(([u, p]) => b64(`${u}:${p}`))];
}

test('no license ID or password in the bundle, any log line or any error message (with and without --debug)', async (t) => {
  const { world, dir, customer, user } = t.context;
  const wrongPassword = 'Wr0ng-Secret-' + Math.random().toString(36).slice(2);
  const wrongLicenseId = 'WrongLicense' + Math.random().toString(36).slice(2);
  const badLicense = join(dir, 'wrong-license.yaml');
  await writeFile(badLicense, (await readFile(world.licensePath, 'utf8')).replace(world.licenseId, wrongLicenseId));
  const resolve = resolveFlags(world);
  const dead = await startFaultFront(customer.host);
  t.teardown(() => dead.stop());
  dead.set([{ on: 'upload', fault: { kind: 'status', status: 503, html: true } }]);

  const runs: [string, CliResult][] = [];
  const go = async (name: string, args: string[], input?: string) => {
    runs.push([name, await runCli(args, { env: ENV, ...(input !== undefined ? { input } : {}) })]);
  };
  const registry = (host: string, ns = 'acme') => ['--registry', `${host}/${ns}`, '--username', user.username];
  for (const debug of [[], ['--debug']]) {
    const tag = debug.length ? 'debug' : 'plain';
    const bundle = join(dir, `${tag}.tar`);
    await go(`build ${tag}`, ['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', bundle, ...resolve, ...debug]);
    if (debug.length) await go(`build --json ${tag}`, ['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', bundle + '.json.tar', ...resolve, '--json', ...debug]);
    if (debug.length) await go(`plan ${tag}`, ['plan', '--manifests', world.appDir, '--license', world.licensePath, ...resolve, ...debug]);
    await go(`build wrong license ${tag}`, ['build', '--manifests', world.appDir, '--license', badLicense, '--out', join(dir, `x-${tag}.tar`), ...resolve, ...debug]);
    await go(`install ${tag}`, ['install', bundle, ...registry(customer.host), '--password-stdin', '--out', join(dir, `inst-${tag}`), ...debug], user.password + '\n');
    if (debug.length) await go(`install --password ${tag}`, ['install', bundle, ...registry(customer.host), '--password', user.password, '--out', join(dir, `inst2-${tag}`), '--json', ...debug]);
    await go(`push wrong password ${tag}`, ['push', bundle, ...registry(customer.host), '--password-stdin', ...debug], wrongPassword + '\n');
    await go(`push dead registry ${tag}`, ['push', bundle, ...registry(dead.host, `dead${tag}`), '--password-stdin', ...debug], user.password + '\n');
    await go(`inspect ${tag}`, ['inspect', bundle, ...debug]);
  }
  // The runs did what they should, so there was something to leak.
  const status = Object.fromEntries(runs.map(([n, r]) => [n, r.code]));
  for (const [n, r] of runs) {
    const shouldFail = /wrong|dead/.test(n);
    t.is(r.code !== 0, shouldFail, `${n}: exit ${r.code}: ${r.stderr}`);
  }
  t.true(runs.some(([n, r]) => n.includes('debug') && /\n\s+at /.test(r.stderr)), `--debug printed stacks: ${JSON.stringify(status)}`);
  // --debug says how each registry host is reached (src/registry/policy.ts); the secrets below are not in it.
  const install = runs.find(([n]) => n === 'install debug')![1].stderr;
  t.true(install.includes(`airgap: debug: ${customer.host}: plain HTTP if it answers as a registry, else HTTPS (loopback); `), install);
  t.regex(install, /; credentials given on the command line; /);
  t.regex(runs.find(([n]) => n === 'build debug')![1].stderr, /airgap: debug: \S+: .*credentials looked up in /);
  t.false(runs.find(([n]) => n === 'install plain')![1].stderr.includes('airgap: debug:'), 'only with --debug');

  const secrets = spellings(
    [world.licenseId, wrongLicenseId, world.upstreamCredentials.password, user.password, wrongPassword],
    [[world.licenseId, world.licenseId], [wrongLicenseId, wrongLicenseId], [world.upstreamCredentials.username, world.upstreamCredentials.password],
      [user.username, user.password], [user.username, wrongPassword]],
  );
  for (const [name, r] of runs) {
    for (const s of secrets) {
      t.false(r.stdout.includes(s), `${name}: a secret in stdout`);
      t.false(r.stderr.includes(s), `${name}: a secret in stderr`);
    }
  }
  for (const f of (await readdir(dir)).filter((n) => n.endsWith('.tar'))) {
    const bytes = await readFile(join(dir, f));
    for (const s of secrets) t.is(bytes.indexOf(Buffer.from(s)), -1, `${f}: a secret in the bundle`);
  }
});

test('Authorization is never sent to another host on a redirect (build through a redirecting vendor registry)', async (t) => {
  const { world, dir } = t.context;
  const license = 'Basic ' + b64(`${world.licenseId}:${world.licenseId}`);
  // "Blob storage" on another host name (localhost vs 127.0.0.1), with its own access to the registry.
  const storage = await startFaultFront(world.vendor, { authorization: license });
  const front = await startFaultFront(world.vendor);
  t.teardown(async () => {
    await storage.stop();
    await front.stop();
  });
  front.set([{ on: 'blob', fault: { kind: 'redirect', to: `localhost:${storage.host.split(':')[1]}` } }]);
  const app = join(dir, 'redirect-app');
  await cp(world.appDir, app, { recursive: true });
  for (const f of await readdir(app, { recursive: true })) {
    if (!/\.ya?ml$/.test(f)) continue;
    const text = await readFile(join(app, f), 'utf8');
    await writeFile(join(app, f), text.split(world.vendor).join(front.host));
  }
  const out = join(dir, 'redirected.tar');
  const r = await runCli(['build', '--manifests', app, '--license', world.licensePath, '--out', out,
    ...resolveFlags({ proxy: world.proxy, vendor: front.host })], { env: ENV });
  t.is(r.code, 0, r.stderr);
  t.true(front.injected.redirect > 0, 'blob downloads were redirected');
  t.true(front.seen.some((s) => s.url.includes('/blobs/') && s.headers.authorization !== undefined), 'the registry itself got credentials');
  t.true(storage.seen.length >= front.injected.redirect);
  for (const s of storage.seen) t.is(s.headers.authorization, undefined, `Authorization leaked to ${storage.host}: ${s.url}`);
  t.is((await runCli(['verify', out])).code, 0);
});
