// The flash-attention template: instantiations compile for sm_90a without spills; bad specs are
// rejected; the JS twin equals a direct float64 formula with an explicit mask matrix.
import { describe, expect, it } from 'vitest';
import type { AttentionSpec } from '../../dsl/artifact.js';
import { attentionFp8KeySlot } from '../../dsl/artifact.js';
import { bf16, e4m3, f32 } from '../../dsl/dtypes.js';
import { attentionSharedBytes, attentionSm90 } from '../../compiler/templates/attention.js';
import { compileCudaAsync, findNvcc } from '../../compiler/nvcc.js';
import { countSm90Opcodes } from '../../compiler/sass.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { attentionVisible, runAttention } from '../../runtime/attention.js';
import { e4m3ScaleOf, fp8VCapacity, quantizeForAttention } from '../../runtime/attention-fp8.js';
import { Tensor } from '../../runtime/tensor.js';
import { mulberry32 } from '../helpers.js';

const nvcc = findNvcc();

describe('flash-attention template (sm_90a)', () => {
  const specs: AttentionSpec[] = [
    { input: 'bf16', headDim: 128, bc: 128, stages: 2 },
    { input: 'bf16', headDim: 128, bc: 64, stages: 4 },
    { input: 'f16', headDim: 64, bc: 128, stages: 3 },
    { input: 'bf16', headDim: 128, bc: 96, stages: 3 },
  ];
  it.skipIf(!nvcc)(
    'compiles for sm_90a with no spills or stack',
    async () => {
      const results = await Promise.all(
        specs.map((s) => {
          const art = attentionSm90(s);
          return compileCudaAsync({ source: art.source, arch: 'sm_90a', name: `${art.entry}.cu` }).then((r) => ({
            art,
            r,
          }));
        }),
      );
      for (const { art, r } of results) {
        const rep = r.reports[0]!;
        expect(rep.name).toBe(art.entry);
        expect(rep.spillStoreBytes + rep.spillLoadBytes + rep.stackBytes, art.entry).toBe(0);
        expect(r.log).not.toMatch(/serializ|C7508|C7510/i);
        // both products on wgmma: QK^T D/16 k-steps, PV bc/16 k-steps (per pipelined copy)
        const ops = countSm90Opcodes(r.cubin, art.entry);
        expect(ops.HGMMA, art.entry).toBeGreaterThanOrEqual(art.spec.headDim / 16 + art.spec.bc / 16);
        expect(ops.UTMALDG).toBeGreaterThanOrEqual(3);
      }
    },
    240_000,
  );

  it.skipIf(!nvcc)(
    'FP8: compiles for sm_90a with no spills, both products on QGMMA; the quantise kernels compile',
    async () => {
      const arts = [
        attentionSm90({ input: 'e4m3', headDim: 128, bc: 128, stages: 3 }),
        attentionSm90({
          input: 'e4m3',
          headDim: 128,
          bc: 128,
          stages: 4,
          pingpong: true,
          polyExp: 2,
          lazyRescale: true,
          rowSumMma: true,
        }),
      ];
      const [rq, ...rs] = await Promise.all([
        compileCudaAsync({ source: arts[0]!.quantize!.source, arch: 'sm_90a', name: 'sfc_attn_quant.cu' }),
        ...arts.map((a) => compileCudaAsync({ source: a.source, arch: 'sm_90a', name: `${a.entry}.cu` })),
      ]);
      arts.forEach((art, i) => {
        const r = rs[i]!;
        const rep = r.reports[0]!;
        expect(rep.spillStoreBytes + rep.spillLoadBytes + rep.stackBytes, art.entry).toBe(0);
        expect(r.log).not.toMatch(/serializ|C7508|C7510|warning/i);
        const ops = countSm90Opcodes(r.cubin, art.entry);
        // QK^T 4 k-steps of 32, PV 4 k-steps of 32 keys (per pipelined copy); no 16-bit wgmma
        expect(ops.QGMMA, art.entry).toBeGreaterThanOrEqual(8);
        expect(ops.HGMMA).toBe(0);
        expect(ops.UTMALDG).toBeGreaterThanOrEqual(3);
      });
      const q = arts[0]!.quantize!;
      expect(rq!.reports.map((x) => x.name).sort()).toEqual([q.tokens, q.vT].sort());
      for (const x of rq!.reports) expect(x.spillStoreBytes + x.stackBytes).toBe(0);
    },
    240_000,
  );

  it('rejects specs it cannot instantiate', () => {
    expect(() => attentionSm90({ input: 'e4m3', headDim: 64, bc: 128, stages: 2 })).toThrow(/FP8 attention/);
    expect(() => attentionSm90({ input: 'e4m3', headDim: 128, bc: 64, stages: 2 })).toThrow(/FP8 attention/);
    expect(() => attentionSm90({ input: 'bf16', headDim: 96 as 64, bc: 128, stages: 2 })).toThrow(/head dim/);
    expect(() => attentionSm90({ input: 'bf16', headDim: 128, bc: 32 as 64, stages: 2 })).toThrow(/KV tile/);
    expect(() => attentionSm90({ input: 'bf16', headDim: 128, bc: 128, stages: 4 })).toThrow(/shared memory/);
    expect(attentionSharedBytes({ headDim: 128, bc: 128, stages: 2 })).toBeLessThan(232448);
  });
});

