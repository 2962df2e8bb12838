import test from 'ava';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { createRegistryAccess, type ClosableRegistryAccess } from '../registry/access.js';
import { chartWithSubchart, helm, packageChart, testHelm, writeChart, type BuiltChart } from '../testing/charts.js';
import { startRegistry, type TestRegistry } from '../testing/registry.js';
import { readChartArchive } from './chart.js';
import { HELM_CHART_LAYER_MEDIA_TYPE, HELM_CONFIG_MEDIA_TYPE, chartArtifact, chartTag, chartTarget, helmConfigJson, pushChart } from './oci.js';

let dir: string;
let homes: string;
let registry: TestRegistry;
let access: ClosableRegistryAccess;
let web: BuiltChart;

test.before(async () => {
  testHelm();
  dir = await mkdtemp(join(tmpdir(), 'airgap-oci-test-'));
  homes = join(dir, 'homes');
  registry = await startRegistry();
  access = createRegistryAccess({ retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 }, credentialOptions: { configDir: '/nonexistent-airgap', env: {} } });
  web = await chartWithSubchart(join(dir, 'web'), homes);
});

test.after.always(async () => {
  await access?.close();
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

test('a pushed chart is what helm pull returns, byte for byte; pushing again changes nothing', async (t) => {
  const chart = (await readChartArchive(web.bytes, 'web-1.2.3.tgz'))!;
  const target = chartTarget({ host: registry.host, namespace: 'acme' }, chart);
  t.deepEqual(target, { repository: 'acme/web', tag: '1.2.3', full: `${registry.host}/acme/web:1.2.3` });
  const artifact = chartArtifact(chart, web.bytes);
  t.is(artifact.config.descriptor.mediaType, HELM_CONFIG_MEDIA_TYPE);
  t.is(artifact.layer.descriptor.mediaType, HELM_CHART_LAYER_MEDIA_TYPE);
  t.true(artifact.layer.bytes.equals(web.bytes));

  const store = access.open({ registry: registry.host, repository: target.repository });
  const pushed = await pushChart(store, artifact);
  t.is(pushed.digest, artifact.manifest.descriptor.digest);
  t.is(pushed.layer, 'uploaded');

  const out = join(dir, 'pulled');
  await mkdir(out);
  await helm(['pull', `oci://${registry.host}/acme/web`, '--version', '1.2.3', '--plain-http', '-d', out], homes);
  t.true((await readFile(join(out, 'web-1.2.3.tgz'))).equals(web.bytes));

  const again = await pushChart(store, chartArtifact(chart, web.bytes));
  t.is(again.digest, pushed.digest);
  t.is(again.layer, 'existed');
});

test('the config is what helm push writes for the same chart (Chart.yaml as helm\'s JSON)', async (t) => {
  await helm(['push', web.path, `oci://${registry.host}/by-helm`, '--plain-http'], homes);
  const theirs = access.open({ registry: registry.host, repository: 'by-helm/web' });
  const resolved = await theirs.resolve('1.2.3');
  const manifest = JSON.parse(Buffer.from(resolved.bytes).toString('utf8')) as { config: { digest: string; size: number; mediaType: string }; layers: { digest: string }[]; annotations: Record<string, string> };
  const helmConfig = await readAll(await theirs.fetch(manifest.config));
  const chart = (await readChartArchive(web.bytes, 'web-1.2.3.tgz'))!;
  const ours = chartArtifact(chart, web.bytes);
  t.is(ours.config.bytes.toString('utf8'), helmConfig.toString('utf8'));
  t.is(ours.config.descriptor.digest, manifest.config.digest);
  t.is(ours.layer.descriptor.digest, manifest.layers[0]!.digest);
  const { 'org.opencontainers.image.created': created, ...rest } = manifest.annotations;
  t.truthy(created);
  t.deepEqual(JSON.parse(chartArtifact(chart, web.bytes).manifest.bytes.toString('utf8')).annotations, rest);
});

test('config JSON: struct order, omitted empties, sanitised strings, Go escaping; a + version is tagged with _', async (t) => {
  t.is(helmConfigJson({
    apiVersion: 'v2', name: 'x', version: '1.0.0+b', description: 'line one\nline <two> & three\n', type: 'application',
    annotations: { z: '1', a: 'multi\nline' }, keywords: [], deprecated: false,
    dependencies: [{ name: 'd', version: '1', condition: 'd.enabled', alias: 'dd' }],
  }), '{"name":"x","version":"1.0.0+b","description":"line one line \\u003ctwo\\u003e \\u0026 three ","apiVersion":"v2",' +
    '"annotations":{"a":"multi\\nline","z":"1"},"dependencies":[{"name":"d","version":"1","repository":"","condition":"d.enabled","alias":"dd"}],"type":"application"}');
  t.is(chartTag('1.0.0+b.2'), '1.0.0_b.2');

  // helm itself pulls a + version by that tag.
  const root = await writeChart(join(dir, 'plus'), { name: 'plus', version: '0.1.0+build.7' });
  const built = await packageChart(root, join(dir, 'plus-out'), homes);
  const chart = (await readChartArchive(built.bytes, 'plus.tgz'))!;
  const artifact = chartArtifact(chart, built.bytes, { created: '2025-01-02T03:04:05Z' });
  t.is(JSON.parse(artifact.manifest.bytes.toString('utf8')).annotations['org.opencontainers.image.created'], '2025-01-02T03:04:05Z');
  await pushChart(access.open({ registry: registry.host, repository: 'acme/plus' }), artifact);
  const out = join(dir, 'plus-pulled');
  await mkdir(out);
  await helm(['pull', `oci://${registry.host}/acme/plus`, '--version', '0.1.0+build.7', '--plain-http', '-d', out], homes);
  t.true((await readFile(join(out, 'plus-0.1.0+build.7.tgz'))).equals(built.bytes));
});
