// A fused layer plan on the GPU (generated CUDA kernels + cuBLASLt matmuls) against the same plan on
// the CPU backend.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bf16, f32 } from '../../dsl/dtypes.js';
import { programFromText } from '../../compiler/frontend.js';
import { lowerLayer } from '../../compiler/layer/frontend.js';
import { planLayer } from '../../compiler/layer/plan.js';
import type { LaunchPlan, PlanStep } from '../../dsl/plan.js';
import { CpuDevice } from '../../runtime/cpu.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { PlanRunner } from '../../runtime/plan.js';
import { Tensor } from '../../runtime/tensor.js';
import { virtualDir } from '../compiler/dsl.js';
import { mulberry32 } from '../helpers.js';
import { buildWanDitBundle } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/presets.js';
import { noGpuReason, openDevice, relErr, reportResult } from './gpu.js';

const src = `import { attention, cast, layer, layerNorm, geluTanh, linear, reshape, rmsNorm, rope, bf16, type Tensor, type f32 } from '../../../dsl/layer.js';
export const rotQ = layer((q: Tensor<bf16, ['L', 1536]>, w: Tensor<bf16, [1536]>, cos: Tensor<f32, ['L', 1, 128]>, sin: Tensor<f32, ['L', 1, 128]>) =>
  rope(reshape(rmsNorm(q, w, 1e-6), ['L', 12, 128]), cos, sin));
export const selfAttn = layer(
  (x: Tensor<f32, ['L', 1536]>, shift: Tensor<f32, [1, 1536]>, scale: Tensor<f32, [1, 1536]>, gate: Tensor<f32, [1, 1536]>,
   wq: Tensor<bf16, [1536, 1536]>, bq: Tensor<bf16, [1536]>, nq: Tensor<bf16, [1536]>,
   wk: Tensor<bf16, [1536, 1536]>, bk: Tensor<bf16, [1536]>, nk: Tensor<bf16, [1536]>,
   wv: Tensor<bf16, [1536, 1536]>, bv: Tensor<bf16, [1536]>, wo: Tensor<bf16, [1536, 1536]>, bo: Tensor<bf16, [1536]>) => {
    const h = cast(layerNorm(x, 1e-6) * (1 + scale) + shift, bf16);
    const q = reshape(rmsNorm(linear(h, wq, bq), nq, 1e-6), ['L', 12, 128]);
    const k = reshape(rmsNorm(linear(h, wk, bk), nk, 1e-6), ['L', 12, 128]);
    const v = reshape(linear(h, wv, bv), ['L', 12, 128]);
    return x + linear(reshape(attention(q, k, v), ['L', 1536]), wo, bo) * gate;
  });
export const crossQ = layer((x: Tensor<bf16, ['L', 1536]>, w: Tensor<bf16, [1536, 1536]>, b: Tensor<bf16, [1536]>, n: Tensor<bf16, [1536]>) =>
  rmsNorm(linear(x, w, b), n, 1e-6));
export const ffnBlock = layer(
  (x: Tensor<f32, ['F', 'T', 1536]>, shift: Tensor<f32, ['F', 1, 1536]>, scale: Tensor<f32, ['F', 1, 1536]>,
   gate: Tensor<f32, ['F', 1, 1536]>, w1: Tensor<bf16, [8960, 1536]>, b1: Tensor<bf16, [8960]>,
   w2: Tensor<bf16, [1536, 8960]>, b2: Tensor<bf16, [1536]>) => {
    const h = cast(layerNorm(x, 1e-6) * (1 + scale) + shift, bf16);
    return x + linear(geluTanh(linear(h, w1, b1)), w2, b2) * gate;
  });
`;

