import { AirgapError } from '../src/errors.js';
import type { PushSummary } from '../src/push.js';
import { baseLabel, parseSize } from '../src/bundle/format.js';
import type { RegistryAccessOptions } from '../src/registry/access.js';
import { parseTargetRegistry } from '../src/target.js';
import { formatReference } from '../src/reference.js';
import { formatFinding } from '../src/app/findings.js';
import type { CopyEvent } from '../src/copy.js';
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
  inspect: () => import('../src/inspect.js'),
  reader: () => import('../src/bundle/reader.js'),
  verify: () => import('../src/bundle/verify.js'),
  signing: () => import('../src/bundle/signing.js'),
  access: () => import('../src/registry/access.js'),
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
}

interface OptionSpec {
  flags: string;
  description: string;
  default?: unknown;
  parse?: (value: string, previous: unknown) => unknown;
}

export interface CommandSpec {
  name: string;
  description: string;
  args?: string[];
  options: OptionSpec[];
  run(args: string[], opts: Record<string, unknown>, ctx: Context): Promise<Result>;
}

const DEFAULT_PROXY = 'proxy.replicated.com';
const DEFAULT_VENDOR_REGISTRY = 'registry.replicated.com';
const DEFAULT_CONCURRENCY = 8;

function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 256) throw new AirgapError('E_USAGE', `${flag} "${v}" must be a whole number from 1 to 256`);
    return n;
  };
}

const collect = (v: string, prev: unknown): string[] => [...((prev as string[] | undefined) ?? []), v];

const resolveFlags: OptionSpec[] = [
  { flags: '--proxy-host <host>', description: 'the vendor proxy for private images', default: DEFAULT_PROXY },
  { flags: '--replicated-registry <host>', description: 'the vendor registry (images there are pulled with the license)', default: DEFAULT_VENDOR_REGISTRY },
  { flags: '--ca-file <file>', description: 'extra CA certificate (PEM) trusted for every source registry' },
];

const registryFlags: OptionSpec[] = [
  { flags: '--registry <host/namespace>', description: 'the customer registry and namespace, e.g. registry.corp:5000/my-app' },
  { flags: '--username <user>', description: 'user for the customer registry' },
  { flags: '--password <password>', description: 'password for the customer registry (prefer --password-stdin)' },
  { flags: '--password-stdin', description: 'read the password from standard input' },
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
  flags: '--concurrency <n>', description: 'blobs copied at once', default: DEFAULT_CONCURRENCY, parse: positiveInt('--concurrency'),
};

function required(opts: Record<string, unknown>, name: string, flag: string): string {
  const v = opts[name];
  if (typeof v !== 'string' || v === '') throw new AirgapError('E_USAGE', `missing ${flag}`, { hint: 'see airgap --help' });
  return v;
}

function bundleArg(args: string[]): string {
  const b = args[0];
  if (!b) throw new AirgapError('E_USAGE', 'missing the BUNDLE argument', { hint: 'give the bundle file written by airgap build' });
  return b;
}

/**
 * Network tuning from the environment, read here and nowhere else (README: "What happens when
 * things go wrong"). AIRGAP_RETRY_BASE_MS scales the backoff between retries (default 250 ms,
 * doubling up to 32×); AIRGAP_HTTP_TIMEOUT_MS bounds the wait for a response's headers and for
 * each chunk of its body (default 120000). Tests set both small; users rarely need them.
 */
function networkTuning(): Pick<RegistryAccessOptions, 'retry' | 'timeoutMs'> {
  const num = (name: string, min: number, max: number): number | undefined => {
    const v = process.env[name];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new AirgapError('E_USAGE', `${name}="${v}" must be a whole number of milliseconds from ${min} to ${max}`);
    }
    return n;
  };
  const base = num('AIRGAP_RETRY_BASE_MS', 1, 60_000);
  const timeoutMs = num('AIRGAP_HTTP_TIMEOUT_MS', 100, 3_600_000);
  return {
    ...(base !== undefined ? { retry: { baseDelayMs: base, maxDelayMs: base * 32 } } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  };
}

