import { execFile } from 'node:child_process';
import { AirgapError } from '../errors.js';

/**
 * A manifests directory that is a kustomize tree is rendered with `kubectl kustomize` before
 * anything else: its `images:` transformer and patches change which images run, so what is
 * scanned, carried and rewritten is the rendered output, never the sources.
 */

/** The one file a rendered kustomize tree is carried as (app/<this> in the bundle). */
export const KUSTOMIZE_RENDERED = 'kustomized.yaml';

/** The names kustomize looks for in a directory. */
export function isKustomizationName(path: string): boolean {
  return /^(kustomization\.ya?ml|Kustomization)$/.test(path);
}

/** Runs `kubectl kustomize DIR`; `file` is the kustomization's name, for messages. */
export function renderKustomization(dir: string, file: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile('kubectl', ['kustomize', dir], { encoding: 'buffer', maxBuffer: 1 << 30, env: process.env },
      (err, stdout, stderr) => {
        if (err === null) {
          resolve(stdout);
          return;
        }
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(new AirgapError('E_MANIFESTS',
            `${file}: the manifests are a kustomize tree, and rendering it needs kubectl, which is not on PATH`,
            { hint: `install kubectl (it includes kustomize), or render it yourself: kubectl kustomize ${dir} > app.yaml, and pass the directory of app.yaml` }));
          return;
        }
        const why = stderr.toString('utf8').trim().split('\n').filter((l) => l !== '').pop() ?? err.message;
        reject(new AirgapError('E_MANIFESTS', `${file}: kubectl kustomize ${dir} failed: ${why.replace(/^error: /, '')}`,
          { hint: 'fix the kustomization so that kubectl kustomize renders it', cause: err }));
      });
  });
}
