// Loading a run configuration the way the reference does (OmegaConf.merge(default_config.yaml, task
// config)), then `--set a.b=value` overrides, then validation against the typed schema. Every error is
// one line that names where the bad value came from (file:line:col, or the --set flag), the key, the
// value and what was expected; an unknown key suggests the nearest known one.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { closest, distance } from 'fastest-levenshtein';
import { isMap, isScalar, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { SfcError } from '../dsl/errors.js';
import { packageRoot } from '../dsl/paths.js';
import { configSchema, type SfcConfig } from './schema.js';

export type Plain = null | boolean | number | string | Plain[] | { [k: string]: Plain };
export type PlainObject = { [k: string]: Plain };

/** Where a value came from: a YAML file position or a command-line override. */
export interface Source {
  file: string;
  line?: number;
  col?: number;
}

export class ConfigError extends SfcError {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function formatSource(s: Source | undefined): string {
  if (!s) return 'config';
  return s.line === undefined ? s.file : `${s.file}:${s.line}:${s.col ?? 1}`;
}

/** Layers of configuration, lowest priority first, plus the merged result with per-key sources. */
export interface LoadedConfig {
  config: SfcConfig;
  /** dotted key -> where its final value was set; absent for schema defaults */
  sources: Map<string, Source>;
  /** the files that were merged, lowest priority first */
  files: string[];
}

export function defaultConfigPath(): string {
  return join(packageRoot(import.meta.url), 'configs', 'default_config.yaml');
}

/** Parses one YAML file into a plain object, recording the position of every key. */
export function readYamlLayer(path: string, sources: Map<string, Source>, displayName = path): PlainObject {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'ENOENT'
        ? `config file not found: ${displayName}`
        : `cannot read config file ${displayName}: ${code ?? String(e)}`,
    );
  }
  return parseYamlLayer(text, displayName, sources);
}

export function parseYamlLayer(text: string, file: string, sources: Map<string, Source>): PlainObject {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const err = doc.errors[0];
  if (err) {
    const pos = lineCounter.linePos(err.pos[0]);
    const msg = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+.*$/, '');
    throw new ConfigError(`${file}:${pos.line}:${pos.col}: YAML syntax error: ${msg}`);
  }
  if (doc.contents === null) return {};
  if (!isMap(doc.contents)) {
    throw new ConfigError(`${file}:1:1: a config file must be a mapping of keys to values`);
  }
  const record = (node: YamlNode | null | undefined, prefix: string): void => {
    if (!isMap(node)) return;
    for (const item of node.items) {
      if (!isScalar(item.key)) continue;
      const key = `${prefix}${String(item.key.value)}`;
      const range = item.key.range;
      if (range) {
        const p = lineCounter.linePos(range[0]);
        sources.set(key, { file, line: p.line, col: p.col });
      }
      record(item.value as YamlNode | null, `${key}.`);
    }
  };
  record(doc.contents as YamlNode, '');
  return doc.toJS({ maxAliasCount: 100 }) as PlainObject;
}

function isPlainObject(v: Plain | undefined): v is PlainObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** OmegaConf.merge semantics: mappings merge key by key, everything else (lists too) is replaced. */
export function mergeLayers(base: PlainObject, over: PlainObject): PlainObject {
  const out: PlainObject = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? mergeLayers(b, v) : v;
  }
  return out;
}

/** Applies `a.b.c=value` (value in YAML syntax: `1e-5`, `true`, `[1000, 750]`, `"text"`). */
export function applyOverride(cfg: PlainObject, spec: string, sources: Map<string, Source>): PlainObject {
  const eq = spec.indexOf('=');
  const src: Source = { file: `--set ${spec}` };
  if (eq <= 0) throw new ConfigError(`${src.file}: expected KEY=VALUE, e.g. --set lr=1e-5`);
  const path = spec.slice(0, eq).trim().split('.');
  if (path.some((p) => p === '')) throw new ConfigError(`${src.file}: empty key segment in '${spec.slice(0, eq)}'`);
  const scratch = new Map<string, Source>();
  let value: Plain;
  try {
    value = parseYamlLayer(`v: ${spec.slice(eq + 1)}`, src.file, scratch).v ?? null;
  } catch {
    value = spec.slice(eq + 1); // not valid YAML (e.g. an unquoted ': '): take it as a string
  }
  const out = structuredClone(cfg);
  let node: PlainObject = out;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i]!;
    const next = node[k];
    if (next === undefined) node[k] = {};
    else if (!isPlainObject(next)) {
      throw new ConfigError(
        `${src.file}: '${path.slice(0, i + 1).join('.')}' is not a mapping, cannot set '${path.join('.')}'`,
      );
    }
    node = node[k] as PlainObject;
  }
  node[path[path.length - 1]!] = value;
  sources.set(path.join('.'), src);
  return out;
}

