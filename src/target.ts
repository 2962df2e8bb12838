import { AirgapError } from './errors.js';
import { parseReference, lastComponent, taggedName, type Reference } from './reference.js';

/**
 * The customer registry: `--registry HOST[:PORT]/NAMESPACE`, and the familiar naming convention
 * `<HOST>/<NAMESPACE>/<last path component of the source repo>:<tag>` (DESIGN.md).
 */
export interface TargetRegistry {
  host: string;
  namespace: string;
}

export function parseTargetRegistry(value: string): TargetRegistry {
  const v = value.replace(/^(https?:\/\/)/, '').replace(/\/+$/, '');
  const slash = v.indexOf('/');
  const bad = () => new AirgapError('E_USAGE', `--registry "${value}" is not HOST[:PORT]/NAMESPACE`,
    { hint: 'give the customer registry and a namespace (project) to push into, e.g. registry.corp.example:5000/my-app' });
  if (slash <= 0 || slash === v.length - 1) throw bad();
  const host = v.slice(0, slash);
  const namespace = v.slice(slash + 1);
  // Validate both with the reference grammar: a probe image name under the namespace must parse.
  let probe: Reference;
  try {
    probe = parseReference(`${host}/${namespace}/x:latest`);
  } catch {
    throw bad();
  }
  if (probe.registry !== host) throw bad();
  return { host, namespace };
}

export interface TargetName {
  source: string;
  repository: string;
  tag: string;
  /** host/namespace/name:tag */
  full: string;
}

/**
 * Where a source image lands. The default keeps the last path component of the source repository
 * (`quay.io/acme/api:1` → `<ns>/api:1`); `keepPath` keeps the whole repository path
 * (`<ns>/acme/api:1`, Hauler's convention), so only one path on two source registries can collide.
 */
export function targetName(t: TargetRegistry, ref: Reference, keepPath = false): TargetName {
  if (ref.tag === undefined) {
    throw new AirgapError('E_DIGEST_ONLY', `${taggedName(ref)} has no tag; an airgap install pushes by tag`,
      { hint: 'add a tag to the reference (repo:tag@sha256:…)' });
  }
  const repository = `${t.namespace}/${keepPath ? ref.repository : lastComponent(ref.repository)}`;
  return { source: taggedName(ref), repository, tag: ref.tag, full: `${t.host}/${repository}:${ref.tag}` };
}

/** Two different sources landing on one pushed name is refused before anything is pushed. */
export function checkCollisions(names: TargetName[]): void {
  const byTarget = new Map<string, Set<string>>();
  for (const n of names) {
    const s = byTarget.get(n.full) ?? new Set<string>();
    s.add(n.source);
    byTarget.set(n.full, s);
  }
  const clashes = [...byTarget].filter(([, s]) => s.size > 1);
  if (clashes.length > 0) {
    throw new AirgapError('E_COLLISION',
      `images would overwrite each other in the target registry: ${clashes.map(([t, s]) => `${[...s].join(' and ')} → ${t}`).join('; ')}`,
      { hint: 'give push and rewrite (or install) --keep-path to keep each source repository path, or rename one of the images in the application' });
  }
}
