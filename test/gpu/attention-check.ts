// Shared by the GPU tests of the flash-attention templates (attention.test.ts for sm_90a,
// attention-mma.test.ts for mma.sync): one case run on the GPU against the float64 JS twin (itself
// checked against a direct formula in test/compiler/attention.test.ts) with random inputs, a KV cache
// with unused capacity, outputs and LSE poisoned with NaN first.
import { expect } from 'vitest';
import type { AttentionArtifact } from '../../dsl/artifact.js';
import { bf16, f16, f32 } from '../../dsl/dtypes.js';
import { CpuDevice } from '../../runtime/cpu.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { runAttention, type AttentionMask } from '../../runtime/attention.js';
import { Tensor } from '../../runtime/tensor.js';
import { randn, relErr } from './gpu.js';

export interface AttentionCase {
  B: number;
  Lq: number;
  /** keys the cache has room for; kvLen of them are used */
  cap: number;
  kvLen: number;
  H: number;
  mask?: AttentionMask;
}

/**
 * The geometries every attention template is checked on: no mask (odd lengths, two batches), chunk-causal
 * blocks, a chunk's queries at the end of a longer cache, a local window with sink, and a cache of one key
 * (fewer than a tile, queries past it).
 */
export const ATTENTION_SHAPES: readonly AttentionCase[] = [
  { B: 1, Lq: 300, cap: 300, kvLen: 300, H: 2 },
  { B: 2, Lq: 200, cap: 333, kvLen: 333, H: 3 },
  { B: 1, Lq: 390, cap: 390, kvLen: 390, H: 2, mask: { blockTokens: 130 } },
  { B: 1, Lq: 130, cap: 600, kvLen: 520, H: 2, mask: { blockTokens: 130, qOffset: 390 } },
  { B: 1, Lq: 520, cap: 520, kvLen: 520, H: 1, mask: { blockTokens: 130, windowTokens: 260, sinkTokens: 130 } },
  { B: 1, Lq: 77, cap: 64, kvLen: 1, H: 2 },
];

export function attentionCaseLabel(art: AttentionArtifact, c: AttentionCase): string {
  return `${art.name}: B=${c.B} Lq=${c.Lq} kv=${c.kvLen}/${c.cap} H=${c.H} mask ${JSON.stringify(c.mask ?? {})}`;
}

/** Runs `art` on the GPU and checks O (relative error < 1e-2) and the LSE (< 2e-2 absolute). */
export function checkAttention(dev: CudaDevice, art: AttentionArtifact, c: AttentionCase): void {
  const cpu = new CpuDevice();
  const label = attentionCaseLabel(art, c);
  const D = art.spec.headDim;
  const dt = art.spec.input === 'bf16' ? bf16 : f16;
  const seed = c.Lq * 31 + c.kvLen;
  const q = Tensor.from(dev, dt, [c.B, c.Lq, c.H, D], randn(c.B * c.Lq * c.H * D, seed));
  const k = Tensor.from(dev, dt, [c.B, c.cap, c.H, D], randn(c.B * c.cap * c.H * D, seed + 1));
  const v = Tensor.from(dev, dt, [c.B, c.cap, c.H, D], randn(c.B * c.cap * c.H * D, seed + 2));
  const o = Tensor.empty(dev, dt, [c.B, c.Lq, c.H, D]);
  const lse = Tensor.empty(dev, f32, [c.B, c.H, c.Lq]);
  dev.fill(o.storage, 0, o.nbytes, 0xff);
  dev.fill(lse.storage, 0, lse.nbytes, 0xff);
  runAttention(art, { q, k, v, o, lse, kvLen: c.kvLen, mask: c.mask });
  const ref = { o: Tensor.empty(cpu, dt, o.shape), lse: Tensor.empty(cpu, f32, lse.shape) };
  runAttention(art, { q: q.to(cpu), k: k.to(cpu), v: v.to(cpu), o: ref.o, lse: ref.lse, kvLen: c.kvLen, mask: c.mask });
  const got = o.toArray() as Float32Array;
  expect(got.every(Number.isFinite), 'every output written').toBe(true);
  expect(relErr(got, ref.o.toArray() as Float32Array), label).toBeLessThan(1e-2);
  const gl = lse.toArray() as Float32Array;
  const rl = ref.lse.toArray() as Float32Array;
  let worst = 0;
  for (let i = 0; i < rl.length; i++) worst = Math.max(worst, gl[i] === rl[i] ? 0 : Math.abs(gl[i]! - rl[i]!));
  expect(worst, 'log-sum-exp').toBeLessThan(2e-2);
  [q, k, v, o, lse].forEach((t) => t.dispose());
}
