// The DiT's way in and out of token space, and its per-chunk RoPE tables.
// Wan patchifies latents [C, F, H, W] with a (1, 2, 2) Conv3d whose kernel equals its stride, so
// patch embedding is a Linear over each token's C x 2 x 2 values (ordered c, kh, kw like the Conv3d
// weight); the head emits per token (kh, kw, c) values that unpatchify scatters back. One program
// per token (tokens ordered frame, row, column).
import {
  arange,
  bf16,
  cast,
  expandDims,
  f32,
  idiv,
  kernel,
  load,
  programId,
  store,
  swapPairs,
  type Const,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';

/** Token `tok` of frames of gridH x gridW tokens: its frame, row and column. */
export function tokenPosition(tok: number, gridH: number, gridW: number): [number, number, number] {
  const perFrame = gridH * gridW;
  const f = idiv(tok, perFrame);
  const inFrame = tok - f * perFrame;
  const row = idiv(inFrame, gridW);
  return [f, row, inFrame - row * gridW];
}

/** x [C, F, H, W] (f32) -> tokens [F * H/2 * W/2, C * 4] (bf16), values ordered (c, kh, kw) */
export const patchify = kernel((x: Ptr<f32>, tokens: Ptr<bf16>, F: i32, H: i32, W: i32, C: Const<16>) => {
  const tok = programId(0);
  const [f, hh, ww] = tokenPosition(tok, H >> 1, W >> 1);
  const e = arange(0, C * 4);
  const c = e >> 2;
  const kh = (e >> 1) & 1;
  const kw = e & 1;
  const src = ((c * F + f) * H + 2 * hh + kh) * W + 2 * ww + kw;
  store(tokens, tok * C * 4 + e, cast(load(x, src), bf16));
});

/** tokens [F * H/2 * W/2, 4 * C] (f32, values ordered (kh, kw, c)) -> out [C, F, H, W] (f32) */
export const unpatchify = kernel((tokens: Ptr<f32>, out: Ptr<f32>, F: i32, H: i32, W: i32, C: Const<16>) => {
  const tok = programId(0);
  const [f, hh, ww] = tokenPosition(tok, H >> 1, W >> 1);
  const e = arange(0, C * 4);
  const c = e % C;
  const kw = idiv(e, C) & 1;
  const kh = idiv(e, 2 * C);
  const dst = ((c * F + f) * H + 2 * hh + kh) * W + 2 * ww + kw;
  store(out, dst, load(tokens, tok * C * 4 + e));
});

/**
 * Per-token rotary tables of a chunk for the layer DSL's `rope` op: from the model's angle tables
 * cosT/sinT [maxPos, PAIRS] (pair j of a head uses its frame, row or column position by its section),
 * writes cosOut/sinOut [tokens, 2 * PAIRS]: each pair's cosine twice and its sine as (-sin, +sin).
 * Frames are offset by the chunk's start frame.
 */
export const ropeTables = kernel(
  (
    cosT: Ptr<f32>,
    sinT: Ptr<f32>,
    cosOut: Ptr<f32>,
    sinOut: Ptr<f32>,
    gridH: i32,
    gridW: i32,
    frameOffset: i32,
    PAIRS: Const<64>,
    framePairs: Const<22>,
    heightPairs: Const<21>,
  ) => {
    const tok = programId(0);
    const [f0, hh, ww] = tokenPosition(tok, gridH, gridW);
    const f = f0 + frameOffset;
    const e = arange(0, 2 * PAIRS);
    const j = e >> 1;
    const pos = j < framePairs ? f : j < framePairs + heightPairs ? hh : ww;
    const s = load(sinT, pos * PAIRS + j);
    store(cosOut, tok * 2 * PAIRS + e, load(cosT, pos * PAIRS + j));
    store(sinOut, tok * 2 * PAIRS + e, (e & 1) === 1 ? s : -s);
  },
);

/**
 * A rolling cache with window-relative RoPE: copies cached keys (bf16 [tokens, H, 2*PAIRS]) from
 * src to dst turning each head's frame pairs back by `shift` frames (angle -shift * theta_j, cos/sin
 * from the position tables at position `shift`), so a key moved `shift` frames down the cache keeps
 * the position of its new slot; the height and width pairs are copied unchanged. One program per
 * token, a [HEADS, 2*PAIRS] tile, each value's complex partner from swapPairs. src and dst must not
 * overlap (the cache rolls in non-overlapping pieces).
 */
export const ropeShiftFrames = kernel(
  (
    src: Ptr<bf16>,
    dst: Ptr<bf16>,
    cosT: Ptr<f32>,
    sinT: Ptr<f32>,
    H: i32,
    shift: i32,
    HEADS: Const<16>,
    PAIRS: Const<64>,
    framePairs: Const<22>,
  ) => {
    const tok = programId(0);
    const d = arange(0, 2 * PAIRS);
    const j = d >> 1;
    const inFrame = j < framePairs;
    const c = load(cosT, shift * PAIRS + j, inFrame, 1);
    const s = load(sinT, shift * PAIRS + j, inFrame, 0);
    const h = expandDims(arange(0, HEADS), 1);
    const m = h < H;
    const offs = tok * H * 2 * PAIRS + h * (2 * PAIRS) + expandDims(d, 0);
    const v = cast(load(src, offs, m, 0), f32);
    const partner = swapPairs(v);
    // the rotation by -a: even d (re): re c + im s; odd d (im): im c - re s (partner is re)
    const odd = (d & 1) === 1;
    store(dst, offs, v * c + (odd ? -partner : partner) * s, m);
  },
);
