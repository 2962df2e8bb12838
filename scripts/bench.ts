/**
 * The benchmark (scripts/bench.sh runs it): airgap side by side with the pipeline a user would
 * script with skopeo, in one run, on the same loopback registries.
 *
 *   build  over an emulated long fat link (src/testing/link.ts: +40 ms per request, 16 MB/s per
 *          connection): `airgap build` vs `skopeo copy docker://… oci:DIR:REF` per image + `tar`
 *   push   cold, on loopback into an empty registry: `airgap push` vs untar + `skopeo copy oci:… docker://…`
 *   re-push of the same bundle: no blob bytes may move
 *   memory peak RSS of build and push (GNU time), with the 400 MB layer and again with a 2 GB layer
 *
 * and a second set, many small images over shared bases (issue 13), where the cost is requests and
 * round trips rather than bytes: BENCH_MANY_IMAGES images (150) of three layers, a base shared by
 * BENCH_MANY_BASE_SHARE (30) images, a middle layer shared by BENCH_MANY_MID_SHARE (10), one of
 * its own (BENCH_MANY_BASE_KB / _MID_KB / _OWN_KB: 1000 / 300 / 100 KB), behind the same link:
 *   plan   `airgap plan` vs `skopeo inspect --raw` per image
 *   build  as above;  push  cold, as above;  re-push
 *   memory peak RSS of build at BENCH_MANY_IMAGES and at BENCH_MANY_RSS_IMAGES (600) images, and
 *          the same two builds again in a memory cgroup of BENCH_LIMITED_MEMORY_MIB (1024) when one
 *          can be made (root): V8 sizes its heap from the memory the process may use
 *   requests of each kind per image (HEAD blob 404, POST mount 201, …), counted from the
 *          registries' access logs, for both tools (src/testing/requests.ts)
 * and a third, a KOTS release of Helm charts (issue 23), where the cost is helm's own runs:
 *   plan   `airgap plan --offline` of BENCH_CHARTS (20) small charts, each with its HelmChart, vs
 *          the same charts' `helm template` runs alone, one after another (target: ≤ 2×)
 *   runs   how many times plan ran helm (a counting wrapper on PATH): one per chart
 * and a fourth, KOTS's .airgap as the bundle (issue 26), only when BENCH_SETS names "kots":
 *   push   the same BENCH_KOTS_IMAGES (4) images, BENCH_KOTS_MB (200) MB of layers, into an empty
 *          registry from our bundle, from a `build --format kots` .airgap (one gzip member per
 *          entry) and from a vendor-portal-style one (a registry's storage root, `tar -czf`: one
 *          gzip stream); median of BENCH_KOTS_RUNS (3), each run into a fresh registry, and the
 *          .airgap ratios against our bundle (target ≤ 1.2×)
 * BENCH_SETS (default "big,many,charts"; "kots" too on request) picks the sets. The seeding is not timed.
 *
 * Prints the tables and exits 1 when a target is missed. Sizes come from BENCH_* variables (MB = 10^6 bytes).
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, rmdir, stat, writeFile, copyFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pLimit from 'p-limit';
import { FixtureLayout, pushImage, type LayerSpec } from '../src/testing/fixtures.js';
import { startRegistry } from '../src/testing/registry.js';
import { AccessLog, type RequestCounts, totalRequests } from '../src/testing/requests.js';
import { seedLayout } from '../src/testing/seed.js';
import { CLI } from '../src/testing/cli.js';
import { vendorPortalAirgap } from '../src/testing/kotsairgap.js';
import { deploymentTemplate, helmChartV1beta2, packageChart, testHelm, writeChart, writeHelmChart } from '../src/testing/charts.js';

const num = (name: string, def: number): number => {
  const v = Number(process.env[name] ?? def);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name}=${process.env[name]} is not a non-negative number`);
  return v;
};
const MB = 1e6;
const cfg = {
  images: num('BENCH_IMAGES', 10),
  base: [num('BENCH_BASE1_MB', 40), num('BENCH_BASE2_MB', 25)],
  appMin: num('BENCH_APP_MIN_MB', 35),
  appMax: num('BENCH_APP_MAX_MB', 80),
  big: num('BENCH_BIG_MB', 400),
  huge: num('BENCH_HUGE_MB', 2000),
  delayMs: num('BENCH_DELAY_MS', 40),
  rate: num('BENCH_RATE_MB', 16),
  // Passed as --concurrency only when set: otherwise each tool runs with its own default (8 for airgap).
  concurrency: num('BENCH_CONCURRENCY', 8),
  concurrencyFlag: process.env.BENCH_CONCURRENCY !== undefined ? ['--concurrency', String(num('BENCH_CONCURRENCY', 8))] : [],
  rssLimit: num('BENCH_RSS_LIMIT_MB', 256),
  // The memory of the smaller machine the many-image builds are measured on again (a cgroup).
  limitedMemory: num('BENCH_LIMITED_MEMORY_MIB', 1024) * 2 ** 20,
  settleSeconds: num('BENCH_SETTLE_S', 5),
  repushRuns: Math.max(1, Math.round(num('BENCH_REPUSH_RUNS', 5))),
  sets: new Set((process.env.BENCH_SETS ?? 'big,many,charts').split(',').map((x) => x.trim()).filter((x) => x !== '')),
  many: {
    images: Math.round(num('BENCH_MANY_IMAGES', 150)),
    rssImages: Math.round(num('BENCH_MANY_RSS_IMAGES', 600)),
    baseKb: num('BENCH_MANY_BASE_KB', 1000),
    midKb: num('BENCH_MANY_MID_KB', 300),
    ownKb: num('BENCH_MANY_OWN_KB', 100),
    baseShare: Math.max(1, Math.round(num('BENCH_MANY_BASE_SHARE', 30))),
    midShare: Math.max(1, Math.round(num('BENCH_MANY_MID_SHARE', 10))),
  },
  charts: Math.max(1, Math.round(num('BENCH_CHARTS', 20))),
  kots: {
    images: Math.max(1, Math.round(num('BENCH_KOTS_IMAGES', 4))),
    mb: num('BENCH_KOTS_MB', 200),
    runs: Math.max(1, Math.round(num('BENCH_KOTS_RUNS', 3))),
  },
};
for (const set of cfg.sets) if (!['big', 'many', 'charts', 'kots'].includes(set)) throw new Error(`BENCH_SETS: unknown set "${set}" (big, many, charts, kots)`);

const root = join(fileURLToPath(import.meta.url), '..', '..');
const log = (s: string): void => { process.stderr.write(`[bench] ${s}\n`); };

interface Measured {
  seconds: number;
  rssMb: number;
  cpuSeconds: number;
  stdout: string;
}

/**
 * Both sides run with the same minimal environment: PATH, HOME and TMPDIR, nothing else. What
 * the caller's shell exports is not either tool's work and must not be timed as such: a
 * NODE_EXTRA_CA_CERTS (this machine sets one for every tool, with a bundle of ~140 CAs) makes
 * every Node process parse that file and its own root store before running any code, ~0.04 s
 * of each start, while skopeo reads CA files only for TLS, and every registry here is plain
 * HTTP on loopback. The table also shows the re-push in the caller's own environment.
 */
