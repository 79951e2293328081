// Normalisation kernels of the Wan models, one program per row of D <= BLOCK elements, statistics in
// float32. RMSNorm (q/k norms, T5), LayerNorm with and without affine (eps 1e-6 in Wan), and the
// modulated LayerNorm of every DiT block, whose shift/scale rows are chosen by the token's latent
// frame (`tokensPerFrame` tokens share one modulation row).
import {
  arange,
  cast,
  f32,
  idiv,
  kernel,
  load,
  programId,
  rsqrt,
  store,
  sum,
  type bf16,
  type Const,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';

/** y = x / sqrt(mean(x^2) + eps) * w */
export const rmsNorm = kernel((x: Ptr<bf16>, w: Ptr<bf16>, y: Ptr<bf16>, D: i32, eps: f32, BLOCK: Const<2048>) => {
  const row = programId(0);
  const cols = arange(0, BLOCK);
  const mask = cols < D;
  const gamma = load(w, cols, mask, 0); // issued before the reduction so its latency overlaps
  const v = cast(load(x, row * D + cols, mask, 0), f32);
  const r = rsqrt(sum(v * v) / D + eps);
  store(y, row * D + cols, v * r * gamma, mask);
});

/** mean and 1/std of a row (float32), the shared first half of every LayerNorm. */
function rowStats(v: number, mask: boolean, D: number, eps: number): [number, number] {
  const mean = sum(v) / D;
  const d = mask ? v - mean : 0;
  return [mean, rsqrt(sum(d * d) / D + eps)];
}

/** y = (x - mean) / sqrt(var + eps), no affine */
export const layerNorm = kernel((x: Ptr<bf16>, y: Ptr<bf16>, D: i32, eps: f32, BLOCK: Const<2048>) => {
  const row = programId(0);
  const cols = arange(0, BLOCK);
  const mask = cols < D;
  const v = cast(load(x, row * D + cols, mask, 0), f32);
  const [mean, rstd] = rowStats(v, mask, D, eps);
  store(y, row * D + cols, (v - mean) * rstd, mask);
});

/** y = LN(x) * w + b */
export const layerNormAffine = kernel(
  (x: Ptr<bf16>, w: Ptr<bf16>, b: Ptr<bf16>, y: Ptr<bf16>, D: i32, eps: f32, BLOCK: Const<2048>) => {
    const row = programId(0);
    const cols = arange(0, BLOCK);
    const mask = cols < D;
    const gamma = cast(load(w, cols, mask, 0), f32);
    const beta = load(b, cols, mask, 0);
    const v = cast(load(x, row * D + cols, mask, 0), f32);
    const [mean, rstd] = rowStats(v, mask, D, eps);
    store(y, row * D + cols, (v - mean) * rstd * gamma + beta, mask);
  },
);

/**
 * The DiT block's modulated LayerNorm on the float32 residual stream:
 * y = LN(x) * (1 + scale[f]) + shift[f], f = row / tokensPerFrame, output bf16 for the next GEMM.
 * Each program normalises ROWS consecutive rows of R, reusing the modulation rows while the frame
 * stays the same (1560 tokens share one), so they are read once per program instead of per token.
 */
export const modulatedLayerNorm = kernel(
  (
    x: Ptr<f32>,
    shift: Ptr<f32>,
    scale: Ptr<f32>,
    y: Ptr<bf16>,
    R: i32,
    D: i32,
    tokensPerFrame: i32,
    eps: f32,
    BLOCK: Const<2048>,
    ROWS: Const<4>,
  ) => {
    const first = programId(0) * ROWS;
    const cols = arange(0, BLOCK);
    const mask = cols < D;
    let frame = idiv(first, tokensPerFrame);
    let sc = load(scale, frame * D + cols, mask, 0);
    let sh = load(shift, frame * D + cols, mask, 0);
    for (let r = 0; r < ROWS; r++) {
      const row = first + r;
      if (row < R) {
        const f = idiv(row, tokensPerFrame);
        if (f !== frame) {
          frame = f;
          sc = load(scale, f * D + cols, mask, 0);
          sh = load(shift, f * D + cols, mask, 0);
        }
        const v = load(x, row * D + cols, mask, 0);
        const [mean, rstd] = rowStats(v, mask, D, eps);
        store(y, row * D + cols, (v - mean) * rstd * (1 + sc) + sh, mask);
      }
    }
  },
);
