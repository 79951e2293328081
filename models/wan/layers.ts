// The Wan2.1 DiT's layers in the layer DSL. The sizes below are Wan2.1-T2V-1.3B's; the build
// specialises them per model preset (`type DIM = 1536` / `const HEADS = 12` take the preset's values).
// Tokens come as ['F', 'T', ...]: F latent frames of T tokens each, so per-frame modulation rows
// ['F', 1, DIM] broadcast over a frame's tokens. The residual stream is float32; GEMM operands are
// bf16. Attention itself (over the KV cache and the cached text k/v) runs between these layers
// (runtime/attention.ts); everything else of a block is here.
import {
  cast,
  geluTanh,
  layer,
  layerNorm,
  linear,
  reshape,
  rmsNorm,
  rope,
  slice,
  silu,
  bf16,
  f32,
  type Tensor,
} from '../../dsl/layer.js';

type DIM = 1536;
const DIM = 1536;
/** q, k and v side by side: 3 DIM */
type QKV = 4608;
type FFN = 8960;
type HEADS = 12;
const HEADS = 12;
type HEAD_DIM = 128;
const HEAD_DIM = 128;
type TEXT_DIM = 4096;
type FREQ_DIM = 256;
/** in_dim x prod(patch) = out_dim x prod(patch) */
type PATCH = 64;

const EPS = 1e-6;

/** sinusoid [F, FREQ_DIM] -> e [F, DIM] and the six modulation rows e0_j = Linear_j(SiLU(e)) */
export const timeEmbedding = layer(
  (
    sinusoid: Tensor<bf16, ['F', FREQ_DIM]>,
    w1: Tensor<bf16, [DIM, FREQ_DIM]>,
    b1: Tensor<bf16, [DIM]>,
    w2: Tensor<bf16, [DIM, DIM]>,
    b2: Tensor<bf16, [DIM]>,
    p0: Tensor<bf16, [DIM, DIM]>,
    p1: Tensor<bf16, [DIM, DIM]>,
    p2: Tensor<bf16, [DIM, DIM]>,
    p3: Tensor<bf16, [DIM, DIM]>,
    p4: Tensor<bf16, [DIM, DIM]>,
    p5: Tensor<bf16, [DIM, DIM]>,
    q0: Tensor<bf16, [DIM]>,
    q1: Tensor<bf16, [DIM]>,
    q2: Tensor<bf16, [DIM]>,
    q3: Tensor<bf16, [DIM]>,
    q4: Tensor<bf16, [DIM]>,
    q5: Tensor<bf16, [DIM]>,
  ) => {
    const e = linear(silu(linear(sinusoid, w1, b1)), w2, b2);
    const s = silu(e);
    return [
      cast(e, f32),
      cast(linear(s, p0, q0), f32),
      cast(linear(s, p1, q1), f32),
      cast(linear(s, p2, q2), f32),
      cast(linear(s, p3, q3), f32),
      cast(linear(s, p4, q4), f32),
      cast(linear(s, p5, q5), f32),
    ];
  },
);

/** patch tokens [F, T, PATCH] (bf16) -> the residual stream [F, T, DIM] (f32): the (1, 2, 2) Conv3d */
export const patchEmbedding = layer(
  (p: Tensor<bf16, ['F', 'T', PATCH]>, w: Tensor<bf16, [DIM, PATCH]>, b: Tensor<bf16, [DIM]>) =>
    cast(linear(p, w, b), f32),
);

/** the UMT5 context [S, TEXT_DIM] -> [S, DIM]: Linear, GELU (tanh), Linear */
export const textEmbedding = layer(
  (
    c: Tensor<bf16, ['S', TEXT_DIM]>,
    w1: Tensor<bf16, [DIM, TEXT_DIM]>,
    b1: Tensor<bf16, [DIM]>,
    w2: Tensor<bf16, [DIM, DIM]>,
    b2: Tensor<bf16, [DIM]>,
  ) => linear(geluTanh(linear(c, w1, b1)), w2, b2),
);

/** a block's cross-attention k and v of the text, computed once per prompt */
export const crossKv = layer(
  (
    c: Tensor<bf16, ['S', DIM]>,
    wk: Tensor<bf16, [DIM, DIM]>,
    bk: Tensor<bf16, [DIM]>,
    nk: Tensor<bf16, [DIM]>,
    wv: Tensor<bf16, [DIM, DIM]>,
    bv: Tensor<bf16, [DIM]>,
  ) => [
    reshape(rmsNorm(linear(c, wk, bk), nk, EPS), ['S', HEADS, HEAD_DIM]),
    reshape(linear(c, wv, bv), ['S', HEADS, HEAD_DIM]),
  ],
);

/**
 * Self-attention inputs: h = LN(x) * (1 + scale) + shift (modulation row + the frame's e0 row), then
 * one Linear for q, k and v (weights [Wq; Wk; Wv], the model concatenates them at load) and
 * q = RoPE(RMSNorm(q)), k = RoPE(RMSNorm(k)), v, as [F, T, HEADS, HEAD_DIM] (k and v go straight into
 * the KV cache). cos/sin: the chunk's per-token RoPE tables. Three launches: the modulated LayerNorm,
 * the GEMM, and one kernel for both norms, both rotations and v's copy into the cache.
 */
