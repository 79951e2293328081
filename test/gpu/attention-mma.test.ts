// The mma.sync flash-attention template (arch sm_80) on the GPU against the float64 JS twin
// (attention-check.ts): every mask mode, odd sizes, D = 64 and 128, both query tiles. On a Hopper it
// runs through its PTX (compute_80, JIT-compiled by the driver). Then the timing on the model's shapes
// next to the sm_90a template (informative: sm_80 code on a newer GPU), written to
// $SFC_BENCH_OUT/attention-mma-<device>.json; PyTorch's SDPA comes from bench/reference/attention.py
// in the same device session.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchAttention } from '../../bench/kernels/attention.js';
import type { AttentionSpec } from '../../dsl/artifact.js';
import { attentionMma } from '../../compiler/templates/attention-mma.js';
import { attentionSm90 } from '../../compiler/templates/attention.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { ATTENTION_SHAPES, attentionCaseLabel, checkAttention, type AttentionCase } from './attention-check.js';
import { noGpuReason, openDevice, reportResult } from './gpu.js';

type Case = AttentionCase & { spec: AttentionSpec };

describe.skipIf(!!noGpuReason)('flash attention (mma.sync, sm_80 code) on the GPU', () => {
  let dev: CudaDevice;
  beforeAll(() => {
    dev = openDevice();
  });
  afterAll(() => dev?.dispose());

  const d128: AttentionSpec = { input: 'bf16', headDim: 128, bc: 64, stages: 2, bm: 128 };
  const d64: AttentionSpec = { input: 'bf16', headDim: 64, bc: 64, stages: 4, bm: 64 };
  // one instantiation per shared geometry (ATTENTION_SHAPES, in order), then window and sink masks
  // without blocks, and all of them with a query offset and two batches
  const specs: AttentionSpec[] = [
    d128,
    d64,
    { ...d128, bm: 64 },
    { input: 'f16', headDim: 64, bc: 128, stages: 2 },
    d128,
    { ...d128, input: 'f16' },
  ];
  const cases: Case[] = [
    ...ATTENTION_SHAPES.map((shape, i) => ({ spec: specs[i]!, ...shape })),
    {
      spec: { input: 'bf16', headDim: 64, bc: 64, stages: 3, bm: 128 },
      B: 1,
      Lq: 333,
      cap: 333,
      kvLen: 333,
      H: 2,
      mask: { windowTokens: 100, sinkTokens: 10 },
    },
    {
      spec: { ...d128, bm: 64 },
      B: 2,
      Lq: 131,
      cap: 700,
      kvLen: 517,
      H: 3,
      mask: { blockTokens: 131, qOffset: 386, windowTokens: 200, sinkTokens: 3 },
    },
  ];
  for (const c of cases) {
    const art = attentionMma(c.spec);
    it(attentionCaseLabel(art, c), () => checkAttention(dev, art, c));
  }

  it('timing on the model shapes (Lq 4680, 12 heads x 128), next to the sm_90a template', () => {
    const mma = [d128, { ...d128, bm: 64 as const }].map(attentionMma);
    const sm90 = attentionSm90({ input: 'bf16', headDim: 128, bc: 128, stages: 3 });
    const r = benchAttention(dev, [...mma, sm90]);
    const rows = r.results.map((x) => {
      const v = x.variants as Record<string, number>;
      const tf = (ms: number) => (x.flops as number) / (ms * 1e9);
      const best = mma.map((a) => a.name).reduce((a, b) => (v[b]! < v[a]! ? b : a));
      return {
        Lq: x.Lq,
        Lkv: x.Lkv,
        mma: { chosen: best, ms: v[best], tflops: tf(v[best]!) },
        sm90: { name: sm90.name, ms: v[sm90.name], tflops: tf(v[sm90.name]!) },
        variantsMs: v,
      };
    });
    reportResult('attention-mma', dev, {
      note: 'sm_80 code (compute_80 PTX JIT-compiled by the driver) on this GPU: informative only',
      command: process.env.SFC_BENCH_COMMAND ?? 'test/gpu/attention-mma.test.ts',
      results: rows,
    });
    for (const x of rows) expect(x.mma.tflops).toBeGreaterThan(0);
  }, 300_000);
});
