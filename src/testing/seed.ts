import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Limits } from '../concurrency.js';
import { Copier, loadGraph } from '../copy.js';
import type { Descriptor } from '../oci/descriptor.js';
import { createRegistryAccess } from '../registry/access.js';
import type { Resolved, SourceStore } from '../store.js';
import type { FixtureLayout } from './fixtures.js';

/**
 * Seeding many images at once (benchmarks): a FixtureLayout's images pushed into a loopback
 * registry by the copy engine in one process, each blob once per repository and mounted from a
 * sibling repository when another image already carried it. One skopeo process per image costs
 * ~0.2 s of start-up and a full HEAD/POST/PUT round per shared layer; hundreds of images are
 * seeded here in seconds. Tests that check our push keep seeding with skopeo (fixtures.ts).
 */

/** An OCI image layout directory as a source: images by their ref.name annotation, blobs from files. */
export class LayoutSource implements SourceStore {
  readonly label: string;
  readonly dir: string;
  #index: Promise<Map<string, Descriptor>> | undefined;

  constructor(dir: string) {
    this.dir = dir;
    this.label = `layout ${dir}`;
  }

  async resolve(name: string): Promise<Resolved> {
    this.#index ??= readFile(join(this.dir, 'index.json'), 'utf8').then((text) => {
      const index = JSON.parse(text) as { manifests: (Descriptor & { annotations?: Record<string, string> })[] };
      return new Map(index.manifests.map((m) => [m.annotations?.['org.opencontainers.image.ref.name'] ?? '', m]));
    });
    const desc = (await this.#index).get(name);
    if (!desc) throw new Error(`${this.label} has no image named ${name}`);
    const bytes = await readFile(this.#blob(desc.digest));
    return { descriptor: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size }, bytes };
  }

  fetch(desc: Descriptor): Promise<Readable> {
    return Promise.resolve(createReadStream(this.#blob(desc.digest)));
  }

  #blob(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  }
}

export interface SeedImage {
  /** The image's name in the layout. */
  name: string;
  repo: string;
  tag: string;
}

/** Pushes `images` of `layout` (its index.json must be complete) into the plain-HTTP registry at `host`. */
export async function seedLayout(layout: FixtureLayout, host: string, images: SeedImage[], concurrency = 16): Promise<void> {
  const access = createRegistryAccess({ credentialOptions: { configDir: '/nonexistent-airgap' } });
  try {
    const src = new LayoutSource(layout.dir);
    const limits = new Limits({ concurrency });
    const siblings = new Map<string, Promise<unknown>>();
    const copiers = new Map<string, Copier>();
    await Promise.all(images.map(async (img) => {
      const root = await src.resolve(img.name);
      const graph = await loadGraph(src, root, img.name);
      let copier = copiers.get(img.repo);
      if (!copier) {
        copier = new Copier(access.open({ registry: host, repository: img.repo }), { limits, siblings });
        copiers.set(img.repo, copier);
      }
      await copier.copyImage(src, graph, `${img.name} → ${host}/${img.repo}:${img.tag}`, [img.tag]);
    }));
  } finally {
    await access.close();
  }
}
