import { AirgapError, printable, printableFields, type ErrorCode } from '../src/errors.js';
import type { PushCounts, PushDryRun, PushSummary } from '../src/push.js';
import type { RewriteSummary } from '../src/rewrite.js';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { PlanReport } from '../src/plan.js';
import { baseLabel, describeRelease, parseSize } from '../src/bundle/format.js';
import type { Credentials } from '../src/registry/credentials.js';
import type { HostPolicy } from '../src/registry/policy.js';
import { isLoopbackHost, parseTargetRegistry } from '../src/target.js';
import { formatFinding, type Finding } from '../src/app/findings.js';
import type { CopyEvent } from '../src/copy.js';
import type { ConcurrencyReport } from '../src/concurrency.js';
import { humanBytes, type Renderer } from './render.js';

/**
 * Phases are loaded when their command runs, not at start-up: a re-push that moves nothing is
 * mostly Node starting, and loading YAML, tar and HTTP code a command never uses was a third of it.
 */
const phases = {
  build: () => import('../src/build.js'),
  plan: () => import('../src/plan.js'),
  push: () => import('../src/push.js'),
  rewrite: () => import('../src/rewrite.js'),
  online: () => import('../src/online.js'),
  inspect: () => import('../src/inspect.js'),
  reader: () => import('../src/bundle/reader.js'),
  verify: () => import('../src/bundle/verify.js'),
  signing: () => import('../src/bundle/signing.js'),
  access: () => import('../src/registry/access.js'),
  policy: () => import('../src/registry/policy.js'),
};

export interface GlobalFlags {
  json: boolean;
  debug: boolean;
}

export interface Context {
  flags: GlobalFlags;
  renderer: Renderer;
  readPasswordStdin: () => string;
}

export interface Result {
  json: unknown;
  text?: string;
  exitCode?: number;
  /** The result is printed, yet the run failed: exit with this code's status and say `problem` on stderr. */
  failed?: { code: ErrorCode; problem: string };
}

export interface OptionSpec {
  flags: string;
  description: string;
  default?: unknown;
  /** Shown in help as the default when there is no single default value to give commander. */
  defaultText?: string;
  /** Checked before the command runs; marked "(required)" in help. */
  required?: boolean;
  parse?: (value: string, previous: unknown) => unknown;
}

export interface CommandSpec {
  name: string;
  description: string;
  args?: string[];
  options: OptionSpec[];
  /** One command line shown under the help. */
  example: string;
  run(args: string[], opts: Record<string, unknown>, ctx: Context): Promise<Result>;
}

const DEFAULT_PROXY = 'proxy.replicated.com';
const DEFAULT_VENDOR_REGISTRY = 'registry.replicated.com';

function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 256) throw new AirgapError('E_USAGE', `${flag} "${v}" must be a whole number from 1 to 256`);
    return n;
  };
}

const collect = (v: string, prev: unknown): string[] => [...((prev as string[] | undefined) ?? []), v];

const manifestsFlag: OptionSpec = { flags: '--manifests <dir>', description: 'the application manifests', required: true };

const resolveFlags: OptionSpec[] = [
  { flags: '--proxy-host <host>', description: 'the vendor proxy for private images', default: DEFAULT_PROXY },
  { flags: '--replicated-registry <host>', description: 'the vendor registry (images there are pulled with the license)', default: DEFAULT_VENDOR_REGISTRY },
  { flags: '--ca-file <file>', description: 'extra CA certificate (PEM) trusted for every source registry' },
];

const registryFlags: OptionSpec[] = [
  { flags: '--registry <host/path>', description: 'the customer registry and the registry namespace (path) to push into, e.g. registry.corp:5000/my-app (not the Kubernetes namespace); https:// or http:// before it chooses TLS or plain HTTP', required: true },
  { flags: '--username <user>', description: 'user for the customer registry' },
  { flags: '--password <password>', description: 'password for the customer registry (prefer --password-stdin)' },
  { flags: '--password-stdin', description: 'read the password from standard input' },
  { flags: '--keep-path', description: 'keep the source repository path under the registry path (quay.io/acme/api:1 → HOST/PATH/acme/api:1); push and rewrite must agree' },
  { flags: '--ca-file <file>', description: 'CA certificate (PEM) of the customer registry' },
  { flags: '--insecure-skip-tls-verify', description: 'do not verify the registry TLS certificate' },
  { flags: '--plain-http', description: 'talk plain HTTP to the registry' },
];

const keyFlag: OptionSpec = {
  flags: '--key <file>', description: 'the vendor\'s PEM public key: the bundle must be signed with it and unchanged (else exit 3)',
};

const pushSignatureFlags: OptionSpec[] = [
  keyFlag,
  { flags: '--no-signatures', description: 'do not push the images\' signatures, attestations and SBOMs' },
];

function signatureOptions(opts: Record<string, unknown>): { signatures: boolean; key?: string } {
  return { signatures: opts.signatures !== false, ...(opts.key ? { key: opts.key as string } : {}) };
}

