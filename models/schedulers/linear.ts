// The per-element half of the schedulers and solvers. Every update they make is a linear combination
// out = sum_k c_k * t_k of a few same-shaped float32 buffers (the sample, the model output, earlier
// x0 predictions); the coefficients are scalars computed on the host (flow-match.ts, unipc.ts,
// dpm.ts). A backend applies one combination: `float32Backend` with a JS loop over Float32Arrays,
// `tensorBackend` by launching models/kernels/combine.ts on the tensors' device (the CPU device runs
// the same kernels through the JS backend). `SolverRunner` binds a multistep solver's named buffers
// to backend buffers, step by step.
import type { KernelArtifact } from '../../dsl/artifact.js';
import { f32 } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import { launch } from '../../runtime/kernels.js';
import { Tensor, fmtShape } from '../../runtime/tensor.js';

/** c * (the buffer named `of`) */
export interface Term {
  coef: number;
  of: string;
}

export function term(coef: number, of: string): Term {
  return { coef, of };
}

/** out = sum of the terms, over named buffers */
export interface LinearOp {
  out: string;
  terms: Term[];
}

/** The buffers a solver step binds: its inputs and where its result goes. */
export const SAMPLE = 'sample';
export const OUTPUT = 'output';
export const RESULT = 'result';

/**
 * One solver step as the runner executes it: `ops` in order (each writes a buffer the solver names,
 * or RESULT), reading SAMPLE, OUTPUT and buffers written by earlier ops or steps; then the solver's
 * buffers in `release` are no longer needed.
 */
export interface StepPlan {
  /** the index of the step in the schedule (0 for the first model evaluation) */
  index: number;
  ops: LinearOp[];
  release: string[];
}

/** A multistep solver: host-side state and coefficients, no tensors. */
export interface MultistepSolver {
  /** sigma of each model evaluation, then the final sigma (0): steps + 1 values */
  readonly sigmas: readonly number[];
  /** the timestep the model is given at each step */
  readonly timesteps: readonly number[];
  /** the next step's index (how many steps were planned) */
  readonly stepIndex: number;
  /**
   * Plans the next step: SAMPLE is x at sigmas[i], OUTPUT the model's flow prediction there; RESULT
   * is x at sigmas[i + 1].
   */
  next(): StepPlan;
}

/** Applies linear combinations to buffers of one kind. */
export interface LinearBackend<T> {
  /** a new buffer shaped like `like` (contents undefined) */
  alloc(like: T): T;
  /** gives a buffer from `alloc` back */
  free(buffer: T): void;
  /** the number of elements, to check that buffers match */
  size(buffer: T): number;
  /** out = sum c_k * t_k for one to four terms; `out` may be one of the inputs */
  combine(out: T, terms: readonly (readonly [number, T])[]): void;
}

/** The most terms one backend combination takes; longer sums are split (see `combineInto`). */
export const MAX_TERMS = 4;

/** out = sum c_k * t_k for any number of terms (>= 1), in chunks of MAX_TERMS accumulated in `out`. */
export function combineInto<T>(backend: LinearBackend<T>, out: T, terms: readonly (readonly [number, T])[]): void {
  if (terms.length === 0) throw new SfcError('a linear combination needs at least one term');
  const n = backend.size(out);
  for (const [c, t] of terms) {
    if (!Number.isFinite(c)) throw new SfcError(`a linear combination has a non-finite coefficient (${c})`);
    if (backend.size(t) !== n)
      throw new SfcError(`a linear combination mixes buffers of ${backend.size(t)} and ${n} elements`);
  }
  // Later chunks read `out`, so a term that is `out` itself must be in the first chunk.
  const first = terms.filter(([, t]) => t === out);
  const rest = terms.filter(([, t]) => t !== out);
  if (first.length > 1) throw new SfcError('a linear combination names its output buffer twice');
  const head = [...first, ...rest.splice(0, MAX_TERMS - first.length)];
  backend.combine(out, head);
  while (rest.length) backend.combine(out, [[1, out], ...rest.splice(0, MAX_TERMS - 1)]);
}

/** JS loop over Float32Arrays: sums in double precision, one rounding to float32 per element. */
export const float32Backend: LinearBackend<Float32Array> = {
  alloc: (like) => new Float32Array(like.length),
  free: () => {},
  size: (b) => b.length,
  combine(out, terms) {
    const n = out.length;
    const [c0, t0] = terms[0]!;
    if (terms.length === 1) {
      for (let i = 0; i < n; i++) out[i] = c0 * t0[i]!;
      return;
    }
    const [c1, t1] = terms[1]!;
    if (terms.length === 2) {
      for (let i = 0; i < n; i++) out[i] = c0 * t0[i]! + c1 * t1[i]!;
      return;
    }
    const [c2, t2] = terms[2]!;
    if (terms.length === 3) {
      for (let i = 0; i < n; i++) out[i] = c0 * t0[i]! + c1 * t1[i]! + c2 * t2[i]!;
      return;
    }
    if (terms.length !== 4) throw new SfcError(`float32Backend.combine takes 1 to 4 terms, got ${terms.length}`);
    const [c3, t3] = terms[3]!;
    for (let i = 0; i < n; i++) out[i] = c0 * t0[i]! + c1 * t1[i]! + c2 * t2[i]! + c3 * t3[i]!;
  },
};

