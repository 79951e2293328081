// A launch plan: what the compiler emits for a layer and the runtime executes (plain, JSON-able
// data). Buffers have dtypes and shapes over symbolic dims, bound from the inputs at run time;
// steps are fused kernels (artifacts), matmuls (library GEMMs: cuBLASLt on CUDA) and views.
import type { AttentionArtifact, GemmArtifact, KernelArtifact } from './artifact.js';
import type { DTypeName } from './dtypes.js';

export type PlanDim = number | string;

export interface PlanBuffer {
  id: number;
  dtype: DTypeName | 'bool';
  shape: PlanDim[];
  /** inputs are bound by the caller, outputs returned, temps allocated (and reused) by the executor */
  kind: 'input' | 'output' | 'temp' | 'view';
  /** for inputs: the argument index; for views: the buffer viewed */
  of?: number;
  name?: string;
}

/** a kernel argument: a buffer, or the run-time value of a symbolic dim (or a product of dims) */
export type PlanArg = { buffer: number } | { dims: PlanDim[] } | { value: number };

export type PlanStep =
  | { kind: 'kernel'; artifact: KernelArtifact; grid: PlanDim[][]; args: PlanArg[]; label: string }
  | {
      kind: 'matmul';
      a: number;
      b: number;
      out: number;
      transB: boolean;
      m: PlanDim[];
      n: PlanDim[];
      k: PlanDim[];
      label: string;
    }
  | {
      /**
       * A Linear (b = [N, K]) with a fused element-wise epilogue generated from the layer's own ops:
       * one GEMM-template launch where the device has an instantiation (`candidates`, tuned on first
       * use), else the same work unfused (`fallback`: the matmul into a temp, then the group kernel).
       */
      kind: 'gemm';
      candidates: GemmArtifact[];
      a: number;
      b: number;
      out: number;
      m: PlanDim[];
      n: PlanDim[];
      k: PlanDim[];
      /** values of the generated epilogue's parameters, in order */
      extra: PlanArg[];
      fallback: PlanStep[];
      label: string;
    }
  | {
      /**
       * softmax(q k^T * scale) v per head (q [Lq, H, D], k and v [Lk, H, D]): the flash-attention
       * template where the device has its instantiation (`candidates`), else `fallback` (the DSL kernel).
       */
      kind: 'attention';
      candidates: AttentionArtifact[];
      q: number;
      k: number;
      v: number;
      out: number;
      lq: PlanDim[];
      lk: PlanDim[];
      heads: PlanDim[];
      headDim: number;
      scale: number;
      /**
       * Masks over a KV cache (q are the last lq of the lk positions; runtime/attention.ts
       * AttentionMask): chunk-causal blocks, a local window, sink tokens. A masked step has no DSL
       * fallback kernel: the CPU runs the templates' JS twin.
       */
      mask?: { blockTokens?: PlanDim[]; windowTokens?: PlanDim[]; sinkTokens?: PlanDim[] };
      fallback: PlanStep[];
      label: string;
    }
  | {
      /**
       * A convolution (compiler/layer/conv.ts): x [T, H, W, cin] (bf16) * w [cout, kt, ky, kx, cin]
       * (bf16) -> out f32 [T', H', W', cout]. x is copied into a zero-padded buffer of `pitch`
       * channels (padKernel), GEMMs over its rows give the output on the padded grid, cropKernel takes
       * the strided valid pixels out: the implicit-GEMM template where the device has `candidates`
       * (stride-1 grid), per-tap GEMMs elsewhere.
       */
      kind: 'conv';
      x: number;
      w: number;
      out: number;
      /** T, H, W of x and of out */
      dims: PlanDim[][];
      outDims: PlanDim[][];
      cin: number;
      cout: number;
      kernel: [number, number, number];
      stride: [number, number, number];
      pad: [[number, number], [number, number], [number, number]];
      pitch: number;
      padKernel: KernelArtifact;
      cropKernel: KernelArtifact;
      candidates: GemmArtifact[];
      /**
       * The fused element-wise kernel that reads the output on the padded grid (in place of the crop):
       * its argument `out` is the grid, f32 [(T + pads - kt + 1) Hp Wp, cout].
       */
      epilogue?: Extract<PlanStep, { kind: 'kernel' }>;
      /**
       * The step that writes x straight into the padded buffer (zeroed first), in place of the pad
       * kernel: a fused group's kernel, or a convolution whose epilogue that group is; its argument
       * `x` is the buffer.
       */
      prologue?: Extract<PlanStep, { kind: 'kernel' | 'conv' }>;
      label: string;
    };

export interface LaunchPlan {
  name: string;
  file: string;
  inputs: number[];
  outputs: number[];
  buffers: PlanBuffer[];
  steps: PlanStep[];
  /** temp buffer id -> the earlier temp whose memory it reuses */
  reuse: Record<number, number>;
  /**
   * FP8 plans (compiler/layer/fp8.ts): the argument positions of the Linear weights the plan takes
   * quantised, e4m3 [N, K], each followed by its per-output-channel scale, f32 [N] (w = q * scale).
   */
  fp8Weights?: number[];
}
