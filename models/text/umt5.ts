// The UMT5 encoder of Wan2.1 (umt5-xxl, `models_t5_umt5-xxl-enc-bf16.pth`), assembled in plain
// TypeScript from the layers in umt5-layers.ts (compiled into a bundle for a preset) and the
// kernels in models/kernels/umt5.ts.
//
// One prompt's token ids -> the context [text_len, dim] (bf16) the DiT's cross-attention reads:
// token embedding, then per block x += Wo·attn(RMSNorm(x)) with T5 attention (every block has its
// own relative position bias table [buckets, heads]; bidirectional buckets, max distance 128; no
// score scaling), x += FFN(RMSNorm(x)) with the gated-GELU FFN, then the final RMS norm; rows past
// the prompt are zero, as Self-Forcing's wrapper zeroes them.
//
// Padding is never computed. The reference runs all text_len positions with a key mask over the
// padding and then zeroes the padded rows: with the padding keys masked, the outputs at the prompt's
// L positions depend only on those L tokens (norms and the FFN are per token; the position bias
// depends only on offsets), so running the L tokens alone gives the same rows at a fraction of the cost.
import { bf16, f32, i32 } from '../../dsl/dtypes.js';
import type { ModelBundle } from '../../dsl/artifact.js';
import { SfcError } from '../../dsl/errors.js';
import type { CheckpointTensor } from '../../runtime/checkpoint/state-dict.js';
import type { Device } from '../../runtime/device.js';
import { launch } from '../../runtime/kernels.js';
import { PlanRunner } from '../../runtime/plan.js';
import { Tensor } from '../../runtime/tensor.js';
import { uploadParam, type WanParam } from '../wan/model.js';
import type { TokenBatch } from './tokenizer.js';

/** The preset fields the encoder reads (configs' `text_encoder:` section). */
export interface Umt5Shape {
  vocab_size: number;
  dim: number;
  dim_attn: number;
  ffn_dim: number;
  num_heads: number;
  num_layers: number;
  num_buckets: number;
  text_len: number;
}

/** What the encoder needs of a bundle (buildUmt5Bundle carries no attention template). */
export type Umt5Bundle = Omit<ModelBundle, 'attention'>;

/** Largest offset with buckets of its own; farther offsets share the last bucket of their side. */
export const MAX_DISTANCE = 128;

/** Every parameter of the encoder under the reference checkpoint's names (all kept in bf16). */
export function umt5Params(s: Umt5Shape): WanParam[] {
  const p: WanParam[] = [];
  const add = (name: string, shape: number[]) => p.push({ name, shape, dtype: bf16 });
  add('token_embedding.weight', [s.vocab_size, s.dim]);
  for (let i = 0; i < s.num_layers; i++) {
    const b = `blocks.${i}.`;
    add(`${b}norm1.weight`, [s.dim]);
    for (const n of ['q', 'k', 'v']) add(`${b}attn.${n}.weight`, [s.dim_attn, s.dim]);
    add(`${b}attn.o.weight`, [s.dim, s.dim_attn]);
    add(`${b}norm2.weight`, [s.dim]);
    add(`${b}ffn.gate.0.weight`, [s.ffn_dim, s.dim]);
    add(`${b}ffn.fc1.weight`, [s.ffn_dim, s.dim]);
    add(`${b}ffn.fc2.weight`, [s.dim, s.ffn_dim]);
    add(`${b}pos_embedding.embedding.weight`, [s.num_buckets, s.num_heads]);
  }
  add('norm.weight', [s.dim]);
  return p;
}

/**
 * T5's bidirectional relative-position bucket of key offset `offset` = j - i: half the buckets for
 * keys before the query, half for keys after; within a half, offsets below a quarter of the buckets
 * are exact and larger ones are spaced logarithmically up to `maxDistance` (computed in float32 as
 * the reference does; the bucket is the truncated value).
 */
export function relativeBucket(offset: number, numBuckets: number, maxDistance = MAX_DISTANCE): number {
  const f = Math.fround;
  const half = Math.floor(numBuckets / 2);
  const base = offset > 0 ? half : 0;
  const n = Math.abs(offset);
  const exact = Math.floor(half / 2);
  if (n < exact) return base + n;
  const scaled = f(f(f(Math.log(f(n / exact))) / f(Math.log(maxDistance / exact))) * (half - exact));
  return base + Math.min(exact + Math.trunc(scaled), half - 1);
}

