// The kernel library's test cases, shared by the CPU suite (JS backend vs float64 references) and
// the GPU suite (CUDA backend vs the JS backend). Each case builds random inputs of odd sizes, runs a
// kernel, and returns the outputs with float64 references and a tolerance.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { KernelArtifact } from '../../dsl/artifact.js';
import { bf16, e4m3, f32, i32, type DType } from '../../dsl/dtypes.js';
import { packageRoot } from '../../dsl/paths.js';
import { randn as philoxRandn } from '../../dsl/random.js';
import type { Device } from '../../runtime/device.js';
import { launch, type KernelArg } from '../../runtime/kernels.js';
import { Tensor } from '../../runtime/tensor.js';
import { compileFiles } from '../../compiler/compile.js';
import { relativeBucket } from '../../models/text/umt5.js';

export const kernelDir = join(packageRoot(import.meta.url), 'models', 'kernels');

let cached: Map<string, KernelArtifact> | undefined;
export function library(): Map<string, KernelArtifact> {
  if (!cached) {
    const files = readdirSync(kernelDir)
      .filter((f) => f.endsWith('.ts'))
      .map((f) => join(kernelDir, f));
    cached = new Map(compileFiles(files).map((a) => [a.name, a]));
  }
  return cached;
}

export function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return {
    uniform: (lo = -1, hi = 1) => lo + (hi - lo) * u(),
    normal: () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()),
  };
}

export interface Output {
  name: string;
  got: Tensor;
  ref: Float64Array;
  tol: number;
}

export interface Case {
  kernel: string;
  run: (dev: Device, seed: number) => Output[];
}

const geluRef = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

function inputs(dev: Device, dtype: DType, shape: number[], gen: () => number): [Tensor, Float64Array] {
  const n = shape.reduce((a, b) => a * b, 1);
  const t = Tensor.from(dev, dtype, shape, Array.from({ length: n }, gen));
  return [t, Float64Array.from(t.toF32())]; // reference sees the rounded inputs
}

/** a tensor of normal samples (times `scale`) and the values the reference sees (rounded to dtype) */
export function randTensor(
  dev: Device,
  dtype: DType,
  shape: number[],
  seed: number,
  scale = 1,
): [Tensor, Float64Array] {
  const r = rng(seed);
  return inputs(dev, dtype, shape, () => r.normal() * scale);
}

/** an output tensor filled with NaN, so unwritten elements fail the check */
export function poisoned(dev: Device, dtype: DType, shape: number[]): Tensor {
  const t = Tensor.empty(dev, dtype, shape);
  const pattern = dtype.bytes === 1 ? 0x7f : 0xff; // NaN in every float format
  dev.fill(t.storage, 0, t.storage.bytes, pattern);
  return t;
}

function run(dev: Device, name: string, grid: number[], args: KernelArg[]): void {
  launch(library().get(name)!, grid, args);
}

function elementwise(
  name: string,
  dtypeIn: DType,
  dtypeOut: DType,
  arity: number,
  f: (...x: number[]) => number,
  tol: number,
): Case {
  return {
    kernel: name,
    run: (dev, seed) => {
      const r = rng(seed);
      const n = 3001;
      const ins = Array.from({ length: arity }, () => inputs(dev, dtypeIn, [n], () => r.uniform(-3, 3)));
      const out = poisoned(dev, dtypeOut, [n]);
      run(dev, name, [Math.ceil(n / 1024)], [...ins.map((x) => x[0]), out, n]);
      const ref = Float64Array.from({ length: n }, (_, i) => f(...ins.map((x) => x[1][i]!)));
      return [{ name: 'out', got: out, ref, tol }];
    },
  };
}