describe('attention JS twin', () => {
  const cpu = new CpuDevice();
  const rnd = mulberry32(9);
  const randn = (n: number) =>
    Float64Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd()));

  it('follows the mask rules', () => {
    // chunks of 4 tokens: query 5 (chunk 1) sees keys 0..7
    expect(attentionVisible({ blockTokens: 4 }, 12, 5, 7)).toBe(true);
    expect(attentionVisible({ blockTokens: 4 }, 12, 5, 8)).toBe(false);
    // a chunk placed at 8 in a cache of 12 sees everything
    expect(attentionVisible({ blockTokens: 4, qOffset: 8 }, 12, 0, 11)).toBe(true);
    // window of 8 back from the block end (12) with a sink of 2: keys 0, 1 and 4..11
    const vis = Array.from({ length: 12 }, (_, k) =>
      attentionVisible({ blockTokens: 4, qOffset: 8, windowTokens: 8, sinkTokens: 2 }, 12, 0, k),
    );
    expect(vis).toEqual([true, true, false, false, true, true, true, true, true, true, true, true]);
    expect(attentionVisible({}, 5, 0, 5)).toBe(false); // past kvLen
  });

  it('equals softmax(QK^T * scale + mask) V in float64, with the log-sum-exp', () => {
    const [B, Lq, cap, kvLen, H, D] = [2, 6, 9, 8, 2, 4];
    const q = Tensor.from(cpu, f32, [B, Lq, H, D], randn(B * Lq * H * D));
    const k = Tensor.from(cpu, f32, [B, cap, H, D], randn(B * cap * H * D));
    const v = Tensor.from(cpu, f32, [B, cap, H, D], randn(B * cap * H * D));
    const o = Tensor.empty(cpu, f32, [B, Lq, H, D]);
    const lse = Tensor.empty(cpu, f32, [B, H, Lq]);
    const mask = { blockTokens: 3, qOffset: 2, windowTokens: 4, sinkTokens: 1 };
    const art = attentionSm90({ input: 'bf16', headDim: 64, bc: 64, stages: 2 });
    // the twin is dtype-agnostic; run it directly on f32 tensors
    const fake = { ...art, spec: { ...art.spec, input: 'f32' as 'bf16', headDim: D as 64 } };
    runAttention(fake, { q, k, v, o, lse, kvLen, mask, scale: 0.7 });
    const Q = q.toArray(),
      K = k.toArray(),
      V = v.toArray(),
      O = o.toArray(),
      L = lse.toArray();
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < Lq; i++) {
          const w: number[] = [];
          for (let j = 0; j < kvLen; j++) {
            // explicit rule: block end of absolute position 2 + i, window 4 back from it, sink 1
            const end = Math.min(kvLen, (Math.floor((2 + i) / 3) + 1) * 3);
            const ok = j < end && (j >= end - 4 || j < 1);
            let s = 0;
            for (let x = 0; x < D; x++)
              s += Number(Q[((b * Lq + i) * H + h) * D + x]) * Number(K[((b * cap + j) * H + h) * D + x]);
            w.push(ok ? Math.exp(0.7 * s) : 0);
          }
          const sum = w.reduce((x, y) => x + y, 0);
          expect(Number(L[(b * H + h) * Lq + i])).toBeCloseTo(Math.log(sum), 4);
          for (let x = 0; x < D; x++) {
            let acc = 0;
            for (let j = 0; j < kvLen; j++) acc += w[j]! * Number(V[((b * cap + j) * H + h) * D + x]);
            expect(Number(O[((b * Lq + i) * H + h) * D + x])).toBeCloseTo(acc / sum, 4);
          }
        }
  });

  it('FP8: quantises Q, K and V (transposed, key-permuted) and equals the formula on the dequantised values', () => {
    // the permutation: slots 4q..4q+3 of each 16 hold keys 2q, 2q+1, 2q+8, 2q+9
    expect(Array.from({ length: 16 }, (_, k) => attentionFp8KeySlot(k))).toEqual([
      0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
    ]);
    const [B, Lq, cap, kvLen, H] = [1, 5, 37, 35, 2];
    const D = 128 as const;
    const art = attentionSm90({ input: 'e4m3', headDim: D, bc: 128, stages: 2 });
    const gen = (n: number, amp: number) => Float32Array.from(randn(n), (x) => x * amp);
    const [qv, kv, vv] = [gen(B * Lq * H * D, 3), gen(B * cap * H * D, 0.5), gen(B * cap * H * D, 2)];
    const q = Tensor.from(cpu, bf16, [B, Lq, H, D], qv);
    const k = Tensor.from(cpu, bf16, [B, cap, H, D], kv);
    const v = Tensor.from(cpu, bf16, [B, cap, H, D], vv);
    const amax = (t: Tensor) => (t.toArray() as Float32Array).reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    const scales = { q: e4m3ScaleOf(amax(q)), k: e4m3ScaleOf(amax(k)), v: e4m3ScaleOf(amax(v)) };
    const q8 = Tensor.empty(cpu, e4m3, q.shape);
    const k8 = Tensor.empty(cpu, e4m3, k.shape);
    const v8 = Tensor.empty(cpu, e4m3, [B, H, D, fp8VCapacity(cap)]);
    quantizeForAttention(art, { x: q, out: q8, scale: scales.q });
    quantizeForAttention(art, { x: k, out: k8, scale: scales.k });
    quantizeForAttention(art, { x: v, out: v8, scale: scales.v, transpose: true });
    const Q = q8.toArray() as Float32Array;
    const K = k8.toArray() as Float32Array;
    const V = v8.toArray() as Float32Array;
    // within e4m3's precision of the bf16 values (3 mantissa bits: half an ulp is 2^-4 relative)
    const vb = v.toArray() as Float32Array;
    for (const [j, x] of [
      [0, 0],
      [17, 5],
      [36, 127],
    ])
      for (let h = 0; h < H; h++) {
        const want = vb[(j! * H + h) * D + x!]!;
        const got = V[(h * D + x!) * v8.shape[3]! + attentionFp8KeySlot(j!)]! * scales.v;
        expect(Math.abs(got - want)).toBeLessThanOrEqual(Math.max(Math.abs(want) / 16, scales.v * 2 ** -9));
      }
    const mask = { blockTokens: 7, qOffset: 20, windowTokens: 12, sinkTokens: 3 };
    const o = Tensor.empty(cpu, bf16, [B, Lq, H, D]);
    const lse = Tensor.empty(cpu, f32, [B, H, Lq]);
    runAttention(art, { q: q8, k: k8, v: v8, o, lse, kvLen, mask, scales, scale: 0.1 });
    const O = o.toArray() as Float32Array;
    const L = lse.toArray() as Float32Array;
    for (let h = 0; h < H; h++)
      for (let i = 0; i < Lq; i++) {
        const w: number[] = [];
        for (let j = 0; j < kvLen; j++) {
          let s = 0;
          for (let x = 0; x < D; x++) s += Q[(i * H + h) * D + x]! * scales.q * K[(j * H + h) * D + x]! * scales.k;
          w.push(attentionVisible(mask, kvLen, i, j) ? Math.exp(0.1 * s) : 0);
        }
        const sum = w.reduce((a, b) => a + b, 0);
        expect(L[h * Lq + i]!).toBeCloseTo(Math.log(sum), 3);
        for (const x of [0, 63, 127]) {
          let acc = 0;
          for (let j = 0; j < kvLen; j++)
            acc += w[j]! * V[(h * D + x) * v8.shape[3]! + attentionFp8KeySlot(j)]! * scales.v;
          const want = acc / sum;
          expect(Math.abs(O[(i * H + h) * D + x]! - want)).toBeLessThanOrEqual(Math.abs(want) / 128 + 1e-6);
        }
      }
  });
});
