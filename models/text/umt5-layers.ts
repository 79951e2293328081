// The UMT5 encoder's layers in the layer DSL. The sizes below are UMT5-XXL's (Wan2.1's text
// encoder); the build specialises them from the model preset's `text_encoder:` section. Tokens come
// as ['L', ...]: the L tokens of one prompt (padding is never computed, see umt5.ts). The residual
// stream is float32; GEMM operands are bf16. T5's norm is an RMS norm without mean subtraction or
// bias (statistics in float32), its linears have no biases, and its attention (between these layers,
// models/kernels/umt5.ts) adds a relative position bias and does not scale the scores.
import { cast, geluTanh, layer, linear, reshape, rmsNorm, bf16, type f32, type Tensor } from '../../dsl/layer.js';

type DIM = 4096;
type DIM_ATTN = 4096;
type FFN = 10240;
type HEADS = 64;
const HEADS = 64;
type HEAD_DIM = 64;
const HEAD_DIM = 64;

const EPS = 1e-6;

/** Self-attention inputs: h = RMSNorm(x) * norm1, then q, k, v = h Wq^T, h Wk^T, h Wv^T as [L, HEADS, HEAD_DIM]. */
export const attnQkv = layer(
  (
    x: Tensor<f32, ['L', DIM]>,
    norm1: Tensor<bf16, [DIM]>,
    wq: Tensor<bf16, [DIM_ATTN, DIM]>,
    wk: Tensor<bf16, [DIM_ATTN, DIM]>,
    wv: Tensor<bf16, [DIM_ATTN, DIM]>,
  ) => {
    const h = cast(rmsNorm(x, norm1, EPS), bf16);
    return [
      reshape(linear(h, wq), ['L', HEADS, HEAD_DIM]),
      reshape(linear(h, wk), ['L', HEADS, HEAD_DIM]),
      reshape(linear(h, wv), ['L', HEADS, HEAD_DIM]),
    ];
  },
);

/**
 * After attention: x += o Wo^T; then the gated-GELU FFN on the RMS-normed stream:
 * x += (h W1^T * gelu_tanh(h Wg^T)) W2^T with h = RMSNorm(x) * norm2.
 */
export const attnOutFfn = layer(
  (
    x: Tensor<f32, ['L', DIM]>,
    o: Tensor<bf16, ['L', DIM_ATTN]>,
    wo: Tensor<bf16, [DIM, DIM_ATTN]>,
    norm2: Tensor<bf16, [DIM]>,
    wg: Tensor<bf16, [FFN, DIM]>,
    w1: Tensor<bf16, [FFN, DIM]>,
    w2: Tensor<bf16, [DIM, FFN]>,
  ) => {
    const x1 = x + linear(o, wo);
    const h = cast(rmsNorm(x1, norm2, EPS), bf16);
    return x1 + linear(linear(h, w1) * geluTanh(linear(h, wg)), w2);
  },
);

/** The final RMS norm; the context the DiT reads is bf16. */
export const finalNorm = layer((x: Tensor<f32, ['L', DIM]>, norm: Tensor<bf16, [DIM]>) =>
  cast(rmsNorm(x, norm, EPS), bf16),
);