/** The compiled kernels of models/kernels/combine.ts, by name. */
export interface CombineKernels {
  combine1: KernelArtifact;
  combine2: KernelArtifact;
  combine3: KernelArtifact;
  combine4: KernelArtifact;
}

/** Picks the combine kernels out of compiled artifacts by name (e.g. a bundle's `kernels`). */
export function combineKernelsFrom(artifacts: Readonly<Record<string, KernelArtifact | undefined>>): CombineKernels {
  const names = ['combine1', 'combine2', 'combine3', 'combine4'] as const;
  const missing = names.filter((n) => !artifacts[n]);
  if (missing.length) throw new SfcError(`the compiled kernels lack ${missing.join(', ')} (models/kernels/combine.ts)`);
  return Object.fromEntries(names.map((n) => [n, artifacts[n]!])) as unknown as CombineKernels;
}

const BLOCK = 1024;

/**
 * Contiguous float32 tensors on any device, combined by the combine kernels (coefficients rounded to
 * float32 as the kernels take them). Buffers it allocates are disposed by `free`.
 */
export function tensorBackend(kernels: CombineKernels): LinearBackend<Tensor> {
  const byArity = [kernels.combine1, kernels.combine2, kernels.combine3, kernels.combine4];
  const check = (t: Tensor, what: string) => {
    if (t.dtype !== f32) throw new SfcError(`${what} must be a float32 tensor, got ${t.dtype.name}`);
    if (!t.isContiguous()) throw new SfcError(`${what} must be contiguous (shape ${fmtShape(t.shape)})`);
  };
  return {
    alloc: (like) => Tensor.empty(like.device, f32, like.shape),
    free: (t) => t.dispose(),
    size: (t) => t.numel,
    combine(out, terms) {
      const k = byArity[terms.length - 1];
      if (!k) throw new SfcError(`tensorBackend.combine takes 1 to 4 terms, got ${terms.length}`);
      check(out, 'the output of a linear combination');
      terms.forEach(([, t], i) => check(t, `term ${i} of a linear combination`));
      const n = out.numel;
      if (n > 2 ** 31 - 1)
        throw new SfcError(`a linear combination over ${n} elements exceeds the kernels' int32 index`);
      launch(k, [Math.ceil(n / BLOCK)], [...terms.map(([, t]) => t), out, ...terms.map(([c]) => Math.fround(c)), n]);
    },
  };
}

/**
 * Runs a multistep solver on backend buffers. Its own buffers (x0 history, corrected samples) are
 * allocated on first use, recycled when the solver releases them, and freed by `dispose`.
 */
export class SolverRunner<T> {
  private readonly held = new Map<string, T>();
  private readonly spare: T[] = [];

  constructor(
    readonly solver: MultistepSolver,
    readonly backend: LinearBackend<T>,
  ) {}

  /**
   * One step: `output` is the model's flow at `sample` (at the solver's current sigma); returns the
   * sample at the next sigma, written into `out` (which may be `sample` itself) or a new buffer the
   * caller owns.
   */
  step(output: T, sample: T, out?: T): T {
    const b = this.backend;
    if (b.size(output) !== b.size(sample))
      throw new SfcError(`the model output has ${b.size(output)} elements, the sample ${b.size(sample)}`);
    if (this.solver.stepIndex >= this.solver.timesteps.length)
      throw new SfcError(`the solver's ${this.solver.timesteps.length} steps are all done`);
    const result = out ?? b.alloc(sample);
    if (b.size(result) !== b.size(sample))
      throw new SfcError(`the output buffer has ${b.size(result)} elements, the sample ${b.size(sample)}`);
    const plan = this.solver.next();
    if (plan.ops[plan.ops.length - 1]?.out !== RESULT)
      throw new SfcError(`solver step ${plan.index} does not end by writing its result`);
    const buffer = (name: string, writing: boolean): T => {
      if (name === SAMPLE) return sample;
      if (name === OUTPUT) return output;
      if (name === RESULT) return result;
      let t = this.held.get(name);
      if (t === undefined) {
        if (!writing) throw new SfcError(`solver step ${plan.index} reads '${name}' before writing it`);
        t = this.spare.pop() ?? b.alloc(sample);
        this.held.set(name, t);
      }
      return t;
    };
    plan.ops.forEach((op, i) => {
      // `out` may be `sample`: only the last op may write the result
      if (op.out === RESULT && i !== plan.ops.length - 1)
        throw new SfcError(`solver step ${plan.index} writes its result before its last op`);
      const terms = op.terms.map((term) => [term.coef, buffer(term.of, false)] as const);
      combineInto(b, buffer(op.out, true), terms);
    });
    for (const name of plan.release) {
      const t = this.held.get(name);
      if (t !== undefined) {
        this.held.delete(name);
        this.spare.push(t);
      }
    }
    return result;
  }

  /** Frees every buffer the runner holds (the solver cannot continue after this). */
  dispose(): void {
    for (const t of [...this.held.values(), ...this.spare]) this.backend.free(t);
    this.held.clear();
    this.spare.length = 0;
  }
}