const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(
  (['PATH', 'HOME', 'TMPDIR'] as const).flatMap((k) => (process.env[k] !== undefined ? [[k, process.env[k]]] : [])));

/** Runs `fn` and returns its result with the CPU seconds the registry process spent meanwhile. */
async function withCpuOf<T>(registry: { cpuSeconds(): number }, fn: () => Promise<T>): Promise<[T, number]> {
  const before = registry.cpuSeconds();
  const result = await fn();
  return [result, registry.cpuSeconds() - before];
}

/**
 * A cold push on loopback costs CPU on both ends: the tool reads, hashes and sends; the registry
 * receives, hashes and writes. On C cores no schedule can finish before (tool + registry CPU) / C:
 * the floor row says how far that is from the target ratio, on this machine, for this registry.
 */
function pushCpuRows(push: Measured, registryCpu: number, skopeoPush: Measured, skopeoRegistryCpu: number): Row[] {
  const cores = cpus().length;
  const floor = (push.cpuSeconds + registryCpu) / cores;
  return [
    ['push CPU, user+sys: the tool + the registry (s)', `${f1(push.cpuSeconds)} + ${f1(registryCpu)}`,
      `${f1(skopeoPush.cpuSeconds)} + ${f1(skopeoRegistryCpu)}`, '', '', undefined],
    [`push CPU floor: (tool + registry CPU) / ${cores} cores (s)`, f1(floor), '', f2(floor / skopeoPush.seconds), '', undefined],
  ];
}

