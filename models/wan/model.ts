// The causal Wan2.1 DiT (Self-Forcing's generator), assembled in plain TypeScript from the layers in
// layers.ts (compiled into a ModelBundle for a preset) and the attention template. One call of
// `forward` is one denoising pass over one chunk of latent frames: its k/v are written into the KV
// cache at the chunk's position (a local window rolls the oldest frames out after the sink frames),
// its queries attend to everything cached up to the chunk's end, and the cross-attention uses the
// text k/v computed once per prompt (`encodeContext`).
import type { AttentionArtifact, KernelArtifact, ModelBundle } from '../../dsl/artifact.js';
import { bf16, e4m3, f32, type DType } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import type { CheckpointTensor } from '../../runtime/checkpoint/state-dict.js';
import { decode, rawArray } from '../../runtime/convert.js';
import type { Device } from '../../runtime/device.js';
import { attentionFor, runAttention } from '../../runtime/attention.js';
import { launch } from '../../runtime/kernels.js';
import { CudaDevice } from '../../runtime/cuda.js';
import { PlanRunner, type Fp8Weight } from '../../runtime/plan.js';
import { Tensor, fmtShape } from '../../runtime/tensor.js';

/** The preset fields the DiT reads (configs' `dit:` section). */
export interface WanDitShape {
  dim: number;
  ffn_dim: number;
  freq_dim: number;
  num_heads: number;
  num_layers: number;
  in_dim: number;
  out_dim: number;
  text_dim: number;
  text_len: number;
}

/** A parameter of the model: its checkpoint name, shape, and the dtype sfc keeps it in. */
export interface WanParam {
  name: string;
  shape: number[];
  dtype: DType;
}

/** Every parameter of the Wan DiT under the reference checkpoint's names. */
export function wanDitParams(s: WanDitShape): WanParam[] {
  const d = s.dim;
  const p: WanParam[] = [];
  const add = (name: string, shape: number[], dtype: DType = bf16) => p.push({ name, shape, dtype });
  const lin = (name: string, out: number, inp: number) => {
    add(`${name}.weight`, [out, inp]);
    add(`${name}.bias`, [out]);
  };
  add('patch_embedding.weight', [d, s.in_dim, 1, 2, 2]);
  add('patch_embedding.bias', [d]);
  lin('text_embedding.0', d, s.text_dim);
  lin('text_embedding.2', d, d);
  lin('time_embedding.0', d, s.freq_dim);
  lin('time_embedding.2', d, d);
  lin('time_projection.1', 6 * d, d);
  for (let i = 0; i < s.num_layers; i++) {
    const b = `blocks.${i}.`;
    add(`${b}modulation`, [1, 6, d], f32);
    for (const a of ['self_attn', 'cross_attn']) {
      for (const n of ['q', 'k', 'v', 'o']) lin(`${b}${a}.${n}`, d, d);
      add(`${b}${a}.norm_q.weight`, [d]);
      add(`${b}${a}.norm_k.weight`, [d]);
    }
    add(`${b}norm3.weight`, [d], f32);
    add(`${b}norm3.bias`, [d], f32);
    lin(`${b}ffn.0`, s.ffn_dim, d);
    lin(`${b}ffn.2`, d, s.ffn_dim);
  }
  add('head.modulation', [1, 2, d], f32);
  lin('head.head', s.out_dim * 4, d);
  return p;
}

/** The DiT's precision: 'bf16' (default) or 'fp8' (the blocks' Linears as e4m3 GEMMs; see docs/models.md). */
export type WanPrecision = NonNullable<ModelBundle['precision']>;

/**
 * The weights an FP8 model keeps quantised (e4m3 with per-output-channel scales): the Linears of the
 * layers an FP8 bundle compiles as FP8 GEMMs (compiler/bundle.ts WAN_FP8_LAYERS), i.e. every block's
 * self-attention q, k, v, o, cross-attention q, o and FFN fc1, fc2. The text's cross-attention k/v,
 * the embeddings, the modulation and the head stay bf16.
 */
