// Cases of the layer DSL's convolution helper kernels (models/kernels/conv.ts): the zero-padded bf16
// buffer the conv GEMMs read, and the crop of the strided valid pixels off the padded grid, against
// direct float64 index arithmetic (library compiled with the kernels' default C = CP = 64).
import { bf16, f32 } from '../../dsl/dtypes.js';
import { launch } from '../../runtime/kernels.js';
import { library, poisoned, randTensor, type Case, type Output } from './library.js';

const C = 64;
const k = (name: string) => library().get(name)!;

const rand = randTensor;

export const convCases: Case[] = [
  {
    kernel: 'convPad',
    run: (dev, seed): Output[] => {
      // 2 frames of 3 x 4, padded by 2 frames before (causal), 1 row and 1 column each side, + slack rows
      const [T, H, W, pt, py, px] = [2, 3, 4, 2, 1, 1];
      const [Hp, Wp] = [H + 2 * py, W + 2 * px];
      const rows = (T + pt) * Hp * Wp + 7;
      const [src, sr] = rand(dev, bf16, [T, H, W, C], seed);
      const dst = poisoned(dev, bf16, [rows, C]);
      launch(k('convPad'), [rows], [src, dst, T, H, W, Hp, Wp, pt, py, px]);
      const ref = new Float64Array(rows * C);
      for (let p = 0; p < rows; p++) {
        const t = Math.floor(p / (Hp * Wp)) - pt;
        const y = Math.floor((p % (Hp * Wp)) / Wp) - py;
        const x = (p % Wp) - px;
        if (t < 0 || t >= T || y < 0 || y >= H || x < 0 || x >= W) continue;
        for (let c = 0; c < C; c++) ref[p * C + c] = sr[((t * H + y) * W + x) * C + c]!;
      }
      return [{ name: 'padded', got: dst, ref, tol: 1e-6 }];
    },
  },
  {
    kernel: 'convCrop',
    run: (dev, seed): Output[] => {
      // stride (1, 2, 2) outputs 2 x 2 x 3 off a grid of 7-wide, 5-high frames
      const [To, Ho, Wo, Hp, Wp, st, sy, sx] = [2, 2, 3, 5, 7, 1, 2, 2];
      const gridRows = 2 * Hp * Wp;
      const [grid, gr] = rand(dev, f32, [gridRows, C], seed);
      const out = poisoned(dev, f32, [To, Ho, Wo, C]);
      launch(k('convCrop'), [To * Ho * Wo], [grid, out, Ho, Wo, Hp, Wp, st, sy, sx]);
      const ref = new Float64Array(To * Ho * Wo * C);
      for (let t = 0; t < To; t++)
        for (let y = 0; y < Ho; y++)
          for (let x = 0; x < Wo; x++) {
            const g = (t * st * Hp + y * sy) * Wp + x * sx;
            for (let c = 0; c < C; c++) ref[((t * Ho + y) * Wo + x) * C + c] = gr[g * C + c]!;
          }
      return [{ name: 'cropped', got: out, ref, tol: 1e-6 }];
    },
  },
];