/** Runs a command under GNU time; wall clock measured here, peak RSS and CPU from time -v. */
async function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv = cleanEnv, prefix: string[] = []): Promise<Measured> {
  const started = performance.now();
  const [exe, ...rest] = [...prefix, '/usr/bin/time', '-v', cmd, ...args];
  const child = spawn(exe!, rest, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${stderr.trim().split('\n').slice(-25, -22).join(' | ') || stderr.slice(0, 500)}`);
  const field = (name: string): number => Number(new RegExp(`${name}: ([0-9.]+)`).exec(stderr)?.[1] ?? NaN);
  return {
    seconds, stdout,
    rssMb: field('Maximum resident set size \\(kbytes\\)') * 1024 / MB,
    cpuSeconds: field('User time \\(seconds\\)') + field('System time \\(seconds\\)'),
  };
}

/**
 * A memory cgroup limited to `bytes` (v2, else v1), for measuring a process as it runs on a machine
 * with that much memory: Node sizes V8's heap from the memory it may use (the cgroup limit, else
 * the machine's RAM), so the same build keeps a smaller heap there. Returns the command prefix
 * that runs a command inside it and a remover, or undefined where no memory cgroup can be made
 * (not root, no memory controller): the rows that need it then say so.
 */
async function memoryCgroup(bytes: number): Promise<{ prefix: string[]; remove(): Promise<void> } | undefined> {
  const name = `airgap-bench-${process.pid}`;
  const tries: [dir: string, limitFile: string, setup?: () => Promise<void>][] = [
    [join('/sys/fs/cgroup', name), 'memory.max', () => writeFile('/sys/fs/cgroup/cgroup.subtree_control', '+memory')],
    [join('/sys/fs/cgroup/memory', name), 'memory.limit_in_bytes'],
  ];
  for (const [dir, limitFile, setup] of tries) {
    try {
      await stat(join(dir, '..', limitFile === 'memory.max' ? 'cgroup.controllers' : 'memory.limit_in_bytes'));
      await setup?.().catch(() => undefined);
      await mkdir(dir);
    } catch {
      continue;
    }
    try {
      await writeFile(join(dir, limitFile), String(bytes));
    } catch {
      await rmdir(dir).catch(() => undefined);
      continue;
    }
    // The shell moves itself into the group, then becomes the measured command.
    return {
      prefix: ['/bin/sh', '-c', 'echo $$ > "$0" && exec "$@"', join(dir, 'cgroup.procs')],
      remove: () => rmdir(dir).catch(() => undefined),
    };
  }
  return undefined;
}

/**
 * Before each timed step (both sides alike): flush what earlier steps left in the page cache, so
 * a step does not pay for the previous one's disk writeback, then let the machine go quiet. On a
 * VM, the host goes on writing what `sync` handed it for a few seconds, and a process started
 * then needs ~40 % more CPU time for the same work (measured: an identical re-push took 0.17 s of
 * CPU in the first two seconds after a 1 GB push, 0.12-0.13 s afterwards).
 */
async function settle(): Promise<void> {
  await new Promise<void>((resolve, reject) => spawn('sync', [], { stdio: 'ignore' }).on('close', () => resolve()).on('error', reject));
  await new Promise((r) => setTimeout(r, cfg.settleSeconds * 1000));
}

/** The run with the median wall time. */
function median(runs: Measured[]): Measured {
  return [...runs].sort((a, b) => a.seconds - b.seconds)[Math.floor(runs.length / 2)]!;
}

/** A sequence of commands timed as one pipeline (the skopeo side). */
async function pipelineOf(steps: [string, string[]][]): Promise<Measured> {
  const all: Measured = { seconds: 0, rssMb: 0, cpuSeconds: 0, stdout: '' };
  for (const [cmd, args] of steps) {
    const m = await measure(cmd, args);
    all.seconds += m.seconds;
    all.cpuSeconds += m.cpuSeconds;
    all.rssMb = Math.max(all.rssMb, m.rssMb);
  }
  return all;
}

async function startLinkProcess(upstream: string): Promise<{ host: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import=tsx', join(root, 'scripts', 'link.ts'), '--upstream', upstream,
    '--delay-ms', String(cfg.delayMs), '--rate-mb', String(cfg.rate)], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  const host = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const m = /listening (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`link emulator exited with ${code}`)));
  });
  return {
    host,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}

const skopeoFlags = ['--insecure-policy'];

type Row = [measure: string, airgap: string, skopeo: string, ratio: string, target: string, met: boolean | undefined];

interface SetResult {
  /** One line saying what the set is. */
  title: string;
  rows: Row[];
  /** What the second column is measured against (default: the skopeo pipeline). */
  baseline?: string;
  /** Further lines printed after the table (the requests per image). */
  extra: string[];
}

interface Env {
  work: string;
  license: string;
  stops: (() => Promise<void>)[];
}

const f1 = (n: number): string => n.toFixed(1);
const f2 = (n: number): string => n.toFixed(2);

/** An application naming `names` as `host`/bench/NAME:1.0, all in one Deployment. */
async function appDir(dir: string, host: string, names: string[]): Promise<string> {
  await mkdir(dir, { recursive: true });
  const containers = names.map((n) => `        - name: ${n}\n          image: ${host}/bench/${n}:1.0\n`).join('');
  await writeFile(join(dir, 'deployment.yaml'), [
    'apiVersion: apps/v1', 'kind: Deployment', 'metadata:', '  name: bench', 'spec:', '  template:', '    spec:',
    '      containers:', containers].join('\n'));
  return dir;
}

/** The first set: a few big images sharing big bases, one 400 MB layer, one 2 GB layer. */
async function bigSet(env: Env): Promise<SetResult> {
  // ---- the source: images generated with seeded bytes, pushed into a registry, behind the link
  log(`generating ${cfg.images} images (bases ${cfg.base.join('+')} MB, apps ${cfg.appMin}-${cfg.appMax} MB), one ${cfg.big} MB layer, one ${cfg.huge} MB layer`);
  const source = await startRegistry();
  env.stops.push(() => source.stop());
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  env.stops.push(() => layout.remove());
  const specs: { name: string; layers: LayerSpec[] }[] = [];
  for (let i = 0; i < cfg.images; i++) {
    const app = Math.round((cfg.appMin + (cfg.images > 1 ? (cfg.appMax - cfg.appMin) * i / (cfg.images - 1) : 0)) * MB);
    specs.push({ name: `app-${i}`, layers: [
      { shared: 'base-os', size: Math.round(cfg.base[0]! * MB) }, { shared: 'base-runtime', size: Math.round(cfg.base[1]! * MB) },
      { seed: `app-${i}`, size: app }, { seed: `config-${i}`, size: 1 * MB },
    ] });
  }
  if (cfg.big > 0) specs.push({ name: 'big', layers: [{ seed: 'big', size: Math.round(cfg.big * MB) }] });
  const blobs = new Map<string, number>();
  for (const s of specs) {
    const built = await layout.build(s.name, { layers: s.layers });
    for (const d of built.layers) blobs.set(d, 0);
  }
  for (const d of blobs.keys()) blobs.set(d, (await stat(join(layout.dir, 'blobs', 'sha256', d.slice(7)))).size);
  const uniqueBytes = [...blobs.values()].reduce((a, b) => a + b, 0);
  log(`seeding ${specs.length} images (${(uniqueBytes / MB).toFixed(0)} MB of unique layers) into ${source.host}`);
  for (const s of specs) await pushImage(layout, s.name, source, `bench/${s.name}`, '1.0');
  if (cfg.huge > 0) {
    const huge = await FixtureLayout.create({ gzipLevel: 0 });
    env.stops.push(() => huge.remove());
    await huge.build('huge', { layers: [{ seed: 'huge', size: Math.round(cfg.huge * MB) }] });
    await pushImage(huge, 'huge', source, 'bench/huge', '1.0');
    await huge.remove();
  }
  await layout.remove();
  const link = await startLinkProcess(source.host);
  env.stops.push(() => link.stop());
  log(`link emulator ${link.host} → ${source.host}: +${cfg.delayMs} ms per request, ${cfg.rate} MB/s per connection`);

  // ---- the application the build reads
  const { work, license } = env;
  const mainApp = await appDir(join(work, 'app'), link.host, specs.map((s) => s.name));

  // ---- build over the link
  const ours = join(work, 'ours.tar');
  log('airgap build over the link');
  await settle();
  const build = await measure(process.execPath, [CLI, 'build', '--manifests', mainApp, '--license', license, '--out', ours,
    ...cfg.concurrencyFlag, '--json']);
  log(`  ${build.seconds.toFixed(1)} s`);
  const ociDir = join(work, 'skopeo-oci');
  const skopeoTar = join(work, 'skopeo.tar');
  log('skopeo copy per image + tar over the link');
  await settle();
  const skopeoBuild = await pipelineOf([
    ...specs.map((s): [string, string[]] => ['skopeo', [...skopeoFlags, 'copy', '--quiet', '--src-tls-verify=false',
      `docker://${link.host}/bench/${s.name}:1.0`, `oci:${ociDir}:${s.name}:1.0`]]),
    ['tar', ['-cf', skopeoTar, '-C', ociDir, '.']],
  ]);
  log(`  ${skopeoBuild.seconds.toFixed(1)} s`);
  await rm(ociDir, { recursive: true, force: true });

  // ---- cold push on loopback, then re-push
  const target = await startRegistry();
  env.stops.push(() => target.stop());
  log(`airgap push into empty ${target.host}`);
  await settle();
  const pushOurs = (env?: NodeJS.ProcessEnv): Promise<Measured> =>
    measure(process.execPath, [CLI, 'push', ours, '--registry', `${target.host}/bench`, ...cfg.concurrencyFlag, '--json'], env);
  const [push, pushRegistryCpu] = await withCpuOf(target, () => pushOurs());
  log(`  ${push.seconds.toFixed(1)} s`);
  log('airgap re-push');
  // A re-push is a fraction of a second: one sample is mostly noise, so take the median of several.
  await settle();
  const repushes: Measured[] = [];
  for (let i = 0; i < cfg.repushRuns; i++) repushes.push(await pushOurs());
  const repush = median(repushes);
  // Every one of them must move nothing.
  const repushed = repushes.map((r) => JSON.parse(r.stdout) as { bytesUploaded: number; blobsUploaded: number })
    .reduce((a, b) => ({ bytesUploaded: a.bytesUploaded + b.bytesUploaded, blobsUploaded: a.blobsUploaded + b.blobsUploaded }));
  log(`  ${repushes.map((r) => r.seconds.toFixed(2)).join(' / ')} s (median ${repush.seconds.toFixed(2)}), ${repushed.bytesUploaded} bytes uploaded`);
  // The same in the caller's own environment (informational: see cleanEnv).
  const inherited: Measured[] = [];
  for (let i = 0; i < cfg.repushRuns; i++) inherited.push(await pushOurs(process.env));
  const repushInherited = median(inherited);
  log(`  in the caller's environment: ${inherited.map((r) => r.seconds.toFixed(2)).join(' / ')} s (median ${repushInherited.seconds.toFixed(2)})`);
  await target.stop();
  const skopeoTarget = await startRegistry();
  env.stops.push(() => skopeoTarget.stop());
  const untarred = join(work, 'skopeo-untar');
  await mkdir(untarred);
  log(`untar + skopeo copy per image into empty ${skopeoTarget.host}`);
  await settle();
  const [skopeoPush, skopeoRegistryCpu] = await withCpuOf(skopeoTarget, () => pipelineOf([
    ['tar', ['-xf', skopeoTar, '-C', untarred]],
    ...specs.map((s): [string, string[]] => ['skopeo', [...skopeoFlags, 'copy', '--quiet', '--dest-tls-verify=false',
      `oci:${untarred}:${s.name}:1.0`, `docker://${skopeoTarget.host}/bench/${s.name}:1.0`]]),
  ]));
  log(`  ${skopeoPush.seconds.toFixed(1)} s`);
  await skopeoTarget.stop();
  await rm(untarred, { recursive: true, force: true });
  await rm(skopeoTar, { force: true });
  await rm(ours, { force: true });

  // ---- memory with a much bigger layer
  let hugeBuild: Measured | undefined;
  let hugePush: Measured | undefined;
  if (cfg.huge > 0) {
    const hugeApp = await appDir(join(work, 'huge-app'), link.host, ['huge']);
    const hugeOut = join(work, 'huge.tar');
    log(`airgap build + push of the ${cfg.huge} MB layer`);
    hugeBuild = await measure(process.execPath, [CLI, 'build', '--manifests', hugeApp, '--license', license, '--out', hugeOut,
      ...cfg.concurrencyFlag, '--json']);
    const hugeTarget = await startRegistry();
    env.stops.push(() => hugeTarget.stop());
    hugePush = await measure(process.execPath, [CLI, 'push', hugeOut, '--registry', `${hugeTarget.host}/bench`, ...cfg.concurrencyFlag, '--json']);
    log(`  build ${hugeBuild.seconds.toFixed(1)} s, push ${hugePush.seconds.toFixed(1)} s`);
    await hugeTarget.stop();
  }

  // ---- the table
  const linkLimit = cfg.delayMs / 1000 + uniqueBytes / (cfg.concurrency * cfg.rate * MB);
  const rows: Row[] = [];
  rows.push(['build over the link (s)', f1(build.seconds), f1(skopeoBuild.seconds), f2(build.seconds / skopeoBuild.seconds), '≤ 0.12', build.seconds / skopeoBuild.seconds <= 0.12]);
  rows.push([`build vs link limit ${f1(linkLimit)} s (${cfg.concurrency} × ${cfg.rate} MB/s)`, f1(build.seconds), '', f2(build.seconds / linkLimit), '≤ 1.50', build.seconds / linkLimit <= 1.5]);
  rows.push(transfersRow(build, push));
  rows.push(['build throughput (MB/s of unique layers)', f1(uniqueBytes / MB / build.seconds), f1(uniqueBytes / MB / skopeoBuild.seconds), '', '', undefined]);
  rows.push(['build CPU, user+sys (s)', f1(build.cpuSeconds), f1(skopeoBuild.cpuSeconds), '', '', undefined]);
  rows.push(['cold push on loopback (s)', f1(push.seconds), f1(skopeoPush.seconds), f2(push.seconds / skopeoPush.seconds), '≤ 0.30', push.seconds / skopeoPush.seconds <= 0.3]);
  rows.push(['push throughput (MB/s)', f1(uniqueBytes / MB / push.seconds), f1(uniqueBytes / MB / skopeoPush.seconds), '', '', undefined]);
  rows.push(...pushCpuRows(push, pushRegistryCpu, skopeoPush, skopeoRegistryCpu));
  // Issue 15: a re-push must move no blob byte; its time is mostly Node starting (shown, not a target).
  const repushOk = repushed.bytesUploaded === 0 && repushed.blobsUploaded === 0;
  rows.push([`re-push (s, median of ${cfg.repushRuns}; ${repushed.bytesUploaded} blob bytes moved)`, f2(repush.seconds), '', `${(100 * repush.seconds / push.seconds).toFixed(1)} % of cold`, '0 B', repushOk]);
  const extraCa = process.env.NODE_EXTRA_CA_CERTS ? `, NODE_EXTRA_CA_CERTS=${process.env.NODE_EXTRA_CA_CERTS}` : '';
  rows.push([`re-push in the caller's environment (s, median of ${cfg.repushRuns}${extraCa})`, f2(repushInherited.seconds), '', `${(100 * repushInherited.seconds / push.seconds).toFixed(1)} %`, '', undefined]);
  const rssOk = (m: Measured): boolean => m.rssMb <= cfg.rssLimit;
  rows.push([`peak RSS build / push, ${cfg.big} MB layer (MB)`, `${f1(build.rssMb)} / ${f1(push.rssMb)}`, `${f1(skopeoBuild.rssMb)} / ${f1(skopeoPush.rssMb)}`, '', `≤ ${cfg.rssLimit}`, rssOk(build) && rssOk(push)]);
  if (hugeBuild && hugePush) {
    const flat = hugeBuild.rssMb <= build.rssMb + 32 && hugePush.rssMb <= push.rssMb + 32;
    rows.push([`peak RSS build / push, ${cfg.huge} MB layer (MB)`, `${f1(hugeBuild.rssMb)} / ${f1(hugePush.rssMb)}`, '', '', `≤ ${cfg.rssLimit}, ≤ +32 MB`, rssOk(hugeBuild) && rssOk(hugePush) && flat]);
    rows.push([`${cfg.huge} MB layer build / push (s)`, `${f1(hugeBuild.seconds)} / ${f1(hugePush.seconds)}`, '', '', '', undefined]);
  }

  await link.stop();
  await source.stop();
  return {
    title: `set "big": ${specs.length} images, ${f1(uniqueBytes / MB)} MB unique layers`,
    rows,
    extra: [],
  };
}

