import { Composer, Parser, isMap, isScalar, isSeq, visit, type Document, type LineCounter, type Scalar, type YAMLMap } from 'yaml';

/** Reading YAML node trees: the small helpers the scan, the checks and the rewrite share. */

/**
 * The documents of a YAML text one at a time, as `parseAllDocuments` composes them (the same
 * public Parser and Composer), without holding them all: a parsed document takes about 40 times
 * its text. `lines` fills as the text is read. Errors stay on each document, as there.
 */
export function* yamlDocuments(text: string, lines: LineCounter): Generator<Document> {
  // The parser's own unique-key check compares every key with every other of its mapping
  // (a ConfigMap of 40k keys: 27 s); manifestDocuments checks the same in one pass (duplicateKey).
  const composer = new Composer({ lineCounter: lines, prettyErrors: false, uniqueKeys: false });
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
export function walkNodes(root: unknown, cb: (node: unknown, path: NodePath, key: string | number, parent: unknown) => void,
  path: NodePath = []): void {
  if (isMap(root)) {
    for (const pair of root.items) {
      const k = isScalar(pair.key) ? pair.key.value : pair.key;
      if (typeof k !== 'string' && typeof k !== 'number') continue;
      const p = [...path, k];
      cb(pair.value, p, k, root);
      walkNodes(pair.value, cb, p);
    }
  } else if (isSeq(root)) {
    root.items.forEach((item, i) => {
      const p = [...path, i];
      cb(item, p, i, root);
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
    // The parent comes with the node: looking it up by path again costs a scan of every mapping
    // on the way, which made a ConfigMap of 40k keys quadratic.
    const names = new Map<unknown, string | undefined>();
    walkNodes(obj, (node, path, key, parent) => {
      if (skip.has(node) || !isScalar(node) || typeof node.value !== 'string') return;
      if (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED') return;
      let siblingName: string | undefined;
      if (typeof key === 'string') {
        // Once per mapping: a lookup per value would scan the mapping once for each of its keys.
        if (!names.has(parent)) names.set(parent, str(child(parent, 'name')));
        siblingName = names.get(parent);
      }
      cb(node as Scalar<string>, obj, path, { key, siblingName });
    });
  });
}

/** The reference part of a string value: the whole value, or the value of a `--flag=REF` argument. */
export function imageCandidate(value: string): { prefix: string; text: string } {
  const m = /^(--?[A-Za-z0-9][\w.-]*=)(\S+)$/.exec(value);
  return m ? { prefix: m[1]!, text: m[2]! } : { prefix: '', text: value };
}

/** The first key a mapping of `doc` repeats, with its offset: linear in the document's size. */
export function duplicateKey(doc: Document): { key: string; offset: number } | undefined {
  let found: { key: string; offset: number } | undefined;
  visit(doc, {
    Map(_k, node) {
      const seen = new Set<unknown>();
      for (const pair of node.items) {
        const k = isScalar(pair.key) ? pair.key.value : pair.key;
        if (k !== null && typeof k === 'object') continue; // a complex key: not compared here
        if (seen.has(k)) {
          found = { key: String(k), offset: (pair.key as Scalar | null)?.range?.[0] ?? node.range?.[0] ?? 0 };
          return visit.BREAK;
        }
        seen.add(k);
      }
      return undefined;
    },
  });
  return found;
}