/** "2 signature(s), 1 sbom(s)" */
function attachedText(list: { kind: string }[]): string {
  const counts = new Map<string, number>();
  for (const a of list) counts.set(a.kind, (counts.get(a.kind) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${n} ${k}${n === 1 ? '' : 's'}`).join(', ');
}

const concurrencyFlag: OptionSpec = {
  flags: '--concurrency <n>',
  description: 'at most n transfers and n small requests at once (default: adapts, 8 to 32 blob transfers and 32 small requests; docs/performance.md)',
  parse: positiveInt('--concurrency'),
};

/** A string flag the command marks required (checked in cmd/airgap.ts before it runs). */
function required(opts: Record<string, unknown>, name: string, flag: string): string {
  const v = opts[name];
  if (typeof v !== 'string' || v === '') throw new AirgapError('E_USAGE', `missing ${flag}`, { hint: 'see airgap <command> --help' });
  return v;
}

function bundleArg(args: string[]): string {
  const b = args[0];
  const expected = 'give the bundle file written by airgap build (.tar), or a KOTS .airgap';
  if (!b) throw new AirgapError('E_USAGE', 'missing the BUNDLE argument', { hint: expected });
  // A wrong path is the user's to fix (exit 2), not a registry or integrity failure.
  let st;
  try {
    st = statSync(b);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new AirgapError('E_USAGE', `bundle ${b} does not exist`, { hint: expected, cause: e });
    return b;
  }
  if (st.isDirectory()) {
    throw new AirgapError('E_USAGE', `bundle ${b} is a directory, not a bundle file`,
      { hint: `${expected}${existsSync(join(b, 'oci-layout')) ? ' (an OCI layout directory is not a bundle: airgap build writes one .tar)' : ''}` });
  }
  return b;
}

/**
 * Registry access for the source side (build, plan, online): --ca-file is trusted for every source
 * registry. Both sides make their policy with policyFromFlags (src/registry/policy.ts: how each
 * host is reached and why; the environment's proxy, CA and AIRGAP_* tuning variables are read there).
 */
async function sourceAccess(opts: Record<string, unknown>, ctx: Context) {
  const caFile = opts.caFile as string | undefined;
  const licensedHosts = opts.license ? [opts.proxyHost as string, opts.replicatedRegistry as string] : undefined;
  const [{ createRegistryAccess }, { policyFromFlags, describeHostPolicy }] = await Promise.all([phases.access(), phases.policy()]);
  return createRegistryAccess(policyFromFlags({
    ...(caFile ? { caFile } : {}), ...(licensedHosts ? { licensedHosts } : {}), ...debugPolicy(ctx, describeHostPolicy),
    ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency as number } : {}),
  }));
}

/** Registry access for the customer registry (push, install, verify), from the registry flags. */
async function targetAccess(opts: Record<string, unknown>, ctx: Context) {
  const registry = parseTargetRegistry(required(opts, 'registry', '--registry'));
  const plainHttp = schemeChoice(registry, opts);
  if (opts.password !== undefined && opts.passwordStdin) throw new AirgapError('E_USAGE', 'give --password or --password-stdin, not both');
  const password = opts.passwordStdin ? ctx.readPasswordStdin() : (opts.password as string | undefined);
  const username = opts.username as string | undefined;
  if ((username === undefined) !== (password === undefined)) {
    throw new AirgapError('E_USAGE', '--username and --password (or --password-stdin) go together');
  }
  const credentials = username !== undefined && password !== undefined ? { username, password } : undefined;
  const [{ createRegistryAccess }, { policyFromFlags, describeHostPolicy }] = await Promise.all([phases.access(), phases.policy()]);
  const access = createRegistryAccess(policyFromFlags({
    target: {
      host: registry.host,
      ...(plainHttp ? { plainHttp: true } : {}),
      ...(opts.insecureSkipTlsVerify ? { insecureSkipTlsVerify: true } : {}),
      ...(opts.caFile ? { caFile: opts.caFile as string } : {}),
      ...(credentials ? { credentials } : {}),
    },
    ...debugPolicy(ctx, describeHostPolicy),
    ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency as number } : {}),
  }));
  return { registry, access, credentials };
}

/**
 * A scheme written in --registry is the user's TLS choice: http:// is --plain-http; https:// is
 * TLS, which every host but loopback gets anyway, and a loopback host cannot be held to (it is
 * reached over plain HTTP when it answers that way, as Docker does): refused rather than dropped.
 */
function schemeChoice(registry: { host: string; scheme?: 'http' | 'https' }, opts: Record<string, unknown>): boolean {
  const tlsFlag = opts.caFile ? '--ca-file' : opts.insecureSkipTlsVerify ? '--insecure-skip-tls-verify' : undefined;
  if (registry.scheme === 'http' && tlsFlag) {
    throw new AirgapError('E_USAGE', `--registry http://… means plain HTTP, which ${tlsFlag} (a TLS setting) contradicts`,
      { hint: `write https://${registry.host}/… or leave ${tlsFlag} out` });
  }
  if (registry.scheme === 'https' && opts.plainHttp) {
    throw new AirgapError('E_USAGE', '--registry https://… asks for TLS, --plain-http for plain HTTP', { hint: 'give one of them' });
  }
  if (registry.scheme === 'https' && isLoopbackHost(registry.host)) {
    throw new AirgapError('E_USAGE', `--registry https://${registry.host}/…: a loopback registry is reached over plain HTTP when it answers that way, so https:// cannot be honoured for it`,
      { hint: `write ${registry.host}/… (plain HTTP if it answers so, else TLS), or use the host's name instead of a loopback address` });
  }
  return registry.scheme === 'http' || Boolean(opts.plainHttp);
}

