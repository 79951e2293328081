// The sm_90a flash-attention template on the GPU against the float64 JS twin (attention-check.ts):
// random bf16 inputs, odd sizes, every mask mode, a KV cache with unused capacity, outputs poisoned first.
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { AttentionSpec } from '../../dsl/artifact.js';
import { attentionSm90 } from '../../compiler/templates/attention.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { ATTENTION_SHAPES, attentionCaseLabel, checkAttention, type AttentionCase } from './attention-check.js';
import { noGpuReason, openDevice } from './gpu.js';

type Case = AttentionCase & { spec: AttentionSpec };

describe.skipIf(!!noGpuReason)('flash attention (sm_90a) on the GPU', () => {
  let dev: CudaDevice;
  beforeAll(() => {
    dev = openDevice();
  });
  afterAll(() => dev?.dispose());

  // one instantiation per shared geometry (ATTENTION_SHAPES, in order)
  const specs: AttentionSpec[] = [
    { input: 'bf16', headDim: 128, bc: 128, stages: 2 },
    { input: 'bf16', headDim: 64, bc: 64, stages: 4 },
    { input: 'bf16', headDim: 128, bc: 96, stages: 3 },
    { input: 'bf16', headDim: 128, bc: 128, stages: 2 },
    { input: 'bf16', headDim: 128, bc: 64, stages: 4 },
    { input: 'f16', headDim: 128, bc: 128, stages: 2 },
  ];
  const cases: Case[] = ATTENTION_SHAPES.map((shape, i) => ({ spec: specs[i]!, ...shape }));
  for (const c of cases) {
    const art = attentionSm90(c.spec);
    it(attentionCaseLabel(art, c), () => checkAttention(dev, art, c));
  }
});
