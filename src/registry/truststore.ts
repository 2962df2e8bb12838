import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';

/**
 * The certificates a registry's TLS is checked against: Node's bundled list, the operating
 * system's store (what skopeo, podman and docker trust on the same host: a corporate CA the admin
 * installed with update-ca-certificates or update-ca-trust), NODE_EXTRA_CA_CERTS and the
 * registry's --ca-file. The OS store is found as Go's crypto/x509 finds it on Linux:
 * $SSL_CERT_FILE, else the first bundle file that exists; and $SSL_CERT_DIR's files when set.
 */

/** Go's list (crypto/x509/root_linux.go), in its order. */
export const OS_BUNDLE_FILES = [
  '/etc/ssl/certs/ca-certificates.crt', // Debian, Ubuntu, Gentoo, Arch
  '/etc/pki/tls/certs/ca-bundle.crt', // Fedora, RHEL 6
  '/etc/ssl/ca-bundle.pem', // openSUSE
  '/etc/pki/tls/cacert.pem', // OpenELEC
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem', // CentOS, RHEL 7
  '/etc/ssl/cert.pem', // Alpine
];

export interface OsStore {
  /** Where it was read from (for --debug), empty when nothing was found. */
  readonly from: string[];
  readonly pems: readonly string[];
}

const stores = new Map<string, OsStore>();

/** The OS store for this environment, read once per process (a run reaches many hosts). */
export function osTrustStore(env: NodeJS.ProcessEnv): OsStore {
  const file = env.SSL_CERT_FILE || undefined;
  const dirs = env.SSL_CERT_DIR ? env.SSL_CERT_DIR.split(':').filter(Boolean) : [];
  const key = `${file ?? ''}\n${dirs.join(':')}`;
  let store = stores.get(key);
  if (!store) {
    store = readOsStore(file, dirs);
    stores.set(key, store);
  }
  return store;
}

function readOsStore(file: string | undefined, dirs: string[]): OsStore {
  const from: string[] = [];
  const pems: string[] = [];
  for (const f of file !== undefined ? [file] : OS_BUNDLE_FILES) {
    const found = pemsIn(f);
    if (found === undefined) continue;
    from.push(f);
    pems.push(...found);
    break;
  }
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      continue;
    }
    const before = pems.length;
    for (const name of names) pems.push(...pemsIn(join(dir, name)) ?? []);
    if (pems.length > before) from.push(dir);
  }
  return { from, pems };
}

/** The PEM certificates of a file, or undefined when it cannot be read. */
function pemsIn(file: string): string[] | undefined {
  try {
    return splitPem(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** One named source of trusted certificates. */
export interface TrustSource {
  name: string;
  pems: readonly string[];
}

/**
 * Which source holds the root a TLS connection was verified against, for --debug: the chain the
 * peer presented, completed by OpenSSL from the trusted roots, is walked to its top, whose
 * fingerprint is looked up among the sources' certificates.
 */
export class TrustReport {
  readonly #sources: readonly TrustSource[];
  #byFingerprint: Map<string, string[]> | undefined;

  constructor(sources: readonly TrustSource[]) {
    this.#sources = sources;
  }

  whoVerified(socket: TLSSocket): string {
    if (!socket.authorized) return 'not verified (--insecure-skip-tls-verify)';
    let cert = socket.getPeerCertificate(true);
    const seen = new Set<string>();
    while (cert.issuerCertificate && cert.issuerCertificate !== cert && !seen.has(cert.fingerprint256)) {
      seen.add(cert.fingerprint256);
      cert = cert.issuerCertificate;
    }
    const names = this.#index().get(cert.fingerprint256);
    const root = cert.subject?.CN ? `"${String(cert.subject.CN)}"` : 'its root';
    return names ? `verified by ${root} from ${names.join(' and ')}` : `verified by ${root}, found in none of ${this.#sources.map((s) => s.name).join(', ')}`;
  }

  #index(): Map<string, string[]> {
    if (this.#byFingerprint) return this.#byFingerprint;
    const { X509Certificate } = createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
    const index = new Map<string, string[]>();
    for (const source of this.#sources) {
      for (const pem of source.pems) {
        let fingerprint: string;
        try {
          fingerprint = new X509Certificate(pem).fingerprint256;
        } catch {
          continue;
        }
        const names = index.get(fingerprint) ?? [];
        if (!names.includes(source.name)) names.push(source.name);
        index.set(fingerprint, names);
      }
    }
    this.#byFingerprint = index;
    return index;
  }
}
