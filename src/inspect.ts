import { stat } from 'node:fs/promises';
import { BundleReader } from './bundle/reader.js';
import { flatten, loadGraph, type GraphNode } from './copy.js';
import { platformString } from './oci/descriptor.js';

export interface InspectResult {
  path: string;
  fileSize: number;
  appSlug?: string;
  release?: string;
  created?: string;
  tool?: string;
  images: { ref: string; digest: string; mediaType: string; platforms: string[]; size: number; source?: string }[];
  appFiles: string[];
}

/**
 * What a bundle holds, read from its content (index.json and the manifests), not only from
 * airgap.json: a bundle written by another tool inspects the same way.
 */
export async function inspectBundle(path: string): Promise<InspectResult> {
  const reader = await BundleReader.open(path);
  try {
    const meta = reader.metadata();
    const images = [];
    for (const { ref, descriptor } of reader.images()) {
      const root = await reader.resolve(ref);
      const graph = await loadGraph(reader, root, ref);
      const size = flatten([graph]).reduce((n, x) => n + x.descriptor.size, 0);
      const recorded = meta?.images.find((i) => i.ref === ref);
      images.push({
        ref,
        digest: descriptor.digest,
        mediaType: descriptor.mediaType,
        platforms: await platformsOf(reader, graph),
        size,
        ...(recorded?.source ? { source: recorded.source } : {}),
      });
    }
    return {
      path,
      fileSize: (await stat(path)).size,
      ...(meta?.appSlug ? { appSlug: meta.appSlug } : {}),
      ...(meta?.release ? { release: meta.release } : {}),
      ...(meta ? { created: meta.created, tool: `${meta.tool.name} ${meta.tool.version}` } : {}),
      images,
      appFiles: reader.appFiles(),
    };
  } finally {
    await reader.close();
  }
}

async function platformsOf(reader: BundleReader, graph: GraphNode): Promise<string[]> {
  if (graph.manifest?.kind === 'index') return graph.manifest.manifests.map((d) => platformString(d.platform));
  if (graph.manifest?.kind !== 'manifest' || graph.manifest.config.size > 1024 * 1024) return [];
  // A single manifest: the platform is in its config.
  const chunks: Buffer[] = [];
  for await (const c of await reader.fetch(graph.manifest.config)) chunks.push(c as Buffer);
  try {
    const cfg = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { os?: string; architecture?: string; variant?: string };
    return cfg.os && cfg.architecture ? [platformString({ os: cfg.os, architecture: cfg.architecture, ...(cfg.variant ? { variant: cfg.variant } : {}) })] : [];
  } catch {
    return [];
  }
}
