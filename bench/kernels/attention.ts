// Self-attention of Wan2.1-1.3B for one 3-frame chunk (4680 queries, 12 heads x 128) over a KV cache
// of 1, 4 and 7 chunks (4680, 18720, 32760 keys), bf16: sfc's sm_90a flash-attention template (KV tile
// picked per shape from a few candidates). FLOPs = 4 Lq Lkv H D (every query sees every cached key,
// as in Self-Forcing inference). Median of 20 CUDA-event timings of 10 back-to-back launches after
// warm-up, random inputs. PyTorch's scaled_dot_product_attention comes from
// bench/reference/attention.py in the same device session.
import { attentionSm90 } from '../../compiler/templates/attention.js';
import type { AttentionArtifact, AttentionSpec } from '../../dsl/artifact.js';
import { bf16 } from '../../dsl/dtypes.js';
import { CudaDevice } from '../../runtime/cuda.js';
import { runAttention } from '../../runtime/attention.js';
import { Tensor } from '../../runtime/tensor.js';
import { median, stamp, writeResult } from '../harness.js';

const [LQ, H, D] = [4680, 12, 128];
const LKV = [4680, 18720, 32760];

function timeMs(dev: CudaDevice, fn: () => void, reps = 20): number {
  for (let i = 0; i < 3; i++) fn();
  const out: number[] = [];
  for (let i = 0; i < reps; i++)
    out.push(
      dev.time(() => {
        for (let j = 0; j < 10; j++) fn();
      }) / 10,
    );
  return median(out);
}

function random(dev: CudaDevice, shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  let st = seed >>> 0 || 1;
  const u = () => ((st = (Math.imul(st, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  for (let i = 0; i < n; i++) v[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return Tensor.from(dev, bf16, shape, v);
}

const SM90_SPECS: AttentionSpec[] = [
  { input: 'bf16', headDim: 128, bc: 128, stages: 2 },
  { input: 'bf16', headDim: 128, bc: 128, stages: 3 },
  { input: 'bf16', headDim: 128, bc: 96, stages: 3 },
  { input: 'bf16', headDim: 128, bc: 64, stages: 4 },
];

/** Times each of `arts` (default: the sm_90a candidates) on the model shapes; `chosen` is the fastest. */
export function benchAttention(dev: CudaDevice, arts: AttentionArtifact[] = SM90_SPECS.map(attentionSm90)) {
  const q = random(dev, [1, LQ, H, D], 1);
  const o = Tensor.empty(dev, bf16, [1, LQ, H, D]);
  const results: Record<string, unknown>[] = [];
  for (const lkv of LKV) {
    const k = random(dev, [1, lkv, H, D], 2);
    const v = random(dev, [1, lkv, H, D], 3);
    const flops = 4 * LQ * lkv * H * D;
    const variants: Record<string, number> = {};
    for (const art of arts) variants[art.name] = timeMs(dev, () => runAttention(art, { q, k, v, o }));
    const [best, ms] = Object.entries(variants).reduce((a, b) => (b[1] < a[1] ? b : a));
    results.push({ Lq: LQ, Lkv: lkv, H, D, flops, chosen: best, ms, tflops: flops / (ms * 1e9), variants });
    k.dispose();
    v.dispose();
  }
  q.dispose();
  o.dispose();
  return { results };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dev = CudaDevice.open(0);
  const r = benchAttention(dev);
  writeResult(`kernels-attention-${dev.info.name.replace(/\W+/g, '_')}`, { ...stamp(dev), ...r });
  for (const x of r.results)
    console.log(
      `attention Lq ${x.Lq} Lkv ${x.Lkv}: sfc ${(x.tflops as number).toFixed(0)} TFLOP/s [${x.chosen}] ${JSON.stringify(x.variants)}`,
    );
}