/** Keys of a zod object schema (unwrapping defaults and optionals). */
function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  let s: z.ZodType = schema;
  for (;;) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
    else break;
  }
  return s instanceof z.ZodObject ? (s.shape as Record<string, z.ZodType>) : undefined;
}

/** All dotted key paths the schema knows. */
export function knownKeys(schema: z.ZodType = configSchema, prefix = ''): string[] {
  const shape = objectShape(schema);
  if (!shape) return [];
  return Object.entries(shape).flatMap(([k, v]) => [`${prefix}${k}`, ...knownKeys(v, `${prefix}${k}.`)]);
}

function suggest(key: string, prefix: string, siblings: string[], root: z.ZodType): string {
  const all = knownKeys(root);
  const leaf = key.toLowerCase().replace(/-/g, '_');
  // the same key name elsewhere in the tree (e.g. `local_attn_size` at the top level)
  const elsewhere = all.find((p) => p.split('.').pop() === leaf && p !== `${prefix}${key}`);
  if (elsewhere) return ` (did you mean '${elsewhere}'?)`;
  if (siblings.length === 0) return '';
  const best = closest(leaf, siblings);
  const limit = Math.max(2, Math.floor(leaf.length / 3));
  const near = distance(leaf, best) <= limit || (leaf.length >= 4 && best.startsWith(leaf));
  return near ? ` (did you mean '${prefix}${best}'?)` : '';
}

function checkUnknownKeys(
  value: Plain,
  schema: z.ZodType,
  prefix: string,
  sources: Map<string, Source>,
  root: z.ZodType,
): void {
  const shape = objectShape(schema);
  if (!shape || !isPlainObject(value)) return;
  for (const [k, v] of Object.entries(value)) {
    const path = `${prefix}${k}`;
    const sub = shape[k];
    if (!sub) {
      throw new ConfigError(
        `${formatSource(sources.get(path))}: unknown key '${path}'${suggest(k, prefix, Object.keys(shape), root)}`,
      );
    }
    checkUnknownKeys(v, sub, `${path}.`, sources, root);
  }
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'missing';
  const json = JSON.stringify(v);
  const shown = json.length > 60 ? `${json.slice(0, 57)}...` : json;
  const kind =
    v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : `a ${typeof v}`;
  return `${shown} (${kind})`;
}

function describeExpected(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type') {
    const e = issue.expected;
    return e === 'array'
      ? 'expected a list'
      : e === 'object'
        ? 'expected a mapping'
        : `expected ${e === 'int' ? 'an integer' : `a ${e}`}`;
  }
  if (issue.code === 'invalid_value') return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
  if (issue.code === 'invalid_union') return 'expected a string or false';
  return issue.message.charAt(0).toLowerCase() + issue.message.slice(1);
}

function getPath(obj: unknown, path: PropertyKey[]): unknown {
  let cur = obj;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}

/** Validates a merged plain object; returns the typed config with defaults filled in. */
export function validateConfig(merged: PlainObject, sources: Map<string, Source>): SfcConfig {
  return validateWith(configSchema, merged, sources);
}

/** Validates `merged` against any object schema with sfc's one-line errors. */
export function validateWith<S extends z.ZodType>(
  schema: S,
  merged: PlainObject,
  sources: Map<string, Source>,
): z.infer<S> {
  checkUnknownKeys(merged, schema, '', sources, schema);
  const r = schema.safeParse(merged);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  // the deepest path that names a key (list indices point at the list's key)
  const keyPath = issue.path.filter((p) => typeof p === 'string').join('.');
  const idx = issue.path.filter((p) => typeof p === 'number');
  const shownKey = keyPath + idx.map((i) => `[${String(i)}]`).join('');
  const more = r.error.issues.length > 1 ? ` (+${r.error.issues.length - 1} more)` : '';
  const source = sources.get(keyPath) ?? [...sources].find(([k]) => k.startsWith(`${keyPath}.`))?.[1];
  throw new ConfigError(
    `${formatSource(source)}: '${shownKey}' is ${describeValue(getPath(merged, issue.path))}; ${describeExpected(issue)}${more}`,
  );
}

export interface LoadOptions {
  /** the task config (e.g. configs/self_forcing_dmd.yaml); omitted = defaults only */
  configPath?: string;
  /** the base layer; defaults to the package's configs/default_config.yaml */
  defaultPath?: string;
  /** `a.b=value` overrides, applied in order after the files */
  overrides?: string[];
}

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const sources = new Map<string, Source>();
  const files: string[] = [];
  const defaultPath = opts.defaultPath ?? defaultConfigPath();
  let merged = readYamlLayer(defaultPath, sources, opts.defaultPath ?? 'configs/default_config.yaml');
  files.push(defaultPath);
  if (opts.configPath) {
    merged = mergeLayers(merged, readYamlLayer(opts.configPath, sources));
    files.push(opts.configPath);
  }
  for (const o of opts.overrides ?? []) merged = applyOverride(merged, o, sources);
  return { config: validateConfig(merged, sources), sources, files };
}
