import { isSha256Hex } from '../oci/descriptor.js';
import { badAirgap, printable } from './tar.js';
import type { ScannedBlob } from './scan.js';

/**
 * A distribution registry's filesystem storage (docker/distribution registry/storage/paths.go),
 * read from the paths and link files a .airgap carries under images/docker/registry/v2:
 *
 *   blobs/sha256/<first two hex>/<hex>/data                           every blob, once
 *   repositories/<name>/_manifests/tags/<tag>/current/link          tag → manifest digest
 *   repositories/<name>/_manifests/revisions/sha256/<hex>/link      manifests of the repository
 *   repositories/<name>/_layers/sha256/<hex>/link                   blobs of the repository
 *
 * A link file holds "sha256:<hex>". Only what the paths say is believed: a link naming a blob
 * that is not there, or a blob stored under a name its content does not hash to, is refused.
 */

export interface StoredRepository {
  tags: Map<string, string>;
  revisions: Set<string>;
  layers: Set<string>;
}

export interface StorageTree {
  blobs: Map<string, ScannedBlob>;
  repositories: Map<string, StoredRepository>;
}

export function readStorageTree(blobFiles: Map<string, ScannedBlob>, links: Map<string, string>, label: string): StorageTree {
  const blobs = new Map<string, ScannedBlob>();
  for (const [rel, blob] of blobFiles) {
    const [, , prefix, hex] = rel.split('/');
    if (!isSha256Hex(hex ?? '') || prefix !== hex!.slice(0, 2)) {
      throw badAirgap(label, `images/docker/registry/v2/${printable(rel)} is not a blob path (blobs/sha256/<2 hex>/<64 hex>/data)`);
    }
    const digest = `sha256:${hex}`;
    if (blob.digest !== undefined && blob.digest !== digest) {
      throw badAirgap(label, `blob ${digest} in the registry storage is damaged: its content hashes to ${blob.digest}`);
    }
    blobs.set(digest, blob);
  }
  const repositories = new Map<string, StoredRepository>();
  const repo = (name: string): StoredRepository => {
    let r = repositories.get(name);
    if (!r) repositories.set(name, r = { tags: new Map(), revisions: new Set(), layers: new Set() });
    return r;
  };
  for (const [rel, text] of links) {
    const path = rel.slice('repositories/'.length);
    const digest = linkTarget(text, rel, label);
    let m: RegExpMatchArray | null;
    if ((m = path.match(/^(.+)\/_manifests\/tags\/([^/]+)\/current\/link$/))) repo(m[1]!).tags.set(m[2]!, digest);
    else if ((m = path.match(/^(.+)\/_manifests\/revisions\/sha256\/([^/]+)\/link$/))) repo(m[1]!).revisions.add(named(digest, m[2]!, rel, label));
    else if ((m = path.match(/^(.+)\/_layers\/sha256\/([^/]+)\/link$/))) repo(m[1]!).layers.add(named(digest, m[2]!, rel, label));
    else continue; // tag index history, uploads: nothing a reader needs
    if (!blobs.has(digest)) throw badAirgap(label, `images/docker/registry/v2/${printable(rel)} points at ${digest}, which the registry storage does not hold`);
  }
  return { blobs, repositories };
}

function linkTarget(text: string, rel: string, label: string): string {
  const t = text.trim();
  if (!t.startsWith('sha256:') || !isSha256Hex(t.slice(7))) {
    throw badAirgap(label, `images/docker/registry/v2/${printable(rel)} is not a link to a sha256 digest ("${printable(t.slice(0, 80))}")`);
  }
  return t;
}

/** A revision or layer link lives under its own digest: one naming another is a forgery. */
function named(digest: string, hex: string, rel: string, label: string): string {
  if (digest !== `sha256:${hex}`) throw badAirgap(label, `images/docker/registry/v2/${printable(rel)} names ${digest}, not the digest of its own path`);
  return digest;
}
