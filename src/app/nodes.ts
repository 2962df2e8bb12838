import { Composer, Parser, isMap, isScalar, isSeq, type Document, type LineCounter, type Scalar, type YAMLMap } from 'yaml';

/** Reading YAML node trees: the small helpers the scan, the checks and the rewrite share. */

/**
 * The documents of a YAML text one at a time, as `parseAllDocuments` composes them (the same
 * public Parser and Composer), without holding them all: a parsed document takes about 40 times
 * its text. `lines` fills as the text is read. Errors stay on each document, as there.
 */
export function* yamlDocuments(text: string, lines: LineCounter): Generator<Document> {
  const composer = new Composer({ lineCounter: lines, prettyErrors: false });
  yield* composer.compose(new Parser(lines.addNewLine).parse(text));
}

/** The value node under `key` of a mapping node, or undefined. */
export function child(node: unknown, key: string): unknown {
  return isMap(node) ? node.get(key, true) : undefined;
}

/** The string value of a scalar node, or undefined. */
export function str(node: unknown): string | undefined {
  return isScalar(node) && typeof node.value === 'string' ? node.value : undefined;
}

/** Calls cb for each top-level object of a document: the document itself, or the items of a List. */
export function forEachObject(node: unknown, cb: (obj: YAMLMap) => void): void {
  if (!isMap(node)) return;
  const items = child(node, 'items');
  if (str(child(node, 'kind'))?.endsWith('List') && isSeq(items)) {
    for (const item of items.items) forEachObject(item, cb);
    return;
  }
  cb(node);
}

/** A path inside one object (a List item counts as its own object), as JSON-pointer segments. */
export type NodePath = (string | number)[];

/**
 * Calls cb for every node of a mapping/sequence tree, parents before children, with its path from
 * the object and the key it stands under (undefined for a sequence item).
 */
export function walkNodes(root: unknown, cb: (node: unknown, path: NodePath, key: string | number) => void,
  path: NodePath = []): void {
  if (isMap(root)) {
    for (const pair of root.items) {
      const k = isScalar(pair.key) ? pair.key.value : pair.key;
      if (typeof k !== 'string' && typeof k !== 'number') continue;
      const p = [...path, k];
      cb(pair.value, p, k);
      walkNodes(pair.value, cb, p);
    }
  } else if (isSeq(root)) {
    root.items.forEach((item, i) => {
      const p = [...path, i];
      cb(item, p, i);
      walkNodes(item, cb, p);
    });
  }
}

/** Where a string value stands: its key, and the `name` beside it (env entries: RELATED_IMAGE_X). */
export interface ValueContext { key: string | number; siblingName: string | undefined }

/**
 * Calls cb for every string scalar in value position (never a key) of every object, except the
 * image nodes already read by shape. Block scalars (`|`, `>`) are free text and never visited.
 */
export function forEachStringValue(doc: Document, skip: Set<unknown>,
  cb: (node: Scalar<string>, object: YAMLMap, path: NodePath, context: ValueContext) => void): void {
  forEachObject(doc.contents, (obj) => {
    walkNodes(obj, (node, path, key) => {
      if (skip.has(node) || !isScalar(node) || typeof node.value !== 'string') return;
      if (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED') return;
      const parent = path.slice(0, -1).reduce<unknown>((n, k) => (isSeq(n) ? n.items[Number(k)] : child(n, String(k))), obj);
      cb(node as Scalar<string>, obj, path, { key, siblingName: typeof key === 'string' ? str(child(parent, 'name')) : undefined });
    });
  });
}

/** The reference part of a string value: the whole value, or the value of a `--flag=REF` argument. */
export function imageCandidate(value: string): { prefix: string; text: string } {
  const m = /^(--?[A-Za-z0-9][\w.-]*=)(\S+)$/.exec(value);
  return m ? { prefix: m[1]!, text: m[2]! } : { prefix: '', text: value };
}
