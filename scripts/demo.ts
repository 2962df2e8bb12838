/**
 * The demo: starts a public registry, a private upstream behind an emulated vendor proxy, the
 * vendor registry and an empty customer registry (all Debian docker-registry on loopback), then
 * runs airgap plan → build → inspect → verify → install exactly as a user would, printing each
 * command, and shows what the customer gets; then the same for a KOTS release, from our bundle and
 * from a KOTS `.airgap` file.
 *
 * `npm run demo -- --keep`: the registries stay up afterwards and the demo prints the commands to
 * try by hand (runnable as printed, from this directory) until Ctrl-C stops everything.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startWorld } from '../src/testing/world.js';
import { startRegistry } from '../src/testing/registry.js';
import { CLI } from '../src/testing/cli.js';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const keep = process.argv.slice(2).includes('--keep');
const unknown = process.argv.slice(2).filter((a) => a !== '--keep');
if (unknown.length > 0) {
  process.stderr.write(`demo: unknown argument(s) ${unknown.join(' ')} (the only one is --keep: leave the registries up and print commands to try)\n`);
  process.exit(2);
}
const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

/** A word as a POSIX shell reads it back. */
const sh = (w: string) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);
/** The command line as a user types it in this directory (`npx airgap` runs the project's own bin). */
const line = (args: string[], input?: string) =>
  `${input !== undefined ? `printf '%s\\n' ${sh(input.trim())} | ` : ''}npx airgap ${args.map(sh).join(' ')}`;

/** Runs the CLI asynchronously: the emulated vendor proxy lives in this process and must keep serving. */
async function airgap(args: string[], input?: string): Promise<void> {
  process.stdout.write(`\n${bold('$ ' + line(args, input))}\n`);
  // helm, for the release's chart, as a user has it on PATH (prepare.sh takes it from a devDependency).
  const env = { ...process.env, PATH: `${join(ROOT, '.tools', 'bin')}${delimiter}${process.env.PATH ?? ''}` };
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'inherit', 'inherit'], env });
  child.stdin.end(input ?? '');
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`airgap ${args[0]} exited with ${code}`);
}

const work = await mkdtemp(join(tmpdir(), 'airgap-demo-'));

/**
 * The same journey for a release written in KOTS's template language (testdata/kots: a Config
 * screen, kots.io/when, an if block, LocalImageName, a Helm chart): build finds every image of
 * every branch; install renders it with the customer's answers.
 */
