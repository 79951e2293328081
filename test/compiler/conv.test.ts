// The layer DSL's convolutions (compiler/layer/conv.ts): the float64 interpretation against an
// independent reference (zero-padded array, then a plain loop), the launch plan on the CPU backend
// (pad kernel, per-tap GEMMs, crop kernel, then the fused element-wise consumers) against the
// unfused node-by-node execution, the shape diagnostics, and the Wan VAE's causal residual block
// written as a layer against the VAE's own implementation (models/vae/common.ts) on the CPU.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildWanVaeKernels } from '../../compiler/bundle.js';
import { programFromText } from '../../compiler/frontend.js';
import { lowerLayer } from '../../compiler/layer/frontend.js';
import { printGraph, graphToDot, type LayerGraph } from '../../compiler/layer/graph.js';
import { runGraph, type HostTensor } from '../../compiler/layer/interp.js';
import { planLayer } from '../../compiler/layer/plan.js';
import { bf16, f32 } from '../../dsl/dtypes.js';
import { CpuDevice } from '../../runtime/cpu.js';
import type { Device } from '../../runtime/device.js';
import { PlanRunner } from '../../runtime/plan.js';
import { Tensor } from '../../runtime/tensor.js';
import { mulberry32 } from '../helpers.js';
import { BlockStream, OneBlock, layerInputs, resBlockLayer, type BlockParams } from '../models/vae-block.js';
import { virtualDir } from './dsl.js';

const header = `import { layer, conv3d, conv2d, cast, rmsNorm, silu, bf16, type Tensor, type f32 } from '../../../dsl/layer.js';
`;

const src = `
export const c3 = layer((x: Tensor<bf16, [5, 6, 7, 8]>, w: Tensor<bf16, [4, 3, 3, 3, 8]>, b: Tensor<f32, [4]>) => [
  conv3d(x, w, b, { padding: 1, causal: true }),
  conv3d(x, w, b, { padding: 1 }),
  conv3d(x, w, undefined, { stride: [1, 2, 2], padding: [0, 1, 1] }),
  conv3d(x, w, b, { stride: 2 }),
]);

/** odd sizes, a 2x1x3 kernel, stride 2 in time only, causal */
export const odd = layer((x: Tensor<bf16, [4, 5, 3, 3]>, w: Tensor<bf16, [5, 2, 1, 3, 3]>) =>
  conv3d(x, w, undefined, { stride: [2, 1, 1], padding: [1, 0, 1], causal: true }));

export const c2 = layer((x: Tensor<bf16, [3, 9, 5, 8]>, w: Tensor<bf16, [6, 3, 3, 8]>, b: Tensor<f32, [6]>) => [
  conv2d(x, w, b, { stride: 2, padding: 1 }),
  conv2d(x, w, b, { padding: [0, 1] }),
]);

/** a group writing the conv's padded input (its prologue), the output cropped with strides */
export const pro = layer((x: Tensor<f32, [3, 5, 4, 8]>, w: Tensor<bf16, [4, 3, 3, 3, 8]>) =>
  conv3d(cast(silu(x), bf16), w, undefined, { stride: [1, 2, 1], padding: 1, causal: true }));

/** one frame [H, W, C] and a 1x1 convolution */
export const frame = layer((x: Tensor<bf16, [9, 5, 8]>, w: Tensor<bf16, [6, 1, 1, 8]>) => conv2d(x, w));

/** symbolic frames and pixels (a shape-keeping geometry), with element-wise consumers */
export const sym = layer((x: Tensor<bf16, ['T', 'H', 'W', 8]>, w: Tensor<bf16, [8, 3, 3, 3, 8]>, b: Tensor<f32, [8]>, r: Tensor<f32, ['T', 'H', 'W', 8]>) =>
  silu(conv3d(x, w, b, { padding: 1, causal: true })) + r);

${resBlockLayer('resBlock', 8)}
${resBlockLayer('resShort', 8, 12)}`;

