// Model bundles: a model's layer source (models/<model>/layers.ts) and kernels compiled for one
// preset's sizes into plain data (dsl/artifact.ts ModelBundle) that the runtime executes.
import { join } from 'node:path';
import { convPitch, convTile, type GemmArtifact, type KernelArtifact, type ModelBundle } from '../dsl/artifact.js';
import { SfcError } from '../dsl/errors.js';
import type { LaunchPlan } from '../dsl/plan.js';
import { packageRoot } from '../dsl/paths.js';
import { artifactOf, compileFiles, lowerKernel } from './compile.js';
import { DslProgram } from './frontend.js';
import { lowerLayer } from './layer/frontend.js';
import { planLayer, type PlanOptions } from './layer/plan.js';
import { attentionSm90 } from './templates/attention.js';
import { attentionMma, defaultAttentionMmaSpec } from './templates/attention-mma.js';
import { gemmSm90 } from './templates/gemm.js';

/** The Wan DiT's sizes, as a model preset gives them. */
export interface WanDitDims {
  dim: number;
  ffn_dim: number;
  freq_dim: number;
  num_heads: number;
  in_dim: number;
  out_dim: number;
  text_dim: number;
  patch_size: readonly number[];
}

function compileLayers(
  file: string,
  specialize: Record<string, number>,
  options: PlanOptions,
  fp8Layers: ReadonlySet<string> = new Set(),
): Record<string, LaunchPlan> {
  const program = new DslProgram([file]);
  program.specialize = new Map(Object.entries(specialize));
  const plans: Record<string, LaunchPlan> = {};
  for (const ref of program.layers(file))
    plans[ref.name] = planLayer(lowerLayer(program, ref), { ...options, fp8: fp8Layers.has(ref.name) });
  return plans;
}

export type WanPrecision = 'bf16' | 'fp8';

/**
 * The DiT layers an FP8 bundle compiles with FP8 Linears: the transformer blocks' (q, k, v, o of both
 * attentions, fc1, fc2) minus the text's cross-attention k/v, which run once per prompt. The patch,
 * time, text embeddings and the head stay bf16 (small GEMMs; the head's 64 outputs are the flow).
 */
export const WAN_FP8_LAYERS: readonly string[] = ['selfAttnQkv', 'selfAttnOutCrossQ', 'crossOutFfn'];

export interface WanDitBuildOptions extends PlanOptions {
  /** 'fp8': the blocks' Linears as e4m3 GEMMs (WAN_FP8_LAYERS; weights quantised at load). Default 'bf16'. */
  precision?: WanPrecision;
}

/**
 * Compiles the Wan DiT (models/wan/layers.ts + models/kernels/patch.ts) for a preset's sizes, with the
 * pipeline's flow-matching kernels (models/kernels/flow.ts).
 */
export function buildWanDitBundle(d: WanDitDims, options: WanDitBuildOptions = {}): ModelBundle {
  const { precision = 'bf16', ...planOptions } = options;
  if (precision !== 'bf16' && precision !== 'fp8')
    throw new SfcError(`the Wan DiT's precision is bf16 or fp8, got '${String(precision)}'`);
  const headDim = d.dim / d.num_heads;
  if (!Number.isInteger(headDim) || (headDim !== 64 && headDim !== 128))
    throw new SfcError(`the Wan DiT needs a head dim of 64 or 128 (dim / num_heads), got ${d.dim} / ${d.num_heads}`);
  if (d.patch_size.join() !== '1,2,2')
    throw new SfcError(`the Wan DiT is built for patch size [1, 2, 2], got [${d.patch_size.join(', ')}]`);
  if (d.in_dim !== 16 || d.out_dim !== 16)
    throw new SfcError(`the Wan DiT is built for 16 latent channels, got in ${d.in_dim} / out ${d.out_dim}`);
  const root = packageRoot(import.meta.url);
  const dims = {
    DIM: d.dim,
    FFN: d.ffn_dim,
    QKV: 3 * d.dim,
    HEADS: d.num_heads,
    HEAD_DIM: headDim,
    TEXT_DIM: d.text_dim,
    FREQ_DIM: d.freq_dim,
    PATCH: d.in_dim * 4,
  };
  const fp8 = precision === 'fp8';
  const plans = compileLayers(
    join(root, 'models', 'wan', 'layers.ts'),
    dims,
    planOptions,
    new Set(fp8 ? WAN_FP8_LAYERS : []),
  );
  const k = Math.floor(headDim / 6);
  const consts = {
    PAIRS: headDim / 2,
    framePairs: (headDim - 4 * k) / 2,
    heightPairs: k,
    C: d.in_dim,
    // a tile of all heads (a power of two; ropeShiftFrames masks the rest)
    HEADS: 2 ** Math.ceil(Math.log2(d.num_heads)),
  };
  const kernels = Object.fromEntries(
    // patchify/RoPE tables, the flow conversions and noise, the multi-step solvers' combinations
    compileFiles(
      ['patch.ts', 'flow.ts', 'combine.ts'].map((f) => join(root, 'models', 'kernels', f)),
      {
        consts,
      },
    ).map((a) => [a.name, a]),
  );
  if (fp8) {
    // the load-time weight quantiser: one program per output channel over the whole row of K
    const file = join(root, 'models', 'kernels', 'fp8.ts');
    const BLOCK = 2 ** Math.ceil(Math.log2(Math.max(d.dim, d.ffn_dim, 16)));
    const a = artifactOf(lowerKernel(new DslProgram([file]), file, 'quantizeE4m3PerRow', { consts: { BLOCK } }));
    kernels.quantizeWeightE4m3 = { ...a, name: `quantizeWeightE4m3_k${BLOCK}` };
  }
  const attention = attentionSm90(
    headDim === 128 ? { input: 'bf16', headDim, bc: 128, stages: 3 } : { input: 'bf16', headDim, bc: 64, stages: 4 },
  );
  // the same for sm_80 / sm_89 (mma.sync); the model takes the one its GPU runs
  const mma = attentionMma(defaultAttentionMmaSpec('bf16', headDim));
  return { model: 'wan-dit', dims, plans, kernels, attention, attentionMma: mma, ...(fp8 ? { precision } : {}) };
}

