// The contract between the compiler and the runtime: a compiled kernel as plain data (JSON-able).
// The runtime never imports the compiler; it launches these.
import type { DTypeName } from './dtypes.js';
import type { LaunchPlan } from './plan.js';

export interface ArtifactParam {
  name: string;
  kind: 'ptr' | 'scalar' | 'const';
  dtype: DTypeName | 'bool';
  /** value of a const parameter (baked into the code) */
  value?: number;
}

export interface CudaVariant {
  /** facts this variant was specialised for: parameter name -> divisible by 16 (ints) / 16-byte aligned (ptrs) */
  assumes: Record<string, boolean>;
  source: string;
  entry: string;
  threads: number;
  sharedBytes: number;
  /** C ABI types of the launch arguments (non-const params, in order) */
  argTypes: ('ptr' | 'i32' | 'u32' | 'i64' | 'f32' | 'f64')[];
}

export interface KernelArtifact {
  name: string;
  /** the DSL source file and line (for errors and reports) */
  file: string;
  line: number;
  params: ArtifactParam[];
  warps: number;
  /** the IR in text form */
  ir: string;
  /** JS backend: body of `new Function(js)()`, which returns (rt, args, grid) => void */
  js: string;
  /** CUDA backend variants; the runtime picks the most specialised one whose assumptions hold */
  cuda: CudaVariant[];
}

// ---- templates ---------------------------------------------------------------------------------
// GEMM: C[M, N] = epilogue(A[M, K] . B[N, K]^T), see compiler/templates/gemm.ts.

/** Input (A and B) dtype of a GEMM template instantiation. */
export type GemmInput = 'bf16' | 'f16' | 'e4m3';
export type GemmOutput = 'bf16' | 'f16' | 'f32' | 'e4m3';

/** What happens to each accumulator y = sum_k A[row, k] * B[col, k] before it is stored, in order. */
export interface GemmEpilogue {
  /** y *= alpha (a scalar argument; FP8: the product of the per-tensor scales of A and B) */
  alpha?: boolean;
  /** y *= rowScale[row] (f32 [M]; FP8 per-token scales of A) */
  rowScale?: boolean;
  /** y *= colScale[col] (f32 [N]; FP8 per-output-channel scales of B) */
  colScale?: boolean;
  /** y += bias[col] */
  bias?: 'f32' | 'bf16' | 'f16';
  /** y = act(y) */
  activation?: 'gelu_tanh' | 'silu' | 'relu';
  /**
   * y = residual[row, col] + gate[row / gateRows, col] * y: the gated residual of a DiT block, with
   * one gate row per latent frame (gateRows tokens); gate is f32 [*, N] with row pitch ldg.
   */
  gatedResidual?: { residual: 'f32' | 'bf16' | 'f16' };
  /** y = residual[row, col] + y (no gate) */
  residual?: 'f32' | 'bf16' | 'f16';
  /** y *= outScale before the cast (FP8 outputs: the reciprocal of the output's scale) */
  outScale?: boolean;
  /**
   * Generated code instead of the steps above (the layer compiler's fused element-wise group): C++
   * statements that read `y` (the f32 accumulator), `row`, `col` and the extra parameters, and assign
   * the value to store to `y`.
   *
   * With `rowSum` (statements that set `s` from `y`, `row`, `col` and the parameters) the body may read
   * `rowsum`, the sum of `s` over the whole row (all N columns): a row reduction after the GEMM (an
   * RMSNorm of a Linear's output). The output tiles of one row then run as one cluster of
   * `rowCluster` = N / bn CTAs (at most 8) that add up their partial sums through distributed shared
   * memory before the epilogue; only the default (staged) schedule, N a multiple of bn.
   */
  custom?: {
    params: { name: string; type: GemmArgType; ctype: string }[];
    body: string;
    rowSum?: string;
    rowCluster?: number;
  };
}

