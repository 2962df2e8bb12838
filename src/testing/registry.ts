import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

/**
 * Test helper: a real Debian `docker-registry` (distribution 2.8) on 127.0.0.1, with filesystem
 * storage in a temp dir, deletes enabled, optional htpasswd (bcrypt) users and optional TLS
 * signed by a throw-away CA. Tests must call stop() (t.teardown / test.after.always).
 */
export interface TestRegistry {
  /** "127.0.0.1:PORT" */
  host: string;
  dir: string;
  users: { username: string; password: string }[];
  /** The CA that signed the server certificate (tls only). */
  caFile?: string;
  /** With `accessLog`: the file the registry writes one line per request to (Apache combined format). */
  accessLog?: string;
  /** A client certificate the registry accepts (mutualTls only). */
  client?: { certFile: string; keyFile: string };
  /** CPU time (user + system, seconds) the registry process has used so far, from /proc (Linux). */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  users?: { username: string; password: string }[];
  tls?: boolean;
  /** Log every request (benchmarks count them, src/testing/requests.ts); off by default. */
  accessLog?: boolean;
  /** TLS that requires a client certificate signed by the same CA (distribution's http.tls.clientcas). */
  mutualTls?: boolean;
  /** Accept manifests whose foreign layers name http(s) URLs, as Docker Hub does (distribution refuses them by default). */
  foreignUrls?: boolean;
}

const run = promisify(execFile);
const REGISTRY_BIN = '/usr/bin/docker-registry';

/** A TCP port that was free a moment ago (the caller retries if someone else grabs it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  const users = opts.users ?? [];
  const dir = await mkdtemp(join(tmpdir(), 'airgap-registry-'));
  try {
    const auth = users.length > 0 ? await writeHtpasswd(dir, users) : undefined;
    const tls = opts.tls || opts.mutualTls ? await writeCertificates(dir, opts.mutualTls === true) : undefined;
    // A port may be taken between freePort() and the bind: try a few.
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort();
      const configPath = join(dir, 'config.yml');
      await writeFile(configPath, JSON.stringify({
        ...registryConfig(dir, port, auth, tls, opts.accessLog === true),
        ...(opts.foreignUrls ? { validation: { manifests: { urls: { allow: ['^https?://'] } } } } : {}),
      }, null, 2));
      try {
        const accessLog = opts.accessLog ? join(dir, `access-${port}.log`) : undefined;
        const child = await launch(configPath, port, tls, accessLog);
        let stopped = false;
        return {
          host: `127.0.0.1:${port}`,
          dir,
          users,
          ...(tls ? { caFile: tls.caFile } : {}),
          ...(accessLog ? { accessLog } : {}),
          ...(tls?.client ? { client: tls.client } : {}),
          cpuSeconds: () => processCpuSeconds(child.pid),
          async stop() {
            if (stopped) return;
            stopped = true;
            await kill(child);
            await rm(dir, { recursive: true, force: true });
          },
        };
      } catch (e) {
        lastError = e;
      }
    }
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** utime + stime of a process from /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux). */
function processCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) throw new Error('the process has no pid');
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may hold spaces: count from after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

// The config is JSON, which is valid YAML.
function registryConfig(dir: string, port: number, htpasswdPath: string | undefined,
  tls: { certFile: string; keyFile: string; caFile: string; client?: object } | undefined, accessLog: boolean): object {
  return {
    version: 0.1,
    log: { level: 'error', accesslog: { disabled: !accessLog } },
    storage: {
      filesystem: { rootdirectory: join(dir, 'data') },
      delete: { enabled: true },
      cache: { blobdescriptor: 'inmemory' },
    },
    http: {
      addr: `127.0.0.1:${port}`,
      secret: 'airgap-test-secret',
      ...(tls ? { tls: { certificate: tls.certFile, key: tls.keyFile, ...(tls.client ? { clientcas: [tls.caFile] } : {}) } } : {}),
    },
    ...(htpasswdPath ? { auth: { htpasswd: { realm: 'airgap-test', path: htpasswdPath } } } : {}),
    health: { storagedriver: { enabled: false } },
  };
}

