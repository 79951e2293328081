// FP8 (e4m3) quantisation: per-tensor (a scale computed from the tensor's absmax in a first pass)
// and per-row (each program finds its row's absmax and writes its scale). scale = absmax / 448, so
// the largest magnitude maps to e4m3's largest finite value; conversion saturates (satfinite).
import {
  absmax,
  arange,
  atomicMax,
  cast,
  f32,
  kernel,
  load,
  maximum,
  programId,
  store,
  type bf16,
  type Const,
  type e4m3,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';

const E4M3_MAX = 448;
/** the smallest scale: keeps all-zero rows finite */
const MIN_SCALE = 1e-12;

/** amax[0] = max(amax[0], max |x|) over the tensor (amax must start at 0). */
export const absmaxReduce = kernel((x: Ptr<bf16>, amax: Ptr<f32>, n: i32, BLOCK: Const<4096>) => {
  const i = programId(0) * BLOCK + arange(0, BLOCK);
  atomicMax(amax, 0, absmax(cast(load(x, i, i < n, 0), f32)));
});

/** y = e4m3(x / scale), scale = max(amax / 448, 1e-12) read from amax[0]; also writes scale[0]. */
export const quantizeE4m3PerTensor = kernel(
  (x: Ptr<bf16>, amax: Ptr<f32>, y: Ptr<e4m3>, scale: Ptr<f32>, n: i32, BLOCK: Const<1024>) => {
    const pid = programId(0);
    const i = pid * BLOCK + arange(0, BLOCK);
    const s = maximum(load(amax, 0) / E4M3_MAX, MIN_SCALE);
    if (pid === 0) store(scale, 0, s);
    store(y, i, cast(load(x, i, i < n, 0), f32) / s, i < n);
  },
);

/** Per-row: scale[row] = max(absmax(row) / 448, 1e-12); y[row] = e4m3(x[row] / scale[row]). */
export const quantizeE4m3PerRow = kernel((x: Ptr<bf16>, y: Ptr<e4m3>, scale: Ptr<f32>, D: i32, BLOCK: Const<2048>) => {
  const row = programId(0);
  const cols = arange(0, BLOCK);
  const m = cols < D;
  const v = cast(load(x, row * D + cols, m, 0), f32);
  const s = maximum(absmax(v) / E4M3_MAX, MIN_SCALE);
  store(scale, row, s);
  store(y, row * D + cols, v * (1 / s), m); // one division per row, not per element
});

/** y[row] = x[row] * scale[row] (scale per row; pass a 1-element scale with rowScale = 0 for per-tensor). */
export const dequantizeE4m3 = kernel(
  (x: Ptr<e4m3>, scale: Ptr<f32>, y: Ptr<bf16>, D: i32, rowScale: i32, BLOCK: Const<2048>) => {
    const row = programId(0);
    const cols = arange(0, BLOCK);
    const m = cols < D;
    store(y, row * D + cols, cast(load(x, row * D + cols, m, 0), f32) * load(scale, row * rowScale), m);
  },
);
