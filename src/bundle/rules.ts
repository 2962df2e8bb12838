import { type AirgapError, isAirgapError } from '../errors.js';
import { type Descriptor } from '../oci/descriptor.js';
import { parseManifest, type ParsedManifest } from '../oci/manifest.js';
import { isIndexType, isManifestType } from '../oci/mediatypes.js';
import { verifyBytes } from '../oci/verify.js';
import { ANNOTATION_ATTACHED_TAG, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, ANNOTATION_SUBJECT, INDEX_FILE } from './format.js';

/**
 * The rules a bundle's index.json and manifests must follow, in one place: BundleReader applies
 * them when it opens a bundle and when it reads a manifest, so verify, inspect, push and rewrite
 * see one bundle. Anything they refuse is refused by all of them, and verify never passes a
 * bundle another command reads differently. How deep a graph may nest is the same bound for
 * every store (oci/manifest.ts MAX_GRAPH_DEPTH), applied by loadGraph and by verify's walk.
 */

/**
 * A manifest or index a bundle carries, parsed: content that is no manifest is the bundle's
 * fault (`malformed`, exit 3), not an unsupported registry answer. Both bundle readers (ours and
 * a KOTS .airgap) parse through here.
 */
export function parseBundleManifest(bytes: Buffer, mediaType: string | null, what: string, malformed: (detail: string) => AirgapError): ParsedManifest {
  try {
    return parseManifest(bytes, mediaType, what);
  } catch (e) {
    if (isAirgapError(e, 'E_UNSUPPORTED')) throw malformed(e.message);
    throw e;
  }
}

/** A manifest read whole from a bundle: verified against its descriptor, parsed, its body what the descriptor says. */
export function checkBundleManifest(bytes: Buffer, desc: Descriptor, label: string, what: string,
  malformed: (detail: string) => AirgapError): ParsedManifest {
  verifyBytes(bytes, desc, `${label}: ${what}`);
  const manifest = parseBundleManifest(bytes, desc.mediaType, what, malformed);
  const problem = manifestTypeProblem(desc, manifest);
  if (problem) throw malformed(`${what}: ${problem}`);
  return manifest;
}

/** Every way index.json breaks the rules; empty when it follows them. */
export function indexProblems(index: Descriptor[]): string[] {
  const problems: string[] = [];
  const byRef = new Map<string, string>();
  index.forEach((d, i) => {
    const at = `${INDEX_FILE} manifests[${i}]`;
    const a = d.annotations ?? {};
    const name = a[ANNOTATION_REF_NAME];
    const ctrName = a[ANNOTATION_CONTAINERD_NAME];
    if (!isIndexType(d.mediaType) && !isManifestType(d.mediaType)) {
      problems.push(`${at} (${name ?? d.digest}) has media type "${d.mediaType}": an entry must be an image manifest or index`);
    }
    if (name !== undefined && ctrName !== undefined && name !== ctrName) {
      problems.push(`${at} names two images: "${name}" (${ANNOTATION_REF_NAME}) and "${ctrName}" (${ANNOTATION_CONTAINERD_NAME})`);
    }
    const ref = name ?? ctrName;
    if (ref !== undefined) {
      const seen = byRef.get(ref);
      if (seen !== undefined) {
        problems.push(seen === d.digest ? `${at} lists ${ref} a second time`
          : `${at} binds ${ref} to ${d.digest}, but an earlier entry binds it to ${seen}`);
      } else byRef.set(ref, d.digest);
      return;
    }
    const subject = a[ANNOTATION_SUBJECT];
    const tag = a[ANNOTATION_ATTACHED_TAG];
    if (subject === undefined) return;
    if (!/^sha256:[a-f0-9]{64}$/.test(subject)) {
      problems.push(`${at} is attached to "${subject}", which is not a sha256 digest`);
    } else if (tag !== undefined && !new RegExp(`^sha256-${subject.slice(7)}\\.(sig|att|sbom)$`).test(tag)) {
      // Pushed, it would overwrite some other tag (an application image's) in the customer registry.
      problems.push(`${at} attaches ${d.digest} to ${subject} under the tag "${tag}", which is not that digest's signature, attestation or SBOM tag`);
    }
  });
  return problems;
}

/**
 * `parsed` is parseManifest(bytes, desc.mediaType). A manifest's body must be what its descriptor says: a root or child typed as a manifest whose
 * body is an index (or the other way round) would be pushed under one type and read as another.
 */
export function manifestTypeProblem(desc: Descriptor, parsed: ParsedManifest): string | undefined {
  const want = isIndexType(desc.mediaType) ? 'index' : isManifestType(desc.mediaType) ? 'manifest' : undefined;
  if (want === undefined) return `${desc.digest} is typed "${desc.mediaType}", not a manifest or index`;
  if (parsed.kind !== want) return `${desc.digest} is referenced as an image ${want} (${desc.mediaType}) but its body is an image ${parsed.kind}`;
  // parseManifest(bytes, desc.mediaType) keeps the descriptor's type unless the body names another.
  if (parsed.mediaType !== desc.mediaType) return `${desc.digest} is referenced as ${desc.mediaType} but its body says ${parsed.mediaType}`;
  return undefined;
}
