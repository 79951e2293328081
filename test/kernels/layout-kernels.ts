// Test-only kernels for the CUDA backend's register layouts (compiler/backend-cuda.ts): a row
// broadcast over a [ROWS, N] tile, both as the row tile itself and through expandDims, in registers
// (a replicated layout when N is smaller than one row of chunks, 512 elements at 2 warps, else the
// plain layout of a multiple of it); block reductions, plain stores and atomics from that layout
// (each element counted and written once); bf16 stores through the paired conversions. Run by the
// kernel suites (test/kernels/library.ts cases) on the JS backend and on the GPU.
import {
  arange,
  atomicAdd,
  bf16,
  cast,
  expandDims,
  f32,
  kernel,
  load,
  programId,
  store,
  sum,
  type Const,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';

/**
 * Program p: y[p*ROWS + i, j] = x[.., j] * w[p, j] + b[j] for its rows below R; wsum[p] = sum_j w[p, j];
 * wcopy[p, j] = 2 w[p, j]; acc[j] += w[p, j]; tot[p] = sum over its rows of x * w.
 */
export const rowBroadcast = kernel(
  (
    x: Ptr<f32>,
    w: Ptr<bf16>,
    b: Ptr<f32>,
    y: Ptr<bf16>,
    wsum: Ptr<f32>,
    wcopy: Ptr<f32>,
    acc: Ptr<f32>,
    tot: Ptr<f32>,
    R: i32,
    ROWS: Const<4>,
    N: Const<128>,
  ) => {
    const p = programId(0);
    const n = arange(0, N);
    const wv = cast(load(w, p * N + n), f32); // [N]
    const bv = expandDims(load(b, n), 0); // [1, N]
    const rows = p * ROWS + expandDims(arange(0, ROWS), 1); // [ROWS, 1]
    const offs = rows * N + expandDims(n, 0);
    const m = rows < R;
    const v = load(x, offs, m, 0); // [ROWS, N]
    store(y, offs, cast(v * wv + bv, bf16), m); // rounded once: the store converts without re-rounding
    store(tot, p, sum(v * wv));
    store(wsum, p, sum(wv));
    store(wcopy, p * N + n, wv * 2);
    atomicAdd(acc, n, wv);
  },
  { warps: 2 },
);