/** rows of D with per-frame modulation rows */
function normCase(
  kernel: string,
  ref: (row: Float64Array, aux: Record<string, Float64Array>, r: number) => number[],
  tol: number,
): Case {
  return {
    kernel,
    run: (dev, seed) => {
      const g = rng(seed);
      const R = 7;
      const D = 1000; // not a multiple of the block, nor of 16
      const tokensPerFrame = 3;
      const frames = Math.ceil(R / tokensPerFrame);
      const eps = 1e-6;
      const dtIn = kernel === 'modulatedLayerNorm' ? f32 : bf16;
      const [x, xr] = inputs(dev, dtIn, [R, D], () => g.normal() * 2 + 0.5);
      const [w, wr] = inputs(dev, bf16, [D], () => g.uniform(0.5, 1.5));
      const [b, br] = inputs(dev, bf16, [D], () => g.uniform(-0.5, 0.5));
      const [sh, shr] = inputs(dev, f32, [frames, D], () => g.normal());
      const [sc, scr] = inputs(dev, f32, [frames, D], () => g.normal() * 0.3);
      const y = poisoned(dev, bf16, [R, D]);
      const args: Record<string, KernelArg[]> = {
        rmsNorm: [x, w, y, D, eps],
        layerNorm: [x, y, D, eps],
        layerNormAffine: [x, w, b, y, D, eps],
        modulatedLayerNorm: [x, sh, sc, y, R, D, tokensPerFrame, eps],
      };
      run(dev, kernel, [kernel === 'modulatedLayerNorm' ? Math.ceil(R / 4) : R], args[kernel]!);
      const out = new Float64Array(R * D);
      for (let r = 0; r < R; r++) {
        const f = Math.floor(r / tokensPerFrame);
        const aux = { w: wr, b: br, shift: shr.subarray(f * D, f * D + D), scale: scr.subarray(f * D, f * D + D) };
        out.set(ref(xr.subarray(r * D, r * D + D), aux, r), r * D);
      }
      return [{ name: 'y', got: y, ref: out, tol }];
    },
  };
}

function stats(row: Float64Array): [number, number] {
  const mean = row.reduce((a, b) => a + b, 0) / row.length;
  const v = row.reduce((a, b) => a + (b - mean) ** 2, 0) / row.length;
  return [mean, 1 / Math.sqrt(v + 1e-6)];
}