export function isWanFp8Weight(name: string): boolean {
  return /^blocks\.\d+\.(self_attn\.(qkv|o)|cross_attn\.[qo]|ffn\.[02])\.weight$/.test(name);
}

/**
 * Block `i`'s self-attention q, k and v Linears as one (selfAttnQkv runs them as one GEMM): the weights
 * [Wq; Wk; Wv] ([3 dim, dim]) and biases [bq; bk; bv] under `blocks.i.self_attn.qkv.*`, the three
 * originals freed. Does nothing until all six are in `w` (or once they are fused).
 */
export function fuseQkvWeights(w: Map<string, Tensor>, block: number): void {
  const name = (x: string, p: string) => `blocks.${block}.self_attn.${x}.${p}`;
  if (!['q', 'k', 'v'].every((x) => w.has(name(x, 'weight')) && w.has(name(x, 'bias')))) return;
  for (const p of ['weight', 'bias']) {
    const parts = ['q', 'k', 'v'].map((x) => w.get(name(x, p))!);
    const [rows, ...rest] = parts[0]!.shape;
    const out = Tensor.empty(parts[0]!.device, parts[0]!.dtype, [3 * rows!, ...rest]);
    parts.forEach((t, j) => {
      const src = t.contiguous();
      out.device.copy(out.storage, out.byteOffset + j * t.nbytes, src.storage, src.byteOffset, t.nbytes);
      if (src !== t) src.dispose();
    });
    w.set(name('qkv', p), out);
    for (const x of ['q', 'k', 'v']) {
      w.get(name(x, p))!.dispose();
      w.delete(name(x, p));
    }
  }
}

/**
 * Quantises a Linear weight [N, K] (bf16) on its device with the bundle's kernel (models/kernels/fp8.ts
 * quantizeE4m3PerRow, specialised for the model's widths): scale[n] = max(max|w[n, :]| / 448, 1e-12),
 * q[n, k] = e4m3(w[n, k] * (1 / scale[n])), rounded to nearest even and saturated as the GPU does.
 */
export function quantizeWeightE4m3(kernel: KernelArtifact, w: Tensor): Fp8Weight {
  if (w.rank !== 2 || w.dtype !== bf16)
    throw new SfcError(`an FP8 weight is quantised from bf16 [N, K], got ${w.toString()}`);
  const [N, K] = w.shape as [number, number];
  const block = kernel.params.find((p) => p.name === 'BLOCK')?.value ?? 0;
  if (K > block) throw new SfcError(`${kernel.name} quantises rows of up to ${block} values; this weight has ${K}`);
  const q = Tensor.empty(w.device, e4m3, [N, K]);
  const scale = Tensor.empty(w.device, f32, [N]);
  launch(kernel, [N], [w.contiguous(), q, scale, K]);
  return { q, scale };
}

/** Reads a checkpoint tensor onto `device` as `dtype` (converting if the file holds another dtype). */
export function uploadParam(device: Device, t: CheckpointTensor, want: WanParam): Tensor {
  if (t.shape.length !== want.shape.length || t.shape.some((n, i) => n !== want.shape[i]))
    throw new SfcError(
      `'${want.name}' has shape ${fmtShape(t.shape)} in the checkpoint, the model needs ${fmtShape(want.shape)}`,
    );
  if (!t.dtype || !t.dtype.isFloat)
    throw new SfcError(`'${want.name}' is ${t.fileDtype} in the checkpoint; a floating-point tensor is needed`);
  let bytes = t.read();
  if (bytes.byteOffset % t.dtype.bytes !== 0) bytes = bytes.slice();
  const n = want.shape.reduce((a, b) => a * b, 1);
  const raw = rawArray(t.dtype, bytes.buffer, bytes.byteOffset, n);
  if (t.dtype === want.dtype) return Tensor.fromRaw(device, want.dtype, want.shape, raw);
  return Tensor.from(device, want.dtype, want.shape, decode(t.dtype, raw) as Float32Array);
}

