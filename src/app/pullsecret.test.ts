import test from 'ava';
import { parseAllDocuments } from 'yaml';
import { dockerConfigJson, pullSecretManifests, pullSecretName } from './pullsecret.js';
import { isAirgapError } from '../errors.js';

test('dockerconfigjson carries username, password and base64 auth for the host', (t) => {
  t.deepEqual(JSON.parse(dockerConfigJson('r:5000', { username: 'u', password: 'p:w' })),
    { auths: { 'r:5000': { username: 'u', password: 'p:w', auth: Buffer.from('u:p:w').toString('base64') } } });
});

test('one Secret per namespace, deduplicated and sorted', (t) => {
  const text = pullSecretManifests({ appSlug: 'app', host: 'r', credentials: { username: 'u', password: 'p' }, namespaces: ['b', 'a', 'b'] });
  const docs = parseAllDocuments(text).map((d) => d.toJS() as { metadata: { name: string; namespace: string }; type: string });
  t.deepEqual(docs.map((d) => [d.metadata.name, d.metadata.namespace, d.type]),
    [[pullSecretName('app'), 'a', 'kubernetes.io/dockerconfigjson'], ['app-registry', 'b', 'kubernetes.io/dockerconfigjson']]);
});

test('an invalid namespace name is refused', (t) => {
  const e = t.throws(() => pullSecretManifests({ appSlug: 'a', host: 'r', credentials: { username: 'u', password: 'p' }, namespaces: ['Bad_NS'] }));
  t.true(isAirgapError(e, 'E_MANIFESTS'));
});