export const selfAttnQkv = layer(
  (
    x: Tensor<f32, ['F', 'T', DIM]>,
    mShift: Tensor<f32, [DIM]>,
    eShift: Tensor<f32, ['F', 1, DIM]>,
    mScale: Tensor<f32, [DIM]>,
    eScale: Tensor<f32, ['F', 1, DIM]>,
    wqkv: Tensor<bf16, [QKV, DIM]>,
    bqkv: Tensor<bf16, [QKV]>,
    nq: Tensor<bf16, [DIM]>,
    nk: Tensor<bf16, [DIM]>,
    cos: Tensor<f32, ['F', 'T', 1, HEAD_DIM]>,
    sin: Tensor<f32, ['F', 'T', 1, HEAD_DIM]>,
  ) => {
    const h = cast(layerNorm(x, EPS) * (1 + (mScale + eScale)) + (mShift + eShift), bf16);
    const qkv = linear(h, wqkv, bqkv);
    const q = reshape(rmsNorm(slice(qkv, -1, 0, DIM), nq, EPS), ['F', 'T', HEADS, HEAD_DIM]);
    const k = reshape(rmsNorm(slice(qkv, -1, DIM, 2 * DIM), nk, EPS), ['F', 'T', HEADS, HEAD_DIM]);
    const v = reshape(slice(qkv, -1, 2 * DIM, 3 * DIM), ['F', 'T', HEADS, HEAD_DIM]);
    return [rope(q, cos, sin), rope(k, cos, sin), v];
  },
);

/**
 * After self-attention: x += (Wo o + bo) * gate; then the cross-attention query from the affine
 * LayerNorm of the new x: q = RMSNorm(Wq LN(x) + bq).
 */
export const selfAttnOutCrossQ = layer(
  (
    x: Tensor<f32, ['F', 'T', DIM]>,
    o: Tensor<bf16, ['F', 'T', DIM]>,
    mGate: Tensor<f32, [DIM]>,
    eGate: Tensor<f32, ['F', 1, DIM]>,
    wo: Tensor<bf16, [DIM, DIM]>,
    bo: Tensor<bf16, [DIM]>,
    n3w: Tensor<f32, [DIM]>,
    n3b: Tensor<f32, [DIM]>,
    wq: Tensor<bf16, [DIM, DIM]>,
    bq: Tensor<bf16, [DIM]>,
    nq: Tensor<bf16, [DIM]>,
  ) => {
    const x1 = x + linear(o, wo, bo) * (mGate + eGate);
    const h = cast(layerNorm(x1, EPS, n3w, n3b), bf16);
    return [x1, reshape(rmsNorm(linear(h, wq, bq), nq, EPS), ['F', 'T', HEADS, HEAD_DIM])];
  },
);

/** After cross-attention: x += Wo o + bo; then the FFN half: x += FFN(LN(x) * (1 + scale) + shift) * gate */
export const crossOutFfn = layer(
  (
    x: Tensor<f32, ['F', 'T', DIM]>,
    o: Tensor<bf16, ['F', 'T', DIM]>,
    wo: Tensor<bf16, [DIM, DIM]>,
    bo: Tensor<bf16, [DIM]>,
    mShift: Tensor<f32, [DIM]>,
    eShift: Tensor<f32, ['F', 1, DIM]>,
    mScale: Tensor<f32, [DIM]>,
    eScale: Tensor<f32, ['F', 1, DIM]>,
    mGate: Tensor<f32, [DIM]>,
    eGate: Tensor<f32, ['F', 1, DIM]>,
    w1: Tensor<bf16, [FFN, DIM]>,
    b1: Tensor<bf16, [FFN]>,
    w2: Tensor<bf16, [DIM, FFN]>,
    b2: Tensor<bf16, [DIM]>,
  ) => {
    const x1 = x + linear(o, wo, bo);
    const h = cast(layerNorm(x1, EPS) * (1 + (mScale + eScale)) + (mShift + eShift), bf16);
    return x1 + linear(geluTanh(linear(h, w1, b1)), w2, b2) * (mGate + eGate);
  },
);

/** The head: Linear(LN(x) * (1 + scale) + shift) with (shift, scale) = head.modulation + e, in f32 */
export const head = layer(
  (
    x: Tensor<f32, ['F', 'T', DIM]>,
    e: Tensor<f32, ['F', 1, DIM]>,
    mShift: Tensor<f32, [DIM]>,
    mScale: Tensor<f32, [DIM]>,
    w: Tensor<bf16, [PATCH, DIM]>,
    b: Tensor<bf16, [PATCH]>,
  ) => cast(linear(cast(layerNorm(x, EPS) * (1 + (mScale + e)) + (mShift + e), bf16), w, b), f32),
);
