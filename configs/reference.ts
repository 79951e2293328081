// The key reference (type, default, meaning) generated from the schema itself, for
// `sfc config --keys` and docs/configuration.md (a test keeps the doc in sync).
import { z } from 'zod';
import { configSchema } from './schema.js';

interface KeyDoc {
  key: string;
  type: string;
  default: string;
  description: string;
}

function typeName(s: z.ZodType): string {
  if (s instanceof z.ZodDefault || s instanceof z.ZodOptional) return typeName(s.unwrap() as z.ZodType);
  if (s instanceof z.ZodNumber) return s.format === 'safeint' || s.isInt ? 'int' : 'number';
  if (s instanceof z.ZodString) return 'string';
  if (s instanceof z.ZodBoolean) return 'bool';
  if (s instanceof z.ZodEnum) return s.options.map((o) => String(o)).join(' | ');
  if (s instanceof z.ZodArray) return `list of ${typeName(s.element as z.ZodType)}`;
  if (s instanceof z.ZodObject) return 'mapping';
  if (s instanceof z.ZodUnion) return (s.options as z.ZodType[]).map(typeName).join(' | ');
  if (s instanceof z.ZodLiteral) return s.values.size === 1 ? JSON.stringify([...s.values][0]) : 'literal';
  return 'value';
}

function defaultOf(s: z.ZodType): string {
  if (s instanceof z.ZodDefault) {
    const v: unknown = s.def.defaultValue;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? '(see below)' : JSON.stringify(v);
  }
  return '(unset)';
}

export function configKeyDocs(schema: z.ZodType = configSchema, prefix = ''): KeyDoc[] {
  let s = schema;
  while (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
  if (!(s instanceof z.ZodObject)) return [];
  return Object.entries(s.shape as Record<string, z.ZodType>).flatMap(([k, v]) => [
    { key: `${prefix}${k}`, type: typeName(v), default: defaultOf(v), description: v.description ?? '' },
    ...configKeyDocs(v, `${prefix}${k}.`),
  ]);
}

/** Plain-text table for the terminal. */
export function configReference(): string {
  const docs = configKeyDocs();
  const w = Math.max(...docs.map((d) => d.key.length));
  return docs
    .map((d) => `${d.key.padEnd(w)}  ${d.type} = ${d.default}\n${' '.repeat(w + 2)}${d.description}\n`)
    .join('');
}

/** Markdown table for docs/configuration.md. */
export function configReferenceMarkdown(): string {
  const esc = (t: string) => t.replace(/\|/g, '\\|');
  const rows = configKeyDocs().map(
    (d) => `| \`${d.key}\` | ${esc(d.type)} | \`${esc(d.default)}\` | ${esc(d.description)} |`,
  );
  return ['| key | type | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n') + '\n';
}
