import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AirgapError } from '../errors.js';
import { sha256Digest } from '../oci/verify.js';
import { INDEX_FILE, METADATA_FILE, SIGNATURE_FILE } from './format.js';
import type { BundleSource as BundleReader } from './source.js';
import { verifyBundle } from './verify.js';

/**
 * Bundle signing. The vendor signs the exact bytes of airgap.json; airgap.json pins the sha256 of
 * index.json (which pins every manifest, and through them every config and layer) and of every
 * app/ file, and names the delta's base. So one detached signature, checkable with plain openssl,
 * vouches for every byte the customer will push and apply:
 *   ECDSA P-256: `openssl dgst -sha256 -verify vendor.pub -signature airgap.json.sig airgap.json`
 *   Ed25519:     `openssl pkeyutl -verify -pubin -inkey vendor.pub -rawin -in airgap.json -sigfile airgap.json.sig`
 * An ECDSA signature is DER-encoded (what openssl writes and reads).
 */

export type KeyType = 'ecdsa-p256' | 'ed25519';

export interface Signer {
  type: KeyType;
  sign: (bytes: Buffer) => Buffer;
}

const KEY_HINT = 'make one with: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out vendor.key (see docs/signing.md)';

function readKeyFile(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new AirgapError('E_USAGE', `${flag} ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      { hint: 'give the path of a PEM key file' });
  }
}

function keyType(key: KeyObject, flag: string, path: string): KeyType {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256';
  const what = key.asymmetricKeyType === 'ec' ? `an EC key on curve ${key.asymmetricKeyDetails?.namedCurve ?? 'unknown'}` : `a${key.asymmetricKeyType === 'rsa' ? 'n' : ''} ${key.asymmetricKeyType ?? 'unknown'} key`;
  throw new AirgapError('E_USAGE', `${flag} ${path} is ${what}; airgap signs with ECDSA P-256 or Ed25519 keys`, { hint: KEY_HINT });
}

/** A PEM private key (PKCS#8 or SEC1) → a signer; refused here, before a build downloads anything. */
export function loadSigningKey(path: string): Signer {
  const pem = readKeyFile(path, '--sign-key');
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    const encrypted = /ENCRYPTED/.test(pem.toString('latin1')) || /passphrase/i.test((e as Error).message);
    throw new AirgapError('E_USAGE', encrypted
      ? `--sign-key ${path} is encrypted with a passphrase`
      : `--sign-key ${path} is not a PEM private key (${(e as Error).message})`,
    { hint: encrypted ? 'write a decrypted copy on the signing host (openssl pkey -in vendor.key -out plain.key) and give that' : KEY_HINT });
  }
  const type = keyType(key, '--sign-key', path);
  return { type, sign: (bytes) => sign(type === 'ed25519' ? null : 'sha256', bytes, key) };
}

/** A PEM public key (or a private key, whose public half is used). */
export function loadPublicKey(path: string): { key: KeyObject; type: KeyType } {
  const pem = readKeyFile(path, '--key');
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (e) {
    throw new AirgapError('E_USAGE', `--key ${path} is not a PEM public key (${(e as Error).message})`,
      { hint: 'give the vendor\'s public key, e.g. vendor.pub made with openssl pkey -in vendor.key -pubout -out vendor.pub' });
  }
  return { key, type: keyType(key, '--key', path) };
}

export interface SignatureCheck {
  keyType: KeyType;
  /** index.json and app files whose sha256 matched their pin. */
  pinned: number;
  /**
   * What the signed airgap.json says the bundle is: shown by push, install and verify, so that an
   * older release replayed with its valid signature is seen for what it is.
   */
  release: SignedRelease;
}

export interface SignedRelease {
  app?: string;
  release?: string;
  created: string;
  id?: string;
}

/**
 * The admin's key (AIRGAP_REQUIRE_SIGNATURE=KEYFILE): every command that reads a bundle refuses
 * one that this key does not verify, whatever --key the operator passes (or not).
 */
export const REQUIRE_SIGNATURE_ENV = 'AIRGAP_REQUIRE_SIGNATURE';

/** The keys a bundle must verify with: the admin's, then --key (each once). */
export function signatureKeys(key: string | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  const required = env[REQUIRE_SIGNATURE_ENV] || undefined;
  return [...new Set([required, key].filter((k): k is string => k !== undefined))];
}

/** Checks the signature with every key of signatureKeys (all must verify); the last check, or undefined without keys. */
export async function checkSignatures(reader: BundleReader, keys: string[]): Promise<SignatureCheck | undefined> {
  let last: SignatureCheck | undefined;
  for (const k of keys) last = await checkSignature(reader, k);
  return last;
}

function invalid(label: string, detail: string, hint = 'do not install this bundle: get it again from the vendor, and check it with airgap verify --key'): AirgapError {
  return new AirgapError('E_SIGNATURE', `${label}: ${detail}`, { hint });
}

/**
 * Checks airgap.json.sig against `keyPath`, then every digest airgap.json pins (index.json, each
 * app file, and that no app file is there unpinned). Throws E_SIGNATURE (exit 3) at the first
 * failure. The blobs are then checked through index.json by verifyBundle (re-hash and graph walk).
 */
export async function checkSignature(reader: BundleReader, keyPath: string): Promise<SignatureCheck> {
  let loaded;
  try {
    loaded = loadPublicKey(keyPath);
  } catch (e) {
    // The admin's key is named by its variable, not by a flag the operator never gave.
    if (keyPath !== process.env[REQUIRE_SIGNATURE_ENV] || !(e instanceof AirgapError)) throw e;
    throw new AirgapError(e.code, `${REQUIRE_SIGNATURE_ENV}=${keyPath}: ${e.message}`, { ...(e.hint ? { hint: e.hint } : {}), cause: e });
  }
  const { key, type } = loaded;
  const label = reader.label;
  const metaBytes = await reader.readEntry(METADATA_FILE);
  if (!metaBytes) throw invalid(label, `has no ${METADATA_FILE}, so it cannot be signed`);
  const sig = await reader.readEntry(SIGNATURE_FILE);
  if (!sig) {
    throw invalid(label, `is not signed (it holds no ${SIGNATURE_FILE})`,
      'ask the vendor for the signed bundle (built with airgap build --sign-key); do not install an unsigned one where a signature is required');
  }
  let ok: boolean;
  try {
    ok = verify(type === 'ed25519' ? null : 'sha256', metaBytes, key, sig);
  } catch {
    ok = false;
  }
  if (!ok) {
    throw invalid(label, `${SIGNATURE_FILE} does not verify with the key ${keyPath}: ${METADATA_FILE} was changed after signing, or the bundle was signed with another key`);
  }
  const pins = reader.metadata()?.pins;
  if (!pins || typeof pins.index !== 'string' || typeof pins.app !== 'object' || pins.app === null) {
    throw invalid(label, `the signed ${METADATA_FILE} pins no digests (written by an older airgap)`, 'rebuild and sign the bundle with this version of airgap');
  }
  const index = await reader.readEntry(INDEX_FILE);
  if (!index || sha256Digest(index) !== pins.index) {
    throw invalid(label, `${INDEX_FILE} does not match the digest the signed ${METADATA_FILE} pins (${pins.index}): it was changed after signing`);
  }
  const held = reader.appFiles();
  for (const f of held) {
    const want = pins.app[f];
    if (want === undefined) throw invalid(label, `app/${f} is not in the signed ${METADATA_FILE}: it was added after signing`);
    if (sha256Digest(await reader.readAppFile(f)) !== want) {
      throw invalid(label, `app/${f} does not match the digest the signed ${METADATA_FILE} pins (${want}): it was changed after signing`);
    }
  }
  const absent = Object.keys(pins.app).filter((f) => !held.includes(f));
  if (absent.length > 0) throw invalid(label, `app/${absent[0]} is pinned by the signed ${METADATA_FILE} but missing from the bundle`);
  const meta = reader.metadata()!;
  return { keyType: type, pinned: 1 + held.length, release: {
    created: meta.created, ...(meta.appSlug ? { app: meta.appSlug } : {}), ...(meta.release ? { release: meta.release } : {}), ...(meta.id ? { id: meta.id } : {}),
  } };
}

/**
 * push/install --key: the signature over airgap.json, every digest it pins, then every blob
 * re-hashed and every graph walked, all before the first byte is sent. Throws E_SIGNATURE or
 * E_BUNDLE (exit 3); returns the last key's check (undefined when there is no key to check).
 */
export async function checkSignedBundle(reader: BundleReader, keys: string[]): Promise<SignatureCheck | undefined> {
  const check = await checkSignatures(reader, keys);
  if (!check) return undefined;
  const r = await verifyBundle(reader);
  if (!r.ok) {
    throw new AirgapError('E_BUNDLE', `${reader.label} is signed, but ${r.problems.length} problem(s) were found in what it holds: ${r.problems.slice(0, 3).map((p) => p.message).join('; ')}`,
      { hint: 'do not install this bundle: get it again from the vendor, and check it with airgap verify --key' });
  }
  return check;
}
