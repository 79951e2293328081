// Layer plans end to end on the CPU backend: fused kernels (generated through the kernel DSL's IR
// and JS backend) + matmuls, against the unfused node-by-node execution of the same graph, and
// the number of kernels each layer needs.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { f32, bf16 } from '../../dsl/dtypes.js';
import { programFromText } from '../../compiler/frontend.js';
import { lowerLayer } from '../../compiler/layer/frontend.js';
import { runGraph, type HostTensor } from '../../compiler/layer/interp.js';
import { planLayer } from '../../compiler/layer/plan.js';
import { compileCudaAsync, findNvcc } from '../../compiler/nvcc.js';
import { countSm90Opcodes } from '../../compiler/sass.js';
import type { LayerGraph } from '../../compiler/layer/graph.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { PlanRunner } from '../../runtime/plan.js';
import { Tensor } from '../../runtime/tensor.js';
import { mulberry32 } from '../helpers.js';
import { virtualDir } from './dsl.js';

const src = `import {
  layer, layerNorm, rmsNorm, softmax, geluTanh, linear, reshape, slice, concat, attention, rope, bf16, type Tensor, type f32,
} from '../../../dsl/layer.js';

/** Wan's FFN half-block on the float32 residual stream: modulated LN, Linear-GELU-Linear, gated residual */
export const ffnBlock = layer(
  (
    x: Tensor<f32, ['F', 'T', 64]>,
    shift: Tensor<f32, ['F', 1, 64]>,
    scale: Tensor<f32, ['F', 1, 64]>,
    gate: Tensor<f32, ['F', 1, 64]>,
    w1: Tensor<bf16, [128, 64]>,
    b1: Tensor<bf16, [128]>,
    w2: Tensor<bf16, [64, 128]>,
    b2: Tensor<bf16, [64]>,
  ) => {
    const h = cast(layerNorm(x, 1e-6) * (1 + scale) + shift, bf16);
    const y = linear(geluTanh(linear(h, w1, b1)), w2, b2);
    return x + y * gate;
  },
);

/** q/k normalisation and a row softmax */
export const qk = layer((q: Tensor<bf16, ['L', 32]>, w: Tensor<bf16, [32]>) => [rmsNorm(q, w, 1e-6), softmax(q)]);

/** Wan's self-attention half-block (one frame, no KV cache yet): modulated LN, q/k/v with RMSNorm on q and k, attention, gated residual */
export const selfAttn = layer(
  (
    x: Tensor<f32, ['L', 64]>,
    shift: Tensor<f32, [1, 64]>,
    scale: Tensor<f32, [1, 64]>,
    gate: Tensor<f32, [1, 64]>,
    wq: Tensor<bf16, [64, 64]>, bq: Tensor<bf16, [64]>, nq: Tensor<bf16, [64]>,
    wk: Tensor<bf16, [64, 64]>, bk: Tensor<bf16, [64]>, nk: Tensor<bf16, [64]>,
    wv: Tensor<bf16, [64, 64]>, bv: Tensor<bf16, [64]>,
    wo: Tensor<bf16, [64, 64]>, bo: Tensor<bf16, [64]>,
  ) => {
    const h = cast(layerNorm(x, 1e-6) * (1 + scale) + shift, bf16);
    const q = reshape(rmsNorm(linear(h, wq, bq), nq, 1e-6), ['L', 2, 32]);
    const k = reshape(rmsNorm(linear(h, wk, bk), nk, 1e-6), ['L', 2, 32]);
    const v = reshape(linear(h, wv, bv), ['L', 2, 32]);
    const o = reshape(attention(q, k, v), ['L', 64]);
    return x + linear(o, wo, bo) * gate;
  },
);

export const rotQ = layer((q: Tensor<bf16, ['L', 4, 32]>, w: Tensor<bf16, [128]>, cos: Tensor<f32, ['L', 1, 32]>, sin: Tensor<f32, ['L', 1, 32]>) =>
  rope(reshape(rmsNorm(reshape(q, ['L', 128]), w, 1e-6), ['L', 4, 32]), cos, sin));

/** q, k, v as one Linear; slices of its result; RMSNorm over the token, RoPE over the heads; v copied */
export const qkvRope = layer(
  (
    x: Tensor<f32, ['F', 'T', 64]>,
    w: Tensor<bf16, [192, 64]>, b: Tensor<bf16, [192]>,
    nq: Tensor<bf16, [64]>, nk: Tensor<bf16, [64]>,
    cos: Tensor<f32, ['F', 'T', 1, 32]>, sin: Tensor<f32, ['F', 'T', 1, 32]>,
  ) => {
    const qkv = linear(cast(layerNorm(x, 1e-6), bf16), w, b);
    const q = reshape(rmsNorm(slice(qkv, -1, 0, 64), nq, 1e-6), ['F', 'T', 2, 32]);
    const k = reshape(rmsNorm(slice(qkv, -1, 64, 128), nk, 1e-6), ['F', 'T', 2, 32]);
    const v = reshape(slice(qkv, 2, 128, 192), ['F', 'T', 2, 32]);
    return [rope(q, cos, sin), rope(k, cos, sin), v];
  },
);

/** a Linear + RMSNorm over its whole output row: the GEMM's row-sum epilogue (clusters over N) */
export const normedQ = layer((x: Tensor<bf16, ['L', 256]>, w: Tensor<bf16, [1536, 256]>, b: Tensor<bf16, [1536]>, n: Tensor<bf16, [1536]>) =>
  rmsNorm(linear(x, w, b), n, 1e-6));

/** a chunk's queries over a KV cache: chunk-causal blocks of L tokens, a window of 8 keys, 3 sink keys */
export const cachedAttn = layer((q: Tensor<bf16, ['L', 2, 64]>, k: Tensor<bf16, ['S', 2, 64]>, v: Tensor<bf16, ['S', 2, 64]>) =>
  attention(q, k, v, { blockTokens: 'L', window: 8, sink: 3 }));

/** two inputs side by side, normalised over the joined row */
export const joined = layer((a: Tensor<f32, ['L', 24]>, b: Tensor<f32, ['L', 40]>, w: Tensor<f32, [64]>) =>
  rmsNorm(concat([a, b], -1), w, 1e-6) * 2);

/** a slice of an input, scaled */
export const middle = layer((x: Tensor<f32, ['L', 8]>) => slice(x, 1, 2, 5) * 2);

export const views = layer((x: Tensor<f32, ['L', 2, 16]>) => layerNorm(reshape(x, ['L', 32]), 1e-5) * 2);

/** head dim 128: a flash-attention template step (the DSL kernel as its fallback) */
export const attn128 = layer((q: Tensor<bf16, ['L', 2, 128]>, k: Tensor<bf16, ['S', 2, 128]>, v: Tensor<bf16, ['S', 2, 128]>) =>
  attention(q, k, v));
`.replace('import {\n  layer,', 'import {\n  cast, layer,');

