import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { isAirgapError } from '../errors.js';
import { helmChartV1beta1, helmChartV1beta2, packageChart, testHelm, writeChart } from '../testing/charts.js';
import type { ChartArchive } from './chart.js';
import { builderValues, installValues, isExcluded, isHelmChartObject, matchChart, mergeRecursive, parseHelmChart, withoutShadowedV1beta1 } from './helmchart.js';
import { helmTemplate } from './template.js';

const AT = { file: 'manifests/chart.yaml', line: 3 };

test('v1beta2: fields read; releaseName defaults to the chart name; namespace absent when not given', (t) => {
  const hc = parseHelmChart(helmChartV1beta2({
    name: 'samplechart', chartName: 'web', chartVersion: '1.2.3', weight: 42, helmUpgradeFlags: ['--skip-crds'],
    values: { a: 1 }, builder: { metrics: { enabled: true } },
    optionalValues: [{ when: 'true', values: { b: 2 } }],
  }), AT);
  t.true(isHelmChartObject(helmChartV1beta2({ name: 'x', chartName: 'x', chartVersion: '1' })));
  t.is(hc.apiVersion, 'kots.io/v1beta2');
  t.is(hc.name, 'samplechart');
  t.deepEqual(hc.chart, { name: 'web', chartVersion: '1.2.3' });
  t.is(hc.releaseName, 'web');
  t.is(hc.namespace, undefined);
  t.deepEqual(hc.values, { a: 1 });
  t.deepEqual(hc.builder, { metrics: { enabled: true } });
  t.deepEqual(hc.optionalValues, [{ when: 'true', recursiveMerge: false, values: { b: 2 } }]);
  t.is(hc.weight, 42);
  t.deepEqual(hc.helmUpgradeFlags, ['--skip-crds']);
  t.is(parseHelmChart(helmChartV1beta2({ name: 'x', chartName: 'web', chartVersion: '1', releaseName: 'shop', namespace: 'store' }), AT).releaseName, 'shop');
});

test('v1beta1: releaseName under spec.chart, helmVersion and useHelmInstall; v1beta2 ignores the v1beta1 place', (t) => {
  const hc = parseHelmChart(helmChartV1beta1({ name: 'old', chartName: 'web', chartVersion: '1.2.3', releaseName: 'legacy', useHelmInstall: true, namespace: 'ns' }), AT);
  t.is(hc.apiVersion, 'kots.io/v1beta1');
  t.is(hc.releaseName, 'legacy');
  t.is(hc.helmVersion, 'v3');
  t.true(hc.useHelmInstall);
  t.is(hc.namespace, 'ns');
  t.is(parseHelmChart(helmChartV1beta1({ name: 'old', chartName: 'web', chartVersion: '1' }), AT).releaseName, 'web');

  const wrong = helmChartV1beta2({ name: 'x', chartName: 'web', chartVersion: '1' });
  ((wrong['spec'] as Record<string, unknown>)['chart'] as Record<string, unknown>)['releaseName'] = 'r';
  t.is(parseHelmChart(wrong, AT).releaseName, 'web', 'ignored, as by KOTS (its v1beta2 chart struct has no releaseName)');

  const v2 = helmChartV1beta1({ name: 'y', chartName: 'web', chartVersion: '1' });
  (v2['spec'] as Record<string, unknown>)['helmVersion'] = 'v9';
  t.regex(t.throws(() => parseHelmChart(v2, AT))!.message, /spec\.helmVersion v9 is not v2, v3 or v4/);
});

test('malformed HelmCharts: one line, file:line, E_MANIFESTS', (t) => {
  const cases: [unknown, string][] = [
    [{ apiVersion: 'kots.io/v1beta2', kind: 'HelmChart', metadata: { name: 'a' } }, 'manifests/chart.yaml:3: HelmChart a has no spec'],
    [{ apiVersion: 'kots.io/v1beta2', kind: 'HelmChart', spec: {} }, 'manifests/chart.yaml:3: HelmChart has no metadata.name'],
    [{ apiVersion: 'kots.io/v1beta2', kind: 'HelmChart', metadata: { name: 'a' }, spec: { chart: { name: 'c' } } }, 'manifests/chart.yaml:3: HelmChart a has no spec.chart.chartVersion'],
    [{ apiVersion: 'kots.io/v1beta2', kind: 'HelmChart', metadata: { name: 'a' }, spec: { chart: { name: 'c', chartVersion: '1' }, values: 'x' } }, 'manifests/chart.yaml:3: HelmChart a: spec.values must be a mapping of Helm values'],
    [{ apiVersion: 'kots.io/v1beta2', kind: 'HelmChart', metadata: { name: 'a' }, spec: { chart: { name: 'c', chartVersion: '1' }, optionalValues: [{ values: {} }] } }, 'manifests/chart.yaml:3: HelmChart a: spec.optionalValues[0].when must be a string ("true" or "false" once rendered)'],
    [{ apiVersion: 'kots.io/v1beta3', kind: 'HelmChart' }, 'manifests/chart.yaml:3: HelmChart apiVersion "kots.io/v1beta3" is not kots.io/v1beta2 or kots.io/v1beta1'],
  ];
  for (const [obj, message] of cases) {
    const e = t.throws(() => parseHelmChart(obj, AT));
    t.true(isAirgapError(e, 'E_MANIFESTS'));
    t.is(e!.message, message);
  }
});

