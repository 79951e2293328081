// Library cases of the TAEHV decoder's kernels (models/kernels/taehv.ts, launched as in
// models/vae/taehv.ts), each against a float64 reference written here from the decoder's semantics
// (test/reference/taehv.py), on random inputs with poisoned outputs. The kernels run with their
// default specialisation (C = CP = 64, Z = 16, PIX = 32 pixels of a row per program, 256 for
// taehvToVideo); widths are odd and not multiples of PIX, so a row takes a full and a partial program.
// The channel kernels also run a variant specialised as compiler/bundle.ts buildTaehvKernels does for
// buffers padded to a convolution GEMM's K-slice (C = 40 of CP = 64), whose channels past C are zero.
import { join } from 'node:path';
import type { KernelArtifact } from '../../dsl/artifact.js';
import { bf16, f32 } from '../../dsl/dtypes.js';
import { artifactOf, lowerKernel } from '../../compiler/compile.js';
import { DslProgram } from '../../compiler/frontend.js';
import type { Device } from '../../runtime/device.js';
import { launch, type KernelArg } from '../../runtime/kernels.js';
import { Tensor } from '../../runtime/tensor.js';
import { kernelDir, library, poisoned, randTensor, rng, type Case, type Output } from './library.js';

/** the default specialisation's channels (C = CP = 64) and latent channels (Z = 16 of CP = 64) */
const C = 64;
const CP = 64;
const Z = 16;
const PIX = 32;
/** the padded variant's channels: C = 40 in buffers of CP = 64 */
const CS = 40;

const rand = randTensor;

const k = (name: string) => library().get(name)!;

let program: DslProgram | undefined;
const variants = new Map<string, KernelArtifact>();
/** `name` specialised for C channels in buffers of CP (named as buildTaehvKernels names them) */
function padded(name: string, c: number, cp: number): KernelArtifact {
  const key = `${name}_c${c}p${cp}`;
  let a = variants.get(key);
  if (!a) {
    const file = join(kernelDir, 'taehv.ts');
    program ??= new DslProgram([file]);
    a = { ...artifactOf(lowerKernel(program, file, name, { consts: { C: c, CP: cp, PIX } })), name: key };
    variants.set(key, a);
  }
  return a;
}

/** grid of a kernel over T frames of `rows` rows of `width` pixels, PIX pixels per program */
const rowsGrid = (width: number, rows: number, T: number, pix = PIX) => [Math.ceil(width / pix), rows, T];

function run(a: KernelArtifact, grid: number[], args: KernelArg[]): void {
  launch(a, grid, args);
}

/**
 * A zero-padded channels-last buffer [T, H + 2 pad, W + 2 pad, cp]: pixel (t, y, x) channel c < n is
 * f(t, y, x, c), everything else (borders, channels past n) zero.
 */
