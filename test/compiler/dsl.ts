// Helpers for compiler tests: compile DSL source held in memory as if it lived in test/compiler/virtual/.
import { join } from 'node:path';
import type { KernelArtifact } from '../../dsl/artifact.js';
import { packageRoot } from '../../dsl/paths.js';
import { artifactOf } from '../../compiler/compile.js';
import { programFromText } from '../../compiler/frontend.js';
import { cse } from '../../compiler/passes.js';

export const virtualDir = join(packageRoot(import.meta.url), 'test', 'compiler', 'virtual');

export const header = `import {
  kernel, programId, arange, load, store, cast, sum, max, min, absmax, where, exp, rsqrt, tanh, sqrt,
  expandDims, reshape, full, broadcastTo, idiv, maximum, atomicAdd, randn, swapPairs, f32, bf16, i32,
  type Ptr, type Const,
} from '../../../dsl/kernel.js';
`;

/** Compiles `body` (appended to the import header) and returns the artifacts by name. */
export function compileText(body: string, file = 'case.ts'): Map<string, KernelArtifact> {
  const path = join(virtualDir, file);
  const p = programFromText(path, header + body);
  return new Map(p.kernels(path).map((k) => [k.name, artifactOf(cse(p.lower(k)))]));
}

/** The first line of the diagnostic `body` produces, and its caret excerpt. */
export function diagnose(body: string): { message: string; excerpt: string } {
  try {
    compileText(body);
  } catch (e) {
    const [first, ...rest] = (e as Error).message.split('\n');
    return { message: first!.replace(/^test\/compiler\/virtual\//, ''), excerpt: rest.join('\n') };
  }
  throw new Error('expected a diagnostic, compilation succeeded');
}