/** With --debug, how many requests ran at once (src/concurrency.ts, docs/performance.md). */
function debugConcurrency(ctx: Context, c: ConcurrencyReport | undefined): void {
  if (!ctx.flags.debug || !c) return;
  process.stderr.write(c.adaptive
    ? `airgap: debug: ${c.smallRequests} small requests at once; bulk transfers adapted from ${c.bulkStart} up to ${c.bulkPeak} (at most ${c.bulkMax})\n`
    : `airgap: debug: at most ${c.bulkStart} requests of each kind at once (--concurrency)\n`);
}

/** With --debug, one line on stderr per registry host saying how it is reached and why. */
function debugPolicy(ctx: Context, describe: (p: HostPolicy) => string): { onResolve?: (p: HostPolicy) => void; onVerified?: (line: string) => void } {
  return ctx.flags.debug ? {
    onResolve: (p) => process.stderr.write(`airgap: debug: ${describe(p)}\n`),
    // Which trusted root (Node's list, the OS store, --ca-file) verified each TLS origin.
    onVerified: (line) => process.stderr.write(`airgap: debug: ${line}\n`),
  } : {};
}

function progress(ctx: Context, verb: string) {
  return {
    onStart: (bytes: number, images: number) => ctx.renderer.start(bytes, images, verb),
    onEvent: (e: CopyEvent) => ctx.renderer.event(e),
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** The terminal's width when stdout is one; undefined for a pipe or a file (whole lines for grep). */
function terminalWidth(): number | undefined {
  return process.stdout.isTTY && process.stdout.columns > 0 ? process.stdout.columns : undefined;
}

/** Breaks a line at spaces (else anywhere) so no piece is wider than `width`; continuations indented. */
export function wrapLine(line: string, width: number, indent = '    '): string[] {
  const out: string[] = [];
  let rest = line;
  let first = true;
  for (;;) {
    const room = first ? width : width - indent.length;
    if (rest.length <= room) break;
    let cut = rest.lastIndexOf(' ', room);
    if (cut <= (first ? 0 : 1)) cut = room;
    out.push((first ? '' : indent) + rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
    first = false;
  }
  out.push((first ? '' : indent) + rest);
  return out;
}

/**
 * A table that fits `width`: as columns when it does, else one block per row (the first column,
 * then each other column as `HEADER: value`, wrapped), so no value is ever cut.
 */
export function fitTable(rows: string[][], width: number | undefined): string {
  const text = table(rows);
  if (width === undefined || text.split('\n').every((l) => l.length <= width)) return text;
  const [head, ...body] = rows;
  return body.flatMap((r) => [
    ...wrapLine(r[0] ?? '', width),
    ...r.slice(1).flatMap((c, i) => wrapLine(`  ${head![i + 1]!.toLowerCase()}: ${c}`, width)),
  ]).join('\n');
}

/** Every line of `text` wrapped to `width` (no change without one). */
function fitLines(text: string, width: number | undefined): string {
  return width === undefined ? text : text.split('\n').flatMap((l) => wrapLine(l, width)).join('\n');
}

const plan: CommandSpec = {
  name: 'plan',
  description: 'find every image of the application, check it against the rules and say where each is pulled from (downloads nothing)',
  options: [
    manifestsFlag,
    { flags: '--license <file>', description: 'the customer license (kots.io/v1beta1 License)' },
    { flags: '--offline', description: 'read the manifests only: no request of any kind (public/private is then not decided)' },
    ...resolveFlags,
  ],
  example: 'airgap plan --manifests ./app --license ./license.yaml',
  async run(_args, opts, ctx) {
    const offline = Boolean(opts.offline);
    const access = offline ? undefined : await sourceAccess(opts, ctx);
    try {
      const { planReport } = await phases.plan();
      const p = await planReport({
        manifestsDir: required(opts, 'manifests', '--manifests'),
        ...(opts.license ? { licensePath: opts.license as string } : {}),
        proxyHost: opts.proxyHost as string,
        replicatedRegistry: opts.replicatedRegistry as string,
        ...(access ? { registries: access } : {}),
      });
      return planResult(p);
    } finally {
      await access?.close();
    }
  },
};

function planResult(p: PlanReport): Result {
  const where = (o: { file: string; line: number }[]) => o.map((x) => `${x.file}:${x.line}`).join(', ');
  const rule = { 'tag': 'ok: by tag', 'tag+digest': 'ok: tag+digest', 'digest-only': 'REFUSED: digest only' } as const;
  const from = (i: PlanReport['images'][number]): string => {
    if (i.error) return `FAILED (${i.error.code})`;
    if (!i.kind) return 'decided online';
    return i.kind === 'public' ? `public: ${i.pullFrom}` : i.kind === 'private' ? `private, via proxy: ${i.pullFrom}` : `vendor registry: ${i.pullFrom}`;
  };
  const rows = [['IMAGE', 'DIGEST RULE', p.offline ? 'PULLED FROM (offline)' : 'PULLED FROM', 'WHERE'],
    ...p.images.map((i) => [i.ref, rule[i.digestRule], from(i), where(i.occurrences)])];
  const width = terminalWidth();
  const failed = p.images.filter((i) => i.error);
  // As src/plan.ts isRefusal (plan.ts itself is loaded only when plan runs).
  const isRefusal = (f: Finding) => f.severity === 'error';
  const refusals = p.findings.filter(isRefusal);
  const text = fitLines([
    fitTable(rows, width),
    ...sameImageNote(p.images.map((i) => i.ref)),
    ...failed.map((i) => `  ${i.ref}: ${i.error!.message}${i.error!.hint ? ` (${i.error!.hint})` : ''}`),
    ...p.notRead.map((n) => `not read: ${n.path} (${n.reason})`),
    ...p.findings.map(formatFinding),
    ...(refusals.length > 0 ? ['refused: build would write nothing until these are fixed'] : []),
    '',
    `${p.images.length} image(s): ${p.images.length - failed.length} ok, ${failed.length} failed; ${p.findings.length} finding(s), ${refusals.length} of them refusing a build` +
      (p.offline ? '; offline: nothing was asked of any registry' : ''),
  ].join('\n'), width);
  const json = { appSlug: p.appSlug, offline: p.offline, ok: failed.length === 0 && refusals.length === 0, images: p.images, findings: p.findings, notRead: p.notRead };
  if (failed.length === 0 && refusals.length === 0) return { json, text };
  const code: ErrorCode = failed[0]?.error?.code ?? 'E_MANIFESTS';
  // Like every command's failure, `error` says the first problem (for scripts); `images` has them all.
  const first = failed[0]?.error ?? { code, message: `${refusals[0]!.file}:${refusals[0]!.line}: ${refusals[0]!.message}`, ...(refusals[0]!.hint ? { hint: refusals[0]!.hint } : {}) };
  return { json: { ...json, error: first }, text,
    failed: { code, problem: `plan: ${failed.length} of ${p.images.length} image(s) failed, ${refusals.length} finding(s) refuse a build (listed above)` } };
}

/**
 * Plan lists each reference as written; build carries an image once by its tagged name, so
 * `busybox:1.36` and `busybox:1.36@sha256:…` are two plan rows and one bundled image: say so.
 */
function sameImageNote(refs: string[]): string[] {
  const byName = new Map<string, string[]>();
  for (const r of refs) {
    const name = r.replace(/@sha256:[0-9a-f]+$/, '');
    byName.set(name, [...(byName.get(name) ?? []), r]);
  }
  const twice = [...byName.values()].filter((g) => g.length > 1);
  if (twice.length === 0) return [];
  const short = (r: string): string => r.replace(/(@sha256:[0-9a-f]{12})[0-9a-f]+$/, '$1…');
  return [`note: ${refs.length} references name ${byName.size} images: ${twice.map((g) => g.map(short).join(' and ')).join('; ')} ` +
    `${twice.length === 1 ? 'is one image' : 'are each one image'} written with and without a digest; the bundle holds it once`];
}

const buildCmd: CommandSpec = {
  name: 'build',
  description: 'pull every image of the application and write one bundle (OCI layout in a tar, plus the manifests)',
  options: [
    manifestsFlag,
    { flags: '--license <file>', description: 'the customer license (kots.io/v1beta1 License)', required: true },
    { flags: '--out <file>', description: 'the bundle to write (must not exist)', required: true },
    { flags: '--platform <os/arch[/variant]|all>', description: 'platform to keep from each image (repeatable); an image that lacks one asked for is an error', defaultText: 'linux/amd64', parse: collect },
    { flags: '--release <label>', description: 'a release label recorded in the bundle' },
    { flags: '--format <airgap|kots>', description: 'airgap: our bundle (an OCI layout tar); kots: a KOTS .airgap (airgap.yaml, app.tar.gz, a registry storage tree; every platform unless --platform)', defaultText: 'airgap' },
    { flags: '--since <bundle>', description: 'the previous release\'s bundle: write a delta carrying only the blobs it does not hold' },
    { flags: '--split-size <size>', description: 'write numbered parts of at most SIZE (e.g. 4GB, 700MB) beside --out', parse: (v: string) => parseSize(v) },
    { flags: '--no-signatures', description: 'do not carry the images\' signatures, attestations and SBOMs' },
    { flags: '--sign-key <file>', description: 'sign the bundle with this PEM private key (ECDSA P-256 or Ed25519): writes airgap.json.sig' },
    { flags: '--include-foreign-layers', description: 'carry foreign (non-distributable) layers, e.g. Windows base layers, from the registry or their URLs' },
    concurrencyFlag,
    ...resolveFlags,
  ],
  example: 'airgap build --manifests ./app --license ./license.yaml --out app-1.4.2.tar --release 1.4.2',
  async run(_args, opts, ctx) {
    const access = await sourceAccess(opts, ctx);
    try {
      if (opts.format !== undefined && opts.format !== 'airgap' && opts.format !== 'kots') throw new AirgapError('E_USAGE', `--format ${String(opts.format)}: give airgap or kots`);
      const build = opts.format === 'kots' ? (await import('../src/kotsairgap/build.js')).buildKotsAirgap : (await phases.build()).build;
      const s = await build({
        manifestsDir: required(opts, 'manifests', '--manifests'),
        licensePath: required(opts, 'license', '--license'),
        out: required(opts, 'out', '--out'),
        proxyHost: opts.proxyHost as string,
        replicatedRegistry: opts.replicatedRegistry as string,
        registries: access,
        ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency as number } : {}),
        ...(opts.platform ? { platforms: opts.platform as string[] } : {}),
        ...(opts.release ? { release: opts.release as string } : {}),
        ...(opts.since ? { since: opts.since as string } : {}),
        ...(opts.splitSize !== undefined ? { splitSize: opts.splitSize as number } : {}),
        signatures: opts.signatures !== false,
        ...(opts.signKey ? { signKey: opts.signKey as string } : {}),
        ...(opts.includeForeignLayers ? { includeForeignLayers: true } : {}),
        onWarning: (line: string) => ctx.renderer.info(line),
        ...progress(ctx, 'pulling'),
      });
      debugConcurrency(ctx, s.concurrency);
      return {
        json: s,
        text: [
          `wrote ${s.out}: ${s.images.length} image(s), ${humanBytes(s.bytes)} of content in ${s.blobs} blob(s)`,
          ...(s.attached.length > 0 ? [`carried with the images: ${attachedText(s.attached)}`] : []),
          ...(s.signed ? [`signed (${s.signed}): airgap.json.sig`] : []),
          ...(s.delta ? [`delta on top of bundle ${baseLabel(s.delta.base)}: ${s.delta.blobsFromBase} blob(s), ${humanBytes(s.delta.bytesFromBase)} left to the base`] : []),
          ...(s.parts ? [`split into ${s.parts.length} part(s) beside it: ${s.parts.map((p) => `${p.name} (${humanBytes(p.size)})`).join(', ')}`] : []),
          ...s.findings.map(formatFinding),
        ].join('\n'),
      };
    } finally {
      await access.close();
    }
  },
};

const inspect: CommandSpec = {
  name: 'inspect',
  description: 'list the images and metadata of a bundle',
  args: ['<bundle>'],
  options: [],
  example: 'airgap inspect app-1.4.2.tar',
  async run(args) {
    const { inspectBundle } = await phases.inspect();
    const raw = await inspectBundle(bundleArg(args));
    // What the bundle says is printed with control characters escaped; --json carries it as read.
    const info = printableFields(raw);
    const rows = [['IMAGE', 'DIGEST', 'PLATFORMS', 'SIZE'],
      ...info.images.flatMap((i) => [[i.ref, i.digest, i.platforms.join(',') || '-', humanBytes(i.size)],
        ...i.attached.map((a) => [`  + ${a.kind} ${a.tag ?? `(referrer${a.artifactType ? ` ${a.artifactType}` : ''})`}`, a.digest, '-', humanBytes(a.size)])])];
    const head = [
      `bundle:   ${info.path} (${humanBytes(info.fileSize)})`,
      ...(info.appSlug ? [`app:      ${info.appSlug}${info.release ? ` (release ${info.release})` : ''}`] : []),
      ...(info.created ? [`created:  ${info.created} by ${info.tool}`] : []),
      ...(info.id ? [`id:       ${info.id}`] : []),
      ...(info.delta ? [
        `delta:    on top of bundle ${baseLabel(info.delta.base)}; ${info.delta.blobsFromBase} blob(s), ${humanBytes(info.delta.bytesFromBase)} expected from it`,
        `          push it only into a registry that holds the base (${info.delta.base.id}); ctr images import cannot read a delta alone`,
      ] : []),
      ...(info.parts ? [`parts:    ${info.parts.length} (${info.parts.map((p) => p.name).join(', ')})`] : []),
      ...(info.signed ? ['signed:   airgap.json.sig (check it with airgap verify --key VENDOR.pub)'] : []),
      `manifests: ${info.appFiles.length} file(s) under app/`,
      '',
    ];
    return { json: raw, text: head.join('\n') + table(rows) };
  },
};

const verify: CommandSpec = {
  name: 'verify',
  description: 're-hash every blob of a bundle and check every image is complete',
  args: ['<bundle>'],
  options: [keyFlag],
  example: 'airgap verify app-1.4.2.tar --key vendor.pub',
  async run(args, opts) {
    const path = bundleArg(args);
    const [{ openBundle }, { verifyBundle }, { checkSignatures, signatureKeys }] = await Promise.all([import('../src/bundle/source.js'), phases.verify(), phases.signing()]);
    const reader = await openBundle(path);
    try {
      // --key: the signature and the digests it pins first; a failure there is exit 3 at once.
      // AIRGAP_REQUIRE_SIGNATURE (the admin's key) is checked whatever --key says.
      const keys = signatureKeys(opts.key as string | undefined);
      const signed = await checkSignatures(reader, keys);
      const r = { ...await verifyBundle(reader), ...(signed ? { signature: { key: keys.join(', '), ...signed } } : {}) };
      const extra = [
        ...(signed ? [`signature: airgap.json.sig verifies with ${keys.join(' and ')} (${signed.keyType}); index.json and ${signed.pinned - 1} app file(s) match their pinned digests`,
          printable(`signed:    ${describeRelease(signed.release)}`)] : []),
        ...(r.parts ? [`${r.parts} part(s) match their sha256`] : []),
        ...(r.expectedFromBase ? [`${r.expectedFromBase.blobs} blob(s), ${humanBytes(r.expectedFromBase.bytes)} expected from base bundle ${baseLabel(r.expectedFromBase.base)}`] : []),
      ];
      if (!signed && (await reader.readEntry('airgap.json.sig')) !== undefined) {
        extra.push('the bundle is signed (airgap.json.sig): add --key VENDOR.pub to check that it comes from the vendor unchanged');
      }
      const text = r.ok
        ? `ok: ${r.blobs} blobs, ${humanBytes(r.bytes)} verified, ${reader.images().length} image(s) complete${r.expectedFromBase ? ' (as a delta)' : ''}${extra.map((x) => `\n${x}`).join('')}`
        : [`${r.problems.length} problem(s) in ${path}:`, ...r.problems.map((p) => printable(`  ${p.ref ? p.ref + ': ' : ''}${p.message}`))].join('\n');
      return { json: r, text, exitCode: r.ok ? 0 : 3 };
    } finally {
      await reader.close();
    }
  },
};

const dryRunFlag: OptionSpec = { flags: '--dry-run', description: 'check everything and say what would be pushed, mounted, skipped and written, with HEAD requests only' };

function pushOptions(args: string[], opts: Record<string, unknown>, access: Awaited<ReturnType<typeof targetAccess>>['access'], ctx: Context) {
  return {
    bundle: bundleArg(args), registry: opts.registry as string, registries: access,
    ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency as number } : {}),
    keepPath: Boolean(opts.keepPath), ...signatureOptions(opts), ...progress(ctx, 'pushing'),
  };
}