export const cases: Case[] = [
  normCase(
    'rmsNorm',
    (row, { w }) => {
      const r = 1 / Math.sqrt(row.reduce((a, b) => a + b * b, 0) / row.length + 1e-6);
      return Array.from(row, (v, i) => v * r * w![i]!);
    },
    1e-2,
  ),
  normCase(
    'layerNorm',
    (row) => {
      const [m, r] = stats(row);
      return Array.from(row, (v) => (v - m) * r);
    },
    1e-2,
  ),
  normCase(
    'layerNormAffine',
    (row, { w, b }) => {
      const [m, r] = stats(row);
      return Array.from(row, (v, i) => (v - m) * r * w![i]! + b![i]!);
    },
    1e-2,
  ),
  normCase(
    'modulatedLayerNorm',
    (row, { shift, scale }) => {
      const [m, r] = stats(row);
      return Array.from(row, (v, i) => (v - m) * r * (1 + scale![i]!) + shift![i]!);
    },
    1e-2,
  ),
  elementwise('add', bf16, bf16, 2, (a, b) => a! + b!, 1e-2),
  elementwise('mul', bf16, bf16, 2, (a, b) => a! * b!, 1e-2),
  elementwise('fmaKernel', bf16, bf16, 3, (a, b, c) => a! * b! + c!, 1e-2),
  elementwise('silu', bf16, bf16, 1, (x) => x! / (1 + Math.exp(-x!)), 1e-2),
  elementwise('geluTanh', bf16, bf16, 1, (x) => geluRef(x!), 1e-2),
  elementwise('castF32ToBf16', f32, bf16, 1, (x) => x!, 1e-2),
  elementwise('castBf16ToF32', bf16, f32, 1, (x) => x!, 1e-6),
  {
    kernel: 'gatedResidual',
    run: (dev, seed) => {
      const g = rng(seed);
      const [R, D, tpf] = [5, 777, 2];
      const [x, xr] = inputs(dev, f32, [R, D], g.normal);
      const [y, yr] = inputs(dev, bf16, [R, D], g.normal);
      const [gate, gr] = inputs(dev, f32, [3, D], g.normal);
      const out = poisoned(dev, f32, [R, D]);
      run(dev, 'gatedResidual', [R], [x, y, gate, out, D, tpf]);
      const ref = Float64Array.from(
        { length: R * D },
        (_, i) => xr[i]! + yr[i]! * gr[Math.floor(i / D / tpf) * D + (i % D)]!,
      );
      return [{ name: 'out', got: out, ref, tol: 1e-6 }];
    },
  },
  {
    kernel: 'softmax',
    run: (dev, seed) => {
      const g = rng(seed);
      const [R, N] = [6, 333];
      const [x, xr] = inputs(dev, bf16, [R, N], () => g.normal() * 3);
      const y = poisoned(dev, bf16, [R, N]);
      run(dev, 'softmax', [R], [x, y, N]);
      const ref = new Float64Array(R * N);
      for (let r = 0; r < R; r++) {
        const row = xr.subarray(r * N, r * N + N);
        const m = Math.max(...row);
        const e = Array.from(row, (v) => Math.exp(v - m));
        const s = e.reduce((a, b) => a + b, 0);
        e.forEach((v, i) => (ref[r * N + i] = v / s));
      }
      return [{ name: 'y', got: y, ref, tol: 1e-2 }];
    },
  },
  {
    kernel: 'quantizeE4m3PerRow',
    run: (dev, seed) => {
      const g = rng(seed);
      const [R, D] = [5, 1000];
      const [x, xr] = inputs(dev, bf16, [R, D], () => g.normal() * 10);
      const y = poisoned(dev, e4m3, [R, D]);
      const s = poisoned(dev, f32, [R]);
      run(dev, 'quantizeE4m3PerRow', [R], [x, y, s, D]);
      const sref = new Float64Array(R);
      for (let r = 0; r < R; r++) sref[r] = Math.max(...Array.from(xr.subarray(r * D, r * D + D), Math.abs)) / 448;
      // dequantised values vs the input: FP8 keeps 3 mantissa bits (relative error ~2^-4)
      const deq = dequant(dev, y, s, R, D, 1);
      return [
        { name: 'scale', got: s, ref: sref, tol: 1e-6 },
        { name: 'dequantised', got: deq, ref: xr, tol: 5e-2 },
      ];
    },
  },
  {
    kernel: 'quantizeE4m3PerTensor',
    run: (dev, seed) => {
      const g = rng(seed);
      const n = 5000;
      const [x, xr] = inputs(dev, bf16, [n], () => g.normal() * 100);
      const amax = Tensor.zeros(dev, f32, [1]);
      run(dev, 'absmaxReduce', [Math.ceil(n / 4096)], [x, amax, n]);
      const y = poisoned(dev, e4m3, [n]);
      const s = poisoned(dev, f32, [1]);
      run(dev, 'quantizeE4m3PerTensor', [Math.ceil(n / 1024)], [x, amax, y, s, n]);
      const am = Math.max(...Array.from(xr, Math.abs));
      return [
        { name: 'amax', got: amax, ref: Float64Array.of(am), tol: 1e-7 },
        { name: 'dequantised', got: dequant(dev, y, s, 5, n / 5, 0), ref: xr, tol: 5e-2 },
      ];
    },
  },
  {
    kernel: 'rope3d',
    run: (dev, seed) => {
      const g = rng(seed);
      const [F, GH, GW, H, P, fo] = [2, 3, 5, 3, 64, 4];
      const L = F * GH * GW;
      const [x, xr] = inputs(dev, bf16, [L, H, 2 * P], g.normal);
      // Wan's tables: pairs split 22 (frame) / 21 (height) / 21 (width), theta 10000, float64 angles
      const split = [22, 21, 21];
      const freqs: number[] = [];
      split.forEach((n) => {
        for (let k = 0; k < n; k++) freqs.push(1 / 10000 ** ((2 * k) / (2 * n)));
      });
      const maxPos = 16;
      const cosv = new Float64Array(maxPos * P);
      const sinv = new Float64Array(maxPos * P);
      for (let p = 0; p < maxPos; p++)
        for (let j = 0; j < P; j++) {
          cosv[p * P + j] = Math.cos(p * freqs[j]!);
          sinv[p * P + j] = Math.sin(p * freqs[j]!);
        }
      const cosT = Tensor.from(dev, f32, [maxPos, P], cosv);
      const sinT = Tensor.from(dev, f32, [maxPos, P], sinv);
      const y = poisoned(dev, bf16, [L, H, 2 * P]);
      run(dev, 'rope3d', [L], [x, cosT, sinT, y, H, GH, GW, fo]);
      const ref = new Float64Array(L * H * 2 * P);
      for (let t = 0; t < L; t++) {
        const pos = [Math.floor(t / (GH * GW)) + fo, Math.floor((t % (GH * GW)) / GW), t % GW];
        for (let h = 0; h < H; h++)
          for (let j = 0; j < P; j++) {
            const axis = j < 22 ? 0 : j < 43 ? 1 : 2;
            const a = pos[axis]! * freqs[j]!;
            const i = (t * H + h) * 2 * P + 2 * j;
            ref[i] = xr[i]! * Math.cos(a) - xr[i + 1]! * Math.sin(a);
            ref[i + 1] = xr[i]! * Math.sin(a) + xr[i + 1]! * Math.cos(a);
          }
      }
      return [{ name: 'y', got: y, ref, tol: 1e-2 }];
    },
  },
  {
    kernel: 'flowToX0',
    run: (dev, seed) => {
      const g = rng(seed);
      const [F, fs] = [3, 1001];
      const n = F * fs;
      const [xt, xtr] = inputs(dev, f32, [n], g.normal);
      const [fl, flr] = inputs(dev, f32, [n], g.normal);
      const [sg, sgr] = inputs(dev, f32, [F], () => g.uniform(0, 1));
      const x0 = poisoned(dev, f32, [n]);
      run(dev, 'flowToX0', [Math.ceil(n / 1024)], [xt, fl, sg, x0, n, fs]);
      const ref = Float64Array.from({ length: n }, (_, i) => xtr[i]! - sgr[Math.floor(i / fs)]! * flr[i]!);
      return [{ name: 'x0', got: x0, ref, tol: 1e-6 }];
    },
  },
  {
    kernel: 'renoise',
    run: (dev, seed) => {
      const g = rng(seed);
      const [F, fs, s, off] = [2, 1500, 1234, 77];
      const n = F * fs;
      const [x0, x0r] = inputs(dev, f32, [n], g.normal);
      const [sg, sgr] = inputs(dev, f32, [F], () => g.uniform(0, 1));
      const xt = poisoned(dev, f32, [n]);
      run(dev, 'renoise', [Math.ceil(n / 1024)], [x0, sg, xt, n, fs, s, off]);
      const ref = Float64Array.from({ length: n }, (_, i) => {
        const sig = sgr[Math.floor(i / fs)]!;
        return (1 - sig) * x0r[i]! + sig * philoxRandn(s, off + i);
      });
      return [{ name: 'xt', got: xt, ref, tol: 1e-5 }];
    },
  },
  ...[1, 2, 3, 4].map((arity): Case => ({
    kernel: `combine${arity}`,
    run: (dev, seed) => {
      const g = rng(seed);
      const n = 3001;
      const ins = Array.from({ length: arity }, () => inputs(dev, f32, [n], g.normal));
      const coefs = Array.from({ length: arity }, () => Math.fround(g.uniform(-2, 2)));
      const out = poisoned(dev, f32, [n]);
      run(dev, `combine${arity}`, [Math.ceil(n / 1024)], [...ins.map((x) => x[0]), out, ...coefs, n]);
      const ref = Float64Array.from({ length: n }, (_, i) => ins.reduce((a, x, k) => a + coefs[k]! * x[1][i]!, 0));
      return [{ name: 'out', got: out, ref, tol: 1e-6 }];
    },
  })),
  {
    kernel: 'randnFill',
    run: (dev) => {
      const n = 4097;
      const out = poisoned(dev, f32, [n]);
      run(dev, 'randnFill', [Math.ceil(n / 1024)], [out, n, 42, 1000]);
      return [
        {
          name: 'out',
          got: out,
          ref: Float64Array.from({ length: n }, (_, i) => philoxRandn(42, 1000 + i)),
          tol: 1e-5,
        },
      ];
    },
  },
];