/** sinusoidal embedding of timesteps (cos then sin, float64 as the reference computes it) */
export function timestepSinusoid(t: readonly number[], dim: number): Float64Array {
  const half = dim / 2;
  const out = new Float64Array(t.length * dim);
  t.forEach((v, r) => {
    const pos = Math.fround(v); // the reference holds timesteps as float32
    for (let j = 0; j < half; j++) {
      const a = pos * Math.pow(10000, -j / half);
      out[r * dim + j] = Math.cos(a);
      out[r * dim + half + j] = Math.sin(a);
    }
  });
  return out;
}

/**
 * Wan's RoPE angle tables for one head: [1024, headDim / 2] cos and sin, pair j in the frame section
 * (the first headDim - 4 * floor(headDim / 6) values), then height, then width, each section with
 * its own frequencies (theta 10000 over the section's width).
 */
export function ropeAngleTables(headDim: number, maxPos = 1024): { cos: Float64Array; sin: Float64Array } {
  const k = Math.floor(headDim / 6);
  const sections = [headDim - 4 * k, 2 * k, 2 * k];
  const inv: number[] = [];
  for (const w of sections) for (let i = 0; i < w; i += 2) inv.push(1 / Math.pow(10000, i / w));
  const pairs = headDim / 2;
  const cos = new Float64Array(maxPos * pairs);
  const sin = new Float64Array(maxPos * pairs);
  for (let p = 0; p < maxPos; p++)
    for (let j = 0; j < pairs; j++) {
      cos[p * pairs + j] = Math.cos(p * inv[j]!);
      sin[p * pairs + j] = Math.sin(p * inv[j]!);
    }
  return { cos, sin };
}

export interface KvCacheOptions {
  /** tokens per latent frame (H/2 x W/2) */
  frameTokens: number;
  /** frames the cache holds when no local window is set (the reference: 21) */
  maxFrames?: number;
  /** local attention window in latent frames (-1: none) */
  localAttnSize?: number;
  /** frames at the start kept when the window rolls (attention sink) */
  sinkSize?: number;
  /**
   * One k/v buffer for every block instead of one per block: a scratch cache for a single pass whose
   * blocks each consume their own k/v before the next block overwrites them (the bidirectional
   * model's full-video forward). Such a cache carries nothing from one pass to the next.
   */
  shareLayers?: boolean;
  /**
   * RoPE positions relative to the cache's slots instead of absolute frames: a chunk's queries and
   * keys are rotated by the frame of the slot they occupy, and keys moved down by a roll are turned
   * back by the frames they move. Attention between the window's frames is unchanged (RoPE sees only
   * differences); the sink frames sit just before the window instead of at the video's start; and
   * positions stay within the cache, so a rolling cache runs past the 1024-frame RoPE tables.
   */
  relativeRope?: boolean;
}

/** Per-block self-attention KV caches with the reference's global/local end indices. */
export class KvCache {
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  readonly capacity: number;
  readonly maxAttention: number;
  readonly sinkTokens: number;
  readonly localAttnSize: number;
  globalEnd = 0;
  localEnd = 0;

  constructor(
    device: Device,
    layers: number,
    heads: number,
    headDim: number,
    readonly opts: KvCacheOptions,
  ) {
    const ft = opts.frameTokens;
    this.localAttnSize = opts.localAttnSize ?? -1;
    const sink = opts.sinkSize ?? 0;
    if (this.localAttnSize !== -1 && (this.localAttnSize < 1 || sink >= this.localAttnSize))
      throw new SfcError(`local_attn_size must be -1 or larger than sink_size, got ${this.localAttnSize} and ${sink}`);
    const frames = this.localAttnSize === -1 ? (opts.maxFrames ?? 21) : this.localAttnSize;
    this.capacity = frames * ft;
    this.maxAttention = (this.localAttnSize === -1 ? Math.max(21, frames) : this.localAttnSize) * ft;
    this.sinkTokens = sink * ft;
    for (let i = 0; i < layers; i++) {
      const shared = opts.shareLayers && i > 0;
      this.k.push(shared ? this.k[0]! : Tensor.zeros(device, bf16, [this.capacity, heads, headDim]));
      this.v.push(shared ? this.v[0]! : Tensor.zeros(device, bf16, [this.capacity, heads, headDim]));
    }
  }

