import anyTest, { type TestFn } from 'ava';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canRunContainerd, startContainerd } from '../src/testing/containerd.js';
import { startWorld, type World } from '../src/testing/world.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { buildBundle, json, runCli } from '../src/testing/cli.js';

/**
 * The customer's node: containerd (as the kubelet drives it) pulls every image `install` pushed,
 * from a TLS registry with htpasswd auth, with the user and password of the pull secret the
 * rewrite wrote. Its own resolver, its own verification of every manifest and blob, and
 * unpacking into a snapshot.
 */

interface Ctx { world: World; dir: string; customer: TestRegistry }
const test = anyTest as TestFn<Ctx>;
const USER = { username: 'kubelet', password: 'node-pull-' + Math.random().toString(36).slice(2) };

test.before(async (t) => {
  if (!canRunContainerd()) return;
  t.context.world = await startWorld();
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-containerd-e2e-'));
  t.context.customer = await startRegistry({ users: [USER], tls: true });
});

test.after.always(async (t) => {
  await t.context.world?.stop();
  await t.context.customer?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

(canRunContainerd() ? test : test.skip)('ctr images pull fetches and unpacks every image push wrote, with the pull secret\'s credentials', async (t) => {
  const { world, dir, customer } = t.context;
  const bundle = join(dir, 'app.tar');
  await buildBundle(world, bundle);
  const out = join(dir, 'install');
  const r = await runCli(['install', bundle, '--registry', `${customer.host}/shop`, '--ca-file', customer.caFile!,
    '--username', USER.username, '--password-stdin', '--out', out, '--namespace', 'shop', '--json'], { input: USER.password + '\n' });
  t.is(r.code, 0, r.stderr);
  const pushed = json<{ push: { images: { target: string; digest: string }[] } }>(r).push.images;
  t.is(pushed.length, new Set(world.images.map((i) => `${i.name}:${i.tag}`)).size);

  // What the kubelet has: the image names in the rendered pod specs and the pull secret.
  const docs = (await Promise.all((await readdir(join(out, 'rendered'), { recursive: true }))
    .filter((f) => /\.ya?ml$/.test(f))
    .map(async (f) => parseAllDocuments(await readFile(join(out, 'rendered', f), 'utf8')).map((d) => d.toJS() as Record<string, any> | null))))
    .flat().filter((d): d is Record<string, any> => d !== null);
  const named = new Set<string>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (Array.isArray(o.containers)) {
        for (const c of [o.containers, o.initContainers ?? []].flat() as { image?: unknown }[]) if (typeof c.image === 'string') named.add(c.image);
      }
      Object.values(o).forEach(walk);
    }
  };
  docs.forEach(walk);
  for (const image of named) t.true(pushed.some((p) => p.target === image), `${image} (rendered) was pushed`);
  const secret = docs.find((d) => d.kind === 'Secret' && d.type === 'kubernetes.io/dockerconfigjson');
  const config = JSON.parse(Buffer.from(secret!.data['.dockerconfigjson'], 'base64').toString()) as { auths: Record<string, { auth: string }> };
  const secretUser = Buffer.from(config.auths[customer.host]!.auth, 'base64').toString();

  const containerd = await startContainerd();
  t.teardown(() => containerd.stop());
  const ctr = (...args: string[]) => containerd.ctr('-n', 'k8s.io', ...args);
  // As a node is set up for a private registry (containerd's config_path): HTTPS with its CA.
  // Without it ctr would talk plain HTTP to a 127.0.0.1 registry.
  const hostsDir = join(dir, 'certs.d');
  await mkdir(join(hostsDir, customer.host), { recursive: true });
  await writeFile(join(hostsDir, customer.host, 'hosts.toml'), [
    `server = "https://${customer.host}"`, `[host."https://${customer.host}"]`,
    '  capabilities = ["pull", "resolve"]', `  ca = "${customer.caFile!}"`, '',
  ].join('\n'));
  const pull = (user: string, ref: string) => ctr('images', 'pull', '--hosts-dir', hostsDir, '--user', user, ref);
  for (const img of pushed) await pull(secretUser, img.target);
  const { stdout } = await ctr('images', 'ls');
  const lines = stdout.split('\n');
  for (const img of pushed) {
    const line = lines.find((l) => l.startsWith(img.target + ' '));
    t.truthy(line, `${img.target} pulled:\n${stdout}`);
    t.true(line!.includes(img.digest), `${img.target} is ${img.digest}`);
  }
  // Unpacked: each image's layers became a snapshot chain (what a container would start from).
  for (const img of pushed) {
    const { stdout: check } = await ctr('images', 'check', `name==${img.target}`);
    t.regex(check, /\scomplete \((\d+)\/\1\)/, `${img.target}: ${check}`);
  }
  // And a wrong password is refused by the registry (the pulls above really used the credentials).
  const denied = await t.throwsAsync(pull(`${USER.username}:wrong`, pushed[0]!.target));
  t.regex(String((denied as { stderr?: string }).stderr ?? denied), /401|unauthorized|authorization/i);
});