export interface GemmSpec {
  input: GemmInput;
  output: GemmOutput;
  /** output tile columns: a multiple of 32 in [64, 256] */
  bn: number;
  /** shared-memory pipeline depth (buffers of A and B K-slices) */
  stages: number;
  /**
   * One CTA per SM looping over tiles, epilogue straight from the accumulators (default false: one CTA
   * per tile, epilogue staged through shared memory with coalesced stores).
   */
  persistent?: boolean;
  /**
   * 'pingpong': one persistent CTA per SM whose two consumer warpgroups take alternate 128 x bn output
   * tiles (each its whole tile, accumulators in registers), mainloops in turn, so that one's epilogue
   * (straight from registers to global memory) runs under the other's mainloop; the producer runs
   * ahead across tiles. Entry names end in `_pp`; bn at most 160. Not with `persistent` or `conv`.
   * 'pingpong-cluster' (`_ppc`): the same in clusters of 2 CTAs on N-adjacent tiles of the same rows,
   * each loading half of A's slice and multicasting it to both. 'cooperative' (`_co`): one persistent
   * CTA per SM, both consumers on each tile (64 rows each); the epilogue writes the output tile into a
   * 64-row shared-memory buffer that the producer warpgroup's other warps copy to global memory while
   * the consumers run the next tile's mainloop. Default 'default': the schedule `persistent` picks.
   */
  schedule?: 'default' | 'pingpong' | 'pingpong-cluster' | 'cooperative';
  /**
   * Implicit-GEMM convolution: A is a zero-padded channels-last buffer [rows, convC] and K runs over
   * (tap, channel) with taps (x fastest, then y, then t) of extents convTx x convTy x (K / convC /
   * convTx / convTy); the K-slice of tap (x, y, t) reads A's rows shifted by x + y * convPy + t * convPt.
   * convC must be a multiple of the K-slice (64 bf16). Adds the i32 parameters convC, convTx, convTy,
   * convPy, convPt. Not with `persistent`.
   */
  conv?: boolean;
  epilogue?: GemmEpilogue;
}

/** The C ABI of the kernel's parameters, in order, as runtime/launch.ts packs them. */
export type GemmArgType = 'tmap' | 'ptr' | 'i32' | 'f32';

export interface GemmArtifact {
  kind: 'gemm';
  name: string;
  /** sm_90a: wgmma + TMA (compiler/templates/gemm.ts); sm_80 / sm_89: mma.sync (gemm-mma.ts) */
  arch: 'sm_90a' | 'sm_80' | 'sm_89';
  spec: Required<Omit<GemmSpec, 'epilogue'>> & { epilogue: GemmEpilogue };
  bm: number;
  /** K elements per pipeline stage (128 bytes of each row) */
  bk: number;
  threads: number;
  sharedBytes: number;
  source: string;
  entry: string;
  /** parameter names and C types, in order */
  params: { name: string; type: GemmArgType }[];
}

// Attention: O = softmax(scale * Q K^T + mask) V, see compiler/templates/attention.ts.

export interface AttentionSpec {
  /**
   * Q, K, V dtype. 'e4m3' (sm_90a): per-tensor scales (runtime arguments), bf16 output, head dim 128
   * and 128-key tiles only, and V transposed: [B, H, D, capacity rounded up to 16] with the keys
   * permuted within each 16 (attentionFp8KeySlot), as the artifact's `quantize` kernels write it.
   */
  input: 'bf16' | 'f16' | 'e4m3';
  headDim: 64 | 128;
  /** keys per KV tile */
  bc: 64 | 96 | 128;
  /** shared-memory pipeline depth (K and V tiles) */
  stages: number;
  /** query rows per CTA of the mma.sync template (64 or 128, 16 per warp; default 64); sm_90a: 128 */
  bm?: 64 | 128;
  /**
   * sm_90a: the two consumer warpgroups issue their wgmma batches in turn (named barriers), so one's
   * softmax runs under the other's products (default false)
   */
  pingpong?: boolean;
  /**
   * sm_90a FP8: of each 128-key tile's 8 groups of 16 keys, this many get their exponentials from a
   * polynomial on the FMA units instead of the MUFU unit (default 0)
   */
  polyExp?: number;
  /**
   * sm_90a FP8: the running row max moves only when a tile's max exceeds it by more than a factor
   * 2^4 in exp2 units (P then stays below 256, inside e4m3), so the output is rescaled only then
   */
  lazyRescale?: boolean;
  /**
   * sm_90a FP8: the row sums come from the P V product (8 rows of ones after V: N = D + 8) instead
   * of adding P in registers
   */
  rowSumMma?: boolean;
}

