import test from 'ava';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { isAirgapError } from '../errors.js';
import { chartWithMissingDependency, chartWithSubchart, tarChart, writeChart } from '../testing/charts.js';
import { readArchiveFile, readChartArchive, readChartDirectory } from './chart.js';

let dir: string;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airgap-chart-test-'));
});

test.after.always(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a packaged chart: name, version, dependencies present, helm.sh/images annotation', async (t) => {
  const web = await chartWithSubchart(join(dir, 'sub'), join(dir, 'homes'));
  const c = await readChartArchive(web.bytes, 'charts/web-1.2.3.tgz');
  t.truthy(c);
  t.is(c!.name, 'web');
  t.is(c!.version, '1.2.3');
  t.is(c!.appVersion, '4.5');
  t.deepEqual(c!.dependencies, [{ name: 'cache', version: '0.2.0', repository: 'file://../cache' }]);
  t.deepEqual(c!.missing, []);
  t.deepEqual(c!.images, ['quay.io/acme/migrate:1.0']);
  t.is(c!.path, 'charts/web-1.2.3.tgz');
  t.is((await readArchiveFile(web.bytes, 'templates/deployment.yaml'))?.toString('utf8').includes('kind: Deployment'), true);
  t.is(await readArchiveFile(web.bytes, 'templates/none.yaml'), undefined);
});

test('a dependency with no subchart under charts/ is missing (by Chart.yaml name, packed or unpacked); a packed subchart\'s images count', async (t) => {
  const broken = await chartWithMissingDependency(join(dir, 'missing'));
  const c = await readChartArchive(broken.bytes, 'broken.tgz');
  t.deepEqual(c!.missing, ['postgresql', 'redis']);

  // A subchart packed as charts/<file>.tgz counts by its Chart.yaml name, not its file name.
  const root = await writeChart(join(dir, 'packed'), {
    name: 'outer', version: '1.0.0',
    dependencies: [{ name: 'inner', version: '1.0.0' }, { name: 'absent', version: '1.0.0' }],
  });
  const inner = await writeChart(join(dir, 'packed-inner'), { name: 'inner', version: '1.0.0', annotations: { 'helm.sh/images': '- docker.io/library/busybox:1.36\n' } });
  await mkdir(join(root, 'charts'), { recursive: true });
  await writeFile(join(root, 'charts', 'renamed.tgz'), await tarChart(inner, join(dir, 'inner.tgz')));
  const outer = await readChartArchive(await tarChart(root, join(dir, 'outer.tgz')), 'outer.tgz');
  t.deepEqual(outer!.missing, ['absent']);
  t.deepEqual(outer!.images, ['docker.io/library/busybox:1.36']);

  const unpacked = await readChartDirectory(root, 'charts/outer');
  t.deepEqual(unpacked!.missing, ['absent']);
  t.is(unpacked!.name, 'outer');
});

test('not a chart: undefined; a chart with a broken Chart.yaml: E_MANIFESTS naming the archive', async (t) => {
  t.is(await readChartArchive(Buffer.from('not gzip'), 'x.tgz'), undefined);
  t.is(await readChartArchive(gzipSync(Buffer.from('not a tar')), 'x.tgz'), undefined);
  const noChart = await writeChart(join(dir, 'nochart'), { name: 'n', version: '1.0.0' });
  await rm(join(noChart, 'Chart.yaml'));
  t.is(await readChartArchive(await tarChart(noChart, join(dir, 'n.tgz')), 'n.tgz'), undefined);
  t.is(await readChartDirectory(noChart, 'n'), undefined);

  await writeFile(join(noChart, 'Chart.yaml'), 'name: [unclosed\n');
  const e = await t.throwsAsync(readChartArchive(await tarChart(noChart, join(dir, 'n2.tgz')), 'release/n2.tgz'));
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.regex(e!.message, /^release\/n2\.tgz: Chart\.yaml is not YAML/);

  await writeFile(join(noChart, 'Chart.yaml'), 'apiVersion: v2\nname: n\n');
  const e2 = await t.throwsAsync(readChartArchive(await tarChart(noChart, join(dir, 'n3.tgz')), 'n3.tgz'));
  t.is(e2!.message, 'n3.tgz: Chart.yaml has no version');

  await writeFile(join(noChart, 'Chart.yaml'), `apiVersion: v2\nname: n\nversion: 1.0.0\ndescription: "${'x'.repeat(1 << 20)}"\n`);
  const e3 = await t.throwsAsync(readChartArchive(await tarChart(noChart, join(dir, 'n4.tgz')), 'n4.tgz'));
  t.regex(e3!.message, /Chart\.yaml is \d+ bytes, more than the 1048576-byte limit/);

  await writeFile(join(noChart, 'Chart.yaml'), 'apiVersion: v2\nname: n\nversion: 1.0.0\nannotations:\n  helm.sh/images: "image: x"\n');
  const e4 = await t.throwsAsync(readChartArchive(await tarChart(noChart, join(dir, 'n5.tgz')), 'n5.tgz'));
  t.is(e4!.message, 'n5.tgz: Chart.yaml annotation helm.sh/images is not a list');
});
