// The flash-attention template: instantiations compile for sm_90a without spills; bad specs are
// rejected; the JS twin equals a direct float64 formula with an explicit mask matrix.
import { describe, expect, it } from 'vitest';
import type { AttentionSpec } from '../../dsl/artifact.js';
import { f32 } from '../../dsl/dtypes.js';
import { attentionSharedBytes, attentionSm90 } from '../../compiler/templates/attention.js';
import { compileCudaAsync, findNvcc } from '../../compiler/nvcc.js';
import { countSm90Opcodes } from '../../compiler/sass.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { attentionVisible, runAttention } from '../../runtime/attention.js';
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

  it('rejects specs it cannot instantiate', () => {
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
});
