// The compiler driver: DSL source -> kernel artifacts (IR text, JS backend, CUDA variants). The
// named stages (`ast -> ir -> js | cuda`) are what `sfc build --dump` prints.
import type { KernelArtifact } from '../dsl/artifact.js';
import { emitCuda } from './backend-cuda.js';
import { emitJs } from './backend-js.js';
import { DslProgram, type FrontendOptions } from './frontend.js';
import { printKernel, type KernelIR } from './ir.js';
import { cse } from './passes.js';

export function artifactOf(ir: KernelIR): KernelArtifact {
  return {
    name: ir.name,
    file: ir.file,
    line: ir.span.line,
    params: ir.params,
    warps: ir.warps,
    ir: printKernel(ir),
    js: emitJs(ir),
    cuda: emitCuda(ir),
  };
}

export function lowerKernel(program: DslProgram, file: string, name: string, opts: FrontendOptions = {}): KernelIR {
  const ref = program.kernels(file).find((k) => k.name === name);
  if (!ref) {
    const known = program.kernels(file).map((k) => k.name);
    throw new Error(`no kernel '${name}' in ${file} (kernels: ${known.join(', ') || 'none'})`);
  }
  return cse(program.lower(ref, opts));
}

/** Compiles every kernel of the given files (pass `program` to reuse one over several calls). */
export function compileFiles(
  files: string[],
  opts: FrontendOptions = {},
  program: DslProgram = new DslProgram(files),
): KernelArtifact[] {
  return files.flatMap((f) => program.kernels(f).map((ref) => artifactOf(cse(program.lower(ref, opts)))));
}