function compile(body: string, file: string): Map<string, LayerGraph> {
  const path = join(virtualDir, file);
  const p = programFromText(path, header + body);
  return new Map(p.layers(path).map((r) => [r.name, lowerLayer(p, r)]));
}

function diagnose(body: string): string {
  try {
    compile(body, 'bad-conv.ts');
  } catch (e) {
    return (e as Error).message.split('\n')[0]!.replace(/^test\/compiler\/virtual\//, '');
  }
  throw new Error('expected a diagnostic');
}

const rand = mulberry32(5);
const bf16Round = (v: number) => {
  const b = new Float32Array([v]);
  const u = new Uint32Array(b.buffer);
  u[0] = (u[0]! + 0x7fff + ((u[0]! >> 16) & 1)) & 0xffff0000;
  return b[0]!;
};
const tensor = (shape: number[], scale = 1, bf = false): HostTensor => ({
  shape,
  data: Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => {
    const v = (rand() * 2 - 1) * scale;
    return bf ? bf16Round(v) : v;
  }),
});
const inputsOf = (g: LayerGraph, dims: Record<string, number> = {}, scale = 1): HostTensor[] =>
  g.inputs.map((i) =>
    tensor(
      i.type.shape.map((d) => (typeof d === 'number' ? d : dims[d]!)),
      scale,
      i.type.dtype === 'bf16',
    ),
  );

/** PyTorch's conv3d semantics: zero-pad x (time: `tp` before, `ta` after), then slide the kernel */
function refConv(
  x: HostTensor,
  w: HostTensor,
  stride: number[],
  /** zeros before and after each dim: [t0, t1, y0, y1, x0, x1] */
  pads: number[],
  bias?: HostTensor,
): { shape: number[]; data: number[] } {
  const [T, H, W, C] = x.shape as [number, number, number, number];
  const [O, kt, ky, kx] = w.shape as [number, number, number, number];
  const pad = [0, 1, 2].map((d) => [pads[2 * d]!, pads[2 * d + 1]!] as const);
  const P = [T + pad[0]![0] + pad[0]![1], H + pad[1]![0] + pad[1]![1], W + pad[2]![0] + pad[2]![1]];
  const xp = new Float64Array(P[0]! * P[1]! * P[2]! * C);
  for (let t = 0; t < T; t++)
    for (let y = 0; y < H; y++)
      for (let i = 0; i < W; i++)
        for (let c = 0; c < C; c++)
          xp[(((t + pad[0]![0]) * P[1]! + y + pad[1]![0]) * P[2]! + i + pad[2]![0]) * C + c] =
            x.data[((t * H + y) * W + i) * C + c]!;
  const out = [0, 1, 2].map((d) => Math.floor((P[d]! - [kt, ky, kx][d]!) / stride[d]!) + 1);
  const data: number[] = [];
  for (let t = 0; t < out[0]!; t++)
    for (let y = 0; y < out[1]!; y++)
      for (let i = 0; i < out[2]!; i++)
        for (let o = 0; o < O; o++) {
          let s = bias ? bias.data[o]! : 0;
          for (let a = 0; a < kt; a++)
            for (let b = 0; b < ky; b++)
              for (let e = 0; e < kx; e++)
                for (let c = 0; c < C; c++)
                  s +=
                    xp[(((t * stride[0]! + a) * P[1]! + y * stride[1]! + b) * P[2]! + i * stride[2]! + e) * C + c]! *
                    w.data[(((o * kt + a) * ky + b) * kx + e) * C + c]!;
          data.push(s);
        }
  return { shape: [...out, O], data };
}

const close = (got: ArrayLike<number>, want: ArrayLike<number>, tol: number) => {
  expect(got.length).toBe(want.length);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < got.length; i++) {
    worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  expect(worst / Math.max(scale, 1e-30)).toBeLessThan(tol);
};

const g = compile(src, 'convs.ts');
const dev = new CpuDevice();