const pushCmd: CommandSpec = {
  name: 'push',
  description: 'push every image of a bundle into the customer registry',
  args: ['<bundle>'],
  options: [...registryFlags, ...pushSignatureFlags, dryRunFlag, concurrencyFlag],
  example: 'printf \'%s\' "$PASSWORD" | airgap push app-1.4.2.tar --registry registry.corp:5000/acme --username deployer --password-stdin',
  async run(args, opts, ctx) {
    const { access } = await targetAccess(opts, ctx);
    try {
      const { PushJob } = await phases.push();
      const job = await PushJob.open(pushOptions(args, opts, access, ctx));
      try {
        if (opts.dryRun) {
          const d = await job.dryRun();
          return { json: d, text: dryRunText(d), ...baseMissing(d) };
        }
        await job.checkAccess();
        const s = await job.run();
        debugConcurrency(ctx, s.concurrency);
        return { json: s, text: pushText(s) };
      } finally {
        await job.close();
      }
    } finally {
      await access.close();
    }
  },
};

/** Each distinct digest once, as build counts it. */
function countsText(c: PushCounts, dry: boolean): string {
  const [up, mount, there] = dry ? ['to upload', 'to mount', 'already there'] : ['uploaded', 'mounted', 'already there'];
  return `${humanBytes(c.bytes)} of content in ${c.blobs} blob(s): ${humanBytes(c.bytesUploaded)} ${up} (${c.blobsUploaded}), ` +
    `${humanBytes(c.bytesMounted)} ${mount} from another repository (${c.blobsMounted}), ${humanBytes(c.bytesExisting)} ${there} (${c.blobsExisting})`;
}

