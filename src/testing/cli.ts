import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import type { World } from './world.js';

/** Drives the BUILT CLI (dist/cmd/airgap.js) as a user would: `npm test` builds it first. */
export const CLI = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const p = join(dir, 'dist', 'cmd', 'airgap.js');
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  throw new Error('dist/cmd/airgap.js not found: run `npm run build` first');
})();

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  input?: string;
  env?: Record<string, string>;
  cwd?: string;
  /** Called with the child as soon as it starts (to signal it mid-run). */
  onSpawn?: (child: ChildProcess) => void;
}

export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, CI: '1', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
    opts.onSpawn?.(child);
  });
}

/** Parses a --json stdout, failing with the whole output when it is not JSON. */
export function json<T = Record<string, unknown>>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.code}):\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
}

/** The flags that let the CLI resolve a world's private (through the proxy) and vendor images. */
export function resolveFlags(w: Pick<World, 'proxy' | 'vendor'>): string[] {
  return ['--proxy-host', w.proxy, '--replicated-registry', w.vendor];
}

/** `airgap build` of the world's app into `out`; throws with the CLI's stderr when it fails. */
export async function buildBundle(w: World, out: string, extra: string[] = []): Promise<CliResult> {
  const r = await runCli(['build', '--manifests', w.appDir, '--license', w.licensePath, '--out', out, ...resolveFlags(w), ...extra]);
  if (r.code !== 0) throw new Error(`build --out ${out} failed (exit ${r.code ?? r.signal}): ${r.stderr}`);
  return r;
}