async function writeHtpasswd(dir: string, users: { username: string; password: string }[]): Promise<string> {
  const lines: string[] = [];
  for (const u of users) {
    const { stdout } = await run('htpasswd', ['-Bbn', u.username, u.password]);
    lines.push(stdout.trim());
  }
  const path = join(dir, 'htpasswd');
  await writeFile(path, lines.join('\n') + '\n');
  return path;
}

interface Certificates {
  caFile: string;
  certFile: string;
  keyFile: string;
  client?: { certFile: string; keyFile: string };
}

async function writeCertificates(dir: string, withClient = false): Promise<Certificates> {
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const certFile = join(dir, 'server.crt');
  const ext = join(dir, 'server.ext');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caFile,
    '-days', '2', '-subj', '/CN=airgap test CA']);
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', csr,
    '-subj', '/CN=127.0.0.1']);
  await writeFile(ext, [
    'basicConstraints=CA:FALSE',
    'keyUsage=digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ].join('\n') + '\n');
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial',
    '-out', certFile, '-days', '2', '-extfile', ext]);
  if (!withClient) return { caFile, certFile, keyFile };
  const client = { keyFile: join(dir, 'client.key'), certFile: join(dir, 'client.crt') };
  const clientExt = join(dir, 'client.ext');
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', client.keyFile, '-out', join(dir, 'client.csr'),
    '-subj', '/CN=airgap test client']);
  await writeFile(clientExt, 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');
  await run('openssl', ['x509', '-req', '-in', join(dir, 'client.csr'), '-CA', caFile, '-CAkey', caKey, '-CAcreateserial',
    '-out', client.certFile, '-days', '2', '-extfile', clientExt]);
  return { caFile, certFile, keyFile, client };
}

/**
 * The registry's log goes to a file in its directory, not to a pipe: a pipe nobody drains (a
 * caller blocked in a synchronous child process call) fills after 64 KiB of error lines (one per
 * 404) and then stalls the registry mid-request. So does its access log (written to stdout).
 */
async function launch(configPath: string, port: number, tls: Certificates | undefined, accessLog: string | undefined): Promise<ChildProcess> {
  const logPath = join(dirname(configPath), `registry-${port}.log`);
  const log = openSync(logPath, 'a');
  const access = accessLog !== undefined ? openSync(accessLog, 'a') : undefined;
  let child: ChildProcess;
  try {
    child = spawn(REGISTRY_BIN, ['serve', configPath], { stdio: ['ignore', access ?? 'ignore', log] });
  } finally {
    closeSync(log);
    if (access !== undefined) closeSync(access);
  }
  const logTail = (): string => {
    try {
      return readFileSync(logPath, 'utf8').trim().split('\n').slice(-3).join(' | ');
    } catch {
      return '';
    }
  };
  let exited = false;
  child.on('exit', () => { exited = true; });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (exited) throw new Error(`docker-registry exited on start: ${logTail()}`);
    if (await answers(port, tls)) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  await kill(child);
  throw new Error(`docker-registry did not answer /v2/ on port ${port} within 15s: ${logTail()}`);
}

/** Any HTTP answer from /v2/ (200, or 401 when auth is on) means the registry is serving. */
function answers(port: number, tls: Certificates | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const onResponse = (res: http.IncomingMessage): void => {
      res.resume();
      resolve(true);
    };
    const client = tls?.client ? { cert: readFileSync(tls.client.certFile), key: readFileSync(tls.client.keyFile) } : {};
    const req = tls
      ? https.get({ host: '127.0.0.1', port, path: '/v2/', ca: readFileSync(tls.caFile), ...client, timeout: 1000, agent: false }, onResponse)
      : http.get({ host: '127.0.0.1', port, path: '/v2/', timeout: 1000, agent: false }, onResponse);
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