cases.push({
  kernel: 'attentionFwd',
  run: (dev, seed) => {
    const g = rng(seed);
    const [Lq, Lk, H, DH, kvLen] = [5, 150, 3, 128, 130]; // keys past kvLen are masked; not a multiple of 64
    const scale = 1 / Math.sqrt(DH);
    const [q, qr] = inputs(dev, bf16, [Lq, H, DH], g.normal);
    const [k, kr] = inputs(dev, bf16, [Lk, H, DH], g.normal);
    const [v, vr] = inputs(dev, bf16, [Lk, H, DH], g.normal);
    const o = poisoned(dev, bf16, [Lq, H, DH]);
    const lse = poisoned(dev, f32, [Lq, H]);
    run(dev, 'attentionFwd', [Lq, H], [q, k, v, o, lse, H, kvLen, scale]);
    const oref = new Float64Array(Lq * H * DH);
    const lref = new Float64Array(Lq * H);
    for (let i = 0; i < Lq; i++)
      for (let h = 0; h < H; h++) {
        const s = Array.from({ length: kvLen }, (_, j) => {
          let dot = 0;
          for (let d = 0; d < DH; d++) dot += qr[(i * H + h) * DH + d]! * kr[(j * H + h) * DH + d]!;
          return dot * scale;
        });
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const z = e.reduce((a, b) => a + b, 0);
        lref[i * H + h] = m + Math.log(z);
        for (let d = 0; d < DH; d++) {
          let acc = 0;
          for (let j = 0; j < kvLen; j++) acc += e[j]! * vr[(j * H + h) * DH + d]!;
          oref[(i * H + h) * DH + d] = acc / z;
        }
      }
    return [
      { name: 'o', got: o, ref: oref, tol: 1e-2 },
      { name: 'lse', got: lse, ref: lref, tol: 1e-5 },
    ];
  },
});

