import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAirgapError } from '../errors.js';
import { type EgressProxy, startEgressProxy } from '../testing/egress.js';
import { type TestRegistry, startRegistry } from '../testing/registry.js';
import { createRegistryAccess } from './access.js';
import {
  DEFAULT_RETRY, type HostPolicy, RegistryPolicy, describeHostPolicy, hopRefusal, isEndpointOf, isLinkLocal, isRetriableStatus,
  policyFromFlags, tuningFromEnv,
} from './policy.js';
import { Transport } from './transport.js';

const USER = { username: 'erin', password: 'policy-pw-7f3' };
const FAST = { attempts: 2, baseDelayMs: 5, maxDelayMs: 10 };
const NAME = 'plain.policy.invalid';
let plain: TestRegistry;
let priv: TestRegistry;
let egress: EgressProxy;

test.before(async () => {
  [plain, priv] = await Promise.all([startRegistry(), startRegistry({ users: [USER] })]);
  egress = await startEgressProxy({ [NAME]: '127.0.0.1' });
});

test.after.always(async () => {
  await Promise.all([plain?.stop(), priv?.stop(), egress?.stop()]);
});

const subject = (host: string) => ({ method: 'GET' as const, host, what: '/v2/' });

test('scheme: a loopback host is probed, any other is HTTPS; --plain-http is plain HTTP anywhere', (t) => {
  const p = new RegistryPolicy({ env: {}, hosts: [{ host: 'registry.corp:5000', plainHttp: true }, { host: '127.0.0.1:5001', plainHttp: true }] });
  for (const h of ['127.0.0.1:5000', '127.3.2.1', 'localhost:5000', '[::1]:5000']) t.is(p.host(h).scheme, 'probe', h);
  for (const h of ['quay.io', '128.0.0.1:5000', '10.0.0.1', 'localhost.corp', 'registry.corp:5001']) t.is(p.host(h).scheme, 'https', h);
  t.is(p.host('registry.corp:5000').scheme, 'http');
  t.is(p.host('registry.corp:5000').schemeWhy, '--plain-http');
  t.is(p.host('127.0.0.1:5001').scheme, 'http');
  t.is(p.host('docker.io').endpoint, 'registry-1.docker.io');
});

test('host flags are checked: not HOST[:PORT], or --plain-http with TLS flags, is a usage error', (t) => {
  const p = new RegistryPolicy({ env: {} });
  t.true(isAirgapError(t.throws(() => p.host('https://quay.io')), 'E_USAGE'));
  t.true(isAirgapError(t.throws(() => p.host('a b')), 'E_USAGE'));
  const both = t.throws(() => new RegistryPolicy({ hosts: [{ host: 'r.corp', plainHttp: true, caFile: '/ca.pem' }] }));
  t.true(isAirgapError(both, 'E_USAGE'));
  t.regex(both!.message, /--plain-http cannot be combined/);
  t.true(isAirgapError(t.throws(() => policyFromFlags({ target: { host: 'r.corp', plainHttp: true, insecureSkipTlsVerify: true } }, {})), 'E_USAGE'));
});