  /** Forgets everything (a new video); memory stays allocated. */
  reset(): void {
    this.globalEnd = 0;
    this.localEnd = 0;
  }

  dispose(): void {
    for (const t of new Set([...this.k, ...this.v])) t.dispose();
  }

  /**
   * Where a chunk of `tokens` tokens starting at absolute token `start` goes: the local slots it
   * writes, how many of the oldest non-sink tokens roll out first, and the attended range.
   */
  place(start: number, tokens: number): { localStart: number; localEnd: number; evict: number; roll: number } {
    const end = start + tokens;
    let evict = 0;
    let roll = 0;
    if (this.localAttnSize !== -1 && end > this.globalEnd && tokens + this.localEnd > this.capacity) {
      evict = tokens + this.localEnd - this.capacity;
      roll = this.localEnd - evict - this.sinkTokens;
    }
    const localEnd = this.localEnd + end - this.globalEnd - evict;
    const localStart = localEnd - tokens;
    if (localStart < 0 || localEnd > this.capacity)
      throw new SfcError(
        `the KV cache holds ${this.capacity / this.opts.frameTokens} frames; frame ${Math.ceil(end / this.opts.frameTokens) - 1} does not fit (set local_attn_size for longer videos)`,
      );
    return { localStart, localEnd, evict, roll };
  }

  /**
   * Moves cache[sink + evict, sink + evict + roll) to cache[sink, sink + roll), in non-overlapping
   * pieces; `move(src, dst)` replaces the plain copy of a piece (the keys' RoPE turn with relativeRope).
   */
  rollLeft(t: Tensor, evict: number, roll: number, move?: (src: Tensor, dst: Tensor) => void): void {
    const tokBytes = t.nbytes / t.shape[0]!;
    const dev = t.device;
    for (let done = 0; done < roll; done += evict) {
      const n = Math.min(evict, roll - done);
      if (move) {
        move(t.narrow(0, this.sinkTokens + evict + done, n), t.narrow(0, this.sinkTokens + done, n));
        continue;
      }
      dev.copy(
        t.storage,
        t.byteOffset + (this.sinkTokens + done) * tokBytes,
        t.storage,
        t.byteOffset + (this.sinkTokens + evict + done) * tokBytes,
        n * tokBytes,
      );
    }
  }
}

/** Cross-attention k/v of one prompt, per block: [1, S, heads, headDim] each. */
export interface TextContext {
  k: Tensor[];
  v: Tensor[];
  dispose(): void;
}

type Runners = Record<string, PlanRunner>;

export interface WanModelOptions {
  /**
   * 'bf16' or 'fp8': must match the bundle's (`buildWanDitBundle(dims, { precision })`); default the
   * bundle's. With 'fp8' the weights isWanFp8Weight names are quantised to e4m3 as they are loaded.
   */
  precision?: WanPrecision;
}

/** The precision a model loads at: the bundle's, which an explicit option must match. */
function precisionOf(device: Device, bundle: ModelBundle, options: WanModelOptions): WanPrecision {
  const built = bundle.precision ?? 'bf16';
  const want = options.precision ?? built;
  if (want !== 'bf16' && want !== 'fp8')
    throw new SfcError(`the DiT's precision is bf16 or fp8, got '${String(want)}'`);
  if (want !== built)
    throw new SfcError(
      `the DiT bundle was compiled for ${built}; ${want} needs one built with { precision: '${want}' }`,
    );
  if (want === 'fp8') {
    if (!bundle.kernels.quantizeWeightE4m3) throw new SfcError('the FP8 DiT bundle lacks its weight quantiser');
    if (device instanceof CudaDevice && device.arch !== 'sm_90a')
      throw new SfcError(`the FP8 DiT runs its e4m3 GEMMs on sm_90a (H100/H200); ${device.name} is ${device.arch}`, {
        hint: 'use --precision bf16 on this GPU',
      });
  }
  return want;
}

