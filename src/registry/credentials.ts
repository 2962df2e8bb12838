import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { AirgapError } from '../errors.js';

/**
 * Where the credential for a registry host comes from, first match wins:
 *   1. explicit                           --username/--password, or the license for the vendor's hosts
 *   2. $REGISTRY_AUTH_FILE                 podman/skopeo/buildah `login --authfile`
 *   3. $XDG_RUNTIME_DIR/containers/auth.json   podman/skopeo `login`
 *   4. $DOCKER_CONFIG/config.json, else ~/.docker/config.json   `docker login`
 * In each file: `credHelpers[host]`, then `auths` (the most specific key: `host/ns/repo`, `host/ns`,
 * `host`), then `credsStore` (docker-credential-<name> get).
 * A credential is a user and password, or an identity token (ACR, any OAuth2 `docker login`): a
 * refresh token that only the registry's token service takes, never a Basic password.
 */

/** A user and password as given (flags, license). */
export interface Credentials {
  username: string;
  password: string;
}

/**
 * What we hold for one host. `source` says where it came from, as a phrase for messages ("the
 * identity token in /root/.docker/config.json"): never the secret itself.
 */
export type Credential =
  | { kind: 'basic'; username: string; password: string; source: string }
  | { kind: 'identity-token'; token: string; source: string };

export interface CredentialOptions {
  explicit?: Credentials;
  /** The repository the credential is for: an auth.json key may name a namespace (`quay.io/team`). */
  repository?: string;
  /** Directory holding the Docker config.json; default $DOCKER_CONFIG, then ~/.docker. */
  configDir?: string;
  env?: NodeJS.ProcessEnv;
  helperTimeoutMs?: number;
  /** Files read and helpers' answers, kept for one run (see CredentialCache). */
  cache?: CredentialCache;
}

/**
 * One run's reads of the credential sources: each file is read once and each helper asked once
 * per server, however many repositories (and so credential lookups) the run has. Without it a
 * build of 150 images read the Docker config 150 times, and ran a `credsStore` helper process as
 * often. Secrets stay in memory only, as they would for the run anyway.
 */
export class CredentialCache {
  readonly files = new Map<string, Promise<AuthFile | undefined>>();
  readonly helpers = new Map<string, Promise<Credential | undefined>>();
}

interface AuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
  identitytoken?: unknown;
}

/** The shape shared by Docker's config.json and the containers auth.json. */
interface AuthFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

const HUB_SERVER = 'https://index.docker.io/v1/';
/** The user name `docker login` stores with an identity token, and helpers answer for one. */
const TOKEN_USER = '<token>';

/**
 * Docker Hub is known under several names; config keys may be URLs or carry a path; `host:443`
 * is `host` (registries speak HTTPS: 443 is the port either name reaches).
 */
export function normaliseServer(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, '').split('/')[0]!.toLowerCase().replace(/:443$/, '');
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
}

