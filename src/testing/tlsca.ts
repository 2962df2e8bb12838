import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * Test helper: a throw-away certificate authority made with openssl, issuing server certificates
 * for any names (127.0.0.1 always included) and client certificates (mutual TLS). Each CA is its
 * own trust root: a certificate of one is not trusted by a client given another's caFile.
 */
export interface TestCa {
  /** PEM file of the CA certificate (what --ca-file gets). */
  caFile: string;
  /** A server certificate for these DNS names (and IP 127.0.0.1). */
  server(names: string[]): Promise<KeyPair>;
  /** A client certificate (extendedKeyUsage clientAuth). */
  client(name: string): Promise<KeyPair>;
  remove(): Promise<void>;
}

export interface KeyPair {
  keyFile: string;
  certFile: string;
  key: Buffer;
  cert: Buffer;
}

const run = promisify(execFile);

export async function createTestCa(name = 'airgap test CA'): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-ca-'));
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.crt');
  let serial = 0;
  try {
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', caKey, '-out', caFile,
      '-days', '2', '-subj', `/CN=${name}`]);
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const issue = async (cn: string, ext: string[]): Promise<KeyPair> => {
    const base = join(dir, `cert-${++serial}`);
    const keyFile = `${base}.key`;
    const certFile = `${base}.crt`;
    await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', `${base}.csr`, '-subj', `/CN=${cn}`]);
    await writeFile(`${base}.ext`, ext.join('\n') + '\n');
    // A serial of its own (no shared serial file: certificates may be issued concurrently).
    await run('openssl', ['x509', '-req', '-in', `${base}.csr`, '-CA', caFile, '-CAkey', caKey,
      '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-out', certFile, '-days', '2', '-extfile', `${base}.ext`]);
    return { keyFile, certFile, key: await readFile(keyFile), cert: await readFile(certFile) };
  };
  return {
    caFile,
    server: (names) => issue(names[0] ?? '127.0.0.1', [
      'basicConstraints=CA:FALSE',
      'keyUsage=digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=${['IP:127.0.0.1', 'DNS:localhost', ...names.map((n) => `DNS:${n}`)].join(',')}`,
    ]),
    client: (cn) => issue(cn, [
      'basicConstraints=CA:FALSE',
      'keyUsage=digitalSignature,keyEncipherment',
      'extendedKeyUsage=clientAuth',
    ]),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
