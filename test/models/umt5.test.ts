// The UMT5 encoder on the CPU, checked two ways:
// - against an independent float64 implementation written here from the reference's semantics (it
//   runs every text_len position with the padding keys masked, as the reference does, where sfc runs
//   the prompt's tokens only), on random bf16 weights and ids: the tiny preset's sizes, and a longer
//   text_len whose offsets reach past the bias's max distance and span several key blocks;
// - against the project's PyTorch reference (test/reference/umt5.py, tiny preset, fixtures written on
//   the GPU machine into test/fixtures/umt5-tiny/).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { combinedSource } from '../../compiler/backend-cuda.js';
import { buildUmt5Bundle } from '../../compiler/bundle.js';
import { compileCudaAsync, findNvcc } from '../../compiler/nvcc.js';
import { loadModelPreset } from '../../configs/presets.js';
import { bf16 } from '../../dsl/dtypes.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { bucketTable, promptLengths, relativeBucket, Umt5Encoder, type Umt5Shape } from '../../models/text/umt5.js';
import type { TokenBatch } from '../../models/text/tokenizer.js';
import { relErr } from './wan-rollout.js';
import { loadReferenceEncoder, normals, randomWeights, readCasesMeta, replayCases } from './umt5-cases.js';

const preset = loadModelPreset('tiny');
const tiny: Umt5Shape = preset.text_encoder;
const dev = new CpuDevice();
const bundle = buildUmt5Bundle(tiny);

/** T5's bidirectional bucket, written independently of sfc's (float64; equal below max distance 128). */
function bucketF64(offset: number, buckets: number): number {
  const half = buckets / 2;
  const exact = half / 2;
  const n = Math.abs(offset);
  const side = offset > 0 ? half : 0;
  if (n < exact) return side + n;
  return side + Math.min(half - 1, exact + Math.floor((Math.log(n / exact) / Math.log(128 / exact)) * (half - exact)));
}

/**
 * The encoder in float64 as the reference runs it: all text_len positions (padding id 0), padding
 * keys masked with float32's lowest value, then rows past the prompt zeroed.
 */
function referenceF64(s: Umt5Shape, w: Map<string, Float64Array>, prompt: number[]): Float64Array {
  const T = s.text_len;
  const D = s.dim;
  const A = s.dim_attn;
  const H = s.num_heads;
  const hd = A / H;
  const F = s.ffn_dim;
  const ids = [...prompt, ...new Array<number>(T - prompt.length).fill(0)];
  const get = (n: string) => w.get(n)!;
  const lin = (x: Float64Array, wt: Float64Array, out: number, inp: number) => {
    const y = new Float64Array(T * out);
    for (let t = 0; t < T; t++)
      for (let o = 0; o < out; o++) {
        let acc = 0;
        for (let k = 0; k < inp; k++) acc += x[t * inp + k]! * wt[o * inp + k]!;
        y[t * out + o] = acc;
      }
    return y;
  };
  const norm = (x: Float64Array, g: Float64Array) => {
    const y = new Float64Array(T * D);
    for (let t = 0; t < T; t++) {
      let ms = 0;
      for (let k = 0; k < D; k++) ms += x[t * D + k]! ** 2;
      const r = 1 / Math.sqrt(ms / D + 1e-6);
      for (let k = 0; k < D; k++) y[t * D + k] = x[t * D + k]! * r * g[k]!;
    }
    return y;
  };
  const gelu = (z: number) => 0.5 * z * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (z + 0.044715 * z ** 3)));
  const emb = get('token_embedding.weight');
  let x = new Float64Array(T * D);
  ids.forEach((id, t) => x.set(emb.subarray(id * D, (id + 1) * D), t * D));
  const lowest = -3.4028234663852886e38;
  for (let i = 0; i < s.num_layers; i++) {
    const b = `blocks.${i}.`;
    const h = norm(x, get(`${b}norm1.weight`));
    const q = lin(h, get(`${b}attn.q.weight`), A, D);
    const k = lin(h, get(`${b}attn.k.weight`), A, D);
    const v = lin(h, get(`${b}attn.v.weight`), A, D);
    const table = get(`${b}pos_embedding.embedding.weight`);
    const o = new Float64Array(T * A);
    const sc = new Float64Array(T);
    for (let hh = 0; hh < H; hh++)
      for (let qi = 0; qi < T; qi++) {
        let mx = -Infinity;
        for (let kj = 0; kj < T; kj++) {
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += q[qi * A + hh * hd + d]! * k[kj * A + hh * hd + d]!;
          const bias = kj < prompt.length ? table[bucketF64(kj - qi, s.num_buckets) * H + hh]! : lowest;
          sc[kj] = dot + bias;
          mx = Math.max(mx, sc[kj]!);
        }
        let sum = 0;
        for (let kj = 0; kj < T; kj++) sum += sc[kj] = Math.exp(sc[kj]! - mx);
        for (let d = 0; d < hd; d++) {
          let acc = 0;
          for (let kj = 0; kj < T; kj++) acc += sc[kj]! * v[kj * A + hh * hd + d]!;
          o[qi * A + hh * hd + d] = acc / sum;
        }
      }
    const attn = lin(o, get(`${b}attn.o.weight`), D, A);
    x = x.map((val, j) => val + attn[j]!);
    const h2 = norm(x, get(`${b}norm2.weight`));
    const g = lin(h2, get(`${b}ffn.gate.0.weight`), F, D);
    const f1 = lin(h2, get(`${b}ffn.fc1.weight`), F, D);
    const ffn = lin(
      f1.map((val, j) => val * gelu(g[j]!)),
      get(`${b}ffn.fc2.weight`),
      D,
      F,
    );
    x = x.map((val, j) => val + ffn[j]!);
  }
  const y = norm(x, get('norm.weight'));
  y.fill(0, prompt.length * D);
  return y;
}