/**
 * The second set (issue 13): many small images over shared bases. The cost is requests and round
 * trips, so besides the times it counts every request each tool makes, by kind, from the
 * registries' access logs: what the link emulator forwards is what the source registry logs.
 */
async function manySet(env: Env): Promise<SetResult> {
  const m = cfg.many;
  const n = m.images;
  if (n < 1) throw new Error('BENCH_MANY_IMAGES must be at least 1 (or leave "many" out of BENCH_SETS)');
  const total = Math.max(n, m.rssImages);
  const names = Array.from({ length: total }, (_, i) => `many-${i}`);
  log(`generating ${total} images: a ${m.baseKb} KB base shared by ${m.baseShare}, a ${m.midKb} KB middle shared by ${m.midShare}, ${m.ownKb} KB of their own`);
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  env.stops.push(() => layout.remove());
  const blobs = new Map<string, number>();
  const generate = pLimit(4);
  await Promise.all(names.map((name, i) => generate(async () => {
    const built = await layout.build(name, { layers: [
      { shared: `base-${Math.floor(i / m.baseShare)}`, size: Math.round(m.baseKb * 1000) },
      { shared: `mid-${Math.floor(i / m.midShare)}`, size: Math.round(m.midKb * 1000) },
      { seed: `own-${i}`, size: Math.round(m.ownKb * 1000) },
    ] });
    if (i < n) for (const d of built.layers) blobs.set(d, 0);
  })));
  for (const d of blobs.keys()) blobs.set(d, (await stat(join(layout.dir, 'blobs', 'sha256', d.slice(7)))).size);
  const uniqueBytes = [...blobs.values()].reduce((a, b) => a + b, 0);
  const source = await startRegistry({ accessLog: true });
  env.stops.push(() => source.stop());
  const seedStart = performance.now();
  // Seeded by the copy engine in one process (src/testing/seed.ts): hundreds of skopeo processes would take minutes.
  await seedLayout(layout, source.host, names.map((name) => ({ name, repo: `bench/${name}`, tag: '1.0' })));
  log(`seeded ${total} images into ${source.host} in ${f1((performance.now() - seedStart) / 1000)} s (not timed); ${n} of them hold ${f1(uniqueBytes / MB)} MB of unique layers`);
  await layout.remove();
  const link = await startLinkProcess(source.host);
  env.stops.push(() => link.stop());
  log(`link emulator ${link.host} → ${source.host}: +${cfg.delayMs} ms per request, ${cfg.rate} MB/s per connection`);
  const sourceLog = new AccessLog(source.accessLog!);
  const app = await appDir(join(env.work, 'many-app'), link.host, names.slice(0, n));
  const refs = names.slice(0, n).map((name) => `${link.host}/bench/${name}:1.0`);
  /** A step after the usual quiet time, with the requests it made to the registry behind `access`. */
  const counted = async <T>(access: AccessLog, step: () => Promise<T>): Promise<[T, RequestCounts]> => {
    await settle();
    await access.mark();
    const result = await step();
    return [result, await access.counts()];
  };

  // ---- plan
  log(`airgap plan of ${n} images over the link`);
  // Under a second, one process: its start-up jitter is a large share, so the median of
  // PLAN_RUNS runs (the skopeo loop is 150 processes and averages its own).
  const [plans, planReqAll] = await counted(sourceLog, async () => {
    const runs: Measured[] = [];
    for (let i = 0; i < PLAN_RUNS; i++) runs.push(await measure(process.execPath, [CLI, 'plan', '--manifests', app, '--json']));
    return runs;
  });
  const plan = median(plans);
  const planReq: RequestCounts = new Map([...planReqAll].map(([k, v]) => [k, v / PLAN_RUNS]));
  const planned = (JSON.parse(plan.stdout) as { images: unknown[] }).images.length;
  if (planned !== n) throw new Error(`airgap plan listed ${planned} images, not ${n}`);
  log(`  ${plans.map((p) => f2(p.seconds)).join(' / ')} s (median ${f2(plan.seconds)})`);
  log('skopeo inspect --raw per image over the link');
  const [skopeoPlan, skopeoPlanReq] = await counted(sourceLog, () => pipelineOf(refs.map((r): [string, string[]] =>
    ['skopeo', [...skopeoFlags, 'inspect', '--raw', '--tls-verify=false', `docker://${r}`]])));
  log(`  ${f1(skopeoPlan.seconds)} s`);

  // ---- build
  const ours = join(env.work, 'many.tar');
  const buildArgs = (dir: string, out: string): string[] =>
    [CLI, 'build', '--manifests', dir, '--license', env.license, '--out', out, ...cfg.concurrencyFlag, '--json'];
  log(`airgap build of ${n} images over the link`);
  const [build, buildReq] = await counted(sourceLog, () => measure(process.execPath, buildArgs(app, ours)));
  log(`  ${f1(build.seconds)} s`);
  const ociDir = join(env.work, 'many-skopeo-oci');
  const skopeoTar = join(env.work, 'many-skopeo.tar');
  log('skopeo copy per image + tar over the link');
  const [skopeoBuild, skopeoBuildReq] = await counted(sourceLog, () => pipelineOf([
    ...names.slice(0, n).map((name): [string, string[]] => ['skopeo', [...skopeoFlags, 'copy', '--quiet', '--src-tls-verify=false',
      `docker://${link.host}/bench/${name}:1.0`, `oci:${ociDir}:${name}:1.0`]]),
    ['tar', ['-cf', skopeoTar, '-C', ociDir, '.']],
  ]));
  log(`  ${f1(skopeoBuild.seconds)} s`);
  await rm(ociDir, { recursive: true, force: true });

  // ---- cold push and re-push on loopback
  const target = await startRegistry({ accessLog: true });
  env.stops.push(() => target.stop());
  const targetLog = new AccessLog(target.accessLog!);
  const pushOurs = (): Promise<Measured> =>
    measure(process.execPath, [CLI, 'push', ours, '--registry', `${target.host}/bench`, ...cfg.concurrencyFlag, '--json']);
  log(`airgap push into empty ${target.host}`);
  const [[push, pushRegistryCpu], pushReq] = await counted(targetLog, () => withCpuOf(target, pushOurs));
  log(`  ${f1(push.seconds)} s`);
  log('airgap re-push');
  const [repushes, repushReqAll] = await counted(targetLog, async () => {
    const runs: Measured[] = [];
    for (let i = 0; i < cfg.repushRuns; i++) runs.push(await pushOurs());
    return runs;
  });
  const repush = median(repushes);
  const repushReq: RequestCounts = new Map([...repushReqAll].map(([k, v]) => [k, v / cfg.repushRuns]));
  const moved = repushes.map((r) => JSON.parse(r.stdout) as { bytesUploaded: number; blobsUploaded: number })
    .reduce((a, b) => a + b.bytesUploaded + b.blobsUploaded, 0);
  log(`  ${repushes.map((r) => f2(r.seconds)).join(' / ')} s (median ${f2(repush.seconds)})`);
  await target.stop();
  const skopeoTarget = await startRegistry({ accessLog: true });
  env.stops.push(() => skopeoTarget.stop());
  const skopeoTargetLog = new AccessLog(skopeoTarget.accessLog!);
  const untarred = join(env.work, 'many-skopeo-untar');
  await mkdir(untarred);
  log(`untar + skopeo copy per image into empty ${skopeoTarget.host}`);
  const [[skopeoPush, skopeoRegistryCpu], skopeoPushReq] = await counted(skopeoTargetLog, () => withCpuOf(skopeoTarget, () => pipelineOf([
    ['tar', ['-xf', skopeoTar, '-C', untarred]],
    ...names.slice(0, n).map((name): [string, string[]] => ['skopeo', [...skopeoFlags, 'copy', '--quiet', '--dest-tls-verify=false',
      `oci:${untarred}:${name}:1.0`, `docker://${skopeoTarget.host}/bench/${name}:1.0`]]),
  ])));
  log(`  ${f1(skopeoPush.seconds)} s`);
  await skopeoTarget.stop();
  await rm(untarred, { recursive: true, force: true });
  await rm(skopeoTar, { force: true });
  await rm(ours, { force: true });

  // ---- memory with more images
  let bigBuild: Measured | undefined;
  let limited: Measured[] | undefined;
  if (m.rssImages > n) {
    const bigApp = await appDir(join(env.work, 'many-app-rss'), link.host, names);
    const out = join(env.work, 'many-rss.tar');
    log(`airgap build of ${m.rssImages} images over the link (peak RSS)`);
    await settle();
    bigBuild = await measure(process.execPath, buildArgs(bigApp, out));
    log(`  ${f1(bigBuild.seconds)} s, ${f1(bigBuild.rssMb)} MB`);
    await rm(out, { force: true });
    const group = await memoryCgroup(cfg.limitedMemory);
    if (group) {
      env.stops.push(() => group.remove());
      limited = [];
      for (const [count, dir] of [[n, app], [m.rssImages, bigApp]] as const) {
        log(`airgap build of ${count} images with memory limited to ${f1(cfg.limitedMemory / 2 ** 30)} GiB (peak RSS)`);
        await settle();
        limited.push(await measure(process.execPath, buildArgs(dir, out), cleanEnv, group.prefix));
        log(`  ${f1(limited.at(-1)!.seconds)} s, ${f1(limited.at(-1)!.rssMb)} MB`);
        await rm(out, { force: true });
      }
      await group.remove();
    }
  }
  await link.stop();
  await source.stop();

  // ---- the table
  const rows: Row[] = [];
  const ratioRow = (what: string, a: Measured, s: Measured, target: number): Row =>
    [what, f1(a.seconds), f1(s.seconds), f2(a.seconds / s.seconds), `≤ ${f2(target)}`, a.seconds / s.seconds <= target];
  rows.push(ratioRow(`plan of ${n} images over the link (s, median of ${PLAN_RUNS})`, plan, skopeoPlan, 0.05));
  rows.push(ratioRow('build over the link (s)', build, skopeoBuild, 0.08));
  // With small blobs the link's limit is round trips: every request waits the delay, so with C in
  // flight the requests alone take requests × delay / C (plus the bytes over C connections).
  const buildRequests = totalRequests(buildReq);
  const inFlight = (JSON.parse(build.stdout) as { concurrency?: { smallRequests: number } }).concurrency?.smallRequests ?? cfg.concurrency;
  const roundTrips = buildRequests * cfg.delayMs / 1000 / inFlight + uniqueBytes / (inFlight * cfg.rate * MB);
  rows.push([`build vs ${buildRequests} requests × ${cfg.delayMs} ms + bytes over ${inFlight} connections: ${f1(roundTrips)} s`,
    f1(build.seconds), '', f2(build.seconds / roundTrips), '', undefined]);
  rows.push(['build CPU, user+sys (s)', f1(build.cpuSeconds), f1(skopeoBuild.cpuSeconds), '', '', undefined]);
  rows.push(transfersRow(build, push));
  rows.push(ratioRow('cold push on loopback (s)', push, skopeoPush, 0.3));
  rows.push(...pushCpuRows(push, pushRegistryCpu, skopeoPush, skopeoRegistryCpu));
  rows.push([`re-push (s, median of ${cfg.repushRuns}; ${moved === 0 ? 'nothing' : 'something'} moved)`, f2(repush.seconds), '',
    `${(100 * repush.seconds / push.seconds).toFixed(1)} %`, '0 B', moved === 0]);
  const perImage = (c: RequestCounts): string => f1(totalRequests(c) / n);
  rows.push(['requests per image: plan; build; push; re-push', `${perImage(planReq)}; ${perImage(buildReq)}; ${perImage(pushReq)}; ${perImage(repushReq)}`,
    `${perImage(skopeoPlanReq)}; ${perImage(skopeoBuildReq)}; ${perImage(skopeoPushReq)}; `, '', '', undefined]);
  const rssOk = (x: Measured): boolean => x.rssMb <= cfg.rssLimit;
  if (bigBuild) {
    const flat = bigBuild.rssMb <= build.rssMb + 32;
    rows.push([`peak RSS build, ${n} / ${m.rssImages} images (MB)`, `${f1(build.rssMb)} / ${f1(bigBuild.rssMb)}`, f1(skopeoBuild.rssMb), '',
      `≤ ${cfg.rssLimit}, ≤ +32 MB`, rssOk(build) && rssOk(bigBuild) && flat]);
    rows.push([`build of ${m.rssImages} images over the link (s)`, f1(bigBuild.seconds), '', '', '', undefined]);
    // The same two builds where the machine has less memory to give (see memoryCgroup).
    const gib = f1(cfg.limitedMemory / 2 ** 30);
    if (limited && limited.length === 2) {
      const [few, more] = limited as [Measured, Measured];
      rows.push([`peak RSS build, ${n} / ${m.rssImages} images, memory limited to ${gib} GiB (MB)`, `${f1(few.rssMb)} / ${f1(more.rssMb)}`, '', '',
        '', undefined]);
      rows.push([`build of ${n} / ${m.rssImages} images, memory limited to ${gib} GiB (s)`, `${f1(few.seconds)} / ${f1(more.seconds)}`, '', '', '', undefined]);
    } else {
      rows.push([`peak RSS build with memory limited to ${gib} GiB`, 'not measured: no memory cgroup could be made (needs root)', '', '', '', undefined]);
    }
  } else {
    rows.push([`peak RSS build, ${n} images (MB)`, f1(build.rssMb), f1(skopeoBuild.rssMb), '', `≤ ${cfg.rssLimit}`, rssOk(build)]);
  }
  rows.push(['peak RSS push (MB)', f1(push.rssMb), f1(skopeoPush.rssMb), '', `≤ ${cfg.rssLimit}`, rssOk(push)]);

  const columns: [string, RequestCounts][] = [
    ['plan', planReq], ['skopeo inspect', skopeoPlanReq], ['build', buildReq], ['skopeo build', skopeoBuildReq],
    ['push', pushReq], ['skopeo push', skopeoPushReq], ['re-push', repushReq],
  ];
  return {
    title: `set "many": ${n} images of 3 layers (${m.baseKb} KB base per ${m.baseShare} images, ${m.midKb} KB middle per ${m.midShare}, ${m.ownKb} KB own), ${f1(uniqueBytes / MB)} MB unique layers`,
    rows,
    extra: ['', `requests per image (${n} images) by kind, from the registries' access logs; the last line is the total:`, '',
      ...requestTable(columns, n)],
  };
}

