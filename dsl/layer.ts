// The tensor-level half of the DSL: model layers as TypeScript functions over tensors. A layer is a
// function wrapped in `layer()`; the compiler builds a dataflow graph from it, decomposes composite
// ops (LayerNorm, RMSNorm, softmax, GELU, linear) into primitives, fuses chains of element-wise and
// row-reduction ops into generated kernels, and emits a launch plan. As with kernels, these
// declarations exist for the editor and tsc; nothing here runs in JavaScript.
//
//   export const ffn = layer((x: Tensor<bf16, ['L', 1536]>, w1: Tensor<bf16, [8960, 1536]>, w2: Tensor<bf16, [1536, 8960]>) =>
//     linear(geluTanh(linear(x, w1)), w2));
//
// Shapes are tuples of static sizes (numbers, specialised at build time) and symbolic dims (names
// such as 'L', bound from the inputs when the plan runs). Tensors are typed as (branded) numbers,
// so `a * b`, `a + 1` and `x > 0 ? a : b` type-check and broadcast like NumPy.
import type { DType } from './dtypes.js';

export { bf16, e4m3, e5m2, f16, f32, i32, i64, u8 } from './dtypes.js';

declare const tensorBrand: unique symbol;

export type Dim = number | string;

/** A tensor of element type D and shape S. */
export type Tensor<D extends number = number, S extends readonly Dim[] = readonly Dim[]> = number & {
  readonly [tensorBrand]?: [D, S];
};

/** A compiled layer: the runtime runs its launch plan. */
export interface Layer<A extends unknown[] = unknown[], R = unknown> {
  readonly __layer: true;
  readonly __args?: A;
  readonly __result?: R;
}

function dslOnly(name: string): never {
  throw new Error(`${name}() is a layer-DSL op: it only has meaning inside layer() source compiled by sfc`);
}

/** Marks a layer. */
export function layer<A extends unknown[], R>(fn: (...args: A) => R): Layer<A, R> {
  void fn;
  return { __layer: true };
}

// ---- normalisation and activations (composites, decomposed by the compiler) -----------------
/** (x - mean) / sqrt(var + eps) over the last dim, statistics in float32; optional affine. */
export function layerNorm(_x: number, _eps: number, _weight?: number, _bias?: number): number {
  return dslOnly('layerNorm');
}
/** x / sqrt(mean(x^2) + eps) * weight over the last dim, statistics in float32. */
export function rmsNorm(_x: number, _weight: number, _eps: number): number {
  return dslOnly('rmsNorm');
}
/** exp(x - max) / sum over `axis` (default last). */
export function softmax(_x: number, _axis?: number): number {
  return dslOnly('softmax');
}
export function silu(_x: number): number {
  return dslOnly('silu');
}
/** GELU, tanh approximation. */
export function geluTanh(_x: number): number {
  return dslOnly('geluTanh');
}
export function exp(_x: number): number {
  return dslOnly('exp');
}
export function tanh(_x: number): number {
  return dslOnly('tanh');
}
export function sigmoid(_x: number): number {
  return dslOnly('sigmoid');
}
export function sqrt(_x: number): number {
  return dslOnly('sqrt');
}
export function rsqrt(_x: number): number {
  return dslOnly('rsqrt');
}
export function abs(_x: number): number {
  return dslOnly('abs');
}
export function maximum(_a: number, _b: number): number {
  return dslOnly('maximum');
}
export function minimum(_a: number, _b: number): number {
  return dslOnly('minimum');
}
export function where(_cond: boolean, _a: number, _b: number): number {
  return dslOnly('where');
}
export function cast<D extends DType>(_x: number, _dtype: D): number {
  return dslOnly('cast');
}

/** Swaps neighbours along the last dim (x[..., 2k] <-> x[..., 2k+1]). */
export function swapPairs(_x: number): number {
  return dslOnly('swapPairs');
}
/**
 * Rotary embedding of interleaved pairs: y = x * cos + swapPairs(x) * sin, computed in float32 and
 * returned in x's dtype. `cos` and `sin` broadcast against x with one value per element (each pair's
 * cosine twice; its sine as (-sin, +sin)): for Wan's 3-D RoPE they are the per-token tables of the
 * chunk (frame, height and width positions), built once per chunk.
 */