function pushText(summary: PushSummary): string {
  const s = printableFields(summary);
  const pushed = s.images.filter((i) => i.status === 'pushed').length;
  return [
    ...(s.verified ? [`bundle signature verified (${s.verified}), every pinned digest and blob checked`] : []),
    ...(s.signedRelease ? [`signed:  ${describeRelease(s.signedRelease)}`] : []),
    ...(s.delta ? [`delta on top of bundle ${baseLabel(s.delta.base)}: ${s.delta.blobsFromBase} blob(s) found in the registry`] : []),
    ...s.images.map((i) => `${i.status === 'pushed' ? 'pushed       ' : 'already there'} ${i.target} (${i.digest.slice(0, 19)})`),
    ...(s.attached.length > 0 ? [`pushed ${attachedText(s.attached)} next to their images`] : []),
    ...s.attached.filter((a) => a.existing === 'merged').map((a) => `kept the signatures already under ${a.target}, the bundle's added to them`),
    ...s.warnings.map((w) => `warning: ${w}`),
    ...s.charts.map((c) => `${c.status === 'pushed' ? 'pushed chart ' : 'already there'} ${c.target} (helm pull oci://${c.target.replace(/:[^:/]+$/, '')} --version ${c.version})`),
    `${s.images.length} image(s), ${pushed} pushed, ${s.images.length - pushed} already there; ${countsText(s, false)}`,
  ].join('\n');
}

