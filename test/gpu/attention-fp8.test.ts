// FP8 (e4m3) flash attention (sm_90a) on the GPU: the quantise kernels against the CPU's
// quantisation (bit for bit, V's transposition and key permutation included), then the kernel
// against the float64 JS twin on the same e4m3 inputs dequantised, across the mask modes and odd
// sizes, outputs and LSE poisoned with NaN first. With SFC_BENCH_OUT set, also times FP8 against the
// bf16 template on the model's shapes and writes attention-fp8-<device>.json there.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attentionSm90 } from '../../compiler/templates/attention.js';
import { bf16, e4m3, f32 } from '../../dsl/dtypes.js';
import { runAttention } from '../../runtime/attention.js';
import { e4m3ScaleOf, fp8VCapacity, quantizeForAttention } from '../../runtime/attention-fp8.js';
import { CpuDevice } from '../../runtime/cpu.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { Tensor } from '../../runtime/tensor.js';
import { ATTENTION_SHAPES, attentionCaseLabel, checkAttention, type AttentionCase } from './attention-check.js';
import { noGpuReason, openDevice, randn, relErr, reportResult } from './gpu.js';

const amax = (t: Tensor) => (t.toArray() as Float32Array).reduce((a, x) => Math.max(a, Math.abs(x)), 0);

