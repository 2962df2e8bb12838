import anyTest, { type TestFn } from 'ava';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startStage, stopStage, type Stage } from '../src/testing/stage.js';
import { buildBundle, json, runCli } from '../src/testing/cli.js';

/**
 * The customer's day (issue 25): what a new user meets first — bad paths, bad flags, --json for
 * every failure, the registry's scheme and case rules — answered with exit 2 and what was expected,
 * and an --out that cannot be written refused before anything is pushed.
 */

interface Ctx extends Stage { bundle: string }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  await startStage(t.context, 'customer');
  t.context.bundle = join(t.context.dir, 'app.tar');
  await buildBundle(t.context.world, t.context.bundle);
});

test.after.always((t) => stopStage(t.context));

/** Repositories in the customer registry (distribution's catalog). */
async function catalog(t: { context: Ctx }): Promise<string[]> {
  const { customer, user } = t.context;
  const res = await fetch(`http://${customer.host}/v2/_catalog`, {
    headers: { authorization: `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}` },
  });
  return ((await res.json()) as { repositories?: string[] }).repositories ?? [];
}

function registryFlags(t: { context: Ctx }, registry = `${t.context.customer.host}/acme`): string[] {
  return ['--registry', registry, '--username', t.context.user.username, '--password-stdin'];
}

test.serial('install --out where nothing can be created is refused before the first image is pushed', async (t) => {
  for (const out of ['/proc/airgap-out', '/sys/airgap-out']) {
    const r = await runCli(['install', t.context.bundle, ...registryFlags(t), '--out', out], { input: t.context.user.password });
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, new RegExp(`--out ${out}: cannot create it`), r.stderr);
    t.deepEqual(await catalog(t), [], `nothing was pushed for --out ${out}`);
  }
});

test('--json: an unknown command or option gives the same {"error"} document as every failure, on one line', async (t) => {
  const cmd = await runCli(['--json', 'pussh']);
  t.is(cmd.code, 2);
  const e = json<{ error: { code: string; message: string } }>(cmd).error;
  t.is(e.code, 'E_USAGE');
  t.regex(e.message, /unknown command 'pussh' \(Did you mean push\?\)/);
  t.is(cmd.stderr.trim().split('\n').length, 1, cmd.stderr);
  t.regex(cmd.stderr, /^airgap: unknown command 'pussh' \(Did you mean push\?\)/);

  const opt = await runCli(['push', 'x.tar', '--json', '--registri', 'r.example/acme']);
  t.is(opt.code, 2);
  t.regex(json<{ error: { code: string; message: string } }>(opt).error.message, /unknown option '--registri'/);
});

test('build with no flags names every missing required flag at once', async (t) => {
  const r = await runCli(['build']);
  t.is(r.code, 2);
  t.regex(r.stderr, /missing --manifests, --license, --out\b/, r.stderr);
});

test('--registry: http:// is plain HTTP, https:// on loopback is refused with the reason, upper case names the rule', async (t) => {
  const host = t.context.customer.host;
  const https = await runCli(['push', t.context.bundle, '--registry', `https://${host}/acme`, '--dry-run']);
  t.is(https.code, 2, https.stderr);
  t.regex(https.stderr, /https:\/\/ cannot be honoured/);

  const http = await runCli(['push', t.context.bundle, ...registryFlags(t, `http://${host}/acme`), '--dry-run', '--debug'],
    { input: t.context.user.password });
  t.is(http.code, 0, http.stderr);
  t.regex(http.stderr, new RegExp(`debug: ${host.replace(/\./g, '\\.')}: plain HTTP \\(--plain-http\\)`), http.stderr);

  const tls = await runCli(['push', t.context.bundle, '--registry', 'http://registry.example/acme', '--ca-file', '/dev/null', '--dry-run']);
  t.is(tls.code, 2);
  t.regex(tls.stderr, /plain HTTP, which --ca-file \(a TLS setting\) contradicts/);

  const upper = await runCli(['push', t.context.bundle, '--registry', `${host}/Corp`, '--dry-run']);
  t.is(upper.code, 2);
  t.regex(upper.stderr, /registry namespace \(path\) "Corp" has upper-case letters; repository names must be lower case/);
});

test('help says "registry namespace (path)" for --registry and "Kubernetes namespace" for --namespace', async (t) => {
  const r = await runCli(['install', '--help']);
  t.is(r.code, 0);
  t.regex(r.stdout.replace(/\s+/g, ' '), /--registry <host\/path> \(required\) the customer registry and the registry namespace \(path\)/);
  t.regex(r.stdout.replace(/\s+/g, ' '), /--namespace <ns> the Kubernetes namespace/);
});

test('a missing bundle and a directory given as the bundle are bad input (exit 2) saying what was expected', async (t) => {
  const missing = await runCli(['verify', join(t.context.dir, 'nope.tar')]);
  t.is(missing.code, 2, missing.stderr);
  t.regex(missing.stderr, /bundle .*nope\.tar does not exist \(give the bundle file written by airgap build \(\.tar\), or a KOTS \.airgap\)/);
  const dir = join(t.context.dir, 'a-directory');
  await mkdir(dir, { recursive: true });
  for (const cmd of ['verify', 'inspect']) {
    const r = await runCli([cmd, dir, '--json']);
    t.is(r.code, 2, r.stderr);
    t.regex(json<{ error: { message: string } }>(r).error.message, /is a directory, not a bundle file/);
  }
});
