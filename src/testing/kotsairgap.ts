import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { lastComponent, parseReference } from '../reference.js';
import { startRegistry } from './registry.js';

const run = promisify(execFile);

/**
 * `.airgap` files made as the vendor portal and older KOTS made them, with the real tools and no
 * code of ours: images pushed by skopeo into a docker-registry with filesystem storage whose
 * root is then tarred under images/ (format docker), or written by `skopeo copy …
 * docker-archive:` one file per image (format docker-archive); airgap.yaml and app.tar.gz first;
 * the whole gzip'd by GNU tar.
 */

export interface AirgapSpecInput {
  appSlug: string;
  versionLabel?: string;
  /** Sources skopeo reads (`oci-archive:bundle.tar:ref`, `docker://…`), each with the reference savedImages lists. */
  images: { source: string; ref: string }[];
  /** The release directory that becomes app.tar.gz. */
  appDir: string;
}

const airgapYaml = (spec: AirgapSpecInput, format: string): string => stringify({
  apiVersion: 'kots.io/v1beta1', kind: 'Airgap', metadata: { name: spec.appSlug },
  spec: { appSlug: spec.appSlug, versionLabel: spec.versionLabel ?? '1.0.0', channelName: 'Stable', format,
    savedImages: spec.images.map((i) => i.ref) },
});

async function finish(stage: string, spec: AirgapSpecInput, format: string, out: string, withImages: boolean,
  mutate?: (stage: string) => Promise<void>): Promise<void> {
  await writeFile(join(stage, 'airgap.yaml'), airgapYaml(spec, format));
  await run('tar', ['-czf', join(stage, 'app.tar.gz'), '-C', spec.appDir, '.']);
  await mutate?.(stage);
  await run('tar', ['-czf', out, '-C', stage, 'airgap.yaml', 'app.tar.gz', ...(withImages ? ['images'] : [])]);
}

/** format: docker — a registry's storage root under images/, repositories by last path component. */
export async function vendorPortalAirgap(spec: AirgapSpecInput, out: string,
  opts: { all?: boolean; /** Changes the staged tree (airgap.yaml, app.tar.gz, images/) before it is tarred: hostile files. */ mutate?: (stage: string) => Promise<void> } = {}): Promise<void> {
  const stage = await mkdtemp(join(tmpdir(), 'airgap-vendor-portal-'));
  const registry = await startRegistry();
  try {
    for (const img of spec.images) {
      const ref = parseReference(img.ref);
      const dest = `docker://${registry.host}/${lastComponent(ref.repository)}:${ref.tag ?? 'latest'}`;
      await run('skopeo', ['copy', '--quiet', '--insecure-policy', ...(opts.all === false ? [] : ['--all']), '--preserve-digests',
        '--src-tls-verify=false', '--dest-tls-verify=false', img.source, dest], { maxBuffer: 1 << 24 });
    }
    await mkdir(join(stage, 'images'));
    await run('cp', ['-a', join(registry.dir, 'data', 'docker'), join(stage, 'images', 'docker')]);
    await finish(stage, spec, 'docker', out, true, opts.mutate);
  } finally {
    await registry.stop();
    await rm(stage, { recursive: true, force: true });
  }
}

/** format: docker-archive — images/docker-archive/<host>/<path>/<name>/<tag>, one docker archive each. */
export async function dockerArchiveAirgap(spec: AirgapSpecInput, out: string): Promise<void> {
  const stage = await mkdtemp(join(tmpdir(), 'airgap-docker-archive-'));
  try {
    for (const img of spec.images) {
      const ref = parseReference(img.ref);
      const dir = join(stage, 'images', 'docker-archive', ref.registry, ...ref.repository.split('/'));
      await mkdir(dir, { recursive: true });
      // skopeo splits docker-archive:PATH:REF at the first colon: the path (holding host:port) is written elsewhere, then moved.
      const tmp = join(stage, 'archive.tar');
      await run('skopeo', ['copy', '--quiet', '--insecure-policy', '--src-tls-verify=false', img.source, `docker-archive:${tmp}:${img.ref.split('@')[0]}`], { maxBuffer: 1 << 24 });
      await rename(tmp, join(dir, ref.tag ?? 'latest'));
    }
    await finish(stage, spec, 'docker-archive', out, true);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/** docker-registry serving a storage root as is (its `rootdirectory`), plain HTTP on loopback. */
export async function serveStorageRoot(root: string): Promise<{ host: string; stop(): Promise<void> }> {
  const { spawn } = await import('node:child_process');
  const { freePort } = await import('./registry.js');
  const port = await freePort();
  const config = join(root, '..', `registry-${port}.yml`);
  await writeFile(config, stringify({
    version: 0.1, log: { level: 'error' },
    storage: { filesystem: { rootdirectory: root }, delete: { enabled: false } },
    http: { addr: `127.0.0.1:${port}` },
  }));
  const child = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: 'ignore' });
  const host = `127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://${host}/v2/`).then((r) => r.ok, () => false)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { host, stop: async () => { if (child.exitCode === null && child.signalCode === null) { const exited = new Promise((r) => child.once('exit', r)); child.kill(); await exited; } } };
}