/**
 * The third set (issue 23): plan of a release of many small charts. airgap runs the user's helm
 * once per chart (`helm template` with the HelmChart's builder values); the rest of plan must not
 * cost more than those runs themselves. Timed: `airgap plan --offline` (median of PLAN_RUNS) and,
 * alone, the same `helm template` runs one after another (the median of PLAN_RUNS sums); counted:
 * the helm runs of one more plan, by a wrapper ahead of helm on PATH.
 */
async function chartsSet(env: Env): Promise<SetResult> {
  const n = cfg.charts;
  const helmBin = testHelm(); // .tools/bin/helm, put there by scripts/prepare.sh
  const dir = join(env.work, 'charts');
  const release = join(dir, 'release');
  await mkdir(release, { recursive: true });
  const homes = join(dir, 'homes');
  await Promise.all(['cache', 'config', 'data'].map((h) => mkdir(join(homes, h), { recursive: true })));
  log(`writing ${n} charts, each with its HelmChart`);
  const names = Array.from({ length: n }, (_, i) => `chart-${String(i).padStart(2, '0')}`);
  for (const name of names) {
    const chartDir = await writeChart(join(dir, 'src'), {
      name, version: '1.0.0', values: { image: `registry.example.com/bench/${name}:1.0` },
      templates: { 'deployment.yaml': deploymentTemplate(name, '.Values.image') },
    });
    await packageChart(chartDir, release, homes);
    await writeHelmChart(join(release, `${name}.yaml`), helmChartV1beta2({ name, chartName: name, chartVersion: '1.0.0', builder: {} }));
  }
  const values = join(dir, 'builder.json');
  await writeFile(values, '{}');
  const withHelm: NodeJS.ProcessEnv = { ...cleanEnv, PATH: `${dirname(helmBin)}:${cleanEnv.PATH ?? ''}` };
  // As airgap runs it (src/helm/template.ts): private homes, no kubeconfig, the builder values.
  const helmEnv: NodeJS.ProcessEnv = { ...cleanEnv, HELM_CACHE_HOME: join(homes, 'cache'), HELM_CONFIG_HOME: join(homes, 'config'),
    HELM_DATA_HOME: join(homes, 'data'), KUBECONFIG: join(homes, 'no-kubeconfig') };

  await settle();
  log(`airgap plan --offline of ${n} charts`);
  const plans: Measured[] = [];
  for (let i = 0; i < PLAN_RUNS; i++) plans.push(await measure(process.execPath, [CLI, 'plan', '--manifests', release, '--offline', '--json'], withHelm));
  const plan = median(plans);
  const planned = (JSON.parse(plan.stdout) as { images: unknown[] }).images.length;
  if (planned !== n) throw new Error(`airgap plan listed ${planned} images, not ${n}`);
  log(`  ${plans.map((p) => f2(p.seconds)).join(' / ')} s (median ${f2(plan.seconds)})`);
  log(`the ${n} helm template runs alone`);
  const sums: Measured[] = [];
  for (let i = 0; i < PLAN_RUNS; i++) {
    const runs: Measured[] = [];
    for (const name of names) {
      runs.push(await measure(helmBin, ['template', name, join(release, `${name}-1.0.0.tgz`), '--namespace', 'default',
        '--values', values, '--include-crds'], helmEnv));
    }
    sums.push({ seconds: runs.reduce((a, r) => a + r.seconds, 0), cpuSeconds: runs.reduce((a, r) => a + r.cpuSeconds, 0), rssMb: 0, stdout: '' });
  }
  const helmAlone = median(sums);
  log(`  ${sums.map((p) => f2(p.seconds)).join(' / ')} s (median ${f2(helmAlone.seconds)})`);

  // One more plan, its helm runs counted: a wrapper ahead of the real helm logs each one.
  const counter = join(dir, 'counter');
  const runsLog = join(dir, 'helm-runs.log');
  await mkdir(counter);
  await writeFile(join(counter, 'helm'), `#!/bin/sh\necho "$*" >> '${runsLog}'\nexec '${helmBin}' "$@"\n`, { mode: 0o755 });
  await measure(process.execPath, [CLI, 'plan', '--manifests', release, '--offline', '--json'], { ...withHelm, PATH: `${counter}:${withHelm.PATH ?? ''}` });
  const helmRuns = (await readFile(runsLog, 'utf8')).split('\n').filter((l) => l.startsWith('template ')).length;

  const ratio = plan.seconds / helmAlone.seconds;
  return {
    title: `set "charts": a KOTS release of ${n} small charts (one Deployment each) and their v1beta2 HelmCharts, planned offline with helm ${dirname(helmBin)}`,
    baseline: 'helm template alone',
    rows: [
      [`plan --offline of ${n} charts vs their ${n} helm template runs alone (s, median of ${PLAN_RUNS})`, f2(plan.seconds), f2(helmAlone.seconds), f2(ratio), '≤ 2.00', ratio <= 2],
      ['plan / helm template CPU, user+sys (s)', f2(plan.cpuSeconds), f2(helmAlone.cpuSeconds), '', '', undefined],
      [`helm runs during one plan of ${n} charts`, String(helmRuns), '', '', `= ${n}`, helmRuns === n],
    ],
    extra: [],
  };
}