/** The UMT5 encoder's sizes, as a model preset's `text_encoder:` section gives them. */
export interface Umt5Dims {
  vocab_size: number;
  dim: number;
  dim_attn: number;
  ffn_dim: number;
  num_heads: number;
}

/**
 * Compiles the UMT5 encoder (models/text/umt5-layers.ts + models/kernels/umt5.ts) for a preset's
 * sizes. Its attention is a kernel of its own (relative position bias, no scaling), so the bundle
 * carries no attention-template instantiation.
 */
export function buildUmt5Bundle(d: Umt5Dims, options: PlanOptions = {}): Omit<ModelBundle, 'attention'> {
  const headDim = d.dim_attn / d.num_heads;
  if (!Number.isInteger(headDim))
    throw new SfcError(`the UMT5 encoder needs dim_attn divisible by num_heads, got ${d.dim_attn} / ${d.num_heads}`);
  if (d.dim > 1 << 16) throw new SfcError(`the UMT5 token embedding is built for dim <= 65536, got ${d.dim}`);
  const root = packageRoot(import.meta.url);
  const dims = { DIM: d.dim, DIM_ATTN: d.dim_attn, FFN: d.ffn_dim, HEADS: d.num_heads, HEAD_DIM: headDim };
  const plans = compileLayers(join(root, 'models', 'text', 'umt5-layers.ts'), dims, options);
  const consts = { DIM: d.dim, DH: headDim };
  const kernels = Object.fromEntries(
    compileFiles([join(root, 'models', 'kernels', 'umt5.ts')], { consts }).map((a) => [a.name, a]),
  );
  return { model: 'umt5-encoder', dims, plans, kernels };
}

/** The VAE's channel widths (a preset's `vae:` section, through models/vae decoderLayout). */
export interface WanVaeKernelNeeds {
  /** every channel count a kernel is used at */
  channels: number[];
  /** output channel counts of the convolutions (for the sm_90a convolution GEMMs) */
  convOutputs?: number[];
  /** channel counts of the encoder's stride-2 convolutions (space-to-depth kernels) */
  downsample?: number[];
}

/** Kernels of models/kernels/vae.ts with their own specialisations (not one per channel count). */
const VAE_SPECIAL = new Set(['videoInPad', 's2dPad', 'latentOut']);

/**
 * Compiles the VAE decoder's kernels (models/kernels/vae.ts) for each channel count, keyed
 * `${name}:${C}`; normActPad is built in four variants: normActPad (RMS norm + SiLU), normPad,
 * siluPad and castPad (neither). Convolution inputs also get variants padded to the GEMM's
 * K-slice (`${name}:${C}p${CP}`), and the sm_90a implicit-GEMM convolutions are instantiated per
 * output tile width (`convGemms[bn]`).
 */