export class CausalWanModel {
  readonly heads: number;
  readonly headDim: number;
  /** the Linear weights held in FP8 (empty for a bf16 model) */
  private readonly q = new Map<string, Fp8Weight>();
  private readonly run: Runners;
  private readonly ropeCos: Tensor;
  private readonly ropeSin: Tensor;
  /** per block: the six modulation rows as [dim] views */
  private readonly mods: Tensor[][];
  private readonly headMods: Tensor[];
  private readonly timeProj: { w: Tensor[]; b: Tensor[] };

  /** The bundle's attention instantiation for this GPU (sm_90a, else mma.sync); on the CPU its JS twin. */
  private readonly attention: AttentionArtifact;

  private constructor(
    readonly device: Device,
    readonly shape: WanDitShape,
    readonly bundle: ModelBundle,
    private readonly w: Map<string, Tensor>,
    readonly precision: WanPrecision = 'bf16',
  ) {
    for (let i = 0; i < shape.num_layers; i++) fuseQkvWeights(w, i);
    this.attention =
      (device instanceof CudaDevice ? attentionFor(device.arch, [bundle.attention, bundle.attentionMma]) : undefined) ??
      bundle.attention;
    if (precision === 'fp8') {
      // takes the bf16 weights it quantises (they are freed), so at most one is held twice
      for (const [name, t] of [...w]) {
        if (!isWanFp8Weight(name)) continue;
        this.q.set(name, quantizeWeightE4m3(bundle.kernels.quantizeWeightE4m3!, t));
        w.delete(name);
        t.dispose();
      }
    }
    this.heads = shape.num_heads;
    this.headDim = shape.dim / shape.num_heads;
    const want = { DIM: shape.dim, FFN: shape.ffn_dim, HEADS: shape.num_heads, TEXT_DIM: shape.text_dim };
    for (const [k, v] of Object.entries(want))
      if (bundle.dims[k] !== v)
        throw new SfcError(`the model bundle was built for ${k} = ${bundle.dims[k]}, the preset has ${v}`);
    this.run = Object.fromEntries(Object.entries(bundle.plans).map(([n, p]) => [n, new PlanRunner(p)]));
    const tabs = ropeAngleTables(this.headDim);
    const pairs = this.headDim / 2;
    this.ropeCos = Tensor.from(device, f32, [1024, pairs], tabs.cos);
    this.ropeSin = Tensor.from(device, f32, [1024, pairs], tabs.sin);
    const d = shape.dim;
    const rows = (t: Tensor, n: number) => Array.from({ length: n }, (_, j) => t.reshape([n * d]).narrow(0, j * d, d));
    this.mods = Array.from({ length: shape.num_layers }, (_, i) => rows(this.p(`blocks.${i}.modulation`), 6));
    this.headMods = rows(this.p('head.modulation'), 2);
    const pw = this.p('time_projection.1.weight');
    const pb = this.p('time_projection.1.bias');
    this.timeProj = {
      w: Array.from({ length: 6 }, (_, j) => pw.narrow(0, j * d, d)),
      b: Array.from({ length: 6 }, (_, j) => pb.narrow(0, j * d, d)),
    };
  }