function dryRunText(dryRun: PushDryRun): string {
  const d = printableFields(dryRun);
  const would = d.images.filter((i) => i.status === 'would push').length;
  return [
    `dry run: nothing was sent to ${d.registry} and nothing was written`,
    ...d.images.map((i) => `${i.status === 'would push' ? 'would push   ' : 'already there'} ${i.source} → ${i.target} (${i.digest.slice(0, 19)})`),
    ...d.charts.map((c) => `${c.status === 'would push' ? 'would push   ' : 'already there'} chart ${c.name} ${c.version} → ${c.target}`),
    `${d.images.length} image(s), ${would} to push, ${d.images.length - would} already there; ${countsText(d, true)}`,
    ...(d.missingFromBase ? [`the push would refuse: ${d.missingFromBase.length} blob(s) this delta leaves to its base are not in the registry (${d.missingFromBase.join(', ')})`] : []),
  ].join('\n');
}

function baseMissing(d: PushDryRun): Partial<Result> {
  return d.missingFromBase
    ? { failed: { code: 'E_BASE_MISSING', problem: `push --dry-run: the registry lacks ${d.missingFromBase.length} blob(s) this delta bundle expects from its base (push the base bundle first)` } }
    : {};
}

const configValuesFlag: OptionSpec = {
  flags: '--config-values <file>',
  description: 'a KOTS release: the answers to its Config screen (kots.io/v1beta1 ConfigValues); without it the defaults stand. The values used are written to OUT/config-values.yaml: give that file to the next run',
};