describe.skipIf(!!noGpuReason)('layer plans on the GPU', () => {
  let dev: CudaDevice;
  beforeAll(() => {
    dev = openDevice();
  });
  afterAll(() => dev?.dispose());

  it('the Wan FFN half-block at full width agrees with the CPU plan (also on the sm_80 mma.sync GEMMs)', () => {
    const path = join(virtualDir, 'gpu-plans.ts');
    const p = programFromText(path, src);
    const g = lowerLayer(
      p,
      p.layers(path).find((r) => r.name === 'ffnBlock')!,
    );
    const plan = planLayer(g);
    const cpu = new CpuDevice();
    const rand = mulberry32(3);
    const [F, T] = [2, 5];
    const ins = g.inputs.map((inp) => {
      const shape = inp.type.shape.map((d) => (d === 'F' ? F : d === 'T' ? T : (d as number)));
      const n = shape.reduce((a, b) => a * b, 1);
      const scaleBy = inp.op === 'input' && inp.name.startsWith('w') ? 0.03 : 1;
      return Tensor.from(
        cpu,
        inp.type.dtype === 'bf16' ? bf16 : f32,
        shape,
        Array.from({ length: n }, () => (rand() * 2 - 1) * scaleBy),
      );
    });
    const [want] = new PlanRunner(plan).run(ins);
    const [got] = new PlanRunner(plan).run(ins.map((t) => t.to(dev)));
    expect(relErr(got!.toF32(), want!.toF32())).toBeLessThan(1e-2);
    // the same plan on its sm_80 mma.sync GEMMs only (generated epilogues; PTX on a newer GPU)
    const mma: LaunchPlan = {
      ...plan,
      steps: plan.steps.map((s) =>
        s.kind === 'gemm' ? { ...s, candidates: s.candidates.filter((c) => c.arch === 'sm_80') } : s,
      ),
    };
    expect(mma.steps.filter((s) => s.kind === 'gemm' && s.candidates.length === 3)).toHaveLength(2);
    const [gotMma] = new PlanRunner(mma).run(ins.map((t) => t.to(dev)));
    expect(relErr(gotMma!.toF32(), want!.toF32())).toBeLessThan(1e-2);
  });

  it('Linear + RMSNorm as one GEMM (row-sum epilogue, clusters of 6 or 8 CTAs per row) agrees with the CPU plan', () => {
    const path = join(virtualDir, 'gpu-plans.ts');
    const p = programFromText(path, src);
    const g = lowerLayer(
      p,
      p.layers(path).find((r) => r.name === 'crossQ')!,
    );
    const plan = planLayer(g);
    expect(plan.steps.map((s) => s.kind)).toEqual(['gemm']);
    const cpu = new CpuDevice();
    const rand = mulberry32(17);
    const L = 333; // a partial last tile of rows
    const ins = g.inputs.map((inp) => {
      const shape = inp.type.shape.map((d) => (d === 'L' ? L : (d as number)));
      const n = shape.reduce((a, b) => a * b, 1);
      const name = inp.op === 'input' ? inp.name : '';
      return Tensor.from(
        cpu,
        bf16,
        shape,
        Array.from({ length: n }, () => (name === 'n' ? 0.5 + rand() : (rand() * 2 - 1) * (name === 'w' ? 0.05 : 1))),
      );
    });
    const [want] = new PlanRunner(plan).run(ins);
    const step = plan.steps[0]!;
    for (const art of step.kind === 'gemm' ? step.candidates : []) {
      // each cluster width on its own, output poisoned first
      const one: LaunchPlan = { ...plan, steps: [{ ...step, candidates: [art] } as PlanStep] };
      const outT = Tensor.empty(dev, bf16, [L, 1536]);
      dev.fill(outT.storage, outT.byteOffset, outT.nbytes, 0xff);
      const [got] = new PlanRunner(one).run(
        ins.map((t) => t.to(dev)),
        [outT],
      );
      const v = got!.toF32();
      expect(v.every(Number.isFinite), art.name).toBe(true);
      expect(relErr(v, want!.toF32()), art.name).toBeLessThan(1e-2);
    }
  });

  it('q RMSNorm + 3-D RoPE tables (12 heads x 128) agree with the CPU plan', () => {
    const path = join(virtualDir, 'gpu-plans.ts');
    const p = programFromText(path, src);
    const g = lowerLayer(
      p,
      p.layers(path).find((r) => r.name === 'rotQ')!,
    );
    const plan = planLayer(g);
    const cpu = new CpuDevice();
    const rand = mulberry32(9);
    const L = 99;
    const ins = g.inputs.map((inp) => {
      const shape = inp.type.shape.map((d) => (d === 'L' ? L : (d as number)));
      const n = shape.reduce((a, b) => a * b, 1);
      return Tensor.from(
        cpu,
        inp.type.dtype === 'bf16' ? bf16 : f32,
        shape,
        Array.from({ length: n }, () => rand() * 2 - 1),
      );
    });
    const [want] = new PlanRunner(plan).run(ins);
    const [got] = new PlanRunner(plan).run(ins.map((t) => t.to(dev)));
    expect(relErr(got!.toF32(), want!.toF32())).toBeLessThan(1e-2);
  });

  it('the Wan self-attention half-block (12 heads x 128) agrees with the CPU plan', () => {
    const path = join(virtualDir, 'gpu-plans.ts');
    const p = programFromText(path, src);
    const g = lowerLayer(
      p,
      p.layers(path).find((r) => r.name === 'selfAttn')!,
    );
    const plan = planLayer(g);
    const cpu = new CpuDevice();
    const rand = mulberry32(5);
    const L = 70;
    const ins = g.inputs.map((inp) => {
      const shape = inp.type.shape.map((d) => (d === 'L' ? L : (d as number)));
      const n = shape.reduce((a, b) => a * b, 1);
      const name = inp.op === 'input' ? inp.name : '';
      const scaleBy = name.startsWith('w') ? 0.03 : name.startsWith('n') ? 0 : 1;
      return Tensor.from(
        cpu,
        inp.type.dtype === 'bf16' ? bf16 : f32,
        shape,
        Array.from({ length: n }, () => (name.startsWith('n') ? 1 : (rand() * 2 - 1) * scaleBy)),
      );
    });
    const [want] = new PlanRunner(plan).run(ins);
    const [got] = new PlanRunner(plan).run(ins.map((t) => t.to(dev)));
    expect(relErr(got!.toF32(), want!.toF32())).toBeLessThan(1e-2);
  });

  it('Wan 1.3B block layers captured into CUDA graphs replay the eager results bit for bit, and faster', () => {
    // one 3-frame chunk (4680 tokens): the block's three layer plans at their real sizes
    const dit = loadModelPreset('wan2.1-t2v-1.3b').dit;
    const bundle = buildWanDitBundle(dit);
    const [F, T] = [3, 1560];
    const rand = mulberry32(21);
    const results: Record<string, unknown>[] = [];
    for (const name of ['selfAttnQkv', 'selfAttnOutCrossQ', 'crossOutFfn']) {
      const plan = bundle.plans[name]!;
      const ins = plan.inputs.map((bid) => {
        const b = plan.buffers[bid]!;
        const shape = b.shape.map((d) => (d === 'F' ? F : d === 'T' ? T : (d as number)));
        const n = shape.reduce((a, c) => a * c, 1);
        const w = (b.name ?? '').startsWith('w') ? 0.03 : 1;
        const vals = Float32Array.from({ length: n }, () => (rand() * 2 - 1) * w);
        return Tensor.from(dev, b.dtype === 'bf16' ? bf16 : f32, shape, vals);
      });
      const runner = new PlanRunner(plan);
      const eager = runner.run(ins).map((t) => t.toF32());
      const cap = runner.capture(ins);
      expect(cap.isGraph).toBe(true);
      for (const o of cap.outputs) dev.fill(o.storage, o.byteOffset, o.nbytes, 0xff); // NaN in every float format
      cap.replay();
      cap.outputs.forEach((o, i) => expect(o.toF32(), `${name} output ${i}`).toEqual(eager[i]));
      const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;
      const reps = 20;
      const eagerMs = median(
        Array.from({ length: 7 }, () => dev.time(() => runner.run(ins).forEach((t) => t.dispose()))),
      );
      const replayMs = median(Array.from({ length: 7 }, () => dev.time(() => cap.replay())));
      const burst = (fn: () => void) => dev.time(() => Array.from({ length: reps }, fn)) / reps;
      const eagerBurst = median(
        Array.from({ length: 5 }, () => burst(() => runner.run(ins).forEach((t) => t.dispose()))),
      );
      const replayBurst = median(Array.from({ length: 5 }, () => burst(() => cap.replay())));
      results.push({ layer: name, launches: plan.steps.length, eagerMs, replayMs, eagerBurst, replayBurst });
      cap.dispose();
      ins.forEach((t) => t.dispose());
    }
    reportResult('plan-capture', dev, { tokens: F * T, results });
  });
});