/**
 * The fourth set (issue 26): pushing from a KOTS .airgap against pushing the same images from our
 * own bundle, on loopback, where reading the file (inflating, seeking) is what can differ. The
 * three files are made from one source registry, untimed: our bundle and the `--format kots`
 * .airgap by airgap build, the vendor-portal one with the real tools (src/testing/kotsairgap.ts).
 * Runs alternate between the three, each into a fresh registry.
 */
async function kotsSet(env: Env): Promise<SetResult> {
  const k = cfg.kots;
  const names = Array.from({ length: k.images }, (_, i) => `kots-${i}`);
  // Two layers each: a small one and the rest of the image's share of the bytes.
  const each = Math.round(k.mb * MB / k.images);
  log(`generating ${k.images} images of ${f1(each / MB)} MB`);
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  env.stops.push(() => layout.remove());
  for (const name of names) {
    await layout.build(name, { layers: [{ seed: `${name}-small`, size: Math.round(each / 20) }, { seed: `${name}-big`, size: each - Math.round(each / 20) }] });
  }
  const source = await startRegistry();
  env.stops.push(() => source.stop());
  for (const name of names) await pushImage(layout, name, source, `bench/${name}`, '1.0');
  await layout.remove();
  const app = await appDir(join(env.work, 'kots-app'), source.host, names);
  const ours = join(env.work, 'kots.tar');
  const built = join(env.work, 'built.airgap');
  const portal = join(env.work, 'portal.airgap');
  log('making our bundle, a build --format kots .airgap and a vendor-portal .airgap (not timed)');
  for (const [out, extra] of [[ours, []], [built, ['--format', 'kots']]] as const) {
    await measure(process.execPath, [CLI, 'build', '--manifests', app, '--license', env.license, '--out', out, ...extra, '--json']);
  }
  await vendorPortalAirgap({ appSlug: 'acme-shop', appDir: app,
    images: names.map((n) => ({ source: `docker://${source.host}/bench/${n}:1.0`, ref: `${source.host}/bench/${n}:1.0` })) }, portal);
  await source.stop();
  const sizes = await Promise.all([ours, built, portal].map(async (f) => (await stat(f)).size));

  const kinds = [['our bundle', ours], ['a build --format kots .airgap', built], ['a vendor-portal .airgap', portal]] as const;
  const runs = new Map<string, { m: Measured; cpu: number }[]>(kinds.map(([name]) => [name, []]));
  for (let r = 0; r < k.runs; r++) {
    // Rotated each run, so a drift of the machine does not always fall on the same file.
    for (let j = 0; j < kinds.length; j++) {
      const [name, file] = kinds[(r + j) % kinds.length]!;
      const target = await startRegistry();
      env.stops.push(() => target.stop());
      await settle();
      const [m, cpu] = await withCpuOf(target, () => measure(process.execPath, [CLI, 'push', file, '--registry', `${target.host}/bench`,
        ...cfg.concurrencyFlag, '--json']));
      const pushed = (JSON.parse(m.stdout) as { images: unknown[] }).images.length;
      if (pushed !== k.images) throw new Error(`push from ${name} pushed ${pushed} images, not ${k.images}`);
      log(`  push from ${name}: ${f2(m.seconds)} s`);
      runs.get(name)!.push({ m, cpu });
      await target.stop();
    }
  }
  const med = (name: string): { m: Measured; cpu: number } => {
    const all = runs.get(name)!;
    return [...all].sort((a, b) => a.m.seconds - b.m.seconds)[Math.floor(all.length / 2)]!;
  };
  const base = med('our bundle');
  const rows: Row[] = kinds.map(([name], i): Row => {
    const { m } = med(name);
    const ratio = m.seconds / base.m.seconds;
    return [`cold push from ${name} (${f1(sizes[i]! / MB)} MB file; s, median of ${k.runs}: ${runs.get(name)!.map((x) => f2(x.m.seconds)).join(' / ')})`,
      f2(m.seconds), f2(base.m.seconds), f2(ratio), i === 0 ? '' : '≤ 1.20', i === 0 ? undefined : ratio <= 1.2];
  });
  // Wall time on a shared machine is noisy: the fastest run and the CPU spent say what each file costs.
  const best = (name: string): number => Math.min(...runs.get(name)!.map((x) => x.m.seconds));
  rows.push(['fastest cold push (s): bundle; kots-built; portal', kinds.map(([name]) => f2(best(name))).join('; '), '',
    kinds.slice(1).map(([name]) => f2(best(name) / best('our bundle'))).join('; '), '', undefined]);
  const cpu = (name: string): number => med(name).m.cpuSeconds + med(name).cpu;
  rows.push(['push CPU user+sys, tool + registry (s): bundle; kots-built; portal',
    kinds.map(([name]) => `${f1(med(name).m.cpuSeconds)} + ${f1(med(name).cpu)}`).join('; '), '',
    kinds.slice(1).map(([name]) => f2(cpu(name) / cpu('our bundle'))).join('; '), '', undefined]);
  rows.push(['peak RSS push (MB): bundle; kots-built; portal', kinds.map(([name]) => f1(med(name).m.rssMb)).join('; '), '', '',
    `≤ ${cfg.rssLimit}`, kinds.every(([name]) => med(name).m.rssMb <= cfg.rssLimit)]);
  return {
    title: `set "kots": ${k.images} images, ${f1(k.mb)} MB of layers, pushed from our bundle and from KOTS .airgap files`,
    baseline: 'push from our bundle',
    rows,
    extra: [],
  };
}