async function sourceAccess(opts: Record<string, unknown>) {
  const caFile = opts.caFile as string | undefined;
  const { createRegistryAccess } = await phases.access();
  return createRegistryAccess({ ...networkTuning(), ...(caFile ? { defaultCaFile: caFile } : {}) });
}

/** Registry access for the customer registry, from the registry flags. */
async function targetAccess(opts: Record<string, unknown>, ctx: Context) {
  const registry = parseTargetRegistry(required(opts, 'registry', '--registry'));
  if (opts.password !== undefined && opts.passwordStdin) throw new AirgapError('E_USAGE', 'give --password or --password-stdin, not both');
  const password = opts.passwordStdin ? ctx.readPasswordStdin() : (opts.password as string | undefined);
  const username = opts.username as string | undefined;
  if ((username === undefined) !== (password === undefined)) {
    throw new AirgapError('E_USAGE', '--username and --password (or --password-stdin) go together');
  }
  const credentials = username !== undefined && password !== undefined ? { username, password } : undefined;
  const { createRegistryAccess } = await phases.access();
  const access = createRegistryAccess({
    ...networkTuning(),
    hosts: [{
      host: registry.host,
      ...(opts.plainHttp ? { plainHttp: true } : {}),
      ...(opts.insecureSkipTlsVerify ? { insecureSkipTlsVerify: true } : {}),
      ...(opts.caFile ? { caFile: opts.caFile as string } : {}),
    }],
    ...(credentials ? { credentials: { [registry.host]: credentials } } : {}),
  });
  return { registry, access, credentials };
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

const plan: CommandSpec = {
  name: 'plan',
  description: 'find every image of the application and decide where each is pulled from (downloads nothing)',
  options: [
    { flags: '--manifests <dir>', description: 'the application manifests' },
    { flags: '--license <file>', description: 'the customer license (kots.io/v1beta1 License)' },
    ...resolveFlags,
  ],
  async run(_args, opts) {
    const access = await sourceAccess(opts);
    try {
      const { makePlan } = await phases.plan();
      const p = await makePlan({
        manifestsDir: required(opts, 'manifests', '--manifests'),
        ...(opts.license ? { licensePath: opts.license as string } : {}),
        proxyHost: opts.proxyHost as string,
        replicatedRegistry: opts.replicatedRegistry as string,
        registries: access,
        refuse: false,
      });
      const images = p.images.map((i) => ({
        ref: formatReference(i.ref),
        kind: i.kind,
        pullFrom: `${i.source.registry}/${i.source.repository}`,
        occurrences: i.occurrences,
      }));
      const rows = [['IMAGE', 'KIND', 'PULLED FROM', 'WHERE'],
        ...images.map((i) => [i.ref, i.kind, i.pullFrom, i.occurrences.map((o) => `${o.file}:${o.line}`).join(', ')])];
      const { findings } = p.scan;
      const refused = findings.some((f) => f.severity === 'error');
      const notRead = p.scan.notRead.map((n) => `not read: ${n.path} (${n.reason})`);
      const text = [...(refused ? [] : [table(rows)]), ...notRead, ...findings.map(formatFinding),
        ...(refused ? ['refused: build would write nothing until these are fixed'] : [])];
      return {
        json: { appSlug: p.appSlug, images, notRead: p.scan.notRead, findings }, text: text.join('\n'), ...(refused ? { exitCode: 2 } : {}),
      };
    } finally {
      await access.close();
    }
  },
};

const buildCmd: CommandSpec = {
  name: 'build',
  description: 'pull every image of the application and write one bundle (OCI layout in a tar, plus the manifests)',
  options: [
    { flags: '--manifests <dir>', description: 'the application manifests' },
    { flags: '--license <file>', description: 'the customer license (kots.io/v1beta1 License)' },
    { flags: '--out <file>', description: 'the bundle to write (must not exist)' },
    { flags: '--platform <os/arch[/variant]|all>', description: 'platform to keep from multi-platform images (repeatable)', parse: collect },
    { flags: '--release <label>', description: 'a release label recorded in the bundle' },
    { flags: '--since <bundle>', description: 'the previous release\'s bundle: write a delta carrying only the blobs it does not hold' },
    { flags: '--split-size <size>', description: 'write numbered parts of at most SIZE (e.g. 4GB, 700MB) beside --out', parse: (v: string) => parseSize(v) },
    { flags: '--no-signatures', description: 'do not carry the images\' signatures, attestations and SBOMs' },
    { flags: '--sign-key <file>', description: 'sign the bundle with this PEM private key (ECDSA P-256 or Ed25519): writes airgap.json.sig' },
    { flags: '--include-foreign-layers', description: 'carry foreign (non-distributable) layers, e.g. Windows base layers, from the registry or their URLs' },
    concurrencyFlag,
    ...resolveFlags,
  ],
  async run(_args, opts, ctx) {
    const access = await sourceAccess(opts);
    try {
      const { build } = await phases.build();
      const s = await build({
        manifestsDir: required(opts, 'manifests', '--manifests'),
        licensePath: required(opts, 'license', '--license'),
        out: required(opts, 'out', '--out'),
        proxyHost: opts.proxyHost as string,
        replicatedRegistry: opts.replicatedRegistry as string,
        registries: access,
        concurrency: opts.concurrency as number,
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
      return {
        json: s,
        text: [
          `wrote ${s.out}: ${s.images.length} image(s), ${s.blobs} blobs, ${humanBytes(s.bytes)}`,
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
  async run(args) {
    const { inspectBundle } = await phases.inspect();
    const info = await inspectBundle(bundleArg(args));
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
    return { json: info, text: head.join('\n') + table(rows) };
  },
};

const verify: CommandSpec = {
  name: 'verify',
  description: 're-hash every blob of a bundle and check every image is complete',
  args: ['<bundle>'],
  options: [keyFlag],
  async run(args, opts) {
    const path = bundleArg(args);
    const [{ BundleReader }, { verifyBundle }, { checkSignature }] = await Promise.all([phases.reader(), phases.verify(), phases.signing()]);
    const reader = await BundleReader.open(path);
    try {
      // --key: the signature and the digests it pins first; a failure there is exit 3 at once.
      const signed = opts.key ? await checkSignature(reader, opts.key as string) : undefined;
      const r = { ...await verifyBundle(reader), ...(signed ? { signature: { key: opts.key as string, ...signed } } : {}) };
      const extra = [
        ...(signed ? [`signature: airgap.json.sig verifies with ${opts.key as string} (${signed.keyType}); index.json and ${signed.pinned - 1} app file(s) match their pinned digests`] : []),
        ...(r.parts ? [`${r.parts} part(s) match their sha256`] : []),
        ...(r.expectedFromBase ? [`${r.expectedFromBase.blobs} blob(s), ${humanBytes(r.expectedFromBase.bytes)} expected from base bundle ${baseLabel(r.expectedFromBase.base)}`] : []),
      ];
      if (!signed && (await reader.readEntry('airgap.json.sig')) !== undefined) {
        extra.push('the bundle is signed (airgap.json.sig): add --key VENDOR.pub to check that it comes from the vendor unchanged');
      }
      const text = r.ok
        ? `ok: ${r.blobs} blobs, ${humanBytes(r.bytes)} verified, ${reader.images().length} image(s) complete${r.expectedFromBase ? ' (as a delta)' : ''}${extra.map((x) => `\n${x}`).join('')}`
        : [`${r.problems.length} problem(s) in ${path}:`, ...r.problems.map((p) => `  ${p.ref ? p.ref + ': ' : ''}${p.message}`)].join('\n');
      return { json: r, text, exitCode: r.ok ? 0 : 3 };
    } finally {
      await reader.close();
    }
  },
};

const pushCmd: CommandSpec = {
  name: 'push',
  description: 'push every image of a bundle into the customer registry',
  args: ['<bundle>'],
  options: [...registryFlags, ...pushSignatureFlags, concurrencyFlag],
  async run(args, opts, ctx) {
    const { access } = await targetAccess(opts, ctx);
    try {
      const { push } = await phases.push();
      const s = await push({ bundle: bundleArg(args), registry: opts.registry as string, registries: access, concurrency: opts.concurrency as number, ...signatureOptions(opts), ...progress(ctx, 'pushing') });
      return { json: s, text: pushText(s) };
    } finally {
      await access.close();
    }
  },
};

function pushText(s: PushSummary): string {
  return [
    ...(s.verified ? [`bundle signature verified (${s.verified}), every pinned digest and blob checked`] : []),
    ...(s.delta ? [`delta on top of bundle ${baseLabel(s.delta.base)}: ${s.delta.blobsFromBase} blob(s) found in the registry`] : []),
    ...s.images.map((i) => `pushed ${i.target} (${i.digest.slice(0, 19)})`),
    ...(s.attached.length > 0 ? [`pushed ${attachedText(s.attached)} next to their images`] : []),
    `${s.images.length} image(s): ${humanBytes(s.bytesUploaded)} uploaded in ${s.blobsUploaded} blob(s), ${humanBytes(s.bytesSkipped)} skipped (${s.blobsExisting} already there, ${s.blobsMounted} mounted)`,
  ].join('\n');
}

const rewriteFlags: OptionSpec[] = [
  { flags: '--out <dir>', description: 'where to write rendered/, base/ and midstream/ (must not exist or be empty)' },
  { flags: '--namespace <ns>', description: 'the namespace the application is installed in', default: 'default' },
];

const rewriteCmd: CommandSpec = {
  name: 'rewrite',
  description: 'rewrite the bundle\'s manifests to pull from the customer registry, with an image pull secret',
  args: ['<bundle>'],
  options: [...registryFlags, ...rewriteFlags, keyFlag],
  async run(args, opts, ctx) {
    // Only the credentials are used (for the pull secret); the flags are checked as for push.
    const { access, credentials } = await targetAccess(opts, ctx);
    await access.close();
    const { rewrite } = await phases.rewrite();
    const s = await rewrite({
      bundle: bundleArg(args), registry: required(opts, 'registry', '--registry'), out: required(opts, 'out', '--out'),
      namespace: opts.namespace as string, ...(credentials ? { credentials } : {}), ...(opts.key ? { key: opts.key as string } : {}),
    });
    return { json: s, text: `wrote ${s.out}/rendered (${s.files} file(s), ${s.images.length} image reference(s) rewritten) and the kustomize overlay ${s.out}/midstream\napply with: kubectl apply -f ${s.out}/rendered` };
  },
};

const install: CommandSpec = {
  name: 'install',
  description: 'push the bundle\'s images and rewrite its manifests (push + rewrite)',
  args: ['<bundle>'],
  options: [...registryFlags, ...rewriteFlags, ...pushSignatureFlags, concurrencyFlag],
  async run(args, opts, ctx) {
    const { access, credentials } = await targetAccess(opts, ctx);
    const bundle = bundleArg(args);
    const out = required(opts, 'out', '--out');
    try {
      const [{ push }, { rewrite }] = await Promise.all([phases.push(), phases.rewrite()]);
      const p = await push({ bundle, registry: opts.registry as string, registries: access, concurrency: opts.concurrency as number, ...signatureOptions(opts), ...progress(ctx, 'pushing') });
      ctx.renderer.stop();
      const r = await rewrite({ bundle, registry: opts.registry as string, out, namespace: opts.namespace as string, ...(credentials ? { credentials } : {}) });
      return {
        json: { push: p, rewrite: r },
        text: `${pushText(p)}\nmanifests: ${r.out}/rendered (kustomize overlay: ${r.out}/midstream)\nnext: kubectl apply -f ${r.out}/rendered`,
      };
    } finally {
      await access.close();
    }
  },
};

export const commands: CommandSpec[] = [plan, buildCmd, inspect, verify, pushCmd, rewriteCmd, install];
