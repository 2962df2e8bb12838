import test from 'ava';
import { releaseScanOptions } from './facts.js';
import { scanRelease } from './scan.js';
import type { ReleaseFile } from './release.js';

const opts = releaseScanOptions({ mode: 'discover', proxyHost: 'proxy.replicated.com', replicatedRegistry: 'registry.replicated.com' });
const file = (path: string, text: string): ReleaseFile => ({ path, content: Buffer.from(text) });
const CONFIG = file('config.yaml', `apiVersion: kots.io/v1beta1
kind: Config
metadata: {name: c}
spec:
  groups:
    - name: g
      items:
        - name: db_image
          default: quay.io/acme/db:1
        - name: mode
          default: a
`);
const deploy = (name: string, body: string, annotations = '') => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
${annotations}spec:
  template:
    spec:
      containers:
${body}`;

test('build discovers the images of every branch, of objects switched off, and of LocalImageName wherever it stands', async (t) => {
  const scan = await scanRelease([
    CONFIG,
    file('a.yaml', deploy('a', `        - name: a
          image: quay.io/acme/a:1
          env:
            - name: HELPER
              value: '{{repl LocalImageName "quay.io/acme/helper:3" }}'
{{repl if ConfigOptionEquals "mode" "a" }}
        - name: b
          image: quay.io/acme/b:1
{{repl else if ConfigOptionEquals "mode" "c" }}
        - name: c
          image: quay.io/acme/c:1
{{repl else }}
        - name: d
          image: quay.io/acme/d:1
{{repl end }}
`)),
    file('off.yaml', deploy('off', '        - name: o\n          image: quay.io/acme/off:1\n', '  annotations:\n    kots.io/when: \'{{repl ConfigOptionEquals "mode" "z" }}\'\n')),
  ], opts);
  t.deepEqual([...new Set(scan.images.map((i) => i.raw))].sort(), [
    'quay.io/acme/a:1', 'quay.io/acme/b:1', 'quay.io/acme/c:1', 'quay.io/acme/d:1', 'quay.io/acme/helper:3', 'quay.io/acme/off:1',
  ]);
  t.deepEqual(scan.findings, []);
  // What build carries is the release as written.
  t.deepEqual(scan.carried?.map((f) => f.path), ['config.yaml', 'a.yaml', 'off.yaml']);
  t.true(scan.carried?.[1]?.content.toString().includes('{{repl if'));
  // What is applied under the defaults: the switched-off object is not.
  t.deepEqual(scan.files.map((f) => f.path), ['a.yaml']);
});

test('an image from a config option is a warning naming the option and the default bundled', async (t) => {
  const scan = await scanRelease([CONFIG, file('db.yaml', deploy('db', '        - name: db\n          image: repl{{ ConfigOption "db_image" }}\n'))], opts);
  t.deepEqual(scan.images.map((i) => i.raw), ['quay.io/acme/db:1']);
  t.is(scan.findings.length, 1);
  t.like(scan.findings[0], { severity: 'warning', code: 'config-image', file: 'db.yaml', line: 10 });
  t.regex(scan.findings[0]!.message, /config option "db_image": the bundle carries the one its default renders \(quay\.io\/acme\/db:1\)/);
  t.regex(scan.findings[0]!.hint, /additionalImages/);
});

test('kots.io/when alternatives are not duplicates; two objects that render together are', async (t) => {
  const when = (v: string) => `  annotations:\n    kots.io/when: '{{repl ConfigOptionEquals "mode" "${v}" }}'\n`;
  const alt = await scanRelease([CONFIG,
    file('x.yaml', `${deploy('x', '        - {name: x, image: "quay.io/acme/x:1"}\n', when('a'))}---\n${deploy('x', '        - {name: x, image: "quay.io/acme/x:2"}\n', when('b'))}`)], opts);
  t.deepEqual(alt.findings, []);
  t.deepEqual(alt.images.map((i) => i.raw).sort(), ['quay.io/acme/x:1', 'quay.io/acme/x:2']);
  const both = await scanRelease([CONFIG,
    file('x.yaml', `${deploy('x', '        - {name: x, image: "quay.io/acme/x:1"}\n', when('a'))}---\n${deploy('x', '        - {name: x, image: "quay.io/acme/x:2"}\n')}`)], opts);
  t.deepEqual(both.findings.map((f) => `${f.code} ${f.file}`), ['duplicate-object x.yaml']);
});

test('kURL and identity-service functions answer as KOTS does off kURL; cluster functions refuse only where they are rendered', async (t) => {
  const install = releaseScanOptions({ mode: 'install', appSlug: 'shop', proxyHost: 'proxy.replicated.com', replicatedRegistry: 'registry.replicated.com' });
  const app = file('a.yaml', deploy('a', `        - name: a
          image: quay.io/acme/a:1
          env:
            - name: DEX
              value: 'repl{{ IdentityServiceName }}:repl{{ IdentityServicePort }}'
            - name: KURL
              value: '[repl{{ KurlString "Kubernetes.version" }}][repl{{ KurlOption "Docker.version" }}][repl{{ KurlAll }}][repl{{ ConfigOptionIndex "mode" }}]'
            - name: REPLICAS
              value: 'repl{{ add (KurlInt "Kubernetes.count") 1 }} repl{{ KurlBool "x" }} repl{{ IdentityServiceEnabled }} repl{{ len IdentityServiceRoles }}'
{{repl if IsKurl }}
        - name: only-on-kurl
          image: repl{{ Lookup "v1" "ConfigMap" "default" "x" }}
{{repl end }}
`));
  for (const opts of [install, releaseScanOptions({ mode: 'discover', appSlug: 'shop', proxyHost: 'proxy.replicated.com', replicatedRegistry: 'registry.replicated.com' })]) {
    const scan = await scanRelease([CONFIG, app], opts);
    const text = scan.files.find((f) => f.path === 'a.yaml')!.content.toString();
    t.regex(text, /value: 'shop-dex:5556'/, opts.mode);
    t.regex(text, /value: '\[\]\[\]\[\]\[\]'/, opts.mode);
    t.regex(text, /value: '1 false false 0'/, opts.mode);
    t.notRegex(text, /only-on-kurl/, opts.mode);
  }
  // Where the rendering takes the function, the file and line, what it would need, and no value made up.
  for (const [call, need] of [['KubernetesVersion', /asks the running cluster for its version/], ['TLSCert "c" "host"', /makes a certificate that KOTS keeps/],
    ['Lookup "v1" "Secret" "default" "db"', /reads objects of the running cluster/]] as const) {
    const e = await t.throwsAsync(scanRelease([CONFIG, file('v.yaml', `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: v\ndata:\n  v: 'repl{{ ${call} }}'\n`)], install));
    t.regex(e!.message, new RegExp(`^v\\.yaml:6: error calling ${call.split(' ')[0]}: it `), call);
    t.regex(e!.message, need, call);
    t.false(e!.message.includes('\n'));
  }
});
