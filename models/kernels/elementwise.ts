// Element-wise kernels: one program per BLOCK elements of a flat tensor. Arithmetic in float32,
// results rounded to the output dtype. The gated residual of the DiT block selects its gate row by
// the token's latent frame, like the modulated LayerNorm.
import {
  arange,
  cast,
  f32,
  idiv,
  kernel,
  load,
  programId,
  sigmoid,
  store,
  tanh,
  type bf16,
  type Const,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';

function flat(BLOCK: number): number {
  return programId(0) * BLOCK + arange(0, BLOCK);
}

export const add = kernel((a: Ptr<bf16>, b: Ptr<bf16>, out: Ptr<bf16>, n: i32, BLOCK: Const<1024>) => {
  const i = flat(BLOCK);
  store(out, i, cast(load(a, i, i < n, 0), f32) + load(b, i, i < n, 0), i < n);
});

export const mul = kernel((a: Ptr<bf16>, b: Ptr<bf16>, out: Ptr<bf16>, n: i32, BLOCK: Const<1024>) => {
  const i = flat(BLOCK);
  store(out, i, cast(load(a, i, i < n, 0), f32) * load(b, i, i < n, 0), i < n);
});

/** out = a * b + c */
export const fmaKernel = kernel(
  (a: Ptr<bf16>, b: Ptr<bf16>, c: Ptr<bf16>, out: Ptr<bf16>, n: i32, BLOCK: Const<1024>) => {
    const i = flat(BLOCK);
    const m = i < n;
    store(out, i, cast(load(a, i, m, 0), f32) * load(b, i, m, 0) + load(c, i, m, 0), m);
  },
);

/** SiLU: x * sigmoid(x) */
export const silu = kernel((x: Ptr<bf16>, y: Ptr<bf16>, n: i32, BLOCK: Const<1024>) => {
  const i = flat(BLOCK);
  const v = cast(load(x, i, i < n, 0), f32);
  store(y, i, v * sigmoid(v), i < n);
});

/** GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
export function geluTanhOf(v: number): number {
  return 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
}

export const geluTanh = kernel((x: Ptr<bf16>, y: Ptr<bf16>, n: i32, BLOCK: Const<1024>) => {
  const i = flat(BLOCK);
  store(y, i, geluTanhOf(cast(load(x, i, i < n, 0), f32)), i < n);
});

/**
 * The DiT block's gated residual on the float32 stream: out = x + y * gate[f], for rows of D
 * elements, f = row / tokensPerFrame. One program per row (x and out may be the same tensor).
 */
export const gatedResidual = kernel(
  (x: Ptr<f32>, y: Ptr<bf16>, gate: Ptr<f32>, out: Ptr<f32>, D: i32, tokensPerFrame: i32, BLOCK: Const<2048>) => {
    const row = programId(0);
    const frame = idiv(row, tokensPerFrame);
    const cols = arange(0, BLOCK);
    const m = cols < D;
    const g = load(gate, frame * D + cols, m, 0);
    store(out, row * D + cols, load(x, row * D + cols, m, 0) + cast(load(y, row * D + cols, m, 0), f32) * g, m);
  },
);

export const castF32ToBf16 = kernel((x: Ptr<f32>, y: Ptr<bf16>, n: i32, BLOCK: Const<1024>) => {
  const i = flat(BLOCK);
  store(y, i, load(x, i, i < n, 0), i < n);
});

export const castBf16ToF32 = kernel((x: Ptr<bf16>, y: Ptr<f32>, n: i32, BLOCK: Const<1024>) => {
  const i = flat(BLOCK);
  store(y, i, load(x, i, i < n, 0), i < n);
});
