import { AirgapError } from './errors.js';
import { isSha256Digest } from './oci/descriptor.js';

/**
 * Image references, following the distribution reference grammar. Parsing does no I/O.
 * A parsed reference is always fully qualified: `redis` → docker.io/library/redis:latest.
 */
export interface Reference {
  /** Registry host as written, with port if any; Docker Hub is `docker.io`. */
  registry: string;
  /** Repository path, `library/` added for official Docker Hub images. */
  repository: string;
  tag?: string;
  digest?: string;
}

export const DOCKER_HUB = 'docker.io';
const NAME_MAX = 255;

const alnum = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alnum}(?:${separator}${alnum})*`;
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const domainName = `${domainComponent}(?:\\.${domainComponent})*`;
const ipv6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const host = `(?:${domainName}|${ipv6})`;
const domain = `${host}(?::[0-9]+)?`;

const DOMAIN_RE = new RegExp(`^${domain}$`);
const PATH_COMPONENT_RE = new RegExp(`^${pathComponent}$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

function invalid(input: string, why: string, where?: string): AirgapError {
  return new AirgapError('E_REFERENCE', `${where ? where + ': ' : ''}invalid image reference "${input}": ${why}`,
    { hint: 'write it as [HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST], e.g. quay.io/org/app:1.0' });
}

/** Parses a reference. `where` (file:line) is put in front of error messages. */
export function parseReference(input: string, where?: string): Reference {
  const s = input.trim();
  if (s === '') throw invalid(input, 'it is empty', where);
  if (s !== input) throw invalid(input, 'it has leading or trailing spaces', where);

  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw invalid(input, `"${digest}" is not a digest (algorithm:hex)`, where);
    if (digest.startsWith('sha256:') && !isSha256Digest(digest)) {
      throw invalid(input, 'a sha256 digest is 64 lower-case hex characters', where);
    }
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > lastSlash) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG_RE.test(tag)) throw invalid(input, `"${tag}" is not a valid tag`, where);
  }
  if (rest === '') throw invalid(input, 'it has no repository name', where);

  let registry = DOCKER_HUB;
  let path = rest;
  const firstSlash = rest.indexOf('/');
  if (firstSlash >= 0) {
    const first = rest.slice(0, firstSlash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase() || first.startsWith('[')) {
      if (!DOMAIN_RE.test(first)) throw invalid(input, `"${first}" is not a valid registry host`, where);
      registry = first;
      path = rest.slice(firstSlash + 1);
    }
  }
  if (path === '') throw invalid(input, 'it has no repository name', where);
  for (const c of path.split('/')) {
    if (!PATH_COMPONENT_RE.test(c)) {
      const why = c !== c.toLowerCase() ? `repository "${path}" must be lower-case` : `"${c}" is not a valid path component`;
      throw invalid(input, why, where);
    }
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !path.includes('/')) path = `library/${path}`;
  if (registry.length + 1 + path.length > NAME_MAX) throw invalid(input, `the name is longer than ${NAME_MAX} characters`, where);

  if (tag === undefined && digest === undefined) tag = 'latest';
  const ref: Reference = { registry, repository: path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** True when the reference as written had a digest and no tag (the limited-digest rule). */
export function isDigestOnly(ref: Reference): boolean {
  return ref.digest !== undefined && ref.tag === undefined;
}

/** `docker.io/library/redis` */
export function nameOf(ref: Pick<Reference, 'registry' | 'repository'>): string {
  return `${ref.registry}/${ref.repository}`;
}

/** Fully qualified: `docker.io/library/redis:7@sha256:…` */
export function formatReference(ref: Reference): string {
  return nameOf(ref) + (ref.tag !== undefined ? `:${ref.tag}` : '') + (ref.digest !== undefined ? `@${ref.digest}` : '');
}

/** Fully qualified without digest (the bundle's ref.name): `docker.io/library/redis:7`. */
export function taggedName(ref: Reference): string {
  return nameOf(ref) + (ref.tag !== undefined ? `:${ref.tag}` : '');
}

/** The shortest form Docker would print: `redis:7`, `org/app:1`, `quay.io/org/app:1`. */
export function familiarName(ref: Pick<Reference, 'registry' | 'repository'>): string {
  if (ref.registry !== DOCKER_HUB) return nameOf(ref);
  return ref.repository.startsWith('library/') && ref.repository.split('/').length === 2
    ? ref.repository.slice('library/'.length)
    : ref.repository;
}

/** Last path component: the name an image gets in the customer registry. */
export function lastComponent(repository: string): string {
  return repository.slice(repository.lastIndexOf('/') + 1);
}