/** Buckets of offsets -(L-1) .. L-1 as the attention kernel reads them: index offset + L - 1. */
export function bucketTable(L: number, numBuckets: number): Int32Array {
  const t = new Int32Array(2 * L - 1);
  for (let i = 0; i < t.length; i++) t[i] = relativeBucket(i - (L - 1), numBuckets);
  return t;
}

/** The prompt lengths of a tokenized batch, checking each mask is the prompt's prefix of ones. */
export function promptLengths(batch: TokenBatch): number[] {
  const { textLen, mask } = batch;
  if (batch.ids.length !== batch.batch * textLen || mask.length !== batch.batch * textLen)
    throw new SfcError(
      `a token batch of ${batch.batch} x ${textLen} needs ${batch.batch * textLen} ids and mask values, got ${batch.ids.length} and ${mask.length}`,
    );
  return Array.from({ length: batch.batch }, (_, b) => {
    const row = mask.subarray(b * textLen, (b + 1) * textLen);
    const n = row.indexOf(0) === -1 ? textLen : row.indexOf(0);
    if (row.subarray(n).some((m) => m !== 0))
      throw new SfcError(
        `prompt ${b}: the attention mask is not a run of ones followed by padding (the UMT5 tokenizer pads on the right)`,
      );
    return n;
  });
}

export class Umt5Encoder {
  private readonly run: Record<string, PlanRunner>;
  private readonly buckets = new Map<number, Tensor>();
  private disposed = false;

  private constructor(
    readonly device: Device,
    readonly shape: Umt5Shape,
    readonly bundle: Umt5Bundle,
    private readonly w: Map<string, Tensor>,
  ) {
    const want = {
      DIM: shape.dim,
      DIM_ATTN: shape.dim_attn,
      FFN: shape.ffn_dim,
      HEADS: shape.num_heads,
      HEAD_DIM: shape.dim_attn / shape.num_heads,
    };
    for (const [k, v] of Object.entries(want))
      if (bundle.dims[k] !== v)
        throw new SfcError(`the UMT5 bundle was built for ${k} = ${bundle.dims[k]}, the preset has ${v}`);
    for (const n of ['attnQkv', 'attnOutFfn', 'finalNorm'])
      if (!bundle.plans[n]) throw new SfcError(`the UMT5 bundle lacks the layer plan '${n}'`);
    for (const n of ['tokenEmbedding', 'relPosAttention'])
      if (!bundle.kernels[n]) throw new SfcError(`the UMT5 bundle lacks the kernel '${n}'`);
    this.run = Object.fromEntries(Object.entries(bundle.plans).map(([n, p]) => [n, new PlanRunner(p)]));
  }

  /** Builds the encoder from checkpoint tensors (canonical names); reports every missing or mis-shaped one. */
  static load(
    device: Device,
    shape: Umt5Shape,
    bundle: Umt5Bundle,
    tensors: ReadonlyMap<string, CheckpointTensor>,
  ): Umt5Encoder {
    if (shape.dim_attn % shape.num_heads !== 0)
      throw new SfcError(
        `the text encoder's dim_attn (${shape.dim_attn}) must be a multiple of num_heads (${shape.num_heads})`,
      );
    const params = umt5Params(shape);
    const missing = params.filter((p) => !tensors.has(p.name)).map((p) => p.name);
    if (missing.length)
      throw new SfcError(
        `the checkpoint lacks ${missing.length} of the text encoder's ${params.length} parameters: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`,
        { hint: 'files.text_encoder must be the UMT5 encoder checkpoint (models_t5_umt5-xxl-enc-bf16.pth)' },
      );
    const w = new Map<string, Tensor>();
    try {
      for (const p of params) w.set(p.name, uploadParam(device, tensors.get(p.name)!, p));
      return new Umt5Encoder(device, shape, bundle, w);
    } catch (e) {
      for (const t of w.values()) t.dispose();
      throw e;
    }
  }

