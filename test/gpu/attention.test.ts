// The sm_90a flash-attention template on the GPU against the float64 JS twin (attention-check.ts):
// random bf16 inputs, odd sizes, every mask mode, a KV cache with unused capacity, outputs poisoned first.
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { AttentionSpec } from '../../dsl/artifact.js';
import { attentionSm90 } from '../../compiler/templates/attention.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { attentionCaseLabel, checkAttention, type AttentionCase } from './attention-check.js';
import { noGpuReason, openDevice } from './gpu.js';

type Case = AttentionCase & { spec: AttentionSpec };

describe.skipIf(!!noGpuReason)('flash attention (sm_90a) on the GPU', () => {
  let dev: CudaDevice;
  beforeAll(() => {
    dev = openDevice();
  });
  afterAll(() => dev?.dispose());

  const cases: Case[] = [
    { spec: { input: 'bf16', headDim: 128, bc: 128, stages: 2 }, B: 1, Lq: 300, cap: 300, kvLen: 300, H: 2 },
    { spec: { input: 'bf16', headDim: 64, bc: 64, stages: 4 }, B: 2, Lq: 200, cap: 333, kvLen: 333, H: 3 },
    {
      spec: { input: 'bf16', headDim: 128, bc: 96, stages: 3 },
      B: 1,
      Lq: 390,
      cap: 390,
      kvLen: 390,
      H: 2,
      mask: { blockTokens: 130 },
    },
    {
      spec: { input: 'bf16', headDim: 128, bc: 128, stages: 2 },
      B: 1,
      Lq: 130,
      cap: 600,
      kvLen: 520,
      H: 2,
      mask: { blockTokens: 130, qOffset: 390 },
    },
    {
      spec: { input: 'bf16', headDim: 128, bc: 64, stages: 4 },
      B: 1,
      Lq: 520,
      cap: 520,
      kvLen: 520,
      H: 1,
      mask: { blockTokens: 130, windowTokens: 260, sinkTokens: 130 },
    },
    { spec: { input: 'f16', headDim: 128, bc: 128, stages: 2 }, B: 1, Lq: 77, cap: 64, kvLen: 1, H: 2 },
  ];
  for (const c of cases) {
    const art = attentionSm90(c.spec);
    it(attentionCaseLabel(art, c), () => checkAttention(dev, art, c));
  }
});
