// Wan's 3-D rotary embedding. Each head's 64 complex pairs are split between the latent frame (the
// first `framePairs`, 22 at head dim 128), the height (`heightPairs`, 21) and the width (the rest);
// the frame index is offset by the chunk's start frame. cos/sin come from tables [maxPos, PAIRS]
// (float64 angles rounded once, as the reference computes them), indexed by each pair's position.
// One program per token, all heads at once as one flat tile of HEADS * PAIRS pairs (so every value
// has one shape and nothing crosses threads): x is [tokens, H, 2*PAIRS], rotated into y.
import {
  arange,
  cast,
  f32,
  idiv,
  kernel,
  load,
  programId,
  store,
  type bf16,
  type Const,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';

export const rope3d = kernel(
  (
    x: Ptr<bf16>,
    cosT: Ptr<f32>,
    sinT: Ptr<f32>,
    y: Ptr<bf16>,
    H: i32,
    gridH: i32,
    gridW: i32,
    frameOffset: i32,
    HEADS: Const<16>,
    PAIRS: Const<64>,
    framePairs: Const<22>,
    heightPairs: Const<21>,
  ) => {
    const tok = programId(0);
    const perFrame = gridH * gridW;
    const inFrame = tok - idiv(tok, perFrame) * perFrame;
    const f = idiv(tok, perFrame) + frameOffset;
    const hh = idiv(inFrame, gridW);
    const ww = inFrame - hh * gridW;
    const p = arange(0, HEADS * PAIRS); // pair index over all heads
    const j = p % PAIRS;
    const m = p < H * PAIRS;
    const pos = j < framePairs ? f : j < framePairs + heightPairs ? hh : ww;
    const c = load(cosT, pos * PAIRS + j, m, 0);
    const s = load(sinT, pos * PAIRS + j, m, 0);
    const base = tok * H * 2 * PAIRS + 2 * p;
    const xe = cast(load(x, base, m, 0), f32);
    const xo = cast(load(x, base + 1, m, 0), f32);
    store(y, base, xe * c - xo * s, m);
    store(y, base + 1, xe * s + xo * c, m);
  },
);
