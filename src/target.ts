import { AirgapError } from './errors.js';
import { parseReference, lastComponent, taggedName, type Reference } from './reference.js';

/**
 * The customer registry: `--registry [SCHEME://]HOST[:PORT]/PATH`, and the familiar naming convention
 * `<HOST>/<PATH>/<last path component of the source repo>:<tag>` (DESIGN.md). PATH is the registry
 * namespace (a project, an organisation), never the Kubernetes namespace (`--namespace`).
 */
export interface TargetRegistry {
  host: string;
  /** The registry namespace (path) images are pushed under. */
  namespace: string;
  /** As written before the host: the user's choice of TLS (`https`) or plain HTTP (`http`). */
  scheme?: 'http' | 'https';
}

export function parseTargetRegistry(value: string): TargetRegistry {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(value)?.[1];
  if (scheme !== undefined && !/^https?$/i.test(scheme)) {
    throw new AirgapError('E_USAGE', `--registry "${value}": ${scheme}:// is not a registry scheme`,
      { hint: 'give HOST[:PORT]/PATH, optionally after https:// (TLS) or http:// (plain HTTP)' });
  }
  const v = value.slice(scheme !== undefined ? scheme.length + 3 : 0).replace(/\/+$/, '');
  const slash = v.indexOf('/');
  const bad = () => new AirgapError('E_USAGE', `--registry "${value}" is not HOST[:PORT]/PATH`,
    { hint: 'give the customer registry and the registry namespace (path) to push into, e.g. registry.corp.example:5000/my-app' });
  if (slash <= 0 || slash === v.length - 1) throw bad();
  const host = v.slice(0, slash);
  const namespace = v.slice(slash + 1);
  // Named apart from the grammar's other refusals: the one a user is likeliest to meet.
  if (/[A-Z]/.test(namespace)) {
    throw new AirgapError('E_USAGE', `--registry "${value}": the registry namespace (path) "${namespace}" has upper-case letters; repository names must be lower case`,
      { hint: `write it in lower case, e.g. ${host}/${namespace.toLowerCase()}` });
  }
  // Validate both with the reference grammar: a probe image name under the namespace must parse.
  let probe: Reference;
  try {
    probe = parseReference(`${host}/${namespace}/x:latest`);
  } catch {
    throw bad();
  }
  if (probe.registry !== host) throw bad();
  return { host, namespace, ...(scheme !== undefined ? { scheme: scheme.toLowerCase() as 'http' | 'https' } : {}) };
}

/** localhost, 127.0.0.0/8 or ::1 (with or without a port): reached as DESIGN.md's loopback rule says. */
export function isLoopbackHost(host: string): boolean {
  let hostname: string;
  try {
    hostname = new URL(`http://${host}`).hostname;
  } catch {
    return false;
  }
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
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
