import { AirgapError } from '../errors.js';
import type { Descriptor, Platform } from './descriptor.js';

/** A platform selector: `linux/amd64`, `linux/arm64/v8`, or `all`. */
export type PlatformSpec = { all: true } | {
  all: false;
  wanted: Platform[];
  /** No --platform was given: the default picks among an index's children, and a single-platform image is taken as it is. */
  defaulted?: boolean;
};

export const DEFAULT_PLATFORM = 'linux/amd64';

export function parsePlatformSpecs(values: string[] | undefined): PlatformSpec {
  const list = values && values.length > 0 ? values : [DEFAULT_PLATFORM];
  if (list.includes('all')) {
    if (list.length > 1) throw new AirgapError('E_USAGE', '--platform all cannot be combined with other platforms');
    return { all: true };
  }
  return { all: false, wanted: list.map(parsePlatform), ...(values && values.length > 0 ? {} : { defaulted: true }) };
}

export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/i.test(p))) {
    throw new AirgapError('E_USAGE', `--platform "${s}" is not OS/ARCH[/VARIANT] (e.g. linux/amd64, linux/arm64/v8) or "all"`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** Default variants that are implied when a platform is written without one. */
function normVariant(p: Platform): string | undefined {
  if (p.architecture === 'arm64' && (p.variant === undefined || p.variant === 'v8')) return 'v8';
  if (p.architecture === 'arm' && p.variant === undefined) return 'v7';
  return p.variant;
}

export function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return false;
  if (want.os !== have.os || want.architecture !== have.architecture) return false;
  if (want.variant === undefined && want.architecture !== 'arm') return true;
  return normVariant(want) === normVariant(have);
}

/** Picks, for each wanted platform, the first child of an index that matches it. */
export function selectChildren(children: Descriptor[], wanted: Platform[]): { chosen: Descriptor[]; missing: Platform[] } {
  const chosen: Descriptor[] = [];
  const missing: Platform[] = [];
  for (const w of wanted) {
    const hit = children.find((c) => platformMatches(w, c.platform));
    if (!hit) missing.push(w);
    else if (!chosen.includes(hit)) chosen.push(hit);
  }
  return { chosen, missing };
}