const path = join(virtualDir, 'plans.ts');
const program = programFromText(path, src);
const graphs = new Map<string, LayerGraph>(program.layers(path).map((r) => [r.name, lowerLayer(program, r)]));
const dev = new CpuDevice();
const rand = mulberry32(11);

function inputsFor(g: LayerGraph, dims: Record<string, number>): { host: HostTensor[]; tensors: Tensor[] } {
  const host: HostTensor[] = [];
  const tensors: Tensor[] = [];
  for (const inp of g.inputs) {
    const shape = inp.type.shape.map((d) => (typeof d === 'number' ? d : dims[d]!));
    const n = shape.reduce((a, b) => a * b, 1);
    const values = Array.from({ length: n }, () => rand() * 2 - 1);
    const t = Tensor.from(dev, inp.type.dtype === 'bf16' ? bf16 : f32, shape, values);
    tensors.push(t);
    host.push({ shape, data: Float64Array.from(t.toF32()) });
  }
  return { host, tensors };
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

describe('layer plans on the CPU', () => {
  it('a captured plan replays on new input values (fixed tensors) and equals a fresh run', () => {
    const g = graphs.get('ffnBlock')!;
    const dims = { F: 2, T: 3 };
    const first = inputsFor(g, dims).tensors;
    const runner = new PlanRunner(planLayer(g));
    const cap = runner.capture(first);
    expect(cap.isGraph).toBe(false);
    expect(cap.outputs[0]!.toF32()).toEqual(runner.run(first)[0]!.toF32());
    // new values written into the same input tensors; the replay sees them
    const second = inputsFor(g, dims).tensors;
    first.forEach((t, i) => dev.write(t.storage, t.byteOffset, new Uint8Array(second[i]!.toRaw().buffer)));
    cap.replay();
    expect(cap.outputs[0]!.toF32()).toEqual(runner.run(second)[0]!.toF32());
    cap.dispose();
    expect(() => cap.replay()).toThrow(/disposed/);
    // inputs are read in place: a strided view cannot be captured
    const strided = [...first];
    strided[0] = Tensor.from(dev, f32, [3, 2, 64], new Float32Array(384)).permute(1, 0, 2);
    expect(() => runner.capture(strided)).toThrow(/not contiguous/);
  });

  it('masked attention over a cache: the interpreter sees what the mask rules say', () => {
    // one head, D = 1 would be degenerate for the layer's types; check the visibility through values:
    // v = one-hot of the key index, so each output row is the attention distribution over the keys
    const g = graphs.get('cachedAttn')!;
    const [L, S] = [5, 17];
    const q = { shape: [L, 2, 64], data: new Float64Array(L * 128) };
    const k = { shape: [S, 2, 64], data: new Float64Array(S * 128) };
    const v = { shape: [S, 2, 64], data: new Float64Array(S * 128) };
    for (let j = 0; j < S; j++) v.data[j * 128 + j] = 1; // head 0, column j
    const [o] = runGraph(g, [q, k, v], { exact: true });
    for (let i = 0; i < L; i++) {
      const p = S - L + i;
      const hi = Math.min(S, (Math.floor(p / L) + 1) * L);
      const seen = [...Array(S).keys()].filter((j) => o!.data[i * 128 + j]! > 0);
      const want = [...Array(S).keys()].filter((j) => j < hi && (j >= hi - 8 || j < 3));
      expect(seen, `query ${i}`).toEqual(want);
    }
  });

  it('concat joins along an axis (the interpreter against a direct computation)', () => {
    const g = graphs.get('joined')!;
    const a = Float64Array.from({ length: 2 * 24 }, (_, i) => i + 1);
    const b = Float64Array.from({ length: 2 * 40 }, (_, i) => -(i + 1));
    const w = new Float64Array(64).fill(1);
    const [y] = runGraph(
      g,
      [
        { shape: [2, 24], data: a },
        { shape: [2, 40], data: b },
        { shape: [64], data: w },
      ],
      {
        exact: true,
      },
    );
    for (let r = 0; r < 2; r++) {
      const row = [...a.slice(r * 24, r * 24 + 24), ...b.slice(r * 40, r * 40 + 40)];
      const rms = Math.sqrt(row.reduce((s, x) => s + x * x, 0) / 64 + 1e-6);
      row.forEach((x, c) => expect(y!.data[r * 64 + c]).toBeCloseTo((2 * x) / rms, 6));
    }
  });

  it('slice takes a column range (the interpreter against a direct computation)', () => {
    const g = graphs.get('middle')!;
    const x = Float64Array.from({ length: 24 }, (_, i) => i - 7.5);
    const [y] = runGraph(g, [{ shape: [3, 8], data: x }], { exact: true });
    expect(y!.shape).toEqual([3, 3]);
    expect([...y!.data]).toEqual([0, 1, 2].flatMap((r) => [2, 3, 4].map((c) => 2 * x[r * 8 + c]!)));
  });

  it.each([
    ['ffnBlock', { F: 2, T: 3 }, 5e-3],
    ['qk', { L: 5 }, 1e-2],
    ['views', { L: 4 }, 1e-6],
    ['selfAttn', { L: 37 }, 2e-2],
    ['rotQ', { L: 6 }, 1e-2],
    ['qkvRope', { F: 2, T: 5 }, 1e-2],
    ['middle', { L: 3 }, 1e-6],
    ['normedQ', { L: 5 }, 1e-2],
    ['cachedAttn', { L: 5, S: 17 }, 1e-2],
    ['joined', { L: 7 }, 1e-5],
    ['attn128', { L: 9, S: 13 }, 1e-2],
  ] as const)('%s: fused plan agrees with unfused execution', (name, dims, tol) => {
    const g = graphs.get(name)!;
    const { host, tensors } = inputsFor(g, dims);
    const outs = new PlanRunner(planLayer(g)).run(tensors);
    const unfused = runGraph(g, host);
    const exact = runGraph(g, host, { exact: true });
    outs.forEach((o, i) => {
      expect(o.shape).toEqual(unfused[i]!.shape);
      const got = o.toF32();
      expect(got.every(Number.isFinite)).toBe(true);
      expect(relErr(got, unfused[i]!.data)).toBeLessThan(tol);
      expect(relErr(got, exact[i]!.data)).toBeLessThan(tol);
    });
  });

  it('fuses each layer into few kernels', () => {
    const count = (n: string, options = {}) => {
      const p = planLayer(graphs.get(n)!, options);
      return {
        kernels: p.steps.filter((s) => s.kind === 'kernel').length,
        matmuls: p.steps.filter((s) => s.kind === 'matmul').length,
        gemms: p.steps.filter((s) => s.kind === 'gemm').length,
        attention: p.steps.filter((s) => s.kind === 'attention').length,
      };
    };
    // modulated LN (1 kernel) -> fc1 with bias + GELU as its epilogue -> fc2 with bias + gated residual
    expect(count('ffnBlock')).toEqual({ kernels: 1, matmuls: 0, gemms: 2, attention: 0 });
    // unfused: modulated LN, fc1, bias + GELU, fc2, bias + gated residual
    expect(count('ffnBlock', { fuseGemmEpilogues: false })).toEqual({ kernels: 3, matmuls: 2, gemms: 0, attention: 0 });
    expect(count('qk')).toEqual({ kernels: 1, matmuls: 0, gemms: 0, attention: 0 });
    expect(count('views')).toEqual({ kernels: 1, matmuls: 0, gemms: 0, attention: 0 });
    // modulated LN; q -> bias + RMSNorm and k -> bias + RMSNorm (row-sum GEMM epilogues; unfused:
    // matmul + kernel each); v with its bias fused; attention; o with bias + gated residual fused
    // (head dim 32: the attention is the DSL kernel; 64 and 128 become template steps, see below)
    expect(count('selfAttn', { fuseGemmEpilogues: false })).toEqual({ kernels: 6, matmuls: 4, gemms: 0, attention: 0 });
    expect(count('selfAttn')).toEqual({ kernels: 2, matmuls: 0, gemms: 4, attention: 0 });
    expect(count('attn128')).toEqual({ kernels: 0, matmuls: 0, gemms: 0, attention: 1 });
    // RMSNorm over the token's row and RoPE over its heads (tables broadcast over the heads): one kernel
    expect(count('rotQ')).toEqual({ kernels: 1, matmuls: 0, gemms: 0, attention: 0 });
    // LayerNorm; the q/k/v GEMM (bias in its epilogue); both norms, both rotations and v's copy in one
    expect(count('qkvRope')).toEqual({ kernels: 2, matmuls: 0, gemms: 1, attention: 0 });
    expect(count('middle')).toEqual({ kernels: 1, matmuls: 0, gemms: 0, attention: 0 });
    expect(count('joined')).toEqual({ kernels: 1, matmuls: 0, gemms: 0, attention: 0 });
    expect(count('normedQ')).toEqual({ kernels: 0, matmuls: 0, gemms: 1, attention: 0 });
    // masks: the template step (its JS twin on the CPU), no DSL-kernel fallback
    expect(count('cachedAttn')).toEqual({ kernels: 0, matmuls: 0, gemms: 0, attention: 1 });
    const masked = planLayer(graphs.get('cachedAttn')!).steps[0]!;
    expect(masked.kind === 'attention' && [masked.mask, masked.fallback]).toEqual([
      { blockTokens: ['L'], windowTokens: [8], sinkTokens: [3] },
      [],
    ]);
    const step = planLayer(graphs.get('attn128')!).steps[0]!;
    expect(step.kind === 'attention' && step.candidates[0]!.name).toBe('sfc_attn_fwd_sm90_bf16_d128_bc128_s3');
  });

  it('generates GEMM epilogues from the layer ops, compiled for sm_90a with wgmma and no spills', async () => {
    const p = planLayer(graphs.get('ffnBlock')!);
    const gemms = p.steps.filter((s) => s.kind === 'gemm');
    const [fc1, fc2] = gemms as Extract<(typeof gemms)[number], { kind: 'gemm' }>[];
    // fc2: the matmul rounded to bf16 as the unfused plan stores it, + bias, then x + y * gate in f32 with
    // the gate broadcast over the T tokens of each frame (F, T symbolic: run-time parameters)
    expect(fc2!.candidates[0]!.spec.epilogue.custom!.body).toMatchInlineSnapshot(`
      "int r_ = row;
          [[maybe_unused]] const int i1 = r_ % d_T;
          r_ /= d_T;
          [[maybe_unused]] const int i0 = r_;
          const float m_ = sfc_round_bf16(y);
          const float v7 = sfc_from_bf16(t7[(long long)col]);
          const float v45 = sfc_round_bf16((m_ + v7));
          const float v46 = (float)(v45);
          const float v3 = t3[(long long)col + (long long)i0 * 64 * 1];
          const float v47 = (v46 * v3);
          const float v0 = t0[(long long)col + (long long)i1 * 64 + (long long)i0 * 64 * d_T];
          const float v48 = (v0 + v47);
          y = v48;"
    `);
    expect(fc2!.candidates[0]!.spec.output).toBe('f32');
    expect(fc1!.candidates[0]!.spec.output).toBe('bf16');
    expect(fc2!.fallback.map((s) => s.kind)).toEqual(['matmul', 'kernel']);
    if (!findNvcc()) return;
    const results = await Promise.all(
      gemms
        .flatMap((s) => (s.kind === 'gemm' ? [s.candidates[0]!] : []))
        .map((art) =>
          compileCudaAsync({ source: art.source, arch: 'sm_90a', name: `${art.entry}.cu` }).then((r) => ({ art, r })),
        ),
    );
    for (const { art, r } of results) {
      const rep = r.reports[0]!;
      expect(rep.spillStoreBytes + rep.spillLoadBytes + rep.stackBytes, art.entry).toBe(0);
      expect(r.log).not.toMatch(/warning|serializ/i);
      expect(countSm90Opcodes(r.cubin, art.entry).HGMMA).toBeGreaterThan(0);
    }
  }, 120_000);

  it('fuses an RMSNorm after a Linear into the GEMM as a row-sum epilogue, clusters covering N', async () => {
    const p = planLayer(graphs.get('normedQ')!);
    expect(p.steps.map((s) => s.kind)).toEqual(['gemm']);
    const s = p.steps[0]!;
    if (s.kind !== 'gemm') return;
    // N = 1536: 6 tiles of 256 or 8 of 192 per row; the sum of squares, then the scaled value
    expect(s.candidates.map((c) => [c.spec.bn, c.spec.epilogue.custom!.rowCluster])).toEqual([
      [256, 6],
      [192, 8],
    ]);
    const e = s.candidates[0]!.spec.epilogue.custom!;
    expect(e.rowSum).toMatch(/s = \(float\)\(v\d+\);$/);
    expect(e.body).toMatch(/rowsum/);
    expect(s.fallback.map((f) => f.kind)).toEqual(['matmul', 'kernel']);
    if (!findNvcc()) return;
    for (const art of s.candidates) {
      expect(art.source).toContain(`__cluster_dims__(1, ${art.spec.epilogue.custom!.rowCluster}, 1)`);
      const r = await compileCudaAsync({ source: art.source, arch: 'sm_90a', name: `${art.entry}.cu` });
      const rep = r.reports[0]!;
      expect(rep.spillStoreBytes + rep.spillLoadBytes + rep.stackBytes, art.entry).toBe(0);
      expect(countSm90Opcodes(r.cubin, art.entry).HGMMA).toBeGreaterThan(0);
    }
  }, 120_000);

  it('the new fused kernels (norm + RoPE + slices, concat) compile for sm_80, sm_89 and sm_90a without spills', async () => {
    if (!findNvcc()) return;
    const kernels = ['qkvRope', 'joined'].flatMap((n) =>
      planLayer(graphs.get(n)!).steps.flatMap((s) => (s.kind === 'kernel' ? [s.artifact] : [])),
    );
    expect(kernels.length).toBe(3);
    const jobs = kernels.flatMap((k) =>
      k.cuda.flatMap((v) =>
        (['sm_80', 'sm_89', 'sm_90a'] as const).map((arch) =>
          compileCudaAsync({ source: v.source, arch, name: `${v.entry}-${arch}.cu` }).then((r) => ({ v, arch, r })),
        ),
      ),
    );
    for (const { v, arch, r } of await Promise.all(jobs)) {
      const rep = r.reports.find((x) => x.name === v.entry) ?? r.reports[0]!;
      expect(rep.spillStoreBytes + rep.spillLoadBytes, `${v.entry} ${arch}`).toBe(0);
    }
  }, 180_000);

  it('checks its inputs', () => {
    const g = graphs.get('qk')!;
    const runner = new PlanRunner(planLayer(g));
    const q = Tensor.zeros(dev, bf16, [5, 31]);
    const w = Tensor.zeros(dev, bf16, [32]);
    expect(() => runner.run([q, w])).toThrow("qk: 'q' dim 1 is 31, expected 32");
    expect(() => runner.run([Tensor.zeros(dev, f32, [5, 32]), w])).toThrow("qk: 'q' must be bf16, got f32");
  });
});