export function buildWanVaeKernels(needs: WanVaeKernelNeeds): {
  kernels: Record<string, KernelArtifact>;
  convGemms: Record<string, GemmArtifact>;
} {
  const file = join(packageRoot(import.meta.url), 'models', 'kernels', 'vae.ts');
  const kernels: Record<string, KernelArtifact> = {};
  const program = new DslProgram([file]);
  const variants: [string, number, number][] = [
    ['normActPad', 1, 1],
    ['normPad', 1, 0],
    ['siluPad', 0, 1],
    ['castPad', 0, 0],
  ];
  for (const C of needs.channels) {
    const pitches = [...new Set([C, convPitch(C)])];
    for (const CP of pitches) {
      const key = (n: string) => (CP === C ? `${n}:${C}` : `${n}:${C}p${CP}`);
      const sfx = CP === C ? `_c${C}` : `_c${C}p${CP}`;
      for (const [name, NORM, SILU] of variants) {
        const a = compileFiles([file], { consts: { C, CP, NORM, SILU } }, program).find(
          (k) => k.name === 'normActPad',
        )!;
        kernels[key(name)] = { ...a, name: `${name}${sfx}` };
      }
      for (const a of compileFiles([file], { consts: { C, CP } }, program)) {
        if (a.name === 'normActPad' || VAE_SPECIAL.has(a.name)) continue;
        if (CP !== C && a.name !== 'upsamplePad') continue;
        kernels[key(a.name)] = { ...a, name: `${a.name}${sfx}` };
      }
    }
  }
  const special = (name: string, key: string, consts: Record<string, number>) => {
    const a = artifactOf(lowerKernel(program, file, name, { consts }));
    kernels[key] = { ...a, name: `${name}_${key.split(':')[1]}` };
  };
  // the encoder: the video into its first convolution's buffer (3 channels, plain or GEMM pitch),
  // space-to-depth for the stride-2 convolutions (4C channels), the latents out
  for (const CP of [3, convPitch(3)]) special('videoInPad', CP === 3 ? 'videoInPad:3' : `videoInPad:3p${CP}`, { CP });
  for (const C of needs.downsample ?? [])
    for (const CP of new Set([4 * C, convPitch(4 * C)])) special('s2dPad', `s2dPad:${C}p${CP}`, { C, CP });
  special('latentOut', 'latentOut:16', { Z: 16 });
  const convGemms: Record<string, GemmArtifact> = {};
  for (const C of needs.convOutputs ?? []) {
    const bn = convTile(C);
    convGemms[bn] ??= gemmSm90({ input: 'bf16', output: 'f32', bn, stages: 4, conv: true });
  }
  return { kernels, convGemms };
}

/**
 * Compiles the TAEHV decoder's kernels (models/kernels/taehv.ts, plus toRgb8 of models/kernels/vae.ts)
 * for its stage widths `nf` (taew2_1: [256, 128, 64, 64]) and `latent` channels, keyed `${name}:${C}`,
 * and `${name}:${C}p${CP}` for the variants writing buffers padded to the convolution GEMM's K-slice;
 * each program covers PIX pixels (tiles of about 2048 elements). The sm_90a implicit-GEMM
 * convolutions are instantiated per output tile width (`convGemms[bn]`: the 3x3 convolutions, the
 * MemBlocks' two-frame ones, the TGrow 1x1s and the last convolution's 1x1 per-tap products).
 */
export function buildTaehvKernels(
  nf: readonly number[] = [256, 128, 64, 64],
  latent = 16,
): { kernels: Record<string, KernelArtifact>; convGemms: Record<string, GemmArtifact> } {
  if (nf.length !== 4 || nf.some((c) => !Number.isInteger(c) || c < 1))
    throw new SfcError(`the TAEHV decoder has 4 stage widths, got [${nf.join(', ')}]`);
  const root = join(packageRoot(import.meta.url), 'models', 'kernels');
  const file = join(root, 'taehv.ts');
  const program = new DslProgram([file, join(root, 'vae.ts')]);
  const kernels: Record<string, KernelArtifact> = {};
  const pix = (cp: number) => 2 ** Math.max(0, Math.floor(Math.log2(2048 / cp)));
  const add = (f: string, name: string, C: number, CP: number, consts: Record<string, number>) => {
    const a = artifactOf(lowerKernel(program, f, name, { consts }));
    const sfx = CP === C ? `_c${C}` : `_c${C}p${CP}`;
    kernels[CP === C ? `${name}:${C}` : `${name}:${C}p${CP}`] = { ...a, name: `${name}${sfx}` };
  };
  for (const CP of new Set([latent, convPitch(latent)]))
    add(file, 'taehvLatentPad', latent, CP, { Z: latent, CP, PIX: pix(CP) });
  for (const C of new Set(nf))
    for (const CP of new Set([C, convPitch(C)]))
      for (const name of ['taehvActPad', 'taehvResidualPad', 'taehvUpsamplePad'])
        add(file, name, C, CP, { C, CP, PIX: pix(CP) });
  add(file, 'taehvToVideo', 3, 3, {});
  add(join(root, 'vae.ts'), 'toRgb8', 3, 3, {});
  const convGemms: Record<string, GemmArtifact> = {};
  for (const C of [...nf, 2 * nf[1]!, 2 * nf[2]!, 32]) {
    const bn = convTile(C);
    convGemms[bn] ??= gemmSm90({ input: 'bf16', output: 'f32', bn, stages: 4, conv: true });
  }
  return { kernels, convGemms };
}