  get headDim(): number {
    return this.shape.dim_attn / this.shape.num_heads;
  }

  /** Frees the weights' device memory; the encoder cannot be used afterwards. */
  dispose(): void {
    for (const t of [...this.w.values(), ...this.buckets.values()]) t.dispose();
    this.w.clear();
    this.buckets.clear();
    this.disposed = true;
  }

  private p(name: string): Tensor {
    const t = this.w.get(name);
    if (!t) throw new Error(`internal: parameter ${name} not loaded`);
    return t;
  }

  private bucketsFor(L: number): Tensor {
    let t = this.buckets.get(L);
    if (!t) {
      t = Tensor.from(this.device, i32, [2 * L - 1], bucketTable(L, this.shape.num_buckets));
      this.buckets.set(L, t);
    }
    return t;
  }

  /**
   * One prompt's token ids (without padding, </s> included; 1 to text_len of them) -> the context
   * [text_len, dim] bf16 on the encoder's device, rows past the prompt zero.
   */
  encode(ids: ArrayLike<number>): Tensor {
    if (this.disposed) throw new SfcError('the text encoder was released; load it again to encode more prompts');
    const s = this.shape;
    const L = ids.length;
    if (L < 1 || L > s.text_len)
      throw new SfcError(`a prompt must have 1 to ${s.text_len} tokens (text_len), got ${L}`);
    for (let i = 0; i < L; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= s.vocab_size)
        throw new SfcError(`token ${i} of the prompt is ${id}, outside the vocabulary [0, ${s.vocab_size})`);
    }
    const dev = this.device;
    const H = s.num_heads;
    const out = Tensor.zeros(dev, bf16, [s.text_len, s.dim]);
    const idsT = Tensor.from(dev, i32, [L], Array.from(ids));
    const o = Tensor.empty(dev, bf16, [L, H, this.headDim]);
    let x = Tensor.empty(dev, f32, [L, s.dim]);
    try {
      launch(this.bundle.kernels.tokenEmbedding!, [L], [idsT, this.p('token_embedding.weight'), x]);
      const buckets = this.bucketsFor(L);
      for (let i = 0; i < s.num_layers; i++) {
        const b = `blocks.${i}.`;
        const [q, k, v] = this.run.attnQkv!.run([
          x,
          this.p(`${b}norm1.weight`),
          this.p(`${b}attn.q.weight`),
          this.p(`${b}attn.k.weight`),
          this.p(`${b}attn.v.weight`),
        ]);
        try {
          launch(
            this.bundle.kernels.relPosAttention!,
            [L, H],
            [q!, k!, v!, o, this.p(`${b}pos_embedding.embedding.weight`), buckets, H, L],
          );
        } finally {
          for (const t of [q!, k!, v!]) t.dispose();
        }
        const [x1] = this.run.attnOutFfn!.run([
          x,
          o.reshape([L, s.dim_attn]),
          this.p(`${b}attn.o.weight`),
          this.p(`${b}norm2.weight`),
          this.p(`${b}ffn.gate.0.weight`),
          this.p(`${b}ffn.fc1.weight`),
          this.p(`${b}ffn.fc2.weight`),
        ]);
        x.dispose();
        x = x1!;
      }
      this.run.finalNorm!.run([x, this.p('norm.weight')], [out.narrow(0, 0, L)]);
      return out;
    } catch (e) {
      out.dispose();
      throw e;
    } finally {
      for (const t of [idsT, o, x]) t.dispose();
    }
  }

  /** Every prompt of a tokenized batch (the reference's padded ids and mask) -> one context each. */
  encodeBatch(batch: TokenBatch): Tensor[] {
    if (batch.textLen !== this.shape.text_len)
      throw new SfcError(
        `the prompts were tokenized to ${batch.textLen} tokens, the text encoder's text_len is ${this.shape.text_len}`,
      );
    const lengths = promptLengths(batch);
    const out: Tensor[] = [];
    try {
      lengths.forEach((n, b) => out.push(this.encode(batch.ids.subarray(b * batch.textLen, b * batch.textLen + n))));
      return out;
    } catch (e) {
      for (const t of out) t.dispose();
      throw e;
    }
  }
}
