// Shared by the GPU tests of the GEMM templates (gemm.test.ts: sm_90a; gemm-mma.test.ts: mma.sync): the
// float64 reference of the epilogue chain, per-output tolerances, one random case run against it, and
// cuBLASLt on the same operands.
import type { GemmEpilogue, GemmInput, GemmOutput } from '../../dsl/artifact.js';
import { dtypeOf, f32, type DType } from '../../dsl/dtypes.js';
import type { GemmArtifact } from '../../dsl/artifact.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { runGemm, type GemmOperands } from '../../runtime/gemm.js';
import { Tensor } from '../../runtime/tensor.js';
import { randn, relErr } from './gpu.js';

/**
 * float64 reference of the epilogue chain, on the dtype-rounded inputs; with `rows`, only those rows
 * of the output (in that order), else all M.
 */
export function reference(
  e: GemmEpilogue,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  x: {
    alpha?: number;
    rowScale?: ArrayLike<number>;
    colScale?: ArrayLike<number>;
    bias?: ArrayLike<number>;
    residual?: ArrayLike<number>;
    gate?: ArrayLike<number>;
    gateRows?: number;
    outScale?: number;
  },
  rows?: readonly number[],
): Float64Array {
  const which = rows ?? Array.from({ length: M }, (_, i) => i);
  const out = new Float64Array(which.length * N);
  for (let r = 0; r < which.length; r++)
    for (let j = 0, i = which[r]!; j < N; j++) {
      let y = 0;
      for (let k = 0; k < K; k++) y += a[i * K + k]! * b[j * K + k]!;
      if (e.alpha) y *= x.alpha!;
      if (e.rowScale) y *= x.rowScale![i]!;
      if (e.colScale) y *= x.colScale![j]!;
      if (e.bias) y += x.bias![j]!;
      if (e.activation === 'gelu_tanh') y = 0.5 * y * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (y + 0.044715 * y ** 3)));
      if (e.activation === 'silu') y = y / (1 + Math.exp(-y));
      if (e.activation === 'relu') y = Math.max(y, 0);
      if (e.gatedResidual) y = x.residual![i * N + j]! + x.gate![Math.floor(i / x.gateRows!) * N + j]! * y;
      if (e.residual) y = x.residual![i * N + j]! + y;
      if (e.outScale) y *= x.outScale!;
      out[r * N + j] = y;
    }
  return out;
}

export const tolerance: Record<GemmOutput, number> = { f32: 1e-5, bf16: 8e-3, f16: 2e-3, e4m3: 7e-2 };

export interface Case {
  input: GemmInput;
  output: GemmOutput;
  bn: number;
  M: number;
  N: number;
  K: number;
  e: GemmEpilogue;
  /** write into columns [offset, offset + N) of a wider [M, N + pad] output (a strided view of C) */
  view?: { pad: number; offset: number };
}

/**
 * Runs one instantiation on fresh random operands for `c` (output poisoned with NaN first) and returns
 * ||out - ref|| / ||ref|| over the rows `rows` (a float64 reference of those rows only; all rows
 * when omitted) and whether every output element was written.
 */
export function runCase(dev: CudaDevice, art: GemmArtifact, c: Case, rows?: readonly number[]) {
  const inT = dtypeOf(c.input)!;
  const seed = c.M * 7 + c.N + c.K;
  const a = Tensor.from(dev, inT, [c.M, c.K], randn(c.M * c.K, seed));
  const b = Tensor.from(
    dev,
    inT,
    [c.N, c.K],
    randn(c.N * c.K, seed + 1).map((v) => v / Math.sqrt(c.K)),
  );
  const big = c.view ? Tensor.empty(dev, dtypeOf(c.output)!, [c.M, c.N + c.view.pad]) : undefined;
  const out = big ? big.narrow(1, c.view!.offset, c.N) : Tensor.empty(dev, dtypeOf(c.output)!, [c.M, c.N]);
  dev.fill(out.storage, 0, (big ?? out).nbytes, 0xff); // NaN in every float format
  const x: Parameters<typeof reference>[6] = {};
  const op: GemmOperands = { a, b, c: out };
  const vec = (n: number, s: number) => randn(n, s).map((v) => 1 + 0.2 * v);
  if (c.e.alpha) op.alpha = x.alpha = 0.75;
  if (c.e.outScale) op.outScale = x.outScale = 4;
  if (c.e.rowScale)
    x.rowScale = (op.rowScale = Tensor.from(dev, f32, [c.M], vec(c.M, seed + 2))).toArray() as Float32Array;
  if (c.e.colScale)
    x.colScale = (op.colScale = Tensor.from(dev, f32, [c.N], vec(c.N, seed + 3))).toArray() as Float32Array;
  if (c.e.bias)
    x.bias = (op.bias = Tensor.from(dev, dtypeOf(c.e.bias)!, [c.N], randn(c.N, seed + 4))).toArray() as Float32Array;
  const res = c.e.gatedResidual?.residual ?? c.e.residual;
  if (res)
    x.residual = (op.residual = Tensor.from(
      dev,
      dtypeOf(res)!,
      [c.M, c.N],
      randn(c.M * c.N, seed + 5),
    )).toArray() as Float32Array;
  if (c.e.gatedResidual) {
    op.gateRows = x.gateRows = 100;
    const g = Math.ceil(c.M / 100);
    x.gate = (op.gate = Tensor.from(dev, f32, [g, c.N], randn(g * c.N, seed + 6))).toArray() as Float32Array;
  }
  runGemm(art, op);
  const got = out.toArray() as Float32Array;
  let written = got.every(Number.isFinite);
  if (big) {
    // and nothing outside the view: the other columns of the wide output are still NaN
    const all = big.toArray() as Float32Array;
    const w = c.N + c.view!.pad;
    for (let i = 0; i < all.length && written; i++) {
      const col = i % w;
      if ((col < c.view!.offset || col >= c.view!.offset + c.N) && !Number.isNaN(all[i]!)) written = false;
    }
  }
  const want = reference(c.e, a.toArray() as Float32Array, b.toArray() as Float32Array, c.M, c.N, c.K, x, rows);
  const picked = rows ? Float32Array.from(rows.flatMap((r) => Array.from(got.subarray(r * c.N, (r + 1) * c.N)))) : got;
  for (const t of [a, b, big ?? out, op.rowScale, op.colScale, op.bias, op.residual, op.gate]) t?.dispose();
  return { err: relErr(picked, want), written };
}

/** Rows to check against the reference: the first and last two tiles' rows, and every 7th row between. */
export function sampleRows(M: number): number[] {
  const rows = new Set<number>();
  for (let r = 0; r < Math.min(M, 256); r++) rows.add(r);
  for (let r = Math.max(0, M - 256); r < M; r++) rows.add(r);
  for (let r = 0; r < M; r += 7) rows.add(r);
  return [...rows].sort((p, q) => p - q);
}

/** Random operands of an M x N x K GEMM: A [M, K] ~ N(0, 1), B [N, K] ~ N(0, 1 / K) (outputs ~ N(0, 1)). */
export function gemmOperands(
  dev: CudaDevice,
  dt: DType,
  M: number,
  N: number,
  K: number,
  seed: number,
): { a: Tensor; b: Tensor } {
  const a = Tensor.from(dev, dt, [M, K], randn(M * K, seed));
  const b = Tensor.from(
    dev,
    dt,
    [N, K],
    randn(N * K, seed + 1).map((v) => v / Math.sqrt(K)),
  );
  return { a, b };
}
