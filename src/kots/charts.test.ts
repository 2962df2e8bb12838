import test from 'ava';
import { parseAllDocuments } from 'yaml';
import { readableChartOutput } from './charts.js';

// istio 1.5's galley ClusterRole, as helm template writes it: go-yaml takes a flow sequence at
// its key's own indentation, the YAML spec (and the yaml package) does not.
const ISTIO_SHAPE = `---
# Source: istio/charts/galley/templates/clusterrole.yaml
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: istio-galley
rules:
  # For reading Istio resources
- apiGroups: [
  "authentication.istio.io",
  "config.istio.io"]
  resources: ["*"]
  verbs: ["get", "list", "watch"]
---
# Source: istio/charts/pilot/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istio-pilot
spec:
  template:
    spec:
      containers:
        - name: discovery
          image: "docker.io/istio/pilot:1.5.4"
`;

test('a document only go-yaml reads is kept, as JSON; the others stay byte for byte', (t) => {
  t.true(parseAllDocuments(ISTIO_SHAPE).some((d) => d.errors.length > 0), 'the yaml package refuses it as helm wrote it');
  const out = readableChartOutput(ISTIO_SHAPE);
  const docs = parseAllDocuments(out);
  t.deepEqual(docs.flatMap((d) => d.errors), []);
  const objs = docs.map((d) => d.toJS() as Record<string, any>).filter((o) => o !== null);
  t.deepEqual(objs[0]!.rules[0].apiGroups, ['authentication.istio.io', 'config.istio.io']);
  t.is(objs[1]!.spec.template.spec.containers[0].image, 'docker.io/istio/pilot:1.5.4');
  t.true(out.includes('# Source: istio/charts/galley/templates/clusterrole.yaml'));
  t.true(out.endsWith(ISTIO_SHAPE.slice(ISTIO_SHAPE.indexOf('# Source: istio/charts/pilot'))), 'the readable document is untouched');
});

test('output the yaml package reads is returned as it is', (t) => {
  const text = '---\n# Source: x\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n';
  t.is(readableChartOutput(text), text);
});