function randomIds(n: number, vocab: number, seed: number): number[] {
  return Array.from(normals(n, seed), (z) => 1 + (Math.floor(Math.abs(z) * 1e6) % (vocab - 1)));
}

describe('T5 relative position buckets (bidirectional, 32 buckets, max distance 128)', () => {
  it('exact near the query, logarithmic farther out, clamped past 128, keys after the query in the upper half', () => {
    const cases: [number, number][] = [
      [0, 0],
      [-1, 1],
      [1, 17],
      [-7, 7],
      [7, 23],
      [-8, 8],
      [-11, 8],
      [-12, 9],
      [-16, 10],
      [-32, 12],
      [-64, 14],
      [-127, 15],
      [-128, 15],
      [-5000, 15],
      [5000, 31],
      [64, 30],
    ];
    for (const [off, want] of cases) expect(relativeBucket(off, 32), `offset ${off}`).toBe(want);
  });

  it('agrees with an independent float64 formula on every offset up to 511, and lays out the kernel table', () => {
    for (let off = -511; off <= 511; off++) expect(relativeBucket(off, 32)).toBe(bucketF64(off, 32));
    const t = bucketTable(3, 32);
    expect(Array.from(t)).toEqual([2, 1, 0, 17, 18]);
  });
});

describe('UMT5 encoder (CPU) against an independent float64 implementation', () => {
  const check = (s: Umt5Shape, promptLen: number, seed: number) => {
    const w = randomWeights(s, seed);
    const enc = Umt5Encoder.load(dev, s, bundle, w.tensors);
    try {
      const ids = randomIds(promptLen, s.vocab_size, seed + 7);
      const ctx = enc.encode(ids);
      expect(ctx.shape).toEqual([s.text_len, s.dim]);
      expect(ctx.dtype).toBe(bf16);
      const got = ctx.toF32();
      ctx.dispose();
      const want = referenceF64(s, w.values, ids);
      expect(relErr(got, want)).toBeLessThan(2e-2);
      expect(got.subarray(promptLen * s.dim).every((v) => v === 0)).toBe(true);
    } finally {
      enc.dispose();
    }
  };

  it('tiny preset: a prompt of 11 of 16 tokens, and one filling text_len', () => {
    check(tiny, 11, 1);
    check(tiny, 16, 2);
  });

  it('a single token', () => {
    check(tiny, 1, 3);
  });

  it('text_len 300, a 200-token prompt: several key blocks and offsets past the max distance', () => {
    check({ ...tiny, text_len: 300 }, 200, 4);
  });
});

