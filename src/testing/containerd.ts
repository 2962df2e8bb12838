import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CONTAINERD = '/usr/bin/containerd';

/** containerd needs root; where it cannot run, the checks that use it are skipped, never faked. */
export function canRunContainerd(): boolean {
  return existsSync(CONTAINERD) && process.getuid?.() === 0;
}

export interface TestContainerd {
  dir: string;
  /** `ctr --address <this daemon's socket> ARGS…` */
  ctr(...args: string[]): Promise<{ stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

/** A throw-away containerd (Debian's) with its own root, state and socket under a temp dir. */
export async function startContainerd(): Promise<TestContainerd> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-containerd-'));
  const sock = join(dir, 'containerd.sock');
  await writeFile(join(dir, 'config.toml'), [
    'version = 2', `root = "${dir}/root"`, `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]', `  address = "${sock}"`, '[ttrpc]', `  address = "${sock}.ttrpc"`,
  ].join('\n'));
  const daemon = spawn(CONTAINERD, ['--config', join(dir, 'config.toml')], { stdio: 'ignore' });
  const stop = async () => {
    daemon.kill('SIGTERM');
    // A daemon that already died (of a signal: exitCode null, signalCode set) has fired 'exit'.
    if (daemon.exitCode === null && daemon.signalCode === null) await new Promise((resolve) => daemon.once('exit', resolve));
    await rm(dir, { recursive: true, force: true });
  };
  const ctr = (...args: string[]) => run('ctr', ['--address', sock, ...args], { maxBuffer: 1 << 24 });
  for (let i = 0; ; i++) {
    try {
      await ctr('version');
      break;
    } catch (e) {
      if (i > 100) {
        await stop();
        throw e;
      }
      await sleep(100);
    }
  }
  return { dir, ctr, stop };
}
