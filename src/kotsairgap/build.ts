import { rm, stat } from 'node:fs/promises';
import { AirgapError } from '../errors.js';
import { build, type BuildOptions, type BuildSummary } from '../build.js';
import { openBundle } from '../bundle/source.js';
import { writeKotsAirgap } from './writer.js';

export interface KotsBuildSummary extends BuildSummary {
  format: 'kots';
  /** What airgap.yaml lists (spec.savedImages). */
  savedImages: string[];
  /** A delta (--since): images the base already carried with the same digest, left out. */
  leftOut: string[];
}

/**
 * `build --format kots`: the bundle is built as always (every platform unless --platform says
 * otherwise: KOTS pushes with --all), then written as a KOTS .airgap and the bundle removed.
 * `--since` leaves out every image its base (a bundle or a .airgap) carried with the same digest,
 * as KOTS's diff bundles do; an image that changed is carried whole, since KOTS's temporary
 * registry must serve it on its own.
 */
export async function buildKotsAirgap(opts: BuildOptions): Promise<KotsBuildSummary> {
  if (opts.splitSize !== undefined) throw new AirgapError('E_USAGE', '--split-size writes our own bundle format, not a KOTS .airgap', { hint: 'drop --split-size or --format kots' });
  if (opts.signKey !== undefined) throw new AirgapError('E_USAGE', '--sign-key signs our own bundle format; a KOTS .airgap carries no airgap signature', { hint: 'drop --sign-key or --format kots' });
  if (await stat(opts.out).then(() => true, () => false)) {
    throw new AirgapError('E_OUTPUT', `${opts.out} already exists`, { hint: 'give a new path to --out, or remove the old file' });
  }
  let leaveOut: Map<string, string> | undefined;
  if (opts.since !== undefined) {
    const base = await openBundle(opts.since);
    try {
      leaveOut = new Map(base.images().filter((i) => base.hasBlob(i.descriptor.digest)).map((i) => [i.ref, i.descriptor.digest]));
    } finally {
      await base.close();
    }
  }
  const staged = `${opts.out}.bundle.partial`;
  const { since: _since, ...rest } = opts;
  void _since;
  try {
    const s = await build({ ...rest, out: staged, platforms: opts.platforms ?? ['all'], signatures: false });
    const reader = await openBundle(staged);
    try {
      const w = await writeKotsAirgap(reader, opts.out, { appSlug: s.appSlug, ...(opts.release ? { versionLabel: opts.release } : {}), ...(leaveOut ? { leaveOut } : {}) });
      return { ...s, out: opts.out, format: 'kots', savedImages: w.savedImages, leftOut: w.leftOut, blobs: w.blobs, bytes: w.bytes };
    } finally {
      await reader.close();
    }
  } finally {
    await rm(staged, { force: true });
  }
}
