// The compiled kernel library (models/kernels/*.ts), for benchmarks.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { compileFiles } from '../compiler/compile.js';
import type { KernelArtifact } from '../dsl/artifact.js';
import { packageRoot } from '../dsl/paths.js';

export function compileLibrary(consts: Record<string, number> = {}, warps?: number): Map<string, KernelArtifact> {
  const dir = join(packageRoot(import.meta.url), 'models', 'kernels');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f));
  return new Map(compileFiles(files, { consts, warps }).map((a) => [a.name, a]));
}