cases.push({
  kernel: 'tokenEmbedding',
  run: (dev, seed) => {
    const g = rng(seed);
    const [V, DIM] = [7, 4096];
    const ids = [3, 0, 6, 3, 1];
    const [table, tr] = inputs(dev, bf16, [V, DIM], g.normal);
    const out = poisoned(dev, f32, [ids.length, DIM]);
    run(dev, 'tokenEmbedding', [ids.length], [Tensor.from(dev, i32, [ids.length], ids), table, out]);
    const ref = new Float64Array(ids.length * DIM);
    ids.forEach((id, t) => ref.set(tr.subarray(id * DIM, (id + 1) * DIM), t * DIM));
    return [{ name: 'out', got: out, ref, tol: 1e-7 }];
  },
});

cases.push({
  kernel: 'relPosAttention',
  run: (dev, seed) => {
    const g = rng(seed);
    // not a multiple of the key block; offsets reach past T5's max distance (128)
    const [L, H, DH, buckets] = [150, 3, 64, 32];
    const small = () => 0.3 * g.normal();
    const [q, qr] = inputs(dev, bf16, [L, H, DH], small);
    const [k, kr] = inputs(dev, bf16, [L, H, DH], small);
    const [v, vr] = inputs(dev, bf16, [L, H, DH], g.normal);
    const [table, tr] = inputs(dev, bf16, [buckets, H], g.normal);
    const bucketOf = Int32Array.from({ length: 2 * L - 1 }, (_, i) => relativeBucket(i - (L - 1), buckets));
    const o = poisoned(dev, bf16, [L, H, DH]);
    run(dev, 'relPosAttention', [L, H], [q, k, v, o, table, Tensor.from(dev, i32, [2 * L - 1], bucketOf), H, L]);
    const oref = new Float64Array(L * H * DH);
    for (let i = 0; i < L; i++)
      for (let h = 0; h < H; h++) {
        const s = Array.from({ length: L }, (_, j) => {
          let dot = 0;
          for (let d = 0; d < DH; d++) dot += qr[(i * H + h) * DH + d]! * kr[(j * H + h) * DH + d]!;
          return dot + tr[bucketOf[j - i + L - 1]! * H + h]!;
        });
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let d = 0; d < DH; d++) {
          let acc = 0;
          for (let j = 0; j < L; j++) acc += e[j]! * vr[(j * H + h) * DH + d]!;
          oref[(i * H + h) * DH + d] = acc / z;
        }
      }
    return [{ name: 'o', got: o, ref: oref, tol: 1e-2 }];
  },
});