  /** Builds the model from checkpoint tensors (canonical names); reports every missing or mis-shaped one. */
  static load(
    device: Device,
    shape: WanDitShape,
    bundle: ModelBundle,
    tensors: ReadonlyMap<string, CheckpointTensor>,
    options: WanModelOptions = {},
  ): CausalWanModel {
    const precision = precisionOf(device, bundle, options);
    const params = wanDitParams(shape);
    const missing = params.filter((p) => !tensors.has(p.name)).map((p) => p.name);
    if (missing.length)
      throw new SfcError(
        `the checkpoint lacks ${missing.length} of the DiT's ${params.length} parameters: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`,
      );
    const w = new Map<string, Tensor>();
    const q = new Map<string, Fp8Weight>();
    try {
      const quantise = (name: string, t: Tensor) => {
        // quantised one at a time: the model never holds all its bf16 Linear weights
        try {
          q.set(name, quantizeWeightE4m3(bundle.kernels.quantizeWeightE4m3!, t));
        } finally {
          t.dispose();
        }
      };
      for (const p of params) {
        const t = uploadParam(device, tensors.get(p.name)!, p);
        if (precision === 'fp8' && isWanFp8Weight(p.name)) quantise(p.name, t);
        else w.set(p.name, t);
        const qkv = /^blocks\.(\d+)\.self_attn\.[qkv]\./.exec(p.name);
        if (!qkv) continue;
        // a block's q, k, v become one Linear as soon as all six tensors are here
        fuseQkvWeights(w, Number(qkv[1]));
        const fused = `blocks.${qkv[1]}.self_attn.qkv.weight`;
        if (precision === 'fp8' && w.has(fused)) {
          const t = w.get(fused)!;
          w.delete(fused);
          quantise(fused, t);
        }
      }
    } catch (e) {
      for (const t of w.values()) t.dispose();
      for (const x of q.values()) [x.q, x.scale].forEach((t) => t.dispose());
      throw e;
    }
    const m = new CausalWanModel(device, shape, bundle, w, precision);
    for (const [name, x] of q) m.q.set(name, x);
    return m;
  }

  /**
   * Builds the model from tensors already on the device (e.g. random weights, all in the dtypes of
   * wanDitParams); takes ownership. An FP8 model quantises its Linear weights and frees the bf16 ones.
   */
  static fromWeights(
    device: Device,
    shape: WanDitShape,
    bundle: ModelBundle,
    w: Map<string, Tensor>,
    options: WanModelOptions = {},
  ): CausalWanModel {
    const precision = precisionOf(device, bundle, options);
    for (const p of wanDitParams(shape)) {
      const t = w.get(p.name);
      if (!t) throw new SfcError(`missing parameter '${p.name}'`);
      if (t.device !== device || t.dtype !== p.dtype || t.shape.join() !== p.shape.join())
        throw new SfcError(
          `'${p.name}' must be ${p.dtype.name}${fmtShape(p.shape)} on ${device.name}, got ${t.toString()}`,
        );
    }
    return new CausalWanModel(device, shape, bundle, w, precision);
  }

  dispose(): void {
    for (const t of this.w.values()) t.dispose();
    for (const x of this.q.values()) [x.q, x.scale].forEach((t) => t.dispose());
    this.ropeCos.dispose();
    this.ropeSin.dispose();
  }

  private p(name: string): Tensor {
    const t = this.w.get(name);
    if (!t) throw new Error(`internal: parameter ${name} not loaded`);
    return t;
  }

  /** A Linear weight of the blocks: bf16, or quantised (e4m3 + scales) in an FP8 model. */
  private lw(name: string): Tensor | Fp8Weight {
    return this.q.get(name) ?? this.p(name);
  }

  /** The FP8 form of a Linear weight (values and per-output-channel scales); undefined in a bf16 model. */
  fp8Weight(name: string): Fp8Weight | undefined {
    return this.q.get(name);
  }

  newCache(opts: KvCacheOptions): KvCache {
    return new KvCache(this.device, this.shape.num_layers, this.heads, this.headDim, opts);
  }

  /** The text context [S, text_dim] (bf16, zero-padded as the reference pads it) -> per-block k/v. */
  encodeContext(context: Tensor): TextContext {
    if (context.rank !== 2 || context.shape[1] !== this.shape.text_dim)
      throw new SfcError(`the text context must be [S, ${this.shape.text_dim}], got ${fmtShape(context.shape)}`);
    const [c] = this.run.textEmbedding!.run([
      context.dtype === bf16 ? context : context.to(this.device),
      this.p('text_embedding.0.weight'),
      this.p('text_embedding.0.bias'),
      this.p('text_embedding.2.weight'),
      this.p('text_embedding.2.bias'),
    ]);
    const k: Tensor[] = [];
    const v: Tensor[] = [];
    const S = context.shape[0]!;
    for (let i = 0; i < this.shape.num_layers; i++) {
      const b = `blocks.${i}.cross_attn.`;
      const [ki, vi] = this.run.crossKv!.run([
        c!,
        this.p(`${b}k.weight`),
        this.p(`${b}k.bias`),
        this.p(`${b}norm_k.weight`),
        this.p(`${b}v.weight`),
        this.p(`${b}v.bias`),
      ]);
      k.push(ki!.reshape([1, S, this.heads, this.headDim]));
      v.push(vi!.reshape([1, S, this.heads, this.headDim]));
    }
    c!.dispose();
    return { k, v, dispose: () => [...k, ...v].forEach((t) => t.dispose()) };
  }