/** How far the adaptive bulk limit went in build and push (their --json summaries, src/concurrency.ts). */
function transfersRow(build: Measured, push: Measured): Row {
  type Report = { adaptive: boolean; smallRequests: number; bulkStart: number; bulkPeak: number; bulkMax: number };
  const of = (m: Measured): Report | undefined => (JSON.parse(m.stdout) as { concurrency?: Report }).concurrency;
  const b = of(build);
  const p = of(push);
  const cell = (r: Report | undefined): string => (r ? `${r.bulkStart} → ${r.bulkPeak}` : '?');
  const how = b?.adaptive === false ? ' (fixed by --concurrency)' : ` (adaptive, at most ${b?.bulkMax ?? '?'}; ${b?.smallRequests ?? '?'} small requests)`;
  return [`bulk transfers at once, build / push${how}`, `${cell(b)} / ${cell(p)}`, '', '', '', undefined];
}

/** Runs of airgap plan in the many set (median taken). */
const PLAN_RUNS = 3;

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** Rows: each kind of request, columns: each step, cells: requests per image. */
function requestTable(columns: [string, RequestCounts][], images: number): string[] {
  const kinds = [...new Set(columns.flatMap(([, c]) => [...c.keys()]))].sort((a, b) => {
    const [ma, ...ra] = a.split(' ');
    const [mb, ...rb] = b.split(' ');
    return (METHODS.indexOf(ma!) - METHODS.indexOf(mb!)) || ra.join(' ').localeCompare(rb.join(' '));
  });
  const cell = (v: number | undefined): string => (v ? f2(v / images) : '');
  return [
    `| request | ${columns.map(([name]) => name).join(' | ')} |`,
    `|---|${columns.map(() => '---|').join('')}`,
    ...kinds.map((k) => `| ${k} | ${columns.map(([, c]) => cell(c.get(k))).join(' | ')} |`),
    `| **total** | ${columns.map(([, c]) => `**${f2(totalRequests(c) / images)}**`).join(' | ')} |`,
  ];
}

