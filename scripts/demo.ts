/**
 * The demo: starts a public registry, a private upstream behind an emulated vendor proxy, the
 * vendor registry and an empty customer registry (all Debian docker-registry on loopback), then
 * runs airgap plan → build → inspect → verify → install exactly as a user would, printing each
 * command, and shows what the customer gets.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorld } from '../src/testing/world.js';
import { startRegistry } from '../src/testing/registry.js';
import { CLI } from '../src/testing/cli.js';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

/** Runs the CLI asynchronously: the emulated vendor proxy lives in this process and must keep serving. */
async function airgap(args: string[], input?: string): Promise<void> {
  process.stdout.write(`\n${bold('$ airgap ' + args.join(' '))}\n`);
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'inherit', 'inherit'] });
  child.stdin.end(input ?? '');
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`airgap ${args[0]} exited with ${code}`);
}

const work = await mkdtemp(join(tmpdir(), 'airgap-demo-'));
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
  process.stdout.write(`\n${bold('demo complete')}: the bundle, the rendered manifests and the overlay were in ${work} (removed now).\n`);
} finally {
  await world.stop();
  await customer.stop();
  await rm(work, { recursive: true, force: true });
}