/** runs a layer's plan on the CPU backend (bf16 inputs as bf16 tensors) */
function runPlan(graph: LayerGraph, ins: HostTensor[], device: Device = dev): Tensor[] {
  const plan = planLayer(graph);
  const tensors = ins.map((t, i) =>
    Tensor.from(device, graph.inputs[i]!.type.dtype === 'bf16' ? bf16 : f32, t.shape, Float32Array.from(t.data)),
  );
  return new PlanRunner(plan).run(tensors);
}

describe('conv3d / conv2d (float64 against an independent reference)', () => {
  it('conv3d: causal and symmetric padding, stride 1 and 2, with and without bias', () => {
    const [x, w, b] = inputsOf(g.get('c3')!);
    const outs = runGraph(g.get('c3')!, [x!, w!, b!], { exact: true });
    const want = [
      refConv(x!, w!, [1, 1, 1], [2, 0, 1, 1, 1, 1], b),
      refConv(x!, w!, [1, 1, 1], [1, 1, 1, 1, 1, 1], b),
      refConv(x!, w!, [1, 2, 2], [0, 0, 1, 1, 1, 1]),
      refConv(x!, w!, [2, 2, 2], [0, 0, 0, 0, 0, 0], b),
    ];
    outs.forEach((o, i) => {
      expect(o.shape).toEqual(want[i]!.shape);
      close(o.data, want[i]!.data, 1e-12);
    });
    expect(outs.map((o) => o.shape)).toEqual([
      [5, 6, 7, 4],
      [5, 6, 7, 4],
      [3, 3, 4, 4],
      [2, 2, 3, 4],
    ]);
  });

  it('odd sizes, a 2x1x3 kernel, time stride 2 with causal padding', () => {
    const [x, w] = inputsOf(g.get('odd')!);
    const [o] = runGraph(g.get('odd')!, [x!, w!], { exact: true });
    const want = refConv(x!, w!, [2, 1, 1], [2, 0, 0, 0, 1, 1]);
    expect(o!.shape).toEqual(want.shape);
    close(o!.data, want.data, 1e-12);
  });

  it('conv2d is a per-frame conv3d with a 1-tap time kernel ([N, H, W, C] and one [H, W, C] frame)', () => {
    const [x, w, b] = inputsOf(g.get('c2')!);
    const w3 = { shape: [6, 1, 3, 3, 8], data: w!.data };
    const outs = runGraph(g.get('c2')!, [x!, w!, b!], { exact: true });
    const want = [refConv(x!, w3, [1, 2, 2], [0, 0, 1, 1, 1, 1], b), refConv(x!, w3, [1, 1, 1], [0, 0, 0, 0, 1, 1], b)];
    outs.forEach((o, i) => close(o.data, want[i]!.data, 1e-12));
    expect(outs[0]!.shape).toEqual([3, 5, 3, 6]);
    const [fx, fw] = inputsOf(g.get('frame')!);
    const [fo] = runGraph(g.get('frame')!, [fx!, fw!], { exact: true });
    expect(fo!.shape).toEqual([9, 5, 6]);
    close(
      fo!.data,
      refConv(
        { shape: [1, 9, 5, 8], data: fx!.data },
        { shape: [6, 1, 1, 1, 8], data: fw!.data },
        [1, 1, 1],
        [0, 0, 0, 0, 0, 0],
      ).data,
      1e-12,
    );
  });

  it('prints the conv node and draws it in the DOT dump', () => {
    expect(printGraph(g.get('odd')!)).toBe(
      [
        'layer odd(x: bf16[4, 5, 3, 3], w: bf16[5, 2, 1, 3, 3])',
        '  %2 = conv x, w k=2x1x3 stride=2x1x1 pad=2:0,0:0,1:1 : f32[3, 5, 3, 5]',
        '  return %2',
        '',
      ].join('\n'),
    );
    expect(graphToDot(g.get('odd')!)).toContain('n2 [label="conv\\nf32[3, 5, 3, 5]", shape=box3d];');
  });
});