async function main(): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), 'airgap-bench-'));
  const stops: (() => Promise<void>)[] = [async () => { await rm(work, { recursive: true, force: true }); }];
  const cleanup = async (): Promise<void> => { for (const s of stops.reverse()) await s().catch(() => undefined); };
  process.once('SIGINT', () => { void cleanup().then(() => process.exit(130)); });
  process.once('SIGTERM', () => { void cleanup().then(() => process.exit(143)); });
  try {
    const license = join(work, 'license.yaml');
    await copyFile(join(root, 'testdata', 'license.yaml'), license);
    const env: Env = { work, license, stops };
    const results: SetResult[] = [];
    if (cfg.sets.has('big')) results.push(await bigSet(env));
    if (cfg.sets.has('many')) results.push(await manySet(env));
    if (cfg.sets.has('charts')) results.push(await chartsSet(env));
    if (cfg.sets.has('kots')) results.push(await kotsSet(env));
    const cpu = cpus()[0]?.model ?? 'unknown CPU';
    const lines = [
      `machine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, node ${process.version}; link: +${cfg.delayMs} ms per request, ${cfg.rate} MB/s per connection`,
      ...results.flatMap((r) => [
        '',
        r.title,
        '',
        `| measure | airgap | ${r.baseline ?? 'skopeo pipeline'} | ratio | target | met |`,
        '|---|---|---|---|---|---|',
        ...r.rows.map(([m, a, s, ratio, t, ok]) => `| ${m} | ${a} | ${s} | ${ratio} | ${t} | ${ok === undefined ? '' : ok ? 'yes' : '**NO**'} |`),
        ...r.extra,
      ]),
    ];
    process.stdout.write(lines.join('\n') + '\n');
    return results.some((r) => r.rows.some((row) => row[5] === false)) ? 1 : 0;
  } finally {
    await cleanup();
  }
}

main().then((code) => process.exit(code), (e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(2);
});
