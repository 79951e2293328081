// Wan's 3-D rotary embedding. Each head's 64 complex pairs (128 values) are split between the latent
// frame (the first `framePairs`, 22 at head dim 128), the height (`heightPairs`, 21) and the width
// (the rest); the frame index is offset by the chunk's start frame. cos/sin come from tables
// [maxPos, PAIRS] (float64 angles rounded once, as the reference computes them), indexed by each
// pair's position. One program per token over all heads, as one contiguous tile of the token's
// values, so loads and stores of x and y are whole 16-byte chunks; each element's partner in its
// complex pair comes from swapPairs (a neighbouring register). x is [tokens, H, 2*PAIRS] -> y.
import {
  arange,
  cast,
  f32,
  kernel,
  load,
  programId,
  store,
  swapPairs,
  type bf16,
  type Const,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';
import { tokenPosition } from './patch.js';

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
    const [f0, hh, ww] = tokenPosition(tok, gridH, gridW);
    const f = f0 + frameOffset;
    const e = arange(0, HEADS * 2 * PAIRS); // every value of the token, all heads
    const m = e < H * 2 * PAIRS;
    const j = (e >> 1) % PAIRS; // the pair within the head
    const pos = j < framePairs ? f : j < framePairs + heightPairs ? hh : ww;
    const c = load(cosT, pos * PAIRS + j, m, 0);
    const s = load(sinT, pos * PAIRS + j, m, 0);
    const base = tok * H * 2 * PAIRS;
    const v = cast(load(x, base + e, m, 0), f32);
    const partner = swapPairs(v);
    // even e: re' = re*c - im*s; odd e: im' = re*s + im*c (partner is re)
    const odd = (e & 1) === 1;
    store(y, base + e, v * c + (odd ? partner : -partner) * s, m);
  },
);
