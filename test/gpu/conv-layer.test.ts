// The layer DSL's conv3d on the GPU: the Wan VAE causal residual block written as a layer against the
// float64 interpretation of the same graph (C = 128: the sm_90a implicit-GEMM convolution; C = 96:
// per-tap cuBLASLt GEMMs) and against the VAE's own implementation (models/vae/common.ts); a strided
// convolution (crop path); and, with SFC_BENCH_OUT set, the block at a decoder size (384 channels,
// 60 x 104 pixels) timed against the VAE path with CUDA events (median of 10 runs after a warm-up).
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWanVaeKernels } from '../../compiler/bundle.js';
import { programFromText } from '../../compiler/frontend.js';
import { lowerLayer } from '../../compiler/layer/frontend.js';
import type { LayerGraph } from '../../compiler/layer/graph.js';
import { runGraph, type HostTensor } from '../../compiler/layer/interp.js';
import { planLayer } from '../../compiler/layer/plan.js';
import { bf16, f32 } from '../../dsl/dtypes.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { PlanRunner } from '../../runtime/plan.js';
import { Tensor } from '../../runtime/tensor.js';
import { virtualDir } from '../compiler/dsl.js';
import { mulberry32 } from '../helpers.js';
import { BlockStream, OneBlock, layerInputs, resBlockLayer, type BlockParams } from '../models/vae-block.js';
import { noGpuReason, openDevice, relErr, reportResult } from './gpu.js';

const src = `import { layer, conv3d, cast, rmsNorm, silu, bf16, type Tensor, type f32 } from '../../../dsl/layer.js';
${resBlockLayer('res128', 128)}
${resBlockLayer('res96', 96)}
${resBlockLayer('res384', 384)}
export const down = layer((x: Tensor<bf16, [3, 16, 20, 64]>, w: Tensor<bf16, [128, 1, 3, 3, 64]>) =>
  conv3d(x, w, undefined, { stride: [1, 2, 2], padding: [0, 1, 1] }));
`;

const path = join(virtualDir, 'gpu-convs.ts');
const program = programFromText(path, src);
const graphs = new Map<string, LayerGraph>(program.layers(path).map((r) => [r.name, lowerLayer(program, r)]));