describe('conv plans on the CPU backend (pad, per-tap GEMMs, crop) against the unfused graph', () => {
  it.each(['c3', 'odd', 'c2', 'frame', 'pro'])('%s', (name) => {
    const graph = g.get(name)!;
    const ins = inputsOf(graph);
    const want = runGraph(graph, ins);
    const got = runPlan(graph, ins);
    got.forEach((t, i) => {
      expect(t.shape).toEqual(want[i]!.shape);
      close(t.toF32(), want[i]!.data, 1e-5);
    });
  });

  it('a producer group runs inside the conv step, writing the padded buffer (no pad kernel)', () => {
    const plan = planLayer(g.get('pro')!);
    expect(plan.steps.length).toBe(1);
    expect(plan.steps[0]!.kind === 'conv' && plan.steps[0]!.prologue?.kind).toBe('kernel');
  });

  it('symbolic dims; bias, SiLU and the residual add are one fused kernel after the conv step', () => {
    const graph = g.get('sym')!;
    const plan = planLayer(graph);
    // the group reads the conv's padded grid in place of the crop kernel
    expect(plan.steps.map((s) => s.kind)).toEqual(['conv']);
    expect(plan.steps[0]!.kind === 'conv' && plan.steps[0]!.epilogue?.label).toMatch(/^sym_f0: \d+ ops/);
    const ins = inputsOf(graph, { T: 3, H: 4, W: 5 });
    close(runPlan(graph, ins)[0]!.toF32(), runGraph(graph, ins)[0]!.data, 1e-5);
    close(runGraph(graph, ins)[0]!.data, runGraph(graph, ins, { exact: true })[0]!.data, 1e-5);
  });
});

describe('fusion keeps a group after the values it reads', () => {
  it('two Linears whose element-wise results meet: the merged group runs after the second matmul', () => {
    const lin = compile(
      `import { linear } from '../../../dsl/layer.js';
export const two = layer((x: Tensor<f32, ['L', 8]>, w1: Tensor<f32, [8, 8]>, w2: Tensor<f32, [8, 8]>) => {
  const y = linear(x, w1) * 2;
  const z = linear(x, w2) + 1;
  return y + z;
});`,
      'two-linears.ts',
    ).get('two')!;
    const ins = inputsOf(lin, { L: 5 });
    close(runPlan(lin, ins)[0]!.toF32(), runGraph(lin, ins)[0]!.data, 1e-5);
  });
});

describe('conv diagnostics name the layer line and both shapes', () => {
  it.each([
    [
      'channels',
      'export const a = layer((x: Tensor<bf16, [2, 4, 4, 8]>, w: Tensor<bf16, [4, 3, 3, 3, 6]>) => conv3d(x, w));',
      'bad-conv.ts:2:93: conv3d input channels differ: x [2, 4, 4, 8] and w [4, 3, 3, 3, 6] (8 vs 6)',
    ],
    [
      'dtypes',
      'export const a = layer((x: Tensor<f32, [2, 4, 4, 8]>, w: Tensor<bf16, [4, 3, 3, 3, 8]>) => conv3d(x, w));',
      'bad-conv.ts:2:92: conv3d takes bf16 x and w (cast them), got x f32[2, 4, 4, 8] and w bf16[4, 3, 3, 3, 8]',
    ],
    [
      'rank',
      'export const a = layer((x: Tensor<bf16, [4, 4, 8]>, w: Tensor<bf16, [4, 3, 3, 3, 8]>) => conv3d(x, w));',
      'bad-conv.ts:2:90: conv3d takes x [T, H, W, Cin] (channels last) and w [Cout, kt, ky, kx, Cin]; got x [4, 4, 8] and w [4, 3, 3, 3, 8]',
    ],
    [
      'symbolic dim resized',
      "export const a = layer((x: Tensor<bf16, ['T', 'H', 8, 8]>, w: Tensor<bf16, [4, 3, 3, 3, 8]>) => conv3d(x, w, undefined, { stride: [1, 2, 1], padding: 1 }));",
      "bad-conv.ts:2:97: conv3d with w [4, 3, 3, 3, 8]: H of x [T, H, 8, 8] is the symbolic dim 'H': the output must keep its size (stride 1, padding k - 1 in all) or the dim must be static",
    ],
    [
      'empty output',
      'export const a = layer((x: Tensor<bf16, [2, 2, 4, 8]>, w: Tensor<bf16, [4, 3, 3, 3, 8]>) => conv3d(x, w));',
      'bad-conv.ts:2:93: conv3d with w [4, 3, 3, 3, 8]: a 3-tap kernel with padding 0+0 leaves nothing of T of x [2, 2, 4, 8] = 2',
    ],
    [
      'unknown option',
      'export const a = layer((x: Tensor<bf16, [2, 4, 4, 8]>, w: Tensor<bf16, [4, 1, 3, 3, 8]>) => conv3d(x, w, undefined, { dilation: 2 }));',
      "bad-conv.ts:2:119: TypeScript: Object literal may only specify known properties, and 'dilation' does not exist in type 'ConvOptions'.",
    ],
  ])('%s', (_name, body, want) => {
    expect(diagnose(body)).toBe(want);
  });
});

