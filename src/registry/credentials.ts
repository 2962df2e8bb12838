import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { AirgapError } from '../errors.js';

/**
 * Where credentials for a registry host come from: explicit flags first, then the Docker client
 * configuration (`credHelpers`, `auths`, `credsStore`), the same places `docker login` writes.
 */

export interface Credentials {
  username: string;
  password: string;
}

export interface CredentialOptions {
  explicit?: Credentials;
  /** Directory holding config.json; default $DOCKER_CONFIG, then ~/.docker. */
  configDir?: string;
  env?: NodeJS.ProcessEnv;
  helperTimeoutMs?: number;
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

const HUB_SERVER = 'https://index.docker.io/v1/';

/** Docker Hub is known under several names; config keys may be URLs. */
export function normaliseServer(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, '').split('/')[0]!.toLowerCase();
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
}

export async function resolveCredentials(host: string, opts: CredentialOptions = {}): Promise<Credentials | undefined> {
  if (opts.explicit) return opts.explicit;
  const env = opts.env ?? process.env;
  const dir = opts.configDir ?? env.DOCKER_CONFIG ?? join(homedir(), '.docker');
  const file = join(dir, 'config.json');
  const config = await readConfig(file);
  if (!config) return undefined;
  const want = normaliseServer(host);
  const serverUrl = want === 'docker.io' ? HUB_SERVER : host;

  for (const [key, helper] of Object.entries(config.credHelpers ?? {})) {
    if (normaliseServer(key) === want && helper) return runHelper(helper, serverUrl, host, opts.helperTimeoutMs);
  }
  for (const [key, entry] of Object.entries(config.auths ?? {})) {
    if (normaliseServer(key) !== want) continue;
    const creds = fromAuthEntry(entry, file, key);
    if (creds) return creds;
  }
  if (config.credsStore) return runHelper(config.credsStore, serverUrl, host, opts.helperTimeoutMs);
  return undefined;
}

async function readConfig(file: string): Promise<DockerConfig | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new AirgapError('E_USAGE', `cannot read Docker config ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null) throw new Error('not a JSON object');
    return parsed as DockerConfig;
  } catch (e) {
    throw new AirgapError('E_USAGE', `Docker config ${file} is not valid JSON: ${(e as Error).message}`,
      { hint: 'fix or remove the file, or pass --username/--password', cause: e });
  }
}

function fromAuthEntry(entry: { auth?: string; username?: string; password?: string }, file: string, key: string): Credentials | undefined {
  if (typeof entry.auth === 'string' && entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) {
      throw new AirgapError('E_USAGE', `Docker config ${file}: the "auth" entry for ${key} is not base64 of user:password`,
        { hint: 'run docker login again, or pass --username/--password' });
    }
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof entry.username === 'string' && typeof entry.password === 'string') {
    return { username: entry.username, password: entry.password };
  }
  return undefined;
}

/** `docker-credential-<name> get`, server URL on stdin, JSON {Username, Secret} on stdout. */
function runHelper(name: string, serverUrl: string, host: string, timeoutMs = 30_000): Promise<Credentials | undefined> {
  const bin = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['get'], { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
    child.on('error', (e) => {
      reject(new AirgapError('E_AUTH', `cannot run credential helper ${bin} for registry ${host}: ${(e as Error).message}`,
        { hint: `install ${bin}, or remove it from your Docker config, or pass --username/--password`, cause: e }));
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
          resolve({ username: parsed.Username, password: parsed.Secret });
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