const rand = mulberry32(17);
const bf16Round = (v: number) => {
  const u = new Uint32Array(new Float32Array([v]).buffer);
  u[0] = (u[0]! + 0x7fff + ((u[0]! >> 16) & 1)) & 0xffff0000;
  return new Float32Array(u.buffer)[0]!;
};
const host = (shape: number[], scale: number, bf = false): HostTensor => ({
  shape,
  data: Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => {
    const v = (rand() * 2 - 1) * scale;
    return bf ? bf16Round(v) : v;
  }),
});
function blockParams(C: number, T: number, H: number, W: number): BlockParams {
  const ws = 1 / Math.sqrt(27 * C);
  return {
    x: host([T, H, W, C], 1),
    g1: host([C], 1),
    w1: host([C, C, 3, 3, 3], ws, true),
    b1: host([C], 0.1),
    g2: host([C], 1),
    w2: host([C, C, 3, 3, 3], ws, true),
    b2: host([C], 0.1),
  };
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe.skipIf(!!noGpuReason)('layer conv3d on the GPU', () => {
  let dev: CudaDevice;
  beforeAll(() => {
    dev = openDevice();
  });
  afterAll(() => dev?.dispose());

  const upload = (g: LayerGraph, ins: HostTensor[]) =>
    ins.map((t, i) =>
      Tensor.from(dev, g.inputs[i]!.type.dtype === 'bf16' ? bf16 : f32, t.shape, Float32Array.from(t.data)),
    );

  /** the layer plan on the GPU and the VAE's block on the GPU, both against float64 */
  function blockCheck(name: string, C: number, T: number, H: number, W: number) {
    const g = graphs.get(name)!;
    const p = blockParams(C, T, H, W);
    const ins = layerInputs(p);
    const want = runGraph(g, ins, { exact: true })[0]!.data;
    const [out] = new PlanRunner(planLayer(g)).run(upload(g, ins));
    const got = out!.toF32();
    // the VAE's own path: its implicit GEMM at 128 channels, its per-tap cuBLASLt GEMMs at 96
    const vae = new OneBlock(dev, buildWanVaeKernels({ channels: [C], convOutputs: [C] }), p, C, C % 64 ? 1e9 : 64);
    const s = new BlockStream(vae);
    const ref = s.run(Tensor.from(dev, f32, [T, H, W, C], Float32Array.from(p.x.data)), C).toF32();
    s.dispose();
    vae.dispose();
    return { layerVsF64: relErr(got, want), vaeVsF64: relErr(ref, want), layerVsVae: relErr(got, ref) };
  }

  const results: Record<string, unknown> = {};

  it.each<[string, number, number, number, number, string]>([
    ['res128', 128, 3, 6, 10, 'implicit-GEMM convolution'],
    ['res96', 96, 2, 5, 7, 'per-tap cuBLASLt GEMMs'],
  ])(
    'the residual block %s (%s channels, %s frames of %s x %s: %s) agrees with float64 and the VAE path',
    (name, C, T, H, W) => {
      const r = blockCheck(name, C, T, H, W);
      results[name] = r;
      console.log(name, r);
      expect(r.layerVsF64).toBeLessThan(1e-2);
      expect(r.layerVsVae).toBeLessThan(1e-2);
    },
  );

  it('a stride-2 convolution (the crop path) agrees with float64', () => {
    const g = graphs.get('down')!;
    const ins = [host([3, 16, 20, 64], 1, true), host([128, 1, 3, 3, 64], 0.05, true)];
    const want = runGraph(g, ins, { exact: true })[0]!;
    const [out] = new PlanRunner(planLayer(g)).run(upload(g, ins));
    expect(out!.shape).toEqual(want.shape);
    const e = relErr(out!.toF32(), want.data);
    results.down = { relErr: e };
    console.log('down', e);
    expect(e).toBeLessThan(1e-3);
  });

  it.skipIf(!process.env.SFC_BENCH_OUT)('times the block at 384 channels x 60 x 104 against the VAE path', () => {
    const [C, T, H, W] = [384, 2, 60, 104];
    const g = graphs.get('res384')!;
    const p = blockParams(C, T, H, W);
    const plan = planLayer(g);
    const runner = new PlanRunner(plan);
    const ins = upload(g, layerInputs(p));
    const vae = new OneBlock(dev, buildWanVaeKernels({ channels: [C], convOutputs: [C] }), p, C);
    const x = ins[0]!;
    const layerRun = () => runner.run(ins)[0]!;
    const vaeRun = () => {
      const s = new BlockStream(vae);
      const y = s.run(x, C).toF32();
      s.dispose();
      return y;
    };
    const got = layerRun().toF32();
    const ref = vaeRun();
    const agree = relErr(got, ref);
    const time = (fn: () => void) => {
      fn();
      const ms: number[] = [];
      for (let i = 0; i < 10; i++) ms.push(dev.time(fn));
      return median(ms);
    };
    const layerMs = time(() => layerRun().dispose());
    const vaeMs = time(() => {
      const s = new BlockStream(vae);
      s.run(x, C);
      s.dispose();
    });
    vae.dispose();
    reportResult('conv-layer', dev, {
      command: 'vitest run --config vitest.gpu.config.ts test/gpu/conv-layer.test.ts',
      shape: { C, T, H, W },
      layerSteps: plan.steps.map((s) => s.label),
      layerMs,
      vaeMs,
      layerVsVaeRelErr: agree,
      checks: results,
    });
    expect(agree).toBeLessThan(1e-2);
  });
});
