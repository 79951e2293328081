// Diagnostics for DSL source: every rejected construct is reported at its file:line:col with the
// source line and a caret under the offending text, like a C compiler. Compiler-internal frames never
// reach the user.
import { relative } from 'node:path';
import ts from 'typescript';
import { SfcError } from '../dsl/errors.js';
import type { Span } from './ir.js';

export class DslError extends SfcError {
  constructor(
    readonly span: Span,
    readonly reason: string,
    readonly excerpt: string,
  ) {
    super(`${span.file}:${span.line}:${span.col}: ${reason}${excerpt ? `\n${excerpt}` : ''}`);
    this.name = 'DslError';
  }
}

/** The display path of a source file: relative to the working directory when inside it. */
export function displayPath(fileName: string): string {
  const rel = relative(process.cwd(), fileName);
  return rel.startsWith('..') ? fileName : rel;
}

export function spanOf(node: ts.Node): Span {
  const sf = node.getSourceFile();
  const { line, character } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
  return { file: displayPath(sf.fileName), line: line + 1, col: character + 1 };
}

/** `  12 |   const v = foo(x);` plus a caret line under the node. */
export function excerpt(node: ts.Node): string {
  const sf = node.getSourceFile();
  const start = node.getStart(sf);
  const { line, character } = sf.getLineAndCharacterOfPosition(start);
  const lineStart = sf.getLineStarts()[line]!;
  const lineEnd = sf.getLineEndOfPosition(start);
  const text = sf.text.slice(lineStart, lineEnd).replace(/\t/g, ' ');
  const width = Math.max(1, Math.min(node.getEnd(), lineEnd) - start);
  const num = String(line + 1);
  return `${num.padStart(5)} | ${text}\n${' '.repeat(5)} | ${' '.repeat(character)}${'^'.repeat(width)}`;
}

export function dslError(node: ts.Node, reason: string): DslError {
  return new DslError(spanOf(node), reason, excerpt(node));
}

/** A TypeScript diagnostic (syntax or type error in DSL source) as a DslError. */
export function fromTsDiagnostic(d: ts.Diagnostic): DslError {
  const msg = ts.flattenDiagnosticMessageText(d.messageText, ' ');
  if (!d.file || d.start === undefined) {
    return new DslError({ file: '<typescript>', line: 1, col: 1 }, `TypeScript: ${msg}`, '');
  }
  const sf = d.file;
  const { line, character } = sf.getLineAndCharacterOfPosition(d.start);
  const lineStart = sf.getLineStarts()[line]!;
  const lineEnd = sf.getLineEndOfPosition(d.start);
  const text = sf.text.slice(lineStart, lineEnd);
  const width = Math.max(1, Math.min(d.start + (d.length ?? 1), lineEnd) - d.start);
  const num = String(line + 1);
  const ex = `${num.padStart(5)} | ${text}\n${' '.repeat(5)} | ${' '.repeat(character)}${'^'.repeat(width)}`;
  return new DslError({ file: displayPath(sf.fileName), line: line + 1, col: character + 1 }, `TypeScript: ${msg}`, ex);
}