// The CUDA backend's register layouts (test/kernels/layout-kernels.ts): a row broadcast over a
// [ROWS, N] tile in the replicated layout (N = 128) and in the plain one (N = 512), reductions, stores
// and atomics from it, once with aligned pointers and once with a misaligned x (the generic variant).
const layoutKernels = new Map<string, KernelArtifact>();
function layoutKernel(ROWS: number, N: number): KernelArtifact {
  const key = `${ROWS}x${N}`;
  if (!layoutKernels.has(key)) {
    const file = join(packageRoot(import.meta.url), 'test', 'kernels', 'layout-kernels.ts');
    layoutKernels.set(key, compileFiles([file], { consts: { ROWS, N } })[0]!);
  }
  return layoutKernels.get(key)!;
}

function rowBroadcastCase(ROWS: number, N: number, R: number): Case {
  return {
    kernel: `rowBroadcast ${ROWS}x${N}`,
    run: (dev, seed) => {
      const g = rng(seed);
      const P = Math.ceil(R / ROWS);
      const outs: Output[] = [];
      for (const misaligned of [false, true]) {
        const xb = Tensor.from(
          dev,
          f32,
          [R * N + 1],
          Array.from({ length: R * N + 1 }, () => g.normal()),
        );
        const x = xb.narrow(0, misaligned ? 1 : 0, R * N);
        const xr = Float64Array.from(x.toF32());
        const [w, wr] = inputs(dev, bf16, [P, N], () => g.uniform(-2, 2));
        const [b, br] = inputs(dev, f32, [N], g.normal);
        const y = poisoned(dev, bf16, [R, N]);
        const wsum = poisoned(dev, f32, [P]);
        const wcopy = poisoned(dev, f32, [P, N]);
        const tot = poisoned(dev, f32, [P]);
        const acc = Tensor.zeros(dev, f32, [N]);
        launch(layoutKernel(ROWS, N), [P], [x, w, b, y, wsum, wcopy, acc, tot, R]);
        const yr = new Float64Array(R * N);
        const totr = new Float64Array(P);
        for (let r = 0; r < R; r++) {
          const p = Math.floor(r / ROWS);
          for (let j = 0; j < N; j++) {
            const xw = xr[r * N + j]! * wr[p * N + j]!;
            yr[r * N + j] = xw + br[j]!;
            totr[p] += xw;
          }
        }
        const wsumr = Float64Array.from({ length: P }, (_, p) =>
          wr.subarray(p * N, p * N + N).reduce((a, c) => a + c, 0),
        );
        const accr = Float64Array.from({ length: N }, (_, j) => {
          let a = 0;
          for (let p = 0; p < P; p++) a += wr[p * N + j]!;
          return a;
        });
        const tag = misaligned ? ' (generic variant)' : '';
        outs.push(
          { name: `y${tag}`, got: y, ref: yr, tol: 1e-2 },
          { name: `tot${tag}`, got: tot, ref: totr, tol: 1e-5 },
          { name: `wsum${tag}`, got: wsum, ref: wsumr, tol: 1e-6 },
          { name: `wcopy${tag}`, got: wcopy, ref: wr.map((v) => 2 * v), tol: 1e-7 },
          { name: `acc${tag}`, got: acc, ref: accr, tol: 1e-6 },
        );
      }
      return outs;
    },
  };
}

cases.push(rowBroadcastCase(4, 128, 19), rowBroadcastCase(2, 512, 7));

function dequant(dev: Device, y: Tensor, s: Tensor, R: number, D: number, rowScale: number): Tensor {
  const out = poisoned(dev, bf16, [R, D]);
  run(dev, 'dequantizeE4m3', [R], [y, s, out, D, rowScale]);
  return out;
}

/** ||got - ref|| / ||ref||, NaN when any element is NaN */
export function relErr(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const g = got[i]!;
    if (Number.isNaN(g)) return NaN;
    num += (g - ref[i]!) ** 2;
    den += ref[i]! ** 2;
  }
  return Math.sqrt(num / den);
}