describe('UMT5 encoder: loading and inputs', () => {
  const w = randomWeights(tiny, 9);

  it('names every missing parameter and rejects mis-shaped ones', () => {
    const partial = new Map(w.tensors);
    partial.delete('blocks.1.pos_embedding.embedding.weight');
    partial.delete('norm.weight');
    expect(() => Umt5Encoder.load(dev, tiny, bundle, partial)).toThrow(
      /lacks 2 of the text encoder's 22 parameters: blocks\.1\.pos_embedding\.embedding\.weight, norm\.weight/,
    );
    const bad = new Map(w.tensors);
    const t = bad.get('blocks.0.ffn.fc1.weight')!;
    bad.set('blocks.0.ffn.fc1.weight', { ...t, shape: [tiny.dim, tiny.ffn_dim] });
    expect(() => Umt5Encoder.load(dev, tiny, bundle, bad)).toThrow(
      /'blocks\.0\.ffn\.fc1\.weight' has shape \[32, 64\] in the checkpoint, the model needs \[64, 32\]/,
    );
  });

  it('refuses a bundle built for other sizes', () => {
    const other = buildUmt5Bundle({ ...tiny, ffn_dim: 128 });
    expect(() => Umt5Encoder.load(dev, tiny, other, w.tensors)).toThrow(/built for FFN = 128, the preset has 64/);
  });

  it('checks ids, lengths and masks', () => {
    const enc = Umt5Encoder.load(dev, tiny, bundle, w.tensors);
    expect(() => enc.encode([])).toThrow(/1 to 16 tokens/);
    expect(() => enc.encode(new Array<number>(17).fill(1))).toThrow(/1 to 16 tokens \(text_len\), got 17/);
    const V = tiny.vocab_size;
    expect(() => enc.encode([1, V])).toThrow(`token 1 of the prompt is ${V}, outside the vocabulary [0, ${V})`);
    const batch = (mask: number[]): TokenBatch => ({
      batch: 1,
      textLen: 16,
      ids: new Int32Array(16).fill(1),
      mask: Uint8Array.from([...mask, ...new Array<number>(16 - mask.length).fill(0)]),
      lengths: [mask.length],
      dropped: [0],
      cleaned: [''],
    });
    expect(promptLengths(batch([1, 1, 1]))).toEqual([3]);
    expect(() => enc.encodeBatch(batch([1, 0, 1]))).toThrow(/not a run of ones followed by padding/);
    const [a] = enc.encodeBatch(batch([1, 1, 1]));
    const b = enc.encode([1, 1, 1]);
    expect(Array.from(a!.toF32())).toEqual(Array.from(b.toF32()));
    a!.dispose();
    b.dispose();
    expect(() =>
      enc.encodeBatch({ ...batch([1]), textLen: 8, ids: new Int32Array(8), mask: new Uint8Array(8) }),
    ).toThrow(/tokenized to 8 tokens, the text encoder's text_len is 16/);
    enc.dispose();
    expect(() => enc.encode([1])).toThrow(/released/);
  });
});

describe.skipIf(!findNvcc())('UMT5-XXL bundle compiled by nvcc for sm_90a', () => {
  it('every kernel and fused GEMM compiles with zero spills', async () => {
    const xxl = buildUmt5Bundle(loadModelPreset('Wan2.1-T2V-1.3B').text_encoder);
    expect(xxl.dims).toEqual({ DIM: 4096, DIM_ATTN: 4096, FFN: 10240, HEADS: 64, HEAD_DIM: 64 });
    const steps = Object.values(xxl.plans).flatMap((p) => p.steps);
    const gemms = steps.flatMap((s) => (s.kind === 'gemm' ? [s] : []));
    expect(gemms.map((g) => g.label)).toEqual([
      expect.stringMatching(/tanh/), // fc1 with the gate's GELU and product in its epilogue
      expect.stringMatching(/add/), // fc2 with the residual
    ]);
    const kernels = [
      ...steps.flatMap((s) => (s.kind === 'kernel' ? [s.artifact] : [])),
      ...gemms.flatMap((g) => g.fallback.flatMap((f) => (f.kind === 'kernel' ? [f.artifact] : []))),
      ...Object.values(xxl.kernels),
    ];
    const sources = [
      { name: 'umt5-kernels', source: combinedSource(kernels.flatMap((a) => a.cuda.map((v) => v.source))) },
      ...gemms.map((g) => ({ name: g.candidates[0]!.entry, source: g.candidates[0]!.source })),
    ];
    const results = await Promise.all(
      sources.map((x) => compileCudaAsync({ source: x.source, arch: 'sm_90a', name: `${x.name}.cu` })),
    );
    for (const r of results) {
      expect(r.reports.length).toBeGreaterThan(0);
      for (const k of r.reports) expect(k.spillStoreBytes + k.spillLoadBytes, k.name).toBe(0);
    }
  }, 300_000);
});

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'umt5-tiny');

describe.skipIf(!existsSync(join(fixtures, 'cases.json')))('UMT5 encoder (tiny) against the PyTorch reference', () => {
  it('every case within 2e-2, padding rows zero', () => {
    // fixtures made for other sizes than the preset's must be regenerated (see test/reference/umt5.py)
    expect(readCasesMeta(fixtures).shape).toEqual(tiny);
    const enc = loadReferenceEncoder(fixtures, dev, tiny, bundle);
    try {
      const r = replayCases(fixtures, enc);
      expect(r.length).toBeGreaterThan(0);
      for (const c of r) {
        expect(c.relErr, `prompt of ${c.length} tokens`).toBeLessThan(2e-2);
        expect(c.padMax).toBe(0);
      }
    } finally {
      enc.dispose();
    }
  });
});
