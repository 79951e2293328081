// Kernels of the Wan VAE decoder. Activations are channels-last ([T, H, W, C], one pixel's C values
// contiguous); convolutions run as shifted GEMMs over zero-padded buffers ([T', H + 2, W + 2, C]),
// so their outputs live on the padded grid (pixel (t, y, x) at row (t (H + 2) + y) (W + 2) + x, the
// other rows are discarded). These kernels move between the two layouts and fuse what sits between
// convolutions: bias, residual, RMS normalisation over channels, SiLU, nearest 2x upsampling.
// One program per pixel; C (the channel count) is specialised per use.
import {
  arange,
  bf16,
  cast,
  exp,
  floor,
  idiv,
  kernel,
  load,
  max,
  maximum,
  minimum,
  programId,
  rsqrt,
  sigmoid,
  store,
  sum,
  type Const,
  type f32,
  type i32,
  type Ptr,
  u8,
} from '../../dsl/kernel.js';

/**
 * dst (bf16, [T, H + 2 pad, W + 2 pad, CP], borders and channels past C zero) = act(src + bias), act =
 * optional RMS norm over channels (x * rsqrt(mean(x^2)) * gamma, i.e. unit L2 norm times sqrt(C)
 * times gamma) then optional SiLU. src is [T, H, W, C] (srcGrid 0) or a convolution's padded-grid
 * output (srcGrid 1). CP >= C is the buffer's channel pitch (a multiple of the GEMM's K-slice).
 */
export const normActPad = kernel(
  (
    src: Ptr<f32>,
    bias: Ptr<f32>,
    gamma: Ptr<f32>,
    dst: Ptr<bf16>,
    H: i32,
    W: i32,
    srcGrid: i32,
    pad: i32,
    C: Const<96>,
    CP: Const<96>,
    NORM: Const<1>,
    SILU: Const<1>,
  ) => {
    const pix = programId(0);
    const Wp = W + 2 * pad;
    const Hp = H + 2 * pad;
    const t = idiv(pix, Hp * Wp);
    const r = pix - t * Hp * Wp;
    const yp = idiv(r, Wp);
    const y = yp - pad;
    const x = r - yp * Wp - pad;
    const inside = y >= 0 && y < H && x >= 0 && x < W;
    const c = arange(0, CP);
    const real = c < C;
    const sW = W + 2 * srcGrid;
    const sH = H + 2 * srcGrid;
    const v = load(src, ((t * sH + y) * sW + x) * C + c, inside && real, 0) + load(bias, c, real, 0);
    const n = NORM === 1 ? v * rsqrt(maximum(sum(v * v) / C, 1e-30)) * load(gamma, c, real, 0) : v;
    const a = SILU === 1 ? n * sigmoid(n) : n;
    store(dst, pix * CP + c, inside && real ? a : 0);
  },
);

/** Pixel `pix` of frames of H x W pixels: its frame, row and column. */
function pixelPosition(pix: number, H: number, W: number): [number, number, number] {
  const t = idiv(pix, H * W);
  const r = pix - t * H * W;
  const y = idiv(r, W);
  return [t, y, r - y * W];
}

/**
 * out (f32, [T, H, W, C]) = conv + bias + res + resBias, conv on a grid with `gridPad` extra rows and
 * columns (2 for a padded 3x3 convolution, 0 for a plain GEMM), res [T, H, W, C]
 */
export const convResidual = kernel(
  (
    conv: Ptr<f32>,
    bias: Ptr<f32>,
    res: Ptr<f32>,
    resBias: Ptr<f32>,
    out: Ptr<f32>,
    H: i32,
    W: i32,
    gridPad: i32,
    C: Const<96>,
  ) => {
    const pix = programId(0);
    const [t, y, x] = pixelPosition(pix, H, W);
    const c = arange(0, C);
    const g = (t * (H + gridPad) + y) * (W + gridPad) + x;
    store(out, pix * C + c, load(conv, g * C + c) + load(bias, c) + load(res, pix * C + c) + load(resBias, c));
  },
);

