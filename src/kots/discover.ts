import { isAirgapError, type AirgapError } from '../errors.js';
import { errorFinding, type Finding } from '../app/findings.js';
import { KOTS_KINDS_PREFIX, byFile, configState, keptText, findConfig, joinDocuments, splitDocuments, type ReleaseFile, type RenderOptions, type RenderedDocument } from './release.js';
import { branchCount, hasKotsTemplate, templateCalls } from './template.js';
import type { ConfigState } from './config.js';

/**
 * Build-time discovery over a KOTS release (vendor side): which images the customer may run,
 * whatever they will choose inside the gap. The release is rendered with the Config's defaults
 * (what plan reports, duplicates judged on it), then once per branch of its if-chains
 * (template.ts forceBranch), and objects switched off by `kots.io/when` still count: a component
 * off by default may be switched on offline, where nothing can be pulled any more.
 */

export interface ManifestText { path: string; content: Buffer }

export interface Discovery {
  /** The default rendering's applied documents, one file per release file. */
  manifests: ManifestText[];
  /** The default rendering's KOTS kinds (Application, Preflight…), under `kots/<path>`. */
  kotsKinds: ManifestText[];
  /** For images only: documents switched off under the defaults, and every forced branch. */
  alternatives: ManifestText[];
  /** Every document of the default rendering (the HelmCharts among them). */
  documents: RenderedDocument[];
  findings: Finding[];
}


function text(path: string, docs: RenderedDocument[]): ManifestText {
  return { path, content: Buffer.from(joinDocuments(docs)) };
}

function templateFinding(e: AirgapError, file: string, raw?: string): Finding {
  const f = errorFinding(e, 'kots-template', { file, line: 1 },
    'fix the template: airgap renders the release as KOTS does, at build and at the customer\'s install');
  // KOTS renders the whole text, comments included: a template left in a comment still runs.
  const inComment = raw !== undefined && /^\s*#/.test(raw.split('\n')[f.line - 1] ?? '');
  return inComment ? { ...f, hint: 'that line is a YAML comment, and KOTS renders templates in comments too: fix the template or remove it from the comment' } : f;
}

export function discoverRelease(files: ReleaseFile[], opts: RenderOptions): Discovery {
  const findings: Finding[] = [];
  const config = findConfig(files);
  const { state, render } = configState(config, opts);
  const documents: RenderedDocument[] = [];
  const texts = new Map<string, string>();
  const alternatives: ManifestText[] = [];
  for (const f of files) {
    if (!/\.(ya?ml|json)$/i.test(f.path)) continue;
    const raw = f.content.toString('utf8');
    if (!hasKotsTemplate(raw)) {
      try {
        texts.set(f.path, raw);
        documents.push(...splitDocuments(f.path, raw));
      } catch (e) {
        if (!isAirgapError(e)) throw e;
        findings.push(templateFinding(e, f.path));
      }
      continue;
    }
    try {
      const text = render(raw, f.path);
      texts.set(f.path, text);
      documents.push(...splitDocuments(f.path, text));
    } catch (e) {
      if (!isAirgapError(e)) throw e;
      findings.push(templateFinding(e, f.path, raw));
    }
    // Every branch of every if-chain, for images: a variant that does not render or parse
    // (a branch that only makes sense with other values) adds nothing, and says nothing.
    let branches = 0;
    try {
      branches = branchCount(raw, f.path);
    } catch {
      // the default rendering above has said what is wrong with the file
    }
    for (let b = 0; b < branches; b++) {
      try {
        const { render: forced } = configState(config, { ...opts, forceBranch: b });
        const docs = splitDocuments(f.path, forced(raw, f.path));
        alternatives.push(text(f.path, docs));
      } catch {
        // nothing: see above
      }
    }
    findings.push(...configImageFindings(f.path, raw, state));
  }
  const manifests: ManifestText[] = [];
  const kotsKinds: ManifestText[] = [];
  for (const [path, docs] of byFile(documents)) {
    const applied = docs.filter((d) => !d.excluded && !d.kotsKind);
    const kinds = docs.filter((d) => d.kotsKind && !d.excluded);
    const off = docs.filter((d) => d.excluded);
    if (applied.length > 0) manifests.push({ path, content: Buffer.from(keptText(applied, docs, texts.get(path))) });
    if (kinds.length > 0) kotsKinds.push({ path: `${KOTS_KINDS_PREFIX}${path}`, content: Buffer.from(keptText(kinds, docs, texts.get(path))) });
    if (off.length > 0) alternatives.push(text(path, off));
  }
  return { manifests, kotsKinds, alternatives, documents, findings };
}

/**
 * An image produced by a config option: the bundle holds what the defaults render; a customer who
 * types another image inside the gap pulls what is not there.
 */
function configImageFindings(file: string, raw: string, config: ConfigState): Finding[] {
  const out: Finding[] = [];
  const lines = raw.split('\n');
  let calls: ReturnType<typeof templateCalls>;
  try {
    calls = templateCalls(raw, file);
  } catch {
    return out;
  }
  for (const call of calls) {
    if (call.name !== 'ConfigOption' || typeof call.args[0] !== 'string') continue;
    const l = lines[call.line - 1] ?? '';
    if (!/^\s*-?\s*["']?image["']?\s*:/.test(l)) continue;
    const name = call.args[0];
    let bundled: string;
    try {
      bundled = config.option(name);
    } catch {
      continue; // an unknown item: the rendering names it
    }
    out.push({
      severity: 'warning', code: 'config-image', file, line: call.line,
      message: `the image comes from config option "${name}": the bundle carries the one its default renders (${bundled || 'empty'}), no other`,
      hint: 'list every image a customer may choose in the KOTS Application\'s spec.additionalImages',
    });
  }
  return out;
}
