// The layer DSL's convolution steps (compiler/layer/conv.ts, runtime/conv.ts) around their GEMMs, in
// the VAE's layout (models/kernels/vae.ts): activations frames-first and channels-last, the GEMMs
// reading a zero-padded bf16 buffer and writing the convolution at every buffer row (the padded
// grid). One program per pixel; C and the buffer's channel pitch CP are specialised per use.
import {
  arange,
  idiv,
  kernel,
  load,
  programId,
  store,
  type Const,
  type bf16,
  type f32,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';

/**
 * dst (bf16 [rows, CP]: the frames of x padded by pt frames before, py rows and px columns on each
 * side, zeros outside x and in the channels past C) from src (bf16 [T, H, W, C]); rows past the
 * padded frames (the GEMMs' slack) are zeros too.
 */
export const convPad = kernel(
  (
    src: Ptr<bf16>,
    dst: Ptr<bf16>,
    T: i32,
    H: i32,
    W: i32,
    Hp: i32,
    Wp: i32,
    pt: i32,
    py: i32,
    px: i32,
    C: Const<64>,
    CP: Const<64>,
  ) => {
    const pix = programId(0);
    const tp = idiv(pix, Hp * Wp);
    const r = pix - tp * Hp * Wp;
    const yp = idiv(r, Wp);
    const t = tp - pt;
    const y = yp - py;
    const x = r - yp * Wp - px;
    const inside = t >= 0 && t < T && y >= 0 && y < H && x >= 0 && x < W;
    const c = arange(0, CP);
    store(dst, pix * CP + c, load(src, ((t * H + y) * W + x) * C + c, inside && c < C, 0));
  },
);

/**
 * out (f32 [T', H', W', C]) = the valid pixels of a convolution on the padded grid (f32, a row per
 * buffer row, Hp x Wp per frame): output pixel (t, y, x) is grid row ((t st) Hp + y sy) Wp + x sx.
 */
export const convCrop = kernel(
  (grid: Ptr<f32>, out: Ptr<f32>, Ho: i32, Wo: i32, Hp: i32, Wp: i32, st: i32, sy: i32, sx: i32, C: Const<64>) => {
    const pix = programId(0);
    const t = idiv(pix, Ho * Wo);
    const r = pix - t * Ho * Wo;
    const y = idiv(r, Wo);
    const x = r - y * Wo;
    const g = (t * st * Hp + y * sy) * Wp + x * sx;
    const c = arange(0, C);
    store(out, pix * C + c, load(grid, g * C + c));
  },
);