/** out (f32, [T, H, W, C]) = conv (on a grid with `gridPad` extra rows/cols) + bias */
export const convBias = kernel(
  (conv: Ptr<f32>, bias: Ptr<f32>, out: Ptr<f32>, H: i32, W: i32, gridPad: i32, C: Const<96>) => {
    const pix = programId(0);
    const [t, y, x] = pixelPosition(pix, H, W);
    const c = arange(0, C);
    const g = (t * (H + gridPad) + y) * (W + gridPad) + x;
    store(out, pix * C + c, load(conv, g * C + c) + load(bias, c));
  },
);

/**
 * Nearest 2x spatial upsampling into a zero-padded bf16 buffer [T split, 2H + 2, 2W + 2, CP] for a
 * 3x3 convolution: src + bias with src [T, H, W, split C]. split 2 is the temporal upsampling's
 * output: channel half j of frame t becomes frame 2t + j. Channels past C are zero.
 */
export const upsamplePad = kernel(
  (src: Ptr<f32>, bias: Ptr<f32>, dst: Ptr<bf16>, H: i32, W: i32, split: i32, C: Const<96>, CP: Const<96>) => {
    const pix = programId(0);
    const Wp = 2 * W + 2;
    const Hp = 2 * H + 2;
    const t2 = idiv(pix, Hp * Wp);
    const r = pix - t2 * Hp * Wp;
    const yp = idiv(r, Wp);
    const y2 = yp - 1;
    const x2 = r - yp * Wp - 1;
    const inside = y2 >= 0 && y2 < 2 * H && x2 >= 0 && x2 < 2 * W;
    const t = idiv(t2, split);
    const half = t2 - t * split;
    const c = arange(0, CP);
    const real = c < C;
    const s = ((t * H + (y2 >> 1)) * W + (x2 >> 1)) * (C * split) + half * C + c;
    const v = load(src, s, inside && real, 0) + load(bias, half * C + c, real, 0);
    store(dst, pix * CP + c, inside && real ? v : 0);
  },
);

/** dst (bf16 [rows, C]) = src (f32 [rows, C]) + bias */
export const biasCast = kernel((src: Ptr<f32>, bias: Ptr<f32>, dst: Ptr<bf16>, C: Const<96>) => {
  const row = programId(0);
  const c = arange(0, C);
  store(dst, row * C + c, cast(load(src, row * C + c) + load(bias, c), bf16));
});

/** p (bf16 [rows, n]) = softmax(s * scale) per row of s (f32 [rows, n]), rows of any length */
export const softmaxRows = kernel((s: Ptr<f32>, p: Ptr<bf16>, n: i32, scale: f32, BLOCK: Const<2048>) => {
  const row = programId(0);
  const base = row * n;
  let m = -Infinity;
  for (let j = 0; j < n; j += BLOCK) {
    const i = j + arange(0, BLOCK);
    m = maximum(m, max(load(s, base + i, i < n, -Infinity) * scale));
  }
  let l = 0.0;
  for (let j = 0; j < n; j += BLOCK) {
    const i = j + arange(0, BLOCK);
    l = l + sum(i < n ? exp(load(s, base + i, i < n, 0) * scale - m) : 0);
  }
  for (let j = 0; j < n; j += BLOCK) {
    const i = j + arange(0, BLOCK);
    store(p, base + i, exp(load(s, base + i, i < n, 0) * scale - m) / l, i < n);
  }
});

/**
 * Writes a chunk of frames into the video: video (f32 [3, frames, H, W]) at frames [t0, t0 + T) =
 * clamp(src, -1, 1), src the head's output (f32 [T * HW, 3]).
 */
export const toVideo = kernel(
  (src: Ptr<f32>, video: Ptr<f32>, HW: i32, T: i32, frames: i32, t0: i32, BLOCK: Const<1024>) => {
    const i = programId(0) * BLOCK + arange(0, BLOCK);
    const n = 3 * T * HW;
    const m = i < n;
    const c = idiv(i, T * HW);
    const rest = i - c * T * HW;
    const v = load(src, rest * 3 + c, m, 0);
    store(video, (c * frames + t0) * HW + rest, maximum(minimum(v, 1), -1), m);
  },
);

/**
 * One latent frame into the decoder: out (bf16 [h, w, Z]) = z[:, f] * std + mean, z the normalised
 * latents (f32 [Z, F, h, w], channels first as the DiT writes them).
 */