const archive = (name: string, version: string, path: string): ChartArchive =>
  ({ path, name, version, dependencies: [], missing: [], images: [], metadata: {} });

test('matchChart: by Chart.yaml name and version, never file name; none or two refused naming what exists', (t) => {
  const hc = parseHelmChart(helmChartV1beta2({ name: 'hc', chartName: 'web', chartVersion: '1.2.3' }), AT);
  const right = archive('web', '1.2.3', 'charts/renamed.tgz');
  t.is(matchChart(hc, [archive('web', '1.2.2', 'web-1.2.3.tgz'), right, archive('api', '1.2.3', 'api.tgz')]), right);

  const none = t.throws(() => matchChart(hc, [archive('web', '1.2.2', 'web-1.2.3.tgz')]));
  t.true(isAirgapError(none, 'E_MANIFESTS'));
  t.is(none!.message, 'manifests/chart.yaml:3: HelmChart hc installs chart web version 1.2.3, and no chart archive is that chart (the release has web 1.2.2 (web-1.2.3.tgz))');
  t.regex(t.throws(() => matchChart(hc, []))!.message, /the release has no chart archive\)$/);

  const two = t.throws(() => matchChart(hc, [right, archive('web', '1.2.3', 'other/web.tgz')]));
  t.is(two!.message, 'manifests/chart.yaml:3: HelmChart hc: 2 chart archives are web 1.2.3: charts/renamed.tgz, other/web.tgz');
});

test('installValues: values, then each optionalValues whose when is true, in order; recursiveMerge false replaces top-level keys', (t) => {
  // The KOTS documentation's own example (HelmChart v2 reference, "Recursive merge").
  const values = { favorite: { drink: { hot: 'tea', cold: 'soda' }, dessert: 'ice cream', day: 'saturday' } };
  const optional = (recursiveMerge: boolean) => parseHelmChart(helmChartV1beta2({
    name: 'x', chartName: 'c', chartVersion: '1', values,
    optionalValues: [{ when: 'true', recursiveMerge, values: { example_config_option: { enabled: true }, favorite: { drink: { cold: 'lemonade' } } } }],
  }), AT);
  t.deepEqual(installValues(optional(false)), { favorite: { drink: { cold: 'lemonade' } }, example_config_option: { enabled: true } });
  t.deepEqual(installValues(optional(true)), {
    favorite: { drink: { hot: 'tea', cold: 'lemonade' }, dessert: 'ice cream', day: 'saturday' }, example_config_option: { enabled: true },
  });

  const hc = parseHelmChart(helmChartV1beta2({
    name: 'x', chartName: 'c', chartVersion: '1', values: { a: 1, image: { repository: 'quay.io/acme/web' } },
    optionalValues: [
      { when: 'false', values: { a: 'skipped' } },
      { when: 'True', recursiveMerge: true, values: { image: { registry: 'registry.corp' } } },
      { when: '1', values: { a: 3 } },
    ],
  }), AT);
  t.deepEqual(installValues(hc), { a: 3, image: { repository: 'quay.io/acme/web', registry: 'registry.corp' } });
  t.deepEqual(installValues(hc, () => false), { a: 1, image: { repository: 'quay.io/acme/web' } });
  t.deepEqual(hc.values, { a: 1, image: { repository: 'quay.io/acme/web' } }, 'the HelmChart is not changed');

  const bad = parseHelmChart(helmChartV1beta2({ name: 'x', chartName: 'c', chartVersion: '1', optionalValues: [{ when: 'yes', values: {} }] }), AT);
  const e = t.throws(() => installValues(bad));
  t.is(e!.message, 'manifests/chart.yaml:3: HelmChart x: spec.optionalValues[0].when is "yes", not true or false');
});

