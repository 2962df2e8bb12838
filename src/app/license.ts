import { readFile } from 'node:fs/promises';
import { parseAllDocuments, isMap, isScalar } from 'yaml';
import { AirgapError } from '../errors.js';

/**
 * The KOTS license: its ID is both username and password for the vendor's proxy and registry.
 * The ID is a credential, so no message below ever quotes a value from the file.
 */
export interface License {
  licenseId: string;
  appSlug: string;
  customerName?: string;
  /** The whole spec as plain data: KOTS's LicenseFieldValue reads fields and entitlements from it. */
  spec?: Record<string, unknown>;
}

const HINT = 'pass --license with the license YAML downloaded from the vendor portal (apiVersion: kots.io/v1beta1, kind: License)';

function fail(path: string, what: string, cause?: unknown): AirgapError {
  return new AirgapError('E_LICENSE', `license ${path}: ${what}`, cause === undefined ? { hint: HINT } : { hint: HINT, cause });
}

function field(map: unknown, key: string): string | undefined {
  if (!isMap(map)) return undefined;
  const v = map.get(key, true);
  return isScalar(v) && typeof v.value === 'string' && v.value.trim() !== '' ? v.value.trim() : undefined;
}

export async function readLicense(path: string): Promise<License> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw fail(path, `cannot read it (${(e as NodeJS.ErrnoException).code ?? 'unknown error'})`);
  }
  // The parser's own messages can quote the offending source line (which may hold the ID), so
  // only its position is reported, and the parser error is not attached as the cause.
  const docs = parseAllDocuments(text, { prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [];
  const broken = list.find((d) => d.errors.length > 0);
  if (broken) throw fail(path, `not valid YAML (${broken.errors[0]?.code ?? 'parse error'})`);

  const doc = list.map((d) => d.contents).find((c) => isMap(c) && field(c, 'kind') === 'License');
  if (!isMap(doc)) {
    const kind = list.map((d) => field(d.contents, 'kind')).find((k) => k !== undefined);
    throw fail(path, kind === undefined ? 'no document with kind: License' : `kind is ${JSON.stringify(kind)}, not License`);
  }
  const api = field(doc, 'apiVersion');
  if (api === undefined || !api.startsWith('kots.io/')) {
    throw fail(path, `apiVersion is ${api === undefined ? 'missing' : JSON.stringify(api)}, want kots.io/v1beta1`);
  }
  const spec = doc.get('spec', true);
  const licenseId = field(spec, 'licenseID');
  const appSlug = field(spec, 'appSlug');
  const missing = [licenseId === undefined ? 'spec.licenseID' : '', appSlug === undefined ? 'spec.appSlug' : ''].filter(Boolean);
  if (licenseId === undefined || appSlug === undefined) throw fail(path, `missing ${missing.join(' and ')}`);
  const customerName = field(spec, 'customerName');
  const plain = isMap(spec) ? (spec.toJSON() as Record<string, unknown>) : {};
  return { licenseId, appSlug, ...(customerName === undefined ? {} : { customerName }), spec: plain };
}