export const latentIn = kernel(
  (z: Ptr<f32>, mean: Ptr<f32>, std: Ptr<f32>, out: Ptr<bf16>, F: i32, HW: i32, f: i32, Z: Const<16>) => {
    const p = programId(0);
    const c = arange(0, Z);
    store(out, p * Z + c, cast(load(z, (c * F + f) * HW + p) * load(std, c) + load(mean, c), bf16));
  },
);

/**
 * Video frames as RGB bytes for the file writers: rgb (u8 [T, HW, 3]) = trunc(255 clamp(x / 2 + 1/2,
 * 0, 1)) of video (f32 [3, T, HW]), as media/frames.ts pixelOf converts (and the reference writes).
 */
export const toRgb8 = kernel((video: Ptr<f32>, rgb: Ptr<u8>, THW: i32, BLOCK: Const<1024>) => {
  const i = programId(0) * BLOCK + arange(0, BLOCK); // output byte: pixel i / 3, channel i % 3
  const m = i < 3 * THW;
  const p = idiv(i, 3);
  const c = i - p * 3;
  const x = load(video, c * THW + p, m, 0);
  const v = minimum(maximum(x * 0.5 + 0.5, 0), 1);
  store(rgb, i, cast(floor(255 * v), u8), m);
});

// ---- encoder ---------------------------------------------------------------------------------------

/**
 * Frames [t0, t0 + T) of a video (f32 [3, frames, H, W], channels first, values in [-1, 1]) into the
 * encoder's first convolution buffer: dst (bf16 [T, H + 2, W + 2, CP]), zero borders, channels past 3
 * zero. One program per padded pixel.
 */
export const videoInPad = kernel(
  (video: Ptr<f32>, dst: Ptr<bf16>, H: i32, W: i32, frames: i32, t0: i32, CP: Const<64>) => {
    const pix = programId(0);
    const Wp = W + 2;
    const Hp = H + 2;
    const t = idiv(pix, Hp * Wp);
    const r = pix - t * Hp * Wp;
    const yp = idiv(r, Wp);
    const y = yp - 1;
    const x = r - yp * Wp - 1;
    const inside = y >= 0 && y < H && x >= 0 && x < W;
    const c = arange(0, CP);
    const real = c < 3;
    const v = load(video, ((c * frames + t0 + t) * H + y) * W + x, inside && real, 0);
    store(dst, pix * CP + c, cast(v, bf16));
  },
);

/**
 * Space-to-depth for the encoder's stride-2 3x3 convolutions (zero padding at the bottom and right):
 * dst (bf16 [T, H/2 + 2, W/2 + 2, CP]) at pixel (t, Y, X), channel block q = 2 dy + dx, holds
 * src (f32 [T, H, W, C]) at (t, 2Y + dy, 2X + dx), zero outside the image; channels past 4C zero.
 * The stride-2 3x3 convolution is then a stride-1 2x2 one on this grid, with its output at row
 * (t (H/2 + 2) + Y) (W/2 + 2) + X like any padded-grid convolution.
 */
export const s2dPad = kernel((src: Ptr<f32>, dst: Ptr<bf16>, H: i32, W: i32, C: Const<96>, CP: Const<384>) => {
  const pix = programId(0);
  const W2 = (W >> 1) + 2;
  const H2 = (H >> 1) + 2;
  const t = idiv(pix, H2 * W2);
  const r = pix - t * H2 * W2;
  const Y = idiv(r, W2);
  const X = r - Y * W2;
  const c = arange(0, CP);
  const q = idiv(c, C);
  const ch = c - q * C;
  const y = 2 * Y + (q >> 1);
  const x = 2 * X + (q & 1);
  const inside = q < 4 && y < H && x < W;
  const v = load(src, ((t * H + y) * W + x) * C + ch, inside, 0);
  store(dst, pix * CP + c, cast(v, bf16));
});

/**
 * The encoder's output at latent frame f: out (f32 [Z, F, HW], channels first as the DiT takes
 * them) = y (f32 [HW, 2Z], the 1x1x1 `conv1` before bias) + bias, first Z channels (the posterior's
 * mean; the per-channel normalisation is folded into the weights and bias).
 */
export const latentOut = kernel((y: Ptr<f32>, bias: Ptr<f32>, out: Ptr<f32>, F: i32, HW: i32, f: i32, Z: Const<16>) => {
  const p = programId(0);
  const c = arange(0, Z);
  store(out, (c * F + f) * HW + p, load(y, p * 2 * Z + c) + load(bias, c));
});