test('mergeRecursive: as kotskinds MergeHelmChartValues, including its quirk (a mapping is not replaced by a non-mapping)', (t) => {
  t.deepEqual(mergeRecursive({ a: { b: 1, c: [1, 2] }, d: 'x' }, { a: { c: [3], e: null }, d: { f: 1 } }), { a: { b: 1, c: [3], e: null }, d: { f: 1 } });
  t.deepEqual(mergeRecursive({ a: { b: 1 } }, { a: 'flat' }), { a: { b: 1 } });
  t.deepEqual(mergeRecursive({ a: { b: { c: 1 } } }, { a: { b: null } }), { a: { b: { c: 1 } } });
  t.deepEqual(mergeRecursive({ a: null }, { a: { b: 1 } }), { a: { b: 1 } });
});

test('builderValues: spec.builder alone (KOTS), spec.values when there is no builder; isExcluded parses as KOTS', (t) => {
  const withBuilder = parseHelmChart(helmChartV1beta2({ name: 'x', chartName: 'c', chartVersion: '1', values: { a: 1 }, builder: { metrics: { enabled: true } } }), AT);
  t.deepEqual(builderValues(withBuilder), { metrics: { enabled: true } });
  t.deepEqual(builderValues(parseHelmChart(helmChartV1beta2({ name: 'x', chartName: 'c', chartVersion: '1', values: { a: 1 }, builder: {} }), AT)), {});
  t.deepEqual(builderValues(parseHelmChart(helmChartV1beta2({ name: 'x', chartName: 'c', chartVersion: '1', values: { a: 1 } }), AT)), { a: 1 });

  const ex = (exclude: string | boolean | undefined) =>
    isExcluded(parseHelmChart(helmChartV1beta2({ name: 'x', chartName: 'c', chartVersion: '1', ...(exclude !== undefined ? { exclude } : {}) }), AT));
  t.false(ex(undefined));
  t.false(ex(''));
  t.true(ex(true));
  t.true(ex('true'));
  t.false(ex('false'));
  t.is(t.throws(() => ex('maybe'))!.message, 'manifests/chart.yaml:3: HelmChart x: spec.exclude is "maybe", not true or false');
});

test('a v1beta1 HelmChart with the release name of a v1beta2 one is left out, as KOTS does', (t) => {
  const v1 = parseHelmChart(helmChartV1beta1({ name: 'old', chartName: 'web', chartVersion: '1' }), AT);
  const v1other = parseHelmChart(helmChartV1beta1({ name: 'other', chartName: 'api', chartVersion: '1' }), AT);
  const v2 = parseHelmChart(helmChartV1beta2({ name: 'new', chartName: 'web', chartVersion: '2' }), AT);
  t.deepEqual(withoutShadowedV1beta1([v1, v1other, v2]).map((c) => c.name), ['other', 'new']);
});

test('the merged values rendered by the real helm over the chart\'s defaults give the documented ConfigMap', async (t) => {
  testHelm();
  const dir = await mkdtemp(join(tmpdir(), 'airgap-helmchart-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const root = await writeChart(join(dir, 'src'), {
    name: 'favorite', version: '1.0.0',
    values: { favorite: { drink: { hot: 'coffee', cold: 'soda' }, dessert: 'pie' } },
    templates: {
      'cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fav}\ndata:\n  day: "{{ .Values.favorite.day }}"\n  dessert: "{{ .Values.favorite.dessert }}"\n  cold: "{{ .Values.favorite.drink.cold }}"\n  hot: "{{ .Values.favorite.drink.hot }}"\n',
    },
  });
  const { bytes } = await packageChart(root, join(dir, 'out'), join(dir, 'homes'));
  const render = async (recursiveMerge: boolean) => {
    const hc = parseHelmChart(helmChartV1beta2({
      name: 'x', chartName: 'favorite', chartVersion: '1.0.0',
      values: { favorite: { drink: { hot: 'tea', cold: 'soda' }, dessert: 'ice cream', day: 'saturday' } },
      optionalValues: [{ when: 'true', recursiveMerge, values: { favorite: { drink: { cold: 'lemonade' } } } }],
    }), AT);
    const out = await helmTemplate({ chart: bytes, releaseName: hc.releaseName, namespace: 'default', values: installValues(hc), valuesFrom: 'values' });
    return (parse(out) as { data: Record<string, string> }).data;
  };
  // As the KOTS documentation shows (day is empty where it says null: helm prints a missing value so).
  t.deepEqual(await render(false), { day: '', dessert: 'pie', cold: 'lemonade', hot: 'coffee' });
  t.deepEqual(await render(true), { day: 'saturday', dessert: 'ice cream', cold: 'lemonade', hot: 'tea' });
});