export interface AttentionArtifact {
  kind: 'attention';
  name: string;
  /** sm_80: the mma.sync template (also runs on sm_89, and on newer GPUs through its PTX) */
  arch: 'sm_90a' | 'sm_80';
  spec: AttentionSpec;
  /** query rows per CTA */
  bm: number;
  threads: number;
  sharedBytes: number;
  source: string;
  entry: string;
  /** the sm_90a kernel takes Q, K, V as TMA maps (tmQ, tmK, tmV), the sm_80 one as pointers (Q, K, V) */
  params: { name: string; type: 'tmap' | 'ptr' | 'i32' | 'f32' }[];
  /**
   * FP8 only: CUDA kernels that quantise bf16 [B, L, H, D] (whole tokens, batch pitch kvRows tokens)
   * to e4m3 (x / scale, round to nearest even, saturating at 448): `tokens` keeps the layout (Q, K;
   * params x, y, n8 = elements / 8, inv = 1 / scale; contiguous), `vT` writes V transposed and
   * key-permuted (params x, y, cap, capV, kvRows, H, D, inv; grid [capV / 64, D / 64, B * H]).
   * Both run `threads` threads per block.
   */
  quantize?: { source: string; tokens: string; vT: string; threads: number };
}

/**
 * Where key `k` sits in FP8 attention's transposed V (its column in [B, H, D, capacity]): keys are
 * permuted within each group of 16 so that the columns of P a thread holds (2q, 2q+1, 2q+8, 2q+9 of
 * each 16, from the layout of wgmma's accumulators) are the ones an 8-bit A fragment gives it (the
 * slots 4q .. 4q+3).
 */
export function attentionFp8KeySlot(k: number): number {
  const r = k % 16;
  return k - r + 4 * ((r % 8) >> 1) + (r & 1) + (r >= 8 ? 2 : 0);
}

// ---- model bundles -------------------------------------------------------------------------------

/**
 * Everything a model runs, compiled for one model preset: its layers' launch plans, its standalone
 * kernels, and the attention template instantiation. Plain data, so a build can store it as JSON and
 * the runtime can run the model without the compiler.
 */
export interface ModelBundle {
  /** e.g. 'wan-dit' */
  model: string;
  /** the static sizes the layers were specialised with */
  dims: Record<string, number>;
  plans: Record<string, LaunchPlan>;
  kernels: Record<string, KernelArtifact>;
  attention: AttentionArtifact;
  /** the same attention as an sm_80 (mma.sync) instantiation, for sm_80 / sm_89 GPUs */
  attentionMma?: AttentionArtifact;
  /** the precision its linear layers were compiled for (absent: bf16); see LaunchPlan.fp8Weights */
  precision?: 'bf16' | 'fp8';
}

// ---- implicit-GEMM convolutions ----------------------------------------------------------------

/** Channels rounded up to the convolution GEMM's K-slice (64 bf16 = one 128-byte TMA row). */
export const convPitch = (c: number): number => Math.ceil(c / 64) * 64;

/** The convolution GEMM's output tile width for `cout` output channels. */
export function convTile(cout: number): number {
  return [256, 192, 128, 96, 64].find((bn) => cout % bn === 0) ?? 64;
}