// ---- the VAE's residual block --------------------------------------------------------------------

/** random block parameters from C to CO channels (a 1x1x1 shortcut when they differ) */
function blockParams(C: number, CO: number, T: number, H: number, W: number): BlockParams {
  const p: BlockParams = {
    x: tensor([T, H, W, C]),
    g1: tensor([C], 1),
    w1: tensor([CO, C, 3, 3, 3], 0.2, true),
    b1: tensor([CO], 0.1),
    g2: tensor([CO], 1),
    w2: tensor([CO, CO, 3, 3, 3], 0.2, true),
    b2: tensor([CO], 0.1),
  };
  return CO === C ? p : { ...p, ws: tensor([CO, C, 1, 1, 1], 0.3, true), bs: tensor([CO], 0.1) };
}

/** the block through the VAE's own code (VaeStream.res) on the CPU */
function vaeBlock(p: BlockParams, C: number, CO: number): Float32Array {
  const vae = new OneBlock(dev, buildWanVaeKernels({ channels: [...new Set([C, CO])] }), p, C);
  const stream = new BlockStream(vae);
  const out = stream.run(Tensor.from(dev, f32, p.x.shape, Float32Array.from(p.x.data)), C, CO).toF32();
  stream.dispose();
  vae.dispose();
  return out;
}

describe('the Wan VAE causal residual block as a layer', () => {
  it('agrees with the VAE implementation (models/vae/common.ts) on the CPU and with float64', () => {
    const p = blockParams(8, 8, 3, 4, 5);
    const graph = g.get('resBlock')!;
    const ins = layerInputs(p);
    const plan = planLayer(graph);
    // one nested step, five kernels as the VAE has: RMS norm + SiLU + cast into conv 1's padded buffer;
    // conv 1; its bias + RMS norm + SiLU + cast from its grid into conv 2's padded buffer; conv 2; its
    // bias + x from its grid
    expect(plan.steps.map((s) => s.label)).toEqual([
      'resBlock_f0: 10 ops (mul, reduce, div, add, rsqrt, sigmoid, cast); conv %20 3x3x3 stride 1x1x1 8->8 + resBlock_f1: 11 ops (add, mul, reduce, div, rsqrt, sigmoid, cast); conv %35 3x3x3 stride 1x1x1 8->8 + resBlock_f2: 2 ops (add)',
    ]);
    const got = runPlan(graph, ins)[0]!.toF32();
    close(got, vaeBlock(p, 8, 8), 1e-5);
    close(got, runGraph(graph, ins, { exact: true })[0]!.data, 2e-2);
  });

  it('with a 1x1x1 shortcut (8 -> 12 channels): two convolutions into one residual add', () => {
    const p = blockParams(8, 12, 2, 3, 5);
    const graph = g.get('resShort')!;
    const ins = layerInputs(p);
    const got = runPlan(graph, ins)[0]!.toF32();
    close(got, vaeBlock(p, 8, 12), 1e-5);
    close(got, runGraph(graph, ins)[0]!.data, 1e-5);
  });
});