function paddedRef(
  T: number,
  H: number,
  W: number,
  pad: number,
  n: number,
  cp: number,
  f: (t: number, y: number, x: number, c: number) => number,
): Float64Array {
  const [Hp, Wp] = [H + 2 * pad, W + 2 * pad];
  const ref = new Float64Array(T * Hp * Wp * cp);
  for (let t = 0; t < T; t++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        for (let c = 0; c < n; c++) ref[((t * Hp + y + pad) * Wp + x + pad) * cp + c] = f(t, y, x, c);
  return ref;
}

/** row of pixel (t, y, x) of a convolution's output on the padded grid of frames of H x W */
const gridRow = (t: number, y: number, x: number, H: number, W: number) => (t * (H + 2) + y) * (W + 2) + x;

/** taehvActPad (relu, keep) with n channels in buffers of cp */
function actPad(dev: Device, seed: number, a: KernelArtifact, n: number, cp: number, relu: number): Output[] {
  const [T, H, W] = [2, 3, 33]; // W + 2 = 35: a program of 32 pixels and one of 3
  const [src, sr] = rand(dev, f32, [T * (H + 2) * (W + 2), n], seed);
  const [bias, br] = rand(dev, f32, [n], seed + 1, 0.5);
  const dst = poisoned(dev, bf16, [T * (H + 2) * (W + 2), cp]);
  const keep = relu; // relu = 1 also keeps the residual (a stage's input); relu = 0 does not
  const out = poisoned(dev, f32, keep ? [T, H, W, n] : [1]);
  run(a, rowsGrid(W + 2, H + 2, T), [src, bias, dst, out, H, W, relu, keep]);
  const act = (t: number, y: number, x: number, c: number) => {
    const v = sr[gridRow(t, y, x, H, W) * n + c]! + br[c]!;
    return relu ? Math.max(v, 0) : v;
  };
  const sfx = `${n}p${cp}${relu ? '' : '.norelu'}`;
  const outs: Output[] = [{ name: `padded${sfx}`, got: dst, ref: paddedRef(T, H, W, 1, n, cp, act), tol: 1e-2 }];
  if (keep) outs.push({ name: `residual${sfx}`, got: out, ref: paddedRef(T, H, W, 0, n, n, act), tol: 1e-6 });
  return outs;
}

/** taehvResidualPad with n channels in buffers of cp, padded (pad = keep = 1) or not (0) */
function residualPad(dev: Device, seed: number, a: KernelArtifact, n: number, cp: number, pad: number): Output[] {
  const [T, H, W] = [2, 3, 35]; // W + 2 = 37 padded, 35 unpadded: two programs either way
  const [conv, cv] = rand(dev, f32, [T * (H + 2) * (W + 2), n], seed);
  const [bias, br] = rand(dev, f32, [n], seed + 1, 0.5);
  const [res, rr] = rand(dev, f32, [T * H * W, n], seed + 2);
  const keep = pad;
  const dst = poisoned(dev, bf16, [T * (H + 2 * pad) * (W + 2 * pad), cp]);
  const out = poisoned(dev, f32, keep ? [T, H, W, n] : [1]);
  run(a, rowsGrid(W + 2 * pad, H + 2 * pad, T), [conv, bias, res, dst, out, H, W, pad, keep]);
  const f = (t: number, y: number, x: number, c: number) =>
    Math.max(cv[gridRow(t, y, x, H, W) * n + c]! + br[c]! + rr[((t * H + y) * W + x) * n + c]!, 0);
  const sfx = `${n}p${cp}`;
  if (!pad) return [{ name: `unpadded${sfx}`, got: dst, ref: paddedRef(T, H, W, 0, n, cp, f), tol: 1e-2 }];
  return [
    { name: `padded${sfx}`, got: dst, ref: paddedRef(T, H, W, 1, n, cp, f), tol: 1e-2 },
    { name: `out${sfx}`, got: out, ref: paddedRef(T, H, W, 0, n, n, f), tol: 1e-6 },
  ];
}

/** taehvUpsamplePad: src [T, H, W, split n] -> T split frames of 2H x 2W, padded, in buffers of cp */
function upsamplePad(dev: Device, seed: number, a: KernelArtifact, n: number, cp: number, split: number): Output[] {
  const [T, H, W] = [2, 3, 17]; // 2W + 2 = 36: a program of 32 pixels and one of 4
  const [src, sr] = rand(dev, f32, [T, H, W, split * n], seed);
  const dst = poisoned(dev, bf16, [T * split * (2 * H + 2) * (2 * W + 2), cp]);
  run(a, rowsGrid(2 * W + 2, 2 * H + 2, T * split), [src, dst, H, W, split]);
  // frame t2 = t split + j of the output: channel group j of frame t, nearest upsampled
  const ref = paddedRef(T * split, 2 * H, 2 * W, 1, n, cp, (t2, y, x, c) => {
    const [t, j] = [Math.floor(t2 / split), t2 % split];
    return sr[((t * H + Math.floor(y / 2)) * W + Math.floor(x / 2)) * split * n + j * n + c]!;
  });
  return [{ name: `split${split}.${n}p${cp}`, got: dst, ref, tol: 1e-2 }];
}

export const taehvCases: Case[] = [
  {
    kernel: 'taehvLatentPad',
    run: (dev, seed): Output[] => {
      // latent frames f0 .. f0 + T of z [Z, F, H, W] -> Clamp tanh(z / 3) * 3, padded, channels past Z zero
      const [F, f0, T, H, W] = [4, 1, 2, 3, 37]; // W + 2 = 39: a program of 32 pixels and one of 7
      const [z, zr] = rand(dev, f32, [Z, F, H, W], seed, 4); // well into tanh's saturation
      const dst = poisoned(dev, bf16, [T * (H + 2) * (W + 2), CP]);
      run(k('taehvLatentPad'), rowsGrid(W + 2, H + 2, T), [z, dst, F, f0, H, W]);
      const ref = paddedRef(T, H, W, 1, Z, CP, (t, y, x, c) => {
        return Math.tanh(zr[((c * F + f0 + t) * H + y) * W + x]! / 3) * 3;
      });
      return [{ name: 'padded', got: dst, ref, tol: 1e-2 }];
    },
  },
  {
    kernel: 'taehvActPad',
    run: (dev, seed): Output[] => [
      ...actPad(dev, seed, k('taehvActPad'), C, CP, 1),
      ...actPad(dev, seed + 10, k('taehvActPad'), C, CP, 0),
      ...actPad(dev, seed + 20, padded('taehvActPad', CS, CP), CS, CP, 1),
    ],
  },
  {
    kernel: 'taehvResidualPad',
    run: (dev, seed): Output[] => [
      ...residualPad(dev, seed, k('taehvResidualPad'), C, CP, 1),
      ...residualPad(dev, seed + 10, k('taehvResidualPad'), C, CP, 0),
      ...residualPad(dev, seed + 20, padded('taehvResidualPad', CS, CP), CS, CP, 1),
      ...residualPad(dev, seed + 30, padded('taehvResidualPad', CS, CP), CS, CP, 0),
    ],
  },
  {
    kernel: 'taehvUpsamplePad',
    run: (dev, seed): Output[] => [
      ...upsamplePad(dev, seed, k('taehvUpsamplePad'), C, CP, 2),
      ...upsamplePad(dev, seed + 10, k('taehvUpsamplePad'), C, CP, 1),
      ...upsamplePad(dev, seed + 20, padded('taehvUpsamplePad', CS, CP), CS, CP, 2),
    ],
  },
  {
    kernel: 'taehvToVideo',
    run: (dev, seed): Output[] => {
      // the 27 (tap, channel) products of the last 3x3 convolution on the padded grid of frames
      // s0 .. s0 + T, summed + bias, as clamp(2 v - 1, -1, 1) into frames t0 .. t0 + T of the video
      const [S, s0, T, H, W, frames, t0] = [4, 1, 2, 3, 259, 5, 2]; // 259 = a program of 256 pixels and one of 3
      const [y, yr] = rand(dev, f32, [S * (H + 2) * (W + 2), 32], seed, 0.25);
      const g = rng(seed + 1);
      const bias = Tensor.from(
        dev,
        f32,
        [3],
        [0, 1, 2].map(() => 0.5 + 0.2 * g.normal()),
      ); // video about [0, 1]
      const br = Float64Array.from(bias.toF32());
      const video = poisoned(dev, f32, [3, frames, H, W]);
      run(k('taehvToVideo'), rowsGrid(W, H, T, 256), [y, bias, video, H, W, frames, t0, s0]);
      const all = video.toF32();
      const got: number[] = [];
      const ref: number[] = [];
      const untouched: number[] = [];
      for (let o = 0; o < 3; o++)
        for (let f = 0; f < frames; f++)
          for (let r = 0; r < H; r++)
            for (let x = 0; x < W; x++) {
              const v = all[((o * frames + f) * H + r) * W + x]!;
              const t = f - t0;
              if (t < 0 || t >= T) {
                untouched.push(v);
                continue;
              }
              // output pixel (r, x) is centred on padded pixel (r + 1, x + 1): taps at (r + ky, x + kx)
              let s = br[o]!;
              for (let ky = 0; ky < 3; ky++)
                for (let kx = 0; kx < 3; kx++)
                  s += yr[gridRow(s0 + t, r + ky, x + kx, H, W) * 32 + (ky * 3 + kx) * 3 + o]!;
              got.push(v);
              ref.push(Math.max(-1, Math.min(1, 2 * s - 1)));
            }
      // frames outside t0 .. t0 + T keep their poison: report them as NaN unless all of them are
      const spill = untouched.some((v) => !Number.isNaN(v));
      const unwritten = Tensor.from(dev, f32, [1], [spill ? NaN : 1]);
      return [
        { name: 'frames', got: Tensor.from(dev, f32, [got.length], got), ref: Float64Array.from(ref), tol: 1e-6 },
        { name: 'otherFramesUntouched', got: unwritten, ref: Float64Array.of(1), tol: 1e-9 },
      ];
    },
  },
];
