// Library cases of the Wan DiT's and VAE's helper kernels (models/kernels/patch.ts, flow.ts users,
// vae.ts), each against a float64 reference written here, on random inputs with poisoned outputs.
// Kernels are compiled with their default specialisation (C = 96, 64 pairs of a 128 head dim).
import { bf16, f32, u8 } from '../../dsl/dtypes.js';
import { randn as philoxRandn } from '../../dsl/random.js';
import { pixelOf } from '../../media/frames.js';
import { launch } from '../../runtime/kernels.js';
import { Tensor } from '../../runtime/tensor.js';
import { library, poisoned, randTensor, type Case, type Output } from './library.js';

const C = 96;

const rand = randTensor;

const k = (name: string) => library().get(name)!;
const silu = (v: number) => v / (1 + Math.exp(-v));

export const wanCases: Case[] = [
  {
    kernel: 'patchify',
    run: (dev, seed): Output[] => {
      const [F, H, W] = [2, 6, 10];
      const [x, xr] = rand(dev, f32, [16, F, H, W], seed);
      const L = F * (H / 2) * (W / 2);
      const out = poisoned(dev, bf16, [L, 64]);
      launch(k('patchify'), [L], [x, out, F, H, W]);
      const ref = new Float64Array(L * 64);
      for (let f = 0; f < F; f++)
        for (let y = 0; y < H / 2; y++)
          for (let z = 0; z < W / 2; z++)
            for (let c = 0; c < 16; c++)
              for (let a = 0; a < 2; a++)
                for (let b = 0; b < 2; b++)
                  ref[((f * (H / 2) + y) * (W / 2) + z) * 64 + c * 4 + a * 2 + b] =
                    xr[((c * F + f) * H + 2 * y + a) * W + 2 * z + b]!;
      return [{ name: 'tokens', got: out, ref, tol: 5e-3 }];
    },
  },
  {
    kernel: 'unpatchify',
    run: (dev, seed): Output[] => {
      const [F, H, W] = [3, 4, 6];
      const L = F * (H / 2) * (W / 2);
      const [t, tr] = rand(dev, f32, [L, 64], seed);
      const out = poisoned(dev, f32, [16, F, H, W]);
      launch(k('unpatchify'), [L], [t, out, F, H, W]);
      const ref = new Float64Array(16 * F * H * W);
      for (let f = 0; f < F; f++)
        for (let y = 0; y < H / 2; y++)
          for (let z = 0; z < W / 2; z++)
            for (let a = 0; a < 2; a++)
              for (let b = 0; b < 2; b++)
                for (let c = 0; c < 16; c++)
                  ref[((c * F + f) * H + 2 * y + a) * W + 2 * z + b] =
                    tr[((f * (H / 2) + y) * (W / 2) + z) * 64 + (a * 2 + b) * 16 + c]!;
      return [{ name: 'latent', got: out, ref, tol: 1e-7 }];
    },
  },
  {
    kernel: 'ropeTables',
    run: (dev, seed): Output[] => {
      const [P, gh, gw, f0, F] = [64, 3, 5, 7, 2];
      const [cosT, cr] = rand(dev, f32, [16, P], seed);
      const [sinT, sr] = rand(dev, f32, [16, P], seed + 9);
      const L = F * gh * gw;
      const co = poisoned(dev, f32, [L, 2 * P]);
      const so = poisoned(dev, f32, [L, 2 * P]);
      launch(k('ropeTables'), [L], [cosT, sinT, co, so, gh, gw, f0]);
      const cref = new Float64Array(L * 2 * P);
      const sref = new Float64Array(L * 2 * P);
      for (let t = 0; t < L; t++) {
        const f = Math.floor(t / (gh * gw)) + f0;
        const y = Math.floor((t % (gh * gw)) / gw);
        const x = t % gw;
        for (let j = 0; j < P; j++) {
          const pos = j < 22 ? f : j < 43 ? y : x;
          for (let e = 0; e < 2; e++) {
            cref[t * 2 * P + 2 * j + e] = cr[pos * P + j]!;
            sref[t * 2 * P + 2 * j + e] = (e ? 1 : -1) * sr[pos * P + j]!;
          }
        }
      }
      return [
        { name: 'cos', got: co, ref: cref, tol: 1e-7 },
        { name: 'sin', got: so, ref: sref, tol: 1e-7 },
      ];
    },
  },
  {
    kernel: 'normActPad',
    run: (dev, seed): Output[] => {
      // from a convolution's padded-grid output (srcGrid 1) into the next padded buffer
      const [T, H, W] = [2, 3, 4];
      const [src, sr] = rand(dev, f32, [T * (H + 2) * (W + 2), C], seed);
      const [bias, br] = rand(dev, f32, [C], seed + 1, 0.1);
      const [gamma, gr] = rand(dev, f32, [C], seed + 2);
      const dst = poisoned(dev, bf16, [T * (H + 2) * (W + 2), C]);
      launch(k('normActPad'), [T * (H + 2) * (W + 2)], [src, bias, gamma, dst, H, W, 1, 1]);
      const ref = new Float64Array(T * (H + 2) * (W + 2) * C);
      for (let t = 0; t < T; t++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            const g = (t * (H + 2) + y) * (W + 2) + x;
            const v = Array.from({ length: C }, (_, c) => sr[g * C + c]! + br[c]!);
            const r = 1 / Math.sqrt(v.reduce((a, b) => a + b * b, 0) / C);
            const d = (t * (H + 2) + y + 1) * (W + 2) + x + 1;
            v.forEach((u, c) => (ref[d * C + c] = silu(u * r * gr[c]!)));
          }
      return [{ name: 'padded', got: dst, ref, tol: 1e-2 }];
    },
  },
  {
    kernel: 'convResidual',
    run: (dev, seed): Output[] => {
      const [T, H, W] = [2, 3, 5];
      const [conv, cv] = rand(dev, f32, [T * (H + 2) * (W + 2), C], seed);
      const [bias, br] = rand(dev, f32, [C], seed + 1);
      const [res, rr] = rand(dev, f32, [T * H * W, C], seed + 2);
      const [rb, rbr] = rand(dev, f32, [C], seed + 3);
      const out = poisoned(dev, f32, [T * H * W, C]);
      launch(k('convResidual'), [T * H * W], [conv, bias, res, rb, out, H, W, 2]);
      const ref = new Float64Array(T * H * W * C);
      for (let p = 0; p < T * H * W; p++) {
        const t = Math.floor(p / (H * W));
        const y = Math.floor((p % (H * W)) / W);
        const g = (t * (H + 2) + y) * (W + 2) + (p % W);
        for (let c = 0; c < C; c++) ref[p * C + c] = cv[g * C + c]! + br[c]! + rr[p * C + c]! + rbr[c]!;
      }
      return [{ name: 'out', got: out, ref, tol: 1e-6 }];
    },
  },
  {
    kernel: 'convBias',
    run: (dev, seed): Output[] => {
      const [T, H, W] = [1, 4, 3];
      const [conv, cv] = rand(dev, f32, [T * H * W, C], seed);
      const [bias, br] = rand(dev, f32, [C], seed + 1);
      const out = poisoned(dev, f32, [T * H * W, C]);
      launch(k('convBias'), [T * H * W], [conv, bias, out, H, W, 0]);
      const ref = Float64Array.from(cv, (v, i) => v + br[i % C]!);
      return [{ name: 'out', got: out, ref, tol: 1e-6 }];
    },
  },
  {
    kernel: 'upsamplePad',
    run: (dev, seed): Output[] => {
      // the temporal split: src [T, H, W, 2C] -> 2T frames of nearest-upsampled C channels
      const [T, H, W] = [1, 2, 3];
      const [src, sr] = rand(dev, f32, [T * H * W, 2 * C], seed);
      const [bias, br] = rand(dev, f32, [2 * C], seed + 1);
      const [H2, W2] = [2 * H + 2, 2 * W + 2];
      const dst = poisoned(dev, bf16, [2 * T * H2 * W2, C]);
      launch(k('upsamplePad'), [2 * T * H2 * W2], [src, bias, dst, H, W, 2]);
      const ref = new Float64Array(2 * T * H2 * W2 * C);
      for (let t2 = 0; t2 < 2 * T; t2++)
        for (let y = 0; y < 2 * H; y++)
          for (let x = 0; x < 2 * W; x++)
            for (let c = 0; c < C; c++) {
              const s = ((Math.floor(t2 / 2) * H + (y >> 1)) * W + (x >> 1)) * 2 * C + (t2 % 2) * C + c;
              ref[((t2 * H2 + y + 1) * W2 + x + 1) * C + c] = sr[s]! + br[(t2 % 2) * C + c]!;
            }
      return [{ name: 'padded', got: dst, ref, tol: 1e-2 }];
    },
  },
  {
    kernel: 'biasCast',
    run: (dev, seed): Output[] => {
      const [src, sr] = rand(dev, f32, [7, C], seed);
      const [bias, br] = rand(dev, f32, [C], seed + 1);
      const out = poisoned(dev, bf16, [7, C]);
      launch(k('biasCast'), [7], [src, bias, out]);
      return [{ name: 'out', got: out, ref: Float64Array.from(sr, (v, i) => v + br[i % C]!), tol: 1e-2 }];
    },
  },
  {
    kernel: 'softmaxRows',
    run: (dev, seed): Output[] => {
      const [R, N, scale] = [3, 5000, 0.3]; // rows longer than one 2048 block
      const [s, sr] = rand(dev, f32, [R, N], seed, 3);
      const p = poisoned(dev, bf16, [R, N]);
      launch(k('softmaxRows'), [R], [s, p, N, scale]);
      const ref = new Float64Array(R * N);
      for (let r = 0; r < R; r++) {
        const row = sr.subarray(r * N, (r + 1) * N);
        const m = Math.max(...row) * scale;
        const e = Array.from(row, (v) => Math.exp(v * scale - m));
        const z = e.reduce((a, b) => a + b, 0);
        e.forEach((v, i) => (ref[r * N + i] = v / z));
      }
      return [{ name: 'p', got: p, ref, tol: 1e-2 }];
    },
  },
  {
    kernel: 'toVideo',
    run: (dev, seed): Output[] => {
      const [T, HW, frames, t0] = [2, 35, 5, 2];
      const [src, sr] = rand(dev, f32, [T * HW, 3], seed, 1.5);
      const video = poisoned(dev, f32, [3, frames, HW]);
      launch(k('toVideo'), [Math.ceil((3 * T * HW) / 1024)], [src, video, HW, T, frames, t0]);
      const all = video.toF32();
      const got: number[] = [];
      const ref: number[] = [];
      for (let c = 0; c < 3; c++)
        for (let t = 0; t < T; t++)
          for (let p = 0; p < HW; p++) {
            got.push(all[(c * frames + t0 + t) * HW + p]!);
            ref.push(Math.max(-1, Math.min(1, sr[(t * HW + p) * 3 + c]!)));
          }
      return [
        { name: 'frames', got: Tensor.from(dev, f32, [got.length], got), ref: Float64Array.from(ref), tol: 1e-7 },
      ];
    },
  },
  {
    kernel: 'latentIn',
    run: (dev, seed): Output[] => {
      const [F, HW, f] = [3, 10, 1];
      const [z, zr] = rand(dev, f32, [16, F, HW], seed);
      const [mean, mr] = rand(dev, f32, [16], seed + 1);
      const [std, sdr] = rand(dev, f32, [16], seed + 2);
      const out = poisoned(dev, bf16, [HW, 16]);
      launch(k('latentIn'), [HW], [z, mean, std, out, F, HW, f]);
      const ref = new Float64Array(HW * 16);
      for (let p = 0; p < HW; p++)
        for (let c = 0; c < 16; c++) ref[p * 16 + c] = zr[(c * F + f) * HW + p]! * sdr[c]! + mr[c]!;
      return [{ name: 'out', got: out, ref, tol: 1e-2 }];
    },
  },
  {
    kernel: 'toRgb8',
    run: (dev, seed): Output[] => {
      const [T, HW] = [3, 41];
      const [video, vr] = rand(dev, f32, [3, T, HW], seed, 1.2);
      const rgb = Tensor.empty(dev, u8, [T, HW, 3]);
      dev.fill(rgb.storage, 0, rgb.storage.bytes, 0xab);
      launch(k('toRgb8'), [Math.ceil((3 * T * HW) / 1024)], [video, rgb, T * HW]);
      const ref = new Float64Array(3 * T * HW);
      for (let t = 0; t < T; t++)
        for (let p = 0; p < HW; p++)
          for (let c = 0; c < 3; c++) ref[(t * HW + p) * 3 + c] = pixelOf(vr[(c * T + t) * HW + p]!);
      const got = Tensor.from(dev, f32, [3 * T * HW], Array.from(rgb.toArray() as Uint8Array));
      return [{ name: 'rgb', got, ref, tol: 1e-9 }];
    },
  },
  ...(['randnAffineBf16', 'randnAffineF32'] as const).map((name): Case => ({
    kernel: name,
    run: (dev, seed): Output[] => {
      const n = 3001;
      const out = poisoned(dev, name.endsWith('Bf16') ? bf16 : f32, [n]);
      launch(k(name), [Math.ceil(n / 1024)], [out, n, seed, 77, 0.25, 1.5]);
      const ref = Float64Array.from({ length: n }, (_, i) => 1.5 + 0.25 * philoxRandn(seed, 77 + i));
      return [{ name: 'out', got: out, ref, tol: name.endsWith('Bf16') ? 1e-2 : 1e-6 }];
    },
  })),
  {
    kernel: 'videoInPad',
    run: (dev, seed): Output[] => {
      // frames [t0, t0 + T) of a channels-first video into a padded channels-last buffer of CP = 64
      const [T, H, W, frames, t0, CP] = [2, 3, 5, 4, 1, 64];
      const [video, vr] = rand(dev, f32, [3, frames, H, W], seed);
      const [Hp, Wp] = [H + 2, W + 2];
      const dst = poisoned(dev, bf16, [T * Hp * Wp, CP]);
      launch(k('videoInPad'), [T * Hp * Wp], [video, dst, H, W, frames, t0]);
      const ref = new Float64Array(T * Hp * Wp * CP);
      for (let t = 0; t < T; t++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++)
            for (let c = 0; c < 3; c++)
              ref[((t * Hp + y + 1) * Wp + x + 1) * CP + c] = vr[((c * frames + t0 + t) * H + y) * W + x]!;
      return [{ name: 'padded', got: dst, ref, tol: 1e-2 }];
    },
  },
  {
    kernel: 's2dPad',
    run: (dev, seed): Output[] => {
      // 2x2 space-to-depth on a (H/2 + 2) x (W/2 + 2) grid, zeros past the image (C = 96, CP = 384)
      const [T, H, W] = [2, 4, 6];
      const [src, sr] = rand(dev, f32, [T * H * W, C], seed);
      const [H2, W2] = [H / 2 + 2, W / 2 + 2];
      const dst = poisoned(dev, bf16, [T * H2 * W2, 4 * C]);
      launch(k('s2dPad'), [T * H2 * W2], [src, dst, H, W]);
      const ref = new Float64Array(T * H2 * W2 * 4 * C);
      for (let t = 0; t < T; t++)
        for (let Y = 0; Y < H2; Y++)
          for (let X = 0; X < W2; X++)
            for (let q = 0; q < 4; q++) {
              const [y, x] = [2 * Y + (q >> 1), 2 * X + (q & 1)];
              if (y >= H || x >= W) continue;
              for (let c = 0; c < C; c++)
                ref[((t * H2 + Y) * W2 + X) * 4 * C + q * C + c] = sr[((t * H + y) * W + x) * C + c]!;
            }
      return [{ name: 'blocks', got: dst, ref, tol: 1e-2 }];
    },
  },
  {
    kernel: 'latentOut',
    run: (dev, seed): Output[] => {
      // the first 16 of 32 channels per pixel + bias, into latent frame f of [16, F, HW]
      const [F, HW, f] = [3, 11, 2];
      const [y, yr] = rand(dev, f32, [HW, 32], seed);
      const [bias, br] = rand(dev, f32, [16], seed + 1);
      const out = poisoned(dev, f32, [16, F, HW]);
      launch(k('latentOut'), [HW], [y, bias, out, F, HW, f]);
      const all = out.toF32();
      const got: number[] = [];
      const ref: number[] = [];
      for (let c = 0; c < 16; c++)
        for (let p = 0; p < HW; p++) {
          got.push(all[(c * F + f) * HW + p]!);
          ref.push(yr[p * 32 + c]! + br[c]!);
        }
      return [{ name: 'frame', got: Tensor.from(dev, f32, [got.length], got), ref: Float64Array.from(ref), tol: 1e-6 }];
    },
  },
  {
    kernel: 'ropeShiftFrames',
    run: (dev, seed): Output[] => {
      // keys moved `shift` frames down the cache: the frame pairs turned back by shift * theta_j
      const [tokens, H, P, fp, shift, maxPos] = [5, 3, 64, 22, 7, 12];
      const ang = Array.from({ length: maxPos * P }, (_, i) => Math.floor(i / P) * 0.1 * (1 + (i % P)));
      const cosT = Tensor.from(dev, f32, [maxPos, P], ang.map(Math.cos));
      const sinT = Tensor.from(dev, f32, [maxPos, P], ang.map(Math.sin));
      const [src, sr] = rand(dev, bf16, [tokens, H, 2 * P], seed);
      const dst = poisoned(dev, bf16, [tokens, H, 2 * P]);
      launch(k('ropeShiftFrames'), [tokens], [src, dst, cosT, sinT, H, shift]);
      const ref = new Float64Array(tokens * H * 2 * P);
      const cf = Float64Array.from(cosT.toF32());
      const sf = Float64Array.from(sinT.toF32());
      for (let t = 0; t < tokens; t++)
        for (let h = 0; h < H; h++)
          for (let j = 0; j < P; j++) {
            const o = (t * H + h) * 2 * P + 2 * j;
            const [re, im] = [sr[o]!, sr[o + 1]!];
            const [c, s] = j < fp ? [cf[shift * P + j]!, sf[shift * P + j]!] : [1, 0];
            ref[o] = re * c + im * s;
            ref[o + 1] = im * c - re * s;
          }
      return [{ name: 'keys', got: dst, ref, tol: 1e-2 }];
    },
  },
];