const rewriteFlags: OptionSpec[] = [
  { flags: '--out <dir>', description: 'where to write rendered/, base/ and midstream/ (must not exist or be empty)', required: true },
  { flags: '--namespace <ns>', description: 'the Kubernetes namespace the application is installed in: objects that name none get it, and the pull secret is created there', default: 'default' },
  configValuesFlag,
  { flags: '--license <file>', description: 'the customer license, for a KOTS release whose templates read it (LicenseFieldValue); never written into the output except where the templates put it' },
];

function rewriteOptions(args: string[], opts: Record<string, unknown>, credentials: Credentials | undefined) {
  return {
    bundle: bundleArg(args), registry: required(opts, 'registry', '--registry'), out: required(opts, 'out', '--out'),
    namespace: opts.namespace as string, keepPath: Boolean(opts.keepPath), ...(credentials ? { credentials } : {}),
    ...(opts.key ? { key: opts.key as string } : {}),
    ...(opts.configValues ? { configValues: opts.configValues as string } : {}),
    ...(opts.license ? { license: opts.license as string } : {}),
  };
}

const rewriteCmd: CommandSpec = {
  name: 'rewrite',
  description: 'rewrite the bundle\'s manifests to pull from the customer registry, with an image pull secret; checks the registry holds every image',
  args: ['<bundle>'],
  options: [...registryFlags, ...rewriteFlags, keyFlag,
    { flags: '--skip-registry-check', description: 'do not ask the registry whether it holds every image (to rewrite before the push, or without access to it)' }],
  example: 'printf \'%s\' "$PASSWORD" | airgap rewrite app-1.4.2.tar --registry registry.corp:5000/acme --username deployer --password-stdin --namespace shop --out ./install',
  async run(args, opts, ctx) {
    const { access, credentials } = await targetAccess(opts, ctx);
    try {
      const { RewriteJob } = await phases.rewrite();
      const job = await RewriteJob.open(rewriteOptions(args, opts, credentials));
      if (!opts.skipRegistryCheck) await job.checkRegistry(access);
      const s = await job.write();
      for (const w of s.warnings) ctx.renderer.info(`airgap: warning: ${w}`);
      return { json: s, text: [...(s.signedRelease ? [printable(`signed:  ${describeRelease(s.signedRelease)}`)] : []),
        `wrote ${s.out}/rendered (${s.files} file(s), ${s.images.length} image reference(s) rewritten) and the kustomize overlay ${s.out}/midstream`, ...releaseText(s), ...applyText('apply with:', s, opts.namespace as string)].join('\n') };
    } finally {
      await access.close();
    }
  },
};

/**
 * The apply command, which works as printed: every object in rendered/ names its namespace
 * (--namespace unless the manifests name another), and those namespaces must exist.
 */
function applyText(prefix: string, s: RewriteSummary, namespace: string): string[] {
  const namespaces = [...new Set([namespace, ...s.namespaces])].filter((n) => n !== 'default').sort();
  return [
    `${prefix} kubectl apply -f ${s.out}/rendered`,
    ...(namespaces.length > 0
      ? [`  (objects that name no namespace are in ${namespace}; Kubernetes namespace(s) ${namespaces.join(', ')} must exist: kubectl create namespace ${namespaces[0]})`]
      : []),
  ];
}