export function rope(_x: number, _cos: number, _sin: number): number {
  return dslOnly('rope');
}

// ---- reductions --------------------------------------------------------------------------------
export function sum(_x: number, _axis: number, _keepdim?: boolean): number {
  return dslOnly('sum');
}
export function mean(_x: number, _axis: number, _keepdim?: boolean): number {
  return dslOnly('mean');
}
export function max(_x: number, _axis: number, _keepdim?: boolean): number {
  return dslOnly('max');
}

// ---- linear algebra ------------------------------------------------------------------------------
/** x @ w^T (+ b): x [..., K], w [N, K] (PyTorch's Linear layout), b [N]. */
export function linear(_x: number, _w: number, _b?: number): number {
  return dslOnly('linear');
}
/** a @ b over the last two dims: [..., M, K] x [..., K, N]. */
export function matmul(_a: number, _b: number): number {
  return dslOnly('matmul');
}

/**
 * softmax(q k^T * scale) v per head: q [Lq, H, D], k and v [Lk, H, D] -> [Lq, H, D]. `scale`
 * defaults to 1/sqrt(D). Over a KV cache, q are the last Lq of the Lk positions; the options mask it:
 * `blockTokens` (chunk-wise causal: a query sees the keys up to the end of its block), `window`
 * (only the last `window` keys before that end) and `sink` (the first `sink` keys stay visible), each
 * a number or a dim name, e.g. `attention(q, k, v, { blockTokens: 'T', window: 'W', sink: 'T' })`.
 */
export function attention(
  _q: number,
  _k: number,
  _v: number,
  _scaleOrOptions?: number | { scale?: number; blockTokens?: Dim; window?: Dim; sink?: Dim },
): number {
  return dslOnly('attention');
}

// ---- convolutions (the VAE's layout: frames first, channels last) ---------------------------------
/** Geometry of a convolution: per-dim (t, y, x) values, or one number for all of them. */
export interface ConvOptions {
  /** default 1 */
  stride?: number | readonly [number, number, number];
  /** zeros on both sides of each dim (default 0) */
  padding?: number | readonly [number, number, number];
  /** time padding all before the frames (2 * padding[0]), none after: Wan's CausalConv3d */
  causal?: boolean;
}
/**
 * 3-D convolution over frames-first, channels-last video: x [T, H, W, Cin] (bf16), w [Cout, kt, ky,
 * kx, Cin] (bf16; PyTorch's [Cout, Cin, kt, ky, kx] permuted (0, 2, 3, 4, 1)), b [Cout] -> f32
 * [T', H', W', Cout] (float32 accumulation, as the VAE keeps its activations).
 */
export function conv3d(_x: number, _w: number, _b?: number, _opts?: ConvOptions): number {
  return dslOnly('conv3d');
}
/**
 * 2-D convolution per frame: x [H, W, Cin] or [N, H, W, Cin], w [Cout, ky, kx, Cin], b [Cout]; a
 * conv3d with kt = 1. `stride`/`padding` pairs are (y, x).
 */
export function conv2d(
  _x: number,
  _w: number,
  _b?: number,
  _opts?: { stride?: number | readonly [number, number]; padding?: number | readonly [number, number] },
): number {
  return dslOnly('conv2d');
}

// ---- views ---------------------------------------------------------------------------------------
export function reshape(_x: number, _shape: readonly Dim[]): number {
  return dslOnly('reshape');
}
/** the tensors joined along `axis` (static sizes there), e.g. concat([a, b], -1) */
export function concat(_xs: readonly number[], _axis: number): number {
  return dslOnly('concat');
}
/** x[..., start:end, ...] along `axis` (static bounds), e.g. q, k and v out of one fused Linear */
export function slice(_x: number, _axis: number, _start: number, _end: number): number {
  return dslOnly('slice');
}
export function permute(_x: number, _dims: readonly number[]): number {
  return dslOnly('permute');
}
export function transpose(_x: number, _a: number, _b: number): number {
  return dslOnly('transpose');
}
export function unsqueeze(_x: number, _axis: number): number {
  return dslOnly('unsqueeze');
}