async function kotsRelease(): Promise<void> {
  process.stdout.write(`\n${bold('== a KOTS release: templates, a Config screen and a Helm chart (testdata/kots) ==')}\n`);
  const release = await startWorld({ app: 'kots' });
  try {
    const resolve = ['--proxy-host', release.proxy, '--replicated-registry', release.vendor];
    const bundle = join(work, 'acme-shop-kots.tar');
    const out = join(work, 'kots-install');
    await airgap(['plan', '--manifests', release.appDir, '--license', release.licensePath, '--offline']);
    await airgap(['build', '--manifests', release.appDir, '--license', release.licensePath, '--out', bundle, '--release', '2.0.0', ...resolve]);
    const values = join(work, 'config-values.yaml');
    await writeFile(values, 'apiVersion: kots.io/v1beta1\nkind: ConfigValues\nmetadata:\n  name: acme-shop\nspec:\n  values:\n' +
      '    hostname:\n      value: shop.acme.example\n    enable_worker:\n      value: "1"\n');
    process.stdout.write(`\n${bold('== the customer\'s answers: ' + values + ' ==')}\n${await readFile(values, 'utf8')}`);
    await airgap(['install', bundle, '--registry', `${customer.host}/shop`, '--username', customerUser.username, '--password-stdin',
      '--namespace', 'shop', '--config-values', values, '--license', release.licensePath, '--out', out], customerUser.password + '\n');
    process.stdout.write(`\n${bold('== rendered for this customer: ' + join(out, 'rendered', 'api.yaml') + ' ==')}\n`);
    process.stdout.write(await readFile(join(out, 'rendered', 'api.yaml'), 'utf8'));
    const kept = (await readFile(join(out, 'config-values.yaml'), 'utf8')).replace(/(valuePlaintext: ).*/g, '$1(generated, shown masked here)');
    process.stdout.write(`\n${bold('== the values used, for the next run (generated passwords kept): ' + join(out, 'config-values.yaml') + ' ==')}\n${kept}`);

    // KOTS's own bundle format, as the vendor portal ships it: the same commands read it.
    process.stdout.write(`\n${bold('== the same release as a KOTS .airgap file (docs/kots-airgap.md) ==')}\n`);
    const airgapFile = join(work, 'acme-shop-2.0.0.airgap');
    await airgap(['build', '--manifests', release.appDir, '--license', release.licensePath, '--out', airgapFile, '--release', '2.0.0',
      '--format', 'kots', ...resolve]);
    await airgap(['inspect', airgapFile]);
    await airgap(['install', airgapFile, '--registry', `${customer.host}/shop-airgap`, '--username', customerUser.username, '--password-stdin',
      '--namespace', 'shop', '--config-values', values, '--license', release.licensePath, '--out', join(work, 'kots-airgap-install')],
    customerUser.password + '\n');
  } finally {
    await release.stop();
  }
}
process.stdout.write('starting registries on loopback (public, private upstream + vendor proxy, vendor registry, customer)...\n');
const world = await startWorld();
const customerUser = { username: 'deployer', password: 'demo-password' };
const customer = await startRegistry({ users: [customerUser] });
try {
  process.stdout.write([
    `  public registry        ${world.public}`,
    `  private upstream       ${world.private}   (only the vendor proxy can read it)`,
    `  vendor proxy           ${world.proxy}`,
    `  vendor registry        ${world.vendor}`,
    `  customer registry      ${customer.host}   (user ${customerUser.username})`,
    `  application            ${world.appDir}`,
    '',
  ].join('\n'));
  const resolve = ['--proxy-host', world.proxy, '--replicated-registry', world.vendor];
  const bundle = join(work, 'acme-shop.tar');
  const out = join(work, 'install');

  process.stdout.write(`\n${bold('== online: find, resolve and bundle every image ==')}\n`);
  await airgap(['plan', '--manifests', world.appDir, '--license', world.licensePath, ...resolve]);
  await airgap(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', bundle, '--release', '1.4.2', ...resolve]);
  await airgap(['inspect', bundle]);
  await airgap(['verify', bundle]);

  process.stdout.write(`\n${bold('== offline: push into the customer registry and rewrite the manifests ==')}\n`);
  const install = ['install', bundle, '--registry', `${customer.host}/acme`, '--username', customerUser.username, '--password-stdin', '--namespace', 'shop', '--out', out];
  await airgap(install, customerUser.password + '\n');

  process.stdout.write(`\n${bold('== what the customer applies: ' + join(out, 'rendered', 'api.yaml') + ' ==')}\n`);
  process.stdout.write(await readFile(join(out, 'rendered', 'api.yaml'), 'utf8'));
  process.stdout.write(`\n${bold('== and the kustomize overlay: ' + join(out, 'midstream', 'kustomization.yaml') + ' ==')}\n`);
  process.stdout.write(await readFile(join(out, 'midstream', 'kustomization.yaml'), 'utf8'));
  await kotsRelease();
  if (keep) {
    const mine = join(work, 'mine.tar');
    const img = world.images.find((i) => i.kind === 'public' && !i.pinned)!;
    const creds = ['--username', customerUser.username, '--password-stdin'];
    const registry = `${customer.host}/mine`;
    const tryIt = [
      `cd ${sh(ROOT)}`,
      line(['plan', '--manifests', world.appDir, '--offline']),
      line(['plan', '--manifests', world.appDir, '--license', world.licensePath, ...resolve]),
      line(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', mine, '--release', '1.4.3', ...resolve]),
      line(['inspect', mine]),
      line(['push', mine, '--registry', registry, ...creds, '--dry-run'], customerUser.password),
      line(['install', mine, '--registry', registry, ...creds, '--namespace', 'shop', '--out', join(work, 'mine-install'), '--dry-run'], customerUser.password),
      line(['install', mine, '--registry', registry, ...creds, '--namespace', 'shop', '--out', join(work, 'mine-install')], customerUser.password),
      line(['push', mine, '--registry', registry, ...creds], customerUser.password) + '   # again: everything already there',
      `skopeo inspect --tls-verify=false --creds ${customerUser.username}:${customerUser.password} docker://${registry}/${img.name.split('/').pop()}:${img.tag}`,
      `kubectl kustomize ${join(work, 'mine-install', 'midstream')}`,
    ];
    process.stdout.write([
      '',
      bold('== your turn: the registries stay up =='),
      'In another terminal, run these as printed (npx airgap runs this checkout\'s CLI; `npm link` puts `airgap` on your PATH instead):',
      '',
      ...tryIt.map((c) => `  ${c}`),
      '',
      `Stop the registries and remove ${work}: press Ctrl-C here (or: kill ${process.pid}).`,
      '',
    ].join('\n'));
    await new Promise<void>((resolveStop) => {
      process.once('SIGINT', () => resolveStop());
      process.once('SIGTERM', () => resolveStop());
    });
    process.stdout.write('stopping the registries...\n');
  } else {
    process.stdout.write(`\n${bold('demo complete')}: the bundle, the rendered manifests and the overlay were in ${work} (removed now).\n` +
      `Run ${bold('npm run demo -- --keep')} to keep the registries up and try the commands yourself.\n`);
  }
} finally {
  await world.stop();
  await customer.stop();
  await rm(work, { recursive: true, force: true });
}
