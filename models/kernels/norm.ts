// Normalisation kernels of the Wan models: RMSNorm (q/k norms, T5), LayerNorm with and without
// affine, and the modulated LayerNorm of every DiT block. One program per row; rows up to BLOCK.
import { arange, cast, kernel, load, programId, rsqrt, store, sum, type Const, type Ptr } from '../../dsl/kernel.js';
import { f32, type bf16, type i32 } from '../../dsl/kernel.js';

/** y = x / sqrt(mean(x^2) + eps) * w, per row of D elements. */
export const rmsNorm = kernel((x: Ptr<bf16>, w: Ptr<bf16>, y: Ptr<bf16>, D: i32, eps: f32, BLOCK: Const<2048>) => {
  const row = programId(0);
  const cols = arange(0, BLOCK);
  const mask = cols < D;
  const v = cast(load(x, row * D + cols, mask, 0), f32);
  const r = rsqrt(sum(v * v) / D + eps);
  store(y, row * D + cols, v * r * load(w, cols, mask, 0), mask);
});
