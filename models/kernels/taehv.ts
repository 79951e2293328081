// Kernels of the TAEHV decoder (models/vae/taehv.ts). Activations are channels-last as in the Wan
// VAE (models/kernels/vae.ts, whose toRgb8 it also uses): convolutions run as implicit GEMMs over
// zero-padded bf16 buffers [T', H + 2, W + 2, CP] and write f32 outputs on the padded grid (pixel
// (t, y, x) at row (t (H + 2) + y) (W + 2) + x, the other rows are discarded). These kernels fuse
// what sits between two convolutions: bias, ReLU, the MemBlock's residual, nearest upsampling, the
// input Clamp, and the sum of the last convolution's taps with the conversion to video frames.
//
// A program handles PIX consecutive pixels of one row of one frame ([PIX, CP] tiles of about 2048
// elements; grid [ceil(row / PIX), rows, frames]), so no element computes a division by a runtime
// size. At 480x832, one pixel per program (as vae.ts does) ran these memory-bound kernels at 0.25-0.6
// TB/s on an H200, launching millions of one-warp blocks; PIX pixels with the frame, row and column
// found by divisions per element ran no faster.
import {
  arange,
  bf16,
  cast,
  expandDims,
  f32,
  full,
  idiv,
  kernel,
  load,
  maximum,
  minimum,
  programId,
  store,
  tanh,
  type Const,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';

/**
 * The decoder's input: dst (bf16 [T, h + 2, w + 2, CP], borders and channels past Z zero) =
 * tanh(z / 3) * 3 (the Clamp) of latent frames f0 .. f0 + T of z (f32 [Z, F, h, w], channels first
 * as the DiT writes them). Grid [ceil((w + 2) / PIX), h + 2, T].
 */
export const taehvLatentPad = kernel(
  (z: Ptr<f32>, dst: Ptr<bf16>, F: i32, f0: i32, H: i32, W: i32, Z: Const<16>, CP: Const<64>, PIX: Const<32>) => {
    const xp = programId(0) * PIX + arange(0, PIX);
    const yp = programId(1);
    const t = programId(2);
    const y = yp - 1;
    const x = xp - 1;
    const here = expandDims(xp < W + 2, 1);
    const inside = expandDims(x >= 0 && x < W && y >= 0 && y < H, 1);
    const c = expandDims(arange(0, CP), 0);
    const m = inside && c < Z;
    const v = load(z, (c * F + f0 + t) * (H * W) + expandDims(y * W + x, 1), m, 0);
    const pix = (t * (H + 2) + yp) * (W + 2) + xp;
    store(dst, expandDims(pix, 1) * CP + c, cast(m ? tanh(v / 3) * 3 : 0, bf16), here && c < CP);
  },
);

/**
 * A convolution's output (f32 on the padded grid of frames of H x W) + bias, then ReLU when relu =
 * 1, into dst (bf16 [T, H + 2, W + 2, CP], borders and channels past C zero), the next convolution's
 * input; with keep = 1 also into out (f32 [T, H, W, C]), a MemBlock's residual. Grid [ceil((W + 2) /
 * PIX), H + 2, T].
 */
export const taehvActPad = kernel(
  (
    src: Ptr<f32>,
    bias: Ptr<f32>,
    dst: Ptr<bf16>,
    out: Ptr<f32>,
    H: i32,
    W: i32,
    relu: i32,
    keep: i32,
    C: Const<64>,
    CP: Const<64>,
    PIX: Const<32>,
  ) => {
    const xp = programId(0) * PIX + arange(0, PIX);
    const yp = programId(1);
    const t = programId(2);
    const y = yp - 1;
    const x = xp - 1;
    const here = expandDims(xp < W + 2, 1);
    const inside = expandDims(x >= 0 && x < W && y >= 0 && y < H, 1);
    const c = expandDims(arange(0, CP), 0);
    const m = inside && c < C;
    const g = expandDims((t * (H + 2) + y) * (W + 2) + x, 1);
    const v = load(src, g * C + c, m, 0) + load(bias, c, c < C, 0);
    const a = relu === 1 ? maximum(v, 0) : v;
    const pix = expandDims((t * (H + 2) + yp) * (W + 2) + xp, 1);
    store(dst, pix * CP + c, cast(m ? a : 0, bf16), here && c < CP);
    store(out, expandDims((t * H + y) * W + x, 1) * C + c, a, m && keep === 1);
  },
);

/**
 * The end of a MemBlock: relu(conv + bias + res), conv on the padded grid (f32), res (f32 [T, H, W,
 * C]) its input, into dst (bf16 [T, H + 2 pad, W + 2 pad, CP], the next convolution's input,
 * borders and channels past C zero) and, with keep = 1, into out (f32 [T, H, W, C]). Grid
 * [ceil((W + 2 pad) / PIX), H + 2 pad, T].
 */
export const taehvResidualPad = kernel(
  (
    conv: Ptr<f32>,
    bias: Ptr<f32>,
    res: Ptr<f32>,
    dst: Ptr<bf16>,
    out: Ptr<f32>,
    H: i32,
    W: i32,
    pad: i32,
    keep: i32,
    C: Const<64>,
    CP: Const<64>,
    PIX: Const<32>,
  ) => {
    const xp = programId(0) * PIX + arange(0, PIX);
    const yp = programId(1);
    const t = programId(2);
    const y = yp - pad;
    const x = xp - pad;
    const here = expandDims(xp < W + 2 * pad, 1);
    const inside = expandDims(x >= 0 && x < W && y >= 0 && y < H, 1);
    const c = expandDims(arange(0, CP), 0);
    const m = inside && c < C;
    const p = expandDims((t * H + y) * W + x, 1);
    const g = expandDims((t * (H + 2) + y) * (W + 2) + x, 1);
    const v = load(conv, g * C + c, m, 0) + load(bias, c, c < C, 0) + load(res, p * C + c, m, 0);
    const a = maximum(v, 0);
    const pix = expandDims((t * (H + 2 * pad) + yp) * (W + 2 * pad) + xp, 1);
    store(dst, pix * CP + c, cast(m ? a : 0, bf16), here && c < CP);
    store(out, p * C + c, a, m && keep === 1);
  },
);

/**
 * Nearest 2x upsampling of TGrow's output into a zero-padded bf16 buffer [T split, 2H + 2, 2W + 2,
 * CP] for a 3x3 convolution; src is f32 [T, H, W, split C] and its channel group j of frame t becomes
 * frame t split + j. Grid [ceil((2W + 2) / PIX), 2H + 2, T split].
 */
export const taehvUpsamplePad = kernel(
  (src: Ptr<f32>, dst: Ptr<bf16>, H: i32, W: i32, split: i32, C: Const<64>, CP: Const<64>, PIX: Const<32>) => {
    const xp = programId(0) * PIX + arange(0, PIX);
    const yp = programId(1);
    const t2 = programId(2);
    const y2 = yp - 1;
    const x2 = xp - 1;
    const here = expandDims(xp < 2 * W + 2, 1);
    const inside = expandDims(x2 >= 0 && x2 < 2 * W && y2 >= 0 && y2 < 2 * H, 1);
    const t = idiv(t2, split);
    const j = t2 - t * split;
    const c = expandDims(arange(0, CP), 0);
    const m = inside && c < C;
    const s = expandDims(((t * H + (y2 >> 1)) * W + (x2 >> 1)) * (C * split) + j * C, 1) + c;
    const pix = expandDims((t2 * (2 * H + 2) + yp) * (2 * W + 2) + xp, 1);
    store(dst, pix * CP + c, cast(load(src, s, m, 0), bf16), here && c < CP);
  },
);

/**
 * The last 3x3 convolution (to RGB) from its taps' products y (f32 [T' (H + 2) (W + 2), 32]: one 1x1
 * GEMM of its input's padded buffer by the 27 (tap, channel) weight rows, tap-major), plus bias, as
 * clamp(2 x - 1, -1, 1) into the video (f32 [3, frames, H, W]): frames s0 .. s0 + T of y go to
 * frames t0 .. t0 + T. A 3-channel output is too narrow for a convolution GEMM tile (64 columns, 21x
 * the work); this GEMM has 32. Grid [ceil(W / PIX), H, T].
 */
export const taehvToVideo = kernel(
  (y: Ptr<f32>, bias: Ptr<f32>, video: Ptr<f32>, H: i32, W: i32, frames: i32, t0: i32, s0: i32, PIX: Const<256>) => {
    const x = programId(0) * PIX + arange(0, PIX);
    const row = programId(1);
    const t = programId(2);
    const o = expandDims(arange(0, 4), 0);
    const m = expandDims(x < W, 1) && o < 3;
    let acc = full([PIX, 4], 0, f32);
    for (let ky = 0; ky < 3; ky++)
      for (let kx = 0; kx < 3; kx++) {
        const r = expandDims(((s0 + t) * (H + 2) + row + ky) * (W + 2) + x + kx, 1);
        acc = acc + load(y, r * 32 + (ky * 3 + kx) * 3 + o, m, 0);
      }
    const v = (acc + load(bias, o, o < 3, 0)) * 2 - 1;
    const p = expandDims(((t0 + t) * H + row) * W + x, 1);
    store(video, o * (frames * H * W) + p, maximum(minimum(v, 1), -1), m);
  },
);