/** The files consulted, in order, for this environment. */
export function credentialFiles(opts: Pick<CredentialOptions, 'configDir' | 'env'> = {}): string[] {
  const env = opts.env ?? process.env;
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  files.push(join(opts.configDir ?? env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json'));
  return files;
}

export async function resolveCredentials(host: string, opts: CredentialOptions = {}): Promise<Credential | undefined> {
  if (opts.explicit) return { kind: 'basic', ...opts.explicit, source: 'the given credentials' };
  const cache = opts.cache;
  for (const file of credentialFiles(opts)) {
    let read = cache?.files.get(file);
    if (!read) {
      read = readAuthFile(file);
      cache?.files.set(file, read);
    }
    const config = await read;
    const found = config && await fromFile(config, file, host, opts.repository, opts.helperTimeoutMs, cache);
    if (found) return found;
  }
  return undefined;
}

async function fromFile(config: AuthFile, file: string, host: string, repository: string | undefined,
  timeoutMs: number | undefined, cache: CredentialCache | undefined): Promise<Credential | undefined> {
  const want = normaliseServer(host);
  const serverUrl = want === 'docker.io' ? HUB_SERVER : host;
  const runHelper = (name: string, url: string, h: string, ms: number | undefined): Promise<Credential | undefined> => {
    const key = `${name}\n${url}`;
    let answer = cache?.helpers.get(key);
    if (!answer) {
      answer = askHelper(name, url, h, ms);
      cache?.helpers.set(key, answer);
    }
    return answer;
  };
  for (const [key, helper] of Object.entries(config.credHelpers ?? {})) {
    if (normaliseServer(key) === want && helper) return runHelper(helper, serverUrl, host, timeoutMs);
  }
  // The most specific key that covers the repository: `quay.io/team/app`, `quay.io/team`, `quay.io`.
  const keys = Object.keys(config.auths ?? {})
    .filter((k) => normaliseServer(k) === want && covers(keyPath(k), repository))
    .sort((a, b) => keyPath(b).length - keyPath(a).length);
  for (const key of keys) {
    const found = fromAuthEntry(config.auths![key]!, file, key);
    if (found) return found;
  }
  if (config.credsStore) return runHelper(config.credsStore, serverUrl, host, timeoutMs);
  return undefined;
}

/** The namespace a key names (`quay.io/team` → `team`); '' for a bare host (`https://index.docker.io/v1/` too). */
function keyPath(key: string): string {
  const rest = key.replace(/^[a-z]+:\/\//i, '').replace(/\/(v[12]\/?)?$/, '');
  const slash = rest.indexOf('/');
  return slash < 0 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
}

/** A bare host covers every repository; a namespace covers itself and what is below it. */
function covers(path: string, repository: string | undefined): boolean {
  if (path === '') return true;
  return repository !== undefined && (repository === path || repository.startsWith(`${path}/`));
}

async function readAuthFile(file: string): Promise<AuthFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new AirgapError('E_USAGE', `cannot read registry credentials file ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
    return parsed as AuthFile;
  } catch (e) {
    throw new AirgapError('E_USAGE', `registry credentials file ${file} is not valid JSON: ${(e as Error).message}`,
      { hint: 'fix or remove the file, or pass --username/--password', cause: e });
  }
}

function fromAuthEntry(entry: AuthEntry, file: string, key: string): Credential | undefined {
  // `docker login` to an OAuth2 registry stores the refresh token beside an `auth` of "<uuid>:".
  if (typeof entry.identitytoken === 'string' && entry.identitytoken) {
    return { kind: 'identity-token', token: entry.identitytoken, source: `the identity token in ${file}` };
  }
  if (typeof entry.auth === 'string' && entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) {
      throw new AirgapError('E_USAGE', `${file}: the "auth" entry for ${key} is not base64 of user:password`,
        { hint: 'log in to the registry again, or pass --username/--password' });
    }
    return { kind: 'basic', username: decoded.slice(0, colon), password: decoded.slice(colon + 1), source: `the credentials in ${file}` };
  }
  if (typeof entry.username === 'string' && typeof entry.password === 'string') {
    return { kind: 'basic', username: entry.username, password: entry.password, source: `the credentials in ${file}` };
  }
  return undefined;
}

/**
 * `docker-credential-<name> get`, server URL on stdin, JSON {Username, Secret} on stdout. A
 * Username of `<token>` means the Secret is an identity token.
 */
function askHelper(name: string, serverUrl: string, host: string, timeoutMs = 30_000): Promise<Credential | undefined> {
  const bin = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['get'], { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
    child.on('error', (e) => {
      reject(new AirgapError('E_AUTH', `cannot run credential helper ${bin} for registry ${host}: ${(e as Error).message}`,
        { hint: `install ${bin}, or remove it from your registry credentials file, or pass --username/--password`, cause: e }));
    });
    child.on('close', (code) => {
      const said = (out + err).trim();
      if (code !== 0) {
        // The helpers' own wording for "no entry": not an error, just no credentials.
        if (/credentials not found|not found in native keychain|no credentials/i.test(said)) {
          resolve(undefined);
          return;
        }
        reject(new AirgapError('E_AUTH', `credential helper ${bin} failed for registry ${host} (exit ${code ?? 'signal'})`,
          { hint: `check that ${bin} works (${bin} list), or pass --username/--password` }));
        return;
      }
      try {
        const parsed = JSON.parse(out) as { Username?: unknown; Secret?: unknown };
        if (typeof parsed.Username === 'string' && typeof parsed.Secret === 'string' && parsed.Secret) {
          resolve(parsed.Username === TOKEN_USER
            ? { kind: 'identity-token', token: parsed.Secret, source: `the identity token from ${bin}` }
            : { kind: 'basic', username: parsed.Username, password: parsed.Secret, source: `the credentials from ${bin}` });
        } else {
          resolve(undefined);
        }
      } catch {
        reject(new AirgapError('E_AUTH', `credential helper ${bin} answered something that is not JSON for registry ${host}`,
          { hint: `check that ${bin} works, or pass --username/--password` }));
      }
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(serverUrl);
  });
}