  /**
   * One denoising pass over a chunk: latent [C, F, H, W] (f32) at per-frame timesteps, the chunk's
   * first latent frame `startFrame` -> the predicted flow [C, F, H, W] (f32). Writes the chunk's
   * k/v into `cache`.
   */
  forward(latent: Tensor, timesteps: readonly number[], startFrame: number, text: TextContext, cache: KvCache): Tensor {
    const s = this.shape;
    const dev = this.device;
    if (latent.rank !== 4 || latent.shape[0] !== s.in_dim || latent.dtype !== f32)
      throw new SfcError(`the latent must be f32 [${s.in_dim}, F, H, W], got ${latent.toString()}`);
    const [, F, H, W] = latent.shape as [number, number, number, number];
    if (H % 2 || W % 2) throw new SfcError(`latent height and width must be even, got ${H} x ${W}`);
    if (timesteps.length !== F)
      throw new SfcError(`one timestep per latent frame: ${F} frames, ${timesteps.length} timesteps`);
    const gh = H / 2;
    const gw = W / 2;
    const T = gh * gw;
    const L = F * T;
    if (T !== cache.opts.frameTokens)
      throw new SfcError(`the cache was made for ${cache.opts.frameTokens} tokens per frame, the latent has ${T}`);
    const place = cache.place(startFrame * T, L);
    const relative = cache.opts.relativeRope ?? false;
    // RoPE frame positions: absolute, or the chunk's slot in the cache (window-relative)
    const ropeStart = relative ? place.localStart / T : startFrame;
    if (ropeStart + F > 1024)
      throw new SfcError(
        relative
          ? `the KV cache holds more than the 1024 frames of the RoPE tables`
          : `frame ${startFrame + F - 1} is past the RoPE tables (1024 latent frames)`,
        {
          hint: 'for longer videos set model_kwargs.local_attn_size (a rolling cache) and model_kwargs.relative_rope=true',
        },
      );
    const d = s.dim;
    const temps: Tensor[] = [];
    const keep = <T extends Tensor>(t: T): T => (temps.push(t), t);
    try {
      // tokens in, RoPE tables of this chunk, time embedding
      const tokens = keep(Tensor.empty(dev, bf16, [F, T, s.in_dim * 4]));
      launch(this.bundle.kernels.patchify!, [L], [latent.contiguous(), tokens, F, H, W]);
      let [x] = this.run.patchEmbedding!.run([
        tokens,
        this.p('patch_embedding.weight').reshape([d, s.in_dim * 4]),
        this.p('patch_embedding.bias'),
      ]);
      keep(x!);
      const cos = keep(Tensor.empty(dev, f32, [F, T, 1, this.headDim]));
      const sin = keep(Tensor.empty(dev, f32, [F, T, 1, this.headDim]));
      launch(this.bundle.kernels.ropeTables!, [L], [this.ropeCos, this.ropeSin, cos, sin, gh, gw, ropeStart]);
      const sinus = keep(Tensor.from(dev, bf16, [F, s.freq_dim], timestepSinusoid(timesteps, s.freq_dim)));
      const te = this.run.timeEmbedding!.run([
        sinus,
        this.p('time_embedding.0.weight'),
        this.p('time_embedding.0.bias'),
        this.p('time_embedding.2.weight'),
        this.p('time_embedding.2.bias'),
        ...this.timeProj.w,
        ...this.timeProj.b,
      ]);
      te.forEach(keep);
      const e = te[0]!.reshape([F, 1, d]);
      const e0 = te.slice(1).map((t) => t.reshape([F, 1, d]));

      const q4 = [1, L, this.heads, this.headDim];
      const o = keep(Tensor.empty(dev, bf16, q4));
      const lo = Math.max(0, place.localEnd - cache.maxAttention);
      for (let i = 0; i < s.num_layers; i++) {
        const b = `blocks.${i}.`;
        const m = this.mods[i]!;
        const kc = cache.k[i]!;
        const vc = cache.v[i]!;
        if (place.evict > 0 && place.roll > 0) {
          cache.rollLeft(
            kc,
            place.evict,
            place.roll,
            relative
              ? (src, dst) =>
                  launch(
                    this.bundle.kernels.ropeShiftFrames!,
                    [src.shape[0]!],
                    [src, dst, this.ropeCos, this.ropeSin, this.heads, place.evict / T],
                  )
              : undefined,
          );
          cache.rollLeft(vc, place.evict, place.roll);
        }
        const slot = (t: Tensor) => t.narrow(0, place.localStart, L);
        const [q] = this.run.selfAttnQkv!.run(
          [
            x!,
            m[0]!,
            e0[0]!,
            m[1]!,
            e0[1]!,
            this.lw(`${b}self_attn.qkv.weight`),
            this.p(`${b}self_attn.qkv.bias`),
            this.p(`${b}self_attn.norm_q.weight`),
            this.p(`${b}self_attn.norm_k.weight`),
            cos,
            sin,
          ],
          [undefined, slot(kc), slot(vc)],
        );
        const kvShape = [1, place.localEnd - lo, this.heads, this.headDim];
        runAttention(this.attention, {
          q: q!.reshape(q4),
          k: kc.narrow(0, lo, place.localEnd - lo).reshape(kvShape),
          v: vc.narrow(0, lo, place.localEnd - lo).reshape(kvShape),
          o,
        });
        q!.dispose();
        const [x1, qc] = this.run.selfAttnOutCrossQ!.run([
          x!,
          o.reshape([F, T, d]),
          m[2]!,
          e0[2]!,
          this.lw(`${b}self_attn.o.weight`),
          this.p(`${b}self_attn.o.bias`),
          this.p(`${b}norm3.weight`),
          this.p(`${b}norm3.bias`),
          this.lw(`${b}cross_attn.q.weight`),
          this.p(`${b}cross_attn.q.bias`),
          this.p(`${b}cross_attn.norm_q.weight`),
        ]);
        x!.dispose();
        runAttention(this.attention, { q: qc!.reshape(q4), k: text.k[i]!, v: text.v[i]!, o });
        qc!.dispose();
        const [x2] = this.run.crossOutFfn!.run([
          x1!,
          o.reshape([F, T, d]),
          this.lw(`${b}cross_attn.o.weight`),
          this.p(`${b}cross_attn.o.bias`),
          m[3]!,
          e0[3]!,
          m[4]!,
          e0[4]!,
          m[5]!,
          e0[5]!,
          this.lw(`${b}ffn.0.weight`),
          this.p(`${b}ffn.0.bias`),
          this.lw(`${b}ffn.2.weight`),
          this.p(`${b}ffn.2.bias`),
        ]);
        x1!.dispose();
        x = x2;
        temps[1] = x!;
      }
      cache.globalEnd = startFrame * T + L;
      cache.localEnd = place.localEnd;
      const [out] = this.run.head!.run([
        x!,
        e,
        this.headMods[0]!,
        this.headMods[1]!,
        this.p('head.head.weight'),
        this.p('head.head.bias'),
      ]);
      keep(out!);
      const flow = Tensor.empty(dev, f32, [s.out_dim, F, H, W]);
      launch(this.bundle.kernels.unpatchify!, [L], [out!, flow, F, H, W]);
      return flow;
    } finally {
      for (const t of temps) t.dispose();
    }
  }
}