describe.skipIf(!!noGpuReason)('FP8 flash attention (sm_90a) on the GPU', () => {
  let dev: CudaDevice;
  const cpu = new CpuDevice();
  beforeAll(() => {
    dev = openDevice();
  });
  afterAll(() => dev?.dispose());

  // inputs of different magnitudes, so that the scales matter
  const cases: (AttentionCase & { stages: number })[] = ATTENTION_SHAPES.map((shape, i) => ({
    stages: [2, 4, 3, 2, 5, 2][i]!,
    ...shape,
  }));
  // each case plain and (3 stages) with the template's options (ping-pong, exponentials on the FMA units, lazy
  // rescaling, row sums from the tensor cores)
  const variants = [
    {},
    { stages: 3, lazyRescale: true },
    { stages: 3, rowSumMma: true },
    { stages: 3, pingpong: true, polyExp: 4, lazyRescale: true, rowSumMma: true },
  ];
  for (const c of cases)
    for (const x of variants) {
      const art = attentionSm90({ input: 'e4m3', headDim: 128, bc: 128, stages: c.stages, ...x });
      const label = `${art.name}: B=${c.B} Lq=${c.Lq} kv=${c.kvLen}/${c.cap} H=${c.H} mask ${JSON.stringify(c.mask ?? {})}`;
      it(label, () => {
        const D = 128;
        const seed = c.Lq * 37 + c.kvLen;
        const gen = (n: number, s: number, amp: number) => Float64Array.from(randn(n, s), (x) => x * amp);
        const q = Tensor.from(dev, bf16, [c.B, c.Lq, c.H, D], gen(c.B * c.Lq * c.H * D, seed, 4));
        const k = Tensor.from(dev, bf16, [c.B, c.cap, c.H, D], gen(c.B * c.cap * c.H * D, seed + 1, 0.25));
        const v = Tensor.from(dev, bf16, [c.B, c.cap, c.H, D], gen(c.B * c.cap * c.H * D, seed + 2, 3));
        const scales = { q: e4m3ScaleOf(amax(q)), k: e4m3ScaleOf(amax(k)), v: e4m3ScaleOf(amax(v)) };
        const vShape = [c.B, c.H, D, fp8VCapacity(c.cap)];
        const q8 = Tensor.empty(dev, e4m3, q.shape);
        const k8 = Tensor.empty(dev, e4m3, k.shape);
        const v8 = Tensor.empty(dev, e4m3, vShape);
        for (const t of [q8, k8, v8]) dev.fill(t.storage, 0, t.nbytes, 0xff); // e4m3 NaN
        quantizeForAttention(art, { x: q, out: q8, scale: scales.q });
        quantizeForAttention(art, { x: k, out: k8, scale: scales.k });
        quantizeForAttention(art, { x: v, out: v8, scale: scales.v, transpose: true });
        const ref8 = {
          q: Tensor.empty(cpu, e4m3, q.shape),
          k: Tensor.empty(cpu, e4m3, k.shape),
          v: Tensor.empty(cpu, e4m3, vShape),
        };
        quantizeForAttention(art, { x: q.to(cpu), out: ref8.q, scale: scales.q });
        quantizeForAttention(art, { x: k.to(cpu), out: ref8.k, scale: scales.k });
        quantizeForAttention(art, { x: v.to(cpu), out: ref8.v, scale: scales.v, transpose: true });
        for (const [g, r, what] of [
          [q8, ref8.q, 'q'],
          [k8, ref8.k, 'k'],
          [v8, ref8.v, 'v'],
        ] as const) {
          const a = g.toRaw() as Uint8Array;
          const b = r.toRaw() as Uint8Array;
          let bad = 0;
          for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) bad++;
          expect(bad, `quantised ${what}: bytes unlike the CPU's`).toBe(0);
        }
        const o = Tensor.empty(dev, bf16, [c.B, c.Lq, c.H, D]);
        const lse = Tensor.empty(dev, f32, [c.B, c.H, c.Lq]);
        dev.fill(o.storage, 0, o.nbytes, 0xff);
        dev.fill(lse.storage, 0, lse.nbytes, 0xff);
        runAttention(art, { q: q8, k: k8, v: v8, o, lse, kvLen: c.kvLen, mask: c.mask, scales });
        const ref = { o: Tensor.empty(cpu, bf16, o.shape), lse: Tensor.empty(cpu, f32, lse.shape) };
        runAttention(art, { ...ref8, o: ref.o, lse: ref.lse, kvLen: c.kvLen, mask: c.mask, scales });
        const got = o.toArray() as Float32Array;
        expect(got.every(Number.isFinite), 'every output written').toBe(true);
        // The kernel rounds P (in [0, 256] after its 2^8 shift) to e4m3: 3 mantissa bits, a relative
        // error of at most 2^-4 per weight and about 2.5% RMS, which O = sum p v / sum p inherits for
        // diffuse rows (the weights' errors are independent); plus the bf16 output rounding (0.4%).
        const err = relErr(got, ref.o.toArray() as Float32Array);
        console.log(`${label}: relative error ${err.toExponential(2)}`);
        expect(err, label).toBeLessThan(0.05);
        // the row sums are of the f32 P, so the log-sum-exp is as exact as in bf16
        const gl = lse.toArray() as Float32Array;
        const rl = ref.lse.toArray() as Float32Array;
        let worst = 0;
        for (let i = 0; i < rl.length; i++) worst = Math.max(worst, gl[i] === rl[i] ? 0 : Math.abs(gl[i]! - rl[i]!));
        expect(worst, 'log-sum-exp').toBeLessThan(2e-2);
        [q, k, v, q8, k8, v8, o, lse].forEach((t) => t.dispose());
      });
    }

  // the ping-pong on the bf16 template (its other cases are in attention.test.ts)
  for (const c of cases.slice(1, 5)) {
    const art = attentionSm90({ input: 'bf16', headDim: 128, bc: 128, stages: 3, pingpong: true });
    it(attentionCaseLabel(art, c), () => checkAttention(dev, art, c));
  }

  // Timing (with SFC_BENCH_OUT): one 3-frame chunk of Wan2.1-1.3B self-attention, Lq 4680, 12 x 128,
  // over a KV cache of 32760 tokens of which the first 4680, 18720 or 32760 are used; FP8 (several
  // ring depths) and the bf16 template in the same process. Median of 20 CUDA-event timings of 10
  // back-to-back launches after 3 warm-up launches, random inputs. FLOPs = 4 Lq Lkv H D.
  it.skipIf(!process.env.SFC_BENCH_OUT)(
    'FP8 vs bf16 timing on the model shapes',
    () => {
      const [LQ, H, D, CAP] = [4680, 12, 128, 32760];
      const timeMs = (fn: () => void) => {
        for (let i = 0; i < 3; i++) fn();
        const t: number[] = [];
        for (let r = 0; r < 20; r++)
          t.push(
            dev.time(() => {
              for (let j = 0; j < 10; j++) fn();
            }) / 10,
          );
        return t.sort((a, b) => a - b)[10]!;
      };
      const rand = (n: number, seed: number) => {
        let st = seed;
        const u = () => ((st = (Math.imul(st, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
        const out = new Float32Array(n);
        for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
        return out;
      };
      const q = Tensor.from(dev, bf16, [1, LQ, H, D], rand(LQ * H * D, 1));
      const k = Tensor.from(dev, bf16, [1, CAP, H, D], rand(CAP * H * D, 2));
      const v = Tensor.from(dev, bf16, [1, CAP, H, D], rand(CAP * H * D, 3));
      const o = Tensor.empty(dev, bf16, [1, LQ, H, D]);
      const bf = [attentionSm90({ input: 'bf16', headDim: 128, bc: 128, stages: 3 })];
      const f8 = [
        { stages: 3 },
        { stages: 4 },
        { stages: 3, lazyRescale: true },
        { stages: 3, rowSumMma: true },
        { stages: 3, lazyRescale: true, rowSumMma: true },
        { stages: 4, lazyRescale: true, rowSumMma: true },
        { stages: 3, pingpong: true, lazyRescale: true, rowSumMma: true },
      ].map((x) => attentionSm90({ input: 'e4m3', headDim: 128, bc: 128, ...x }));
      const scales = { q: e4m3ScaleOf(amax(q)), k: e4m3ScaleOf(amax(k)), v: e4m3ScaleOf(amax(v)) };
      const q8 = Tensor.empty(dev, e4m3, q.shape);
      const k8 = Tensor.empty(dev, e4m3, k.shape);
      const v8 = Tensor.empty(dev, e4m3, [1, H, D, fp8VCapacity(CAP)]);
      const quantMs = {
        q: timeMs(() => quantizeForAttention(f8[0]!, { x: q, out: q8, scale: scales.q })),
        k: timeMs(() => quantizeForAttention(f8[0]!, { x: k, out: k8, scale: scales.k })),
        vTransposed: timeMs(() => quantizeForAttention(f8[0]!, { x: v, out: v8, scale: scales.v, transpose: true })),
      };
      const best = (m: Record<string, number>) => Object.entries(m).reduce((a, b) => (b[1] < a[1] ? b : a));
      const results: Record<string, unknown>[] = [];
      for (const lkv of [4680, 18720, 32760]) {
        const flops = 4 * LQ * lkv * H * D;
        const tf = (ms: number) => flops / (ms * 1e9);
        const bfMs = Object.fromEntries(
          bf.map((a) => [a.name, timeMs(() => runAttention(a, { q, k, v, o, kvLen: lkv }))]),
        );
        const f8Ms = Object.fromEntries(
          f8.map((a) => [a.name, timeMs(() => runAttention(a, { q: q8, k: k8, v: v8, o, kvLen: lkv, scales }))]),
        );
        const [bfName, bfBest] = best(bfMs);
        const [f8Name, f8Best] = best(f8Ms);
        console.log(
          `Lkv ${lkv}: FP8 ${tf(f8Best).toFixed(0)} TFLOP/s [${f8Name}], bf16 ${tf(bfBest).toFixed(0)} TFLOP/s [${bfName}]`,
        );
        results.push({
          Lq: LQ,
          Lkv: lkv,
          H,
          D,
          flops,
          bf16: { chosen: bfName, ms: bfBest, tflops: tf(bfBest), variants: bfMs },
          e4m3: { chosen: f8Name, ms: f8Best, tflops: tf(f8Best), variants: f8Ms },
        });
      }
      reportResult('attention-fp8', dev, {
        command:
          process.env.SFC_BENCH_COMMAND ??
          'node node_modules/vitest/vitest.mjs run --config vitest.gpu.config.ts test/gpu/attention-fp8.test.ts',
        note: 'FP8 inputs quantised once with per-tensor scales; quantMs: the quantise kernels (q 4680 tokens, k and v 32760)',
        quantMs,
        results,
      });
      [q, k, v, o, q8, k8, v8].forEach((t) => t.dispose());
    },
    400_000,
  );
});