/** What a KOTS release adds to the rewrite's output: the values kept, the charts and how to install them. */
function releaseText(s: RewriteSummary): string[] {
  return [
    ...(existsSync(join(s.out, 'config-values.yaml'))
      ? [`config values used: ${s.out}/config-values.yaml (give it as --config-values to the next install: generated passwords stay the same)`] : []),
    ...s.charts.map((c) => `chart ${c.name} ${c.version}: rendered into ${s.out}/rendered; or: helm upgrade --install ${c.releaseName} ${s.out}/${c.archive} -f ${s.out}/${c.values} -n ${c.namespace}`),
  ];
}

const install: CommandSpec = {
  name: 'install',
  description: 'push the bundle\'s images and rewrite its manifests (push + rewrite); every check of both runs before anything is pushed',
  args: ['<bundle>'],
  options: [...registryFlags, ...rewriteFlags, ...pushSignatureFlags, dryRunFlag, concurrencyFlag],
  example: 'printf \'%s\' "$PASSWORD" | airgap install app-1.4.2.tar --registry registry.corp:5000/acme --username deployer --password-stdin --namespace shop --out ./install',
  async run(args, opts, ctx) {
    const { access, credentials } = await targetAccess(opts, ctx);
    try {
      const [{ PushJob }, { RewriteJob }] = await Promise.all([phases.push(), phases.rewrite()]);
      // Every check of both halves before the first byte moves: --out, the manifests, the bundle.
      const rw = await RewriteJob.open(rewriteOptions(args, opts, credentials));
      const job = await PushJob.open(pushOptions(args, opts, access, ctx));
      try {
        if (opts.dryRun) {
          const d = await job.dryRun();
          const files = rw.files();
          return {
            json: { push: d, rewrite: { ...rw.summary(), dryRun: true, wouldWrite: files } },
            text: `${dryRunText(d)}\nwould write ${files.length} file(s) under ${rw.summary().out}:\n${files.map((f) => `  ${f}`).join('\n')}`,
            ...baseMissing(d),
          };
        }
        await job.checkAccess();
        const p = await job.run();
        debugConcurrency(ctx, p.concurrency);
        ctx.renderer.stop();
        const r = await rw.write();
        for (const w of r.warnings) ctx.renderer.info(`airgap: warning: ${w}`);
        return {
          json: { push: p, rewrite: r },
          text: [pushText(p), `manifests: ${r.out}/rendered (kustomize overlay: ${r.out}/midstream)`, ...releaseText(r), ...applyText('next:', r, opts.namespace as string)].join('\n'),
        };
      } finally {
        await job.close();
      }
    } finally {
      await access.close();
    }
  },
};

const onlineCmd: CommandSpec = {
  name: 'online',
  description: 'for an online cluster: an overlay that pulls private images through the vendor proxy, with the license pull secret',
  options: [
    manifestsFlag,
    { flags: '--license <file>', description: 'the customer license (kots.io/v1beta1 License)', required: true },
    { flags: '--out <dir>', description: 'where to write base/, midstream/ and rendered/ (must not exist or be empty)', required: true },
    { flags: '--namespace <ns>', description: 'the Kubernetes namespace the application is installed in: objects that name none get it', default: 'default' },
    configValuesFlag,
    ...resolveFlags,
  ],
  example: 'airgap online --manifests ./release --license ./license.yaml --namespace shop --out ./online',
  async run(_args, opts, ctx) {
    const access = await sourceAccess(opts, ctx);
    try {
      const { online } = await phases.online();
      const s = await online({
        manifestsDir: required(opts, 'manifests', '--manifests'),
        licensePath: required(opts, 'license', '--license'),
        out: required(opts, 'out', '--out'),
        namespace: opts.namespace as string,
        ...(opts.configValues ? { configValues: opts.configValues as string } : {}),
        proxyHost: opts.proxyHost as string,
        replicatedRegistry: opts.replicatedRegistry as string,
        registries: access,
      });
      for (const n of s.notRead) ctx.renderer.info(`not read: ${n.path} (${n.reason})`);
      for (const w of s.warnings) ctx.renderer.info(`airgap: warning: ${w}`);
      const rows = [['IMAGE', 'KIND', 'PULLED AS', 'SECRET'],
        ...s.images.map((i) => [i.ref, i.kind, i.pullAs === i.ref ? '(as written)' : i.pullAs, i.withSecret ? 'yes' : '-'])];
      const secret = s.pullSecret
        ? `pull secret ${s.pullSecret.name} (for ${s.pullSecret.registries.join(' and ')}) in Kubernetes namespace(s) ${s.pullSecret.namespaces.join(', ')}: ` +
          `it holds the license ID; ${s.pullSecret.files.map((f) => `${s.out}/${f}`).join(' and ')} are readable by you only`
        : 'no image is pulled through the vendor proxy or registry: no pull secret written';
      return {
        json: s,
        text: [
          table(rows),
          ...s.findings.map(formatFinding),
          secret,
          `wrote ${s.out}/base, ${s.out}/midstream and ${s.out}/rendered`,
          `apply with: kubectl apply -k ${s.out}/midstream (or kubectl apply -f ${s.out}/rendered)`,
        ].join('\n'),
      };
    } finally {
      await access.close();
    }
  },
};

export const commands: CommandSpec[] = [plan, buildCmd, inspect, verify, pushCmd, rewriteCmd, install, onlineCmd];
