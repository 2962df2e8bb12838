import { parse } from 'yaml';
import { badAirgap, printable } from './tar.js';

/**
 * airgap.yaml, as kotskinds' apis/kots/v1beta1/airgap_types.go defines it (kots.io/v1beta1
 * Airgap). Fields this tool does not use are kept as read, so a file written back says the same.
 */
export interface AirgapSpec {
  appSlug?: string;
  channelID?: string;
  channelName?: string;
  versionLabel?: string;
  releaseNotes?: string;
  updateCursor?: string;
  isRequired?: boolean;
  savedImages: string[];
  /** `docker` (registry storage tree), `docker-archive` (one archive per image), absent = docker-archive. */
  format?: string;
  uncompressedSize?: number;
  [key: string]: unknown;
}

export const AIRGAP_YAML = 'airgap.yaml';
export const APP_ARCHIVE = 'app.tar.gz';
/** pkg/docker/types: FormatDockerRegistry, FormatDockerArchive. */
export const FORMAT_REGISTRY = 'docker';
export const FORMAT_ARCHIVE = 'docker-archive';

export function parseAirgapYaml(bytes: Buffer, label: string): AirgapSpec {
  let doc: unknown;
  try {
    doc = parse(bytes.toString('utf8'), { maxAliasCount: 10 });
  } catch (e) {
    throw badAirgap(label, `${AIRGAP_YAML} is not valid YAML (${(e as Error).message.split('\n')[0]})`);
  }
  if (!isObject(doc) || doc.kind !== 'Airgap' || typeof doc.apiVersion !== 'string' || !doc.apiVersion.startsWith('kots.io/')) {
    throw badAirgap(label, `${AIRGAP_YAML} is not a kots.io Airgap (apiVersion kots.io/v1beta1, kind Airgap)`);
  }
  const spec = doc.spec ?? {};
  if (!isObject(spec)) throw badAirgap(label, `${AIRGAP_YAML} spec is not a mapping`);
  const saved = spec.savedImages ?? [];
  if (!Array.isArray(saved) || saved.some((s) => typeof s !== 'string')) throw badAirgap(label, `${AIRGAP_YAML} spec.savedImages is not a list of image references`);
  for (const key of ['appSlug', 'versionLabel', 'format', 'channelID', 'channelName', 'updateCursor'] as const) {
    if (spec[key] !== undefined && typeof spec[key] !== 'string') throw badAirgap(label, `${AIRGAP_YAML} spec.${key} is not a string`);
  }
  const format = spec.format as string | undefined;
  if (format !== undefined && format !== '' && format !== FORMAT_REGISTRY && format !== FORMAT_ARCHIVE) {
    throw badAirgap(label, `${AIRGAP_YAML} spec.format "${printable(format)}" is not one KOTS knows ("${FORMAT_REGISTRY}" or "${FORMAT_ARCHIVE}")`);
  }
  return { ...spec, savedImages: saved as string[] } as AirgapSpec;
}

/** The format images/ is in: absent or empty means docker-archive, as KOTS reads it. */
export function imageFormat(spec: AirgapSpec): typeof FORMAT_REGISTRY | typeof FORMAT_ARCHIVE {
  return spec.format === FORMAT_REGISTRY ? FORMAT_REGISTRY : FORMAT_ARCHIVE;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