test('TLS: the default CA applies to hosts without their own settings; a host\'s own flags win', (t) => {
  const p = new RegistryPolicy({
    env: { NODE_EXTRA_CA_CERTS: '/etc/corp-ca.pem', SSL_CERT_FILE: '/nonexistent-airgap-bundle' },
    defaultCaFile: '/src-ca.pem',
    hosts: [{ host: 'registry.corp', insecureSkipTlsVerify: true }, { host: 'other.corp', caFile: '/other.pem' }],
  });
  t.deepEqual(p.host('quay.io').tls,
    { verify: true, caFile: '/src-ca.pem', caFrom: '--ca-file for every source registry', extraCaFile: '/etc/corp-ca.pem', osStore: [] });
  t.deepEqual(p.host('registry.corp').tls, { verify: false, extraCaFile: '/etc/corp-ca.pem', osStore: [] });
  t.is(p.host('other.corp').tls.caFile, '/other.pem');
  t.is(p.host('other.corp').tls.caFrom, '--ca-file of this registry');
  t.deepEqual(new RegistryPolicy({ env: { SSL_CERT_FILE: '/nonexistent-airgap-bundle' } }).host('quay.io').tls, { verify: true, osStore: [] });
  // The operating system's store, found as Go finds it (truststore.ts); none for plain HTTP.
  t.deepEqual(new RegistryPolicy({ env: { SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt' } }).host('quay.io').tls.osStore,
    ['/etc/ssl/certs/ca-certificates.crt']);
  t.deepEqual(new RegistryPolicy({ env: {}, hosts: [{ host: 'r.corp', plainHttp: true }] }).host('r.corp').tls.osStore, []);
});

test('both sides build the policy with policyFromFlags: source --ca-file for every host, target flags for the customer registry only', (t) => {
  const source = policyFromFlags({ caFile: '/src.pem' }, {});
  t.is(source.host('quay.io').tls.caFile, '/src.pem');
  t.is(source.host('registry.replicated.com').tls.caFile, '/src.pem');
  const target = policyFromFlags({ target: { host: 'registry.corp:5000', caFile: '/corp.pem', credentials: USER } }, {});
  t.is(target.host('registry.corp:5000').tls.caFile, '/corp.pem');
  t.deepEqual(target.host('registry.corp:5000').credentials.explicit, USER);
  t.is(target.host('quay.io').tls.caFile, undefined, 'the customer registry\'s CA is not trusted for other hosts');
  t.is(target.host('quay.io').credentials.explicit, undefined, 'nor are its credentials sent to them');
});

test('retries and timeouts: defaults, and AIRGAP_RETRY_BASE_MS / AIRGAP_HTTP_TIMEOUT_MS', (t) => {
  const d = policyFromFlags({}, {}).host('quay.io');
  t.deepEqual(d.retry, DEFAULT_RETRY);
  t.deepEqual(d.timeouts, { headersMs: 120_000, bodyMs: 120_000 });
  const tuned = policyFromFlags({}, { AIRGAP_RETRY_BASE_MS: '5', AIRGAP_HTTP_TIMEOUT_MS: '1500' }).host('quay.io');
  t.deepEqual(tuned.retry, { ...DEFAULT_RETRY, baseDelayMs: 5, maxDelayMs: 160 });
  t.deepEqual(tuned.timeouts, { headersMs: 1500, bodyMs: 1500 });
  for (const bad of [{ AIRGAP_RETRY_BASE_MS: '0' }, { AIRGAP_RETRY_BASE_MS: '1.5' }, { AIRGAP_HTTP_TIMEOUT_MS: 'soon' }]) {
    t.true(isAirgapError(t.throws(() => tuningFromEnv(bad)), 'E_USAGE'), JSON.stringify(bad));
  }
  t.deepEqual([408, 429, 500, 503, 400, 401, 404].map(isRetriableStatus), [true, true, true, true, false, false, false]);
});

test('proxy routes: loopback always direct; NO_PROXY in either case; lower case first; https falls back to the http proxy', (t) => {
  const proxied = (env: NodeJS.ProcessEnv, protocol: string, origin: string) => new RegistryPolicy({ env }).route(protocol, origin).proxy;
  const P = 'http://proxy.corp:3128';
  t.is(proxied({ HTTPS_PROXY: P }, 'https:', 'quay.io'), P);
  t.is(proxied({ HTTPS_PROXY: P }, 'https:', '127.0.0.1:5000'), undefined, 'loopback');
  t.is(proxied({ HTTPS_PROXY: P }, 'https:', 'localhost:5000'), undefined, 'loopback');
  t.is(proxied({ HTTPS_PROXY: P }, 'http:', 'registry.corp'), undefined, 'no HTTP_PROXY: plain http goes direct');
  t.is(proxied({ HTTP_PROXY: P }, 'https:', 'quay.io'), P, 'https falls back to the http proxy');
  t.is(proxied({ https_proxy: 'http://lower:1', HTTPS_PROXY: P }, 'https:', 'quay.io'), 'http://lower:1');
  t.is(proxied({}, 'https:', 'quay.io'), undefined);
  // NO_PROXY, either case: names, .suffix, *.suffix, host:port, *.
  t.is(proxied({ HTTPS_PROXY: P, NO_PROXY: 'quay.io' }, 'https:', 'quay.io'), undefined);
  t.is(proxied({ HTTPS_PROXY: P, no_proxy: 'quay.io' }, 'https:', 'quay.io'), undefined);
  t.is(proxied({ HTTPS_PROXY: P, no_proxy: 'ghcr.io', NO_PROXY: 'quay.io' }, 'https:', 'quay.io'), P, 'lower case wins');
  t.is(proxied({ HTTPS_PROXY: P, NO_PROXY: '.corp' }, 'https:', 'registry.corp:5000'), undefined);
  t.is(proxied({ HTTPS_PROXY: P, NO_PROXY: '*.corp' }, 'https:', 'a.b.corp'), undefined);
  t.is(proxied({ HTTPS_PROXY: P, NO_PROXY: '.corp' }, 'https:', 'notcorp'), P, 'a suffix matches whole labels only');
  t.is(proxied({ HTTPS_PROXY: P, NO_PROXY: 'registry.corp:5000' }, 'https:', 'registry.corp:5000'), undefined);
  t.is(proxied({ HTTPS_PROXY: P, NO_PROXY: 'registry.corp:5000' }, 'https:', 'registry.corp'), P, 'other port');
  t.is(proxied({ HTTPS_PROXY: P, NO_PROXY: 'Quay.IO, ghcr.io' }, 'https:', 'ghcr.io'), undefined);
  t.is(proxied({ HTTPS_PROXY: P, NO_PROXY: '*' }, 'https:', 'quay.io'), undefined);
  const why = new RegistryPolicy({ env: { HTTPS_PROXY: P, no_proxy: '.corp' } });
  t.is(why.route('https:', 'r.corp').why, 'no_proxy lists corp');
  t.is(why.route('https:', 'quay.io').why, 'HTTPS_PROXY');
  t.is(why.host('quay.io').route.proxy, P, 'the host\'s own endpoint route');
  t.is(why.host('docker.io').route.proxy, P);
});

test('credentials: given for a host are used for it alone; the others are looked up where the policy says', (t) => {
  const lookup = { configDir: '/nonexistent-airgap', env: {} };
  const p = new RegistryPolicy({ env: {}, credentials: { 'registry.corp': USER }, credentialOptions: lookup });
  t.deepEqual(p.host('registry.corp').credentials, { explicit: USER, lookup });
  t.deepEqual(p.host('quay.io').credentials, { lookup });
  const build = policyFromFlags({ licensedHosts: ['proxy.vendor.com', 'registry.vendor.com'] }, {});
  t.true(build.host('proxy.vendor.com').credentials.license);
  t.regex(describeHostPolicy(build.host('registry.vendor.com')), /; the license as credentials; /);
  t.is(build.host('quay.io').credentials.license, undefined);
});

test('describeHostPolicy: one line saying how and why, without any secret', (t) => {
  const p = new RegistryPolicy({
    env: { HTTPS_PROXY: 'http://proxyuser:proxy-secret@proxy.corp:3128', SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt' },
    credentials: { 'registry.corp': USER }, defaultCaFile: '/src.pem',
    credentialOptions: { configDir: '/cfg', env: {} },
  });
  const corp = describeHostPolicy(p.host('registry.corp'));
  t.false(corp.includes('\n'));
  t.regex(corp, /^registry\.corp: HTTPS; certificates checked against Node's bundled CAs \+ the OS store \(\/etc\/ssl\/certs\/ca-certificates\.crt\) \+ \/src\.pem \(--ca-file for every source registry\); through http:\/\/proxy\.corp:3128 \(HTTPS_PROXY\); credentials given on the command line; 5 attempts within 120 s/);
  for (const secret of [USER.password, USER.username, 'proxy-secret', 'proxyuser']) t.false(corp.includes(secret), secret);
  const local = describeHostPolicy(p.host('127.0.0.1:5000'));
  t.regex(local, /plain HTTP if it answers as a registry, else HTTPS \(loopback\)/);
  t.regex(local, /direct \(loopback is always reached directly\)/);
  t.regex(local, /credentials looked up in \/cfg\/config\.json/);
  t.regex(describeHostPolicy(p.host('docker.io')), /^docker\.io \(endpoint registry-1\.docker\.io\)/);
});

test('each host is resolved once, and onResolve hears of it once', (t) => {
  const seen: HostPolicy[] = [];
  const p = policyFromFlags({ onResolve: (x) => seen.push(x) }, {});
  const a = p.host('quay.io');
  t.is(p.host('quay.io'), a);
  p.host('ghcr.io');
  t.deepEqual(seen.map((x) => x.host), ['quay.io', 'ghcr.io']);
});

// The transport carries the policy out: real requests, through a real proxy or not.

test('transport: plain HTTP through HTTP_PROXY goes to the proxy; NO_PROXY sends it direct (where the name does not resolve)', async (t) => {
  const port = plain.host.split(':')[1];
  const host = `${NAME}:${port}`;
  const via = new Transport({ retry: FAST, env: { http_proxy: egress.url }, hosts: [{ host, plainHttp: true }] });
  t.teardown(() => via.close());
  const before = egress.forwarded.length;
  const res = await via.send({ method: 'GET', host, url: '/v2/', subject: subject(host) });
  await res.body.dump();
  t.is(res.status, 200);
  t.deepEqual(egress.forwarded.slice(before), [`http://${host}/v2/`]);

  const direct = new Transport({ retry: FAST, env: { http_proxy: egress.url, NO_PROXY: '.policy.invalid' }, hosts: [{ host, plainHttp: true }] });
  t.teardown(() => direct.close());
  const err = await t.throwsAsync(direct.send({ method: 'GET', host, url: '/v2/', subject: subject(host) }));
  t.true(isAirgapError(err, 'E_NETWORK'), String(err));
  t.regex(err!.message, /cannot resolve plain\.policy\.invalid/);
  t.is(egress.forwarded.length, before + 1, 'nothing more went through the proxy');
});

test('transport: https goes by CONNECT through HTTPS_PROXY; a loopback registry is reached directly even so', async (t) => {
  const tr = new Transport({ retry: FAST, env: { HTTPS_PROXY: egress.url } });
  t.teardown(() => tr.close());
  const tunnels = egress.tunnels.length;
  const err = await t.throwsAsync(tr.send({ method: 'GET', host: 'nosuch.policy.invalid', url: '/v2/', subject: subject('nosuch.policy.invalid') }));
  t.regex(err!.message, /the proxy answered HTTP 502 to CONNECT nosuch\.policy\.invalid/);
  t.deepEqual(egress.tunnels.slice(tunnels), ['nosuch.policy.invalid:443']);

  const res = await tr.send({ method: 'GET', host: plain.host, url: '/v2/', subject: subject(plain.host) });
  await res.body.dump();
  t.is(res.status, 200);
  t.is(res.url.protocol, 'http:', 'the loopback probe settled on plain HTTP');
  t.is(egress.tunnels.length, tunnels + 1, 'the loopback registry was not reached through the proxy');
  t.is(egress.forwarded.filter((u) => u.includes(plain.host)).length, 0);
});

test('credentials: flags for the customer registry are sent; without them the Docker config the policy names is read', async (t) => {
  const blob = { mediaType: 'application/octet-stream', digest: `sha256:${'ab'.repeat(32)}`, size: 1 };
  const dir = await mkdtemp(join(tmpdir(), 'airgap-policy-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const auth = Buffer.from(`${USER.username}:${USER.password}`).toString('base64');
  await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { [priv.host]: { auth } } }));

  const given = createRegistryAccess(policyFromFlags({ target: { host: priv.host, credentials: USER } }, { AIRGAP_RETRY_BASE_MS: '5' }));
  t.teardown(() => given.close());
  t.false(await given.open({ registry: priv.host, repository: 'team/app' }).exists(blob));

  const fromConfig = createRegistryAccess({ env: {}, retry: FAST, credentialOptions: { configDir: dir, env: {} } });
  t.teardown(() => fromConfig.close());
  t.false(await fromConfig.open({ registry: priv.host, repository: 'team/app' }).exists(blob));

  const none = createRegistryAccess({ env: {}, retry: FAST, credentialOptions: { configDir: '/nonexistent-airgap', env: {} } });
  t.teardown(() => none.close());
  const err = await t.throwsAsync(none.open({ registry: priv.host, repository: 'team/app' }).exists(blob));
  t.true(isAirgapError(err, 'E_AUTH'), String(err));
});

test('hops: https→http refused off loopback, link-local refused anywhere; the endpoint compared with default ports normalised', (t) => {
  const from = new URL('https://registry.corp/v2/');
  t.regex(hopRefusal(from, new URL('http://registry.corp/v2/x')) ?? '', /plain HTTP/);
  t.regex(hopRefusal(from, new URL('http://storage.corp:8080/x')) ?? '', /plain HTTP/);
  t.is(hopRefusal(from, new URL('https://storage.corp/x')), undefined);
  t.is(hopRefusal(from, new URL('http://127.0.0.1:5000/x')), undefined);
  t.is(hopRefusal(from, new URL('http://localhost:5000/x')), undefined);
  t.is(hopRefusal(new URL('http://registry.corp:5000/'), new URL('http://storage.corp/x')), undefined);
  t.regex(hopRefusal(from, new URL('ftp://registry.corp/x')) ?? '', /not HTTP/);
  for (const h of ['169.254.169.254', '169.254.0.1', '[fe80::1]', '[febf::1]', '[::ffff:169.254.169.254]']) {
    t.true(isLinkLocal(h), h);
    t.regex(hopRefusal(from, new URL(`https://${h}/x`)) ?? '', /link-local/, h);
  }
  // The WHATWG parser writes other spellings of an IPv4 address as dotted quads.
  t.regex(hopRefusal(from, new URL('http://2852039166/')) ?? '', /link-local/);
  for (const h of ['169.255.0.1', '[fec0::1]', '[fe8::1]', '10.0.0.1', 'fe80.corp']) t.false(isLinkLocal(h), h);
  t.true(isEndpointOf('registry.corp:443', new URL('https://registry.corp/v2/')));
  t.true(isEndpointOf('registry.corp', new URL('https://registry.corp:443/v2/')));
  t.true(isEndpointOf('registry.corp:80', new URL('http://registry.corp/v2/')));
  t.false(isEndpointOf('registry.corp:443', new URL('http://registry.corp/v2/')));
  t.false(isEndpointOf('registry.corp:5000', new URL('https://registry.corp/v2/')));
  t.true(isEndpointOf('docker.io', new URL('https://registry-1.docker.io/v2/')));
});
