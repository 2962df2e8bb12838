import { AirgapError } from '../errors.js';

/**
 * What the scan noticed besides images: refusals (what would break the customer's offline
 * install, DESIGN.md "Caught at build, not at the customer") and warnings (image-like strings
 * the bundle will not carry). `plan` prints them all; `build` refuses when any is an error.
 */
export type FindingCode =
  | 'unrendered-kots'       // repl{{ … }} / {{repl … }} left in a manifest
  | 'unrendered-template'   // a Helm/Go template in YAML position or in an image field
  | 'duplicate-object'      // two objects with one group, kind, namespace and name
  | 'helm-chart'            // a KOTS HelmChart CR: its chart was not rendered
  | 'helm-chart-archive'    // a chart archive (.tgz holding Chart.yaml)
  | 'helm-chart-directory'  // an unpacked chart (Chart.yaml and templates/)
  | 'nested-kustomization'  // a kustomization file below the top of the manifests
  | 'undeclared-image'      // an image-like string outside pod specs, not in additionalImages
  | 'kots-template'         // a KOTS template that does not render (unknown function or item, bad arguments)
  | 'config-image'          // an image produced by a config option: only its default is bundled
  | 'helm-render'           // a chart of a HelmChart that cannot be found or rendered
  | 'helm-unused-chart';    // a chart archive no HelmChart names: not deployed, not bundled

export interface Finding {
  severity: 'error' | 'warning';
  code: FindingCode;
  /** Relative to the manifests directory, posix separators. */
  file: string;
  /** 1-based; 1 for what concerns a whole file (a chart archive). */
  line: number;
  message: string;
  /** What to do about it. */
  hint: string;
}

/**
 * A refusal made of an error that names `file:line: ` first (as every manifests error does), at
 * `where` when it names none; `hint` when the error has none.
 */
export function errorFinding(e: Error, code: FindingCode, where: { file: string; line: number }, hint: string): Finding {
  const m = /^([^:\s]+):(\d+): (.*)$/s.exec(e.message);
  return {
    severity: 'error', code, file: m?.[1] ?? where.file, line: m ? Number(m[2]) : where.line, message: m?.[3] ?? e.message,
    hint: (e instanceof AirgapError ? e.hint : undefined) ?? hint,
  };
}

export function formatFinding(f: Finding): string {
  return `${f.severity}: ${f.file}:${f.line}: ${f.message} (${f.hint})`;
}

/** Most findings listed in one error message; the rest are counted. */
const SHOWN = 10;

/**
 * Refuses the application when any finding is an error, naming each (file:line, what, what to
 * do) on one line: the build writes nothing, the customer never meets the problem.
 */
export function refuseErrors(findings: Finding[]): void {
  const errors = findings.filter((f) => f.severity === 'error');
  if (errors.length === 0) return;
  const shown = errors.slice(0, SHOWN).map((f) => `${f.file}:${f.line}: ${f.message} (${f.hint})`);
  const more = errors.length > SHOWN ? `; and ${errors.length - SHOWN} more (airgap plan lists them all)` : '';
  throw new AirgapError('E_MANIFESTS',
    `${errors.length} problem(s) would break the install at the customer: ${shown.join('; ')}${more}`,
    { hint: 'fix the manifests and build again; nothing was written' });
}
