// Wan's 3-D rotary embedding. Each head's 64 complex pairs (128 values) are split between the latent
// frame (the first `framePairs`, 22 at head dim 128), the height (`heightPairs`, 21) and the width
// (the rest); the frame index is offset by the chunk's start frame. cos/sin come from tables
// [maxPos, PAIRS] (float64 angles rounded once, as the reference computes them), indexed by each
// pair's position. One program per token: its values as a [HEADS, 2*PAIRS] tile, whose rows are
// whole 16-byte chunks of x and y; each element's partner in its complex pair comes from swapPairs
// (a neighbouring register). The token's cos/sin row is the same for every head, so it is loaded
// once as a [2*PAIRS] tile and broadcast over the heads (in registers: the CUDA backend gives it a
// replicated layout matching the rows'), not re-read per element. x is [tokens, H, 2*PAIRS] -> y.
import {
  arange,
  cast,
  expandDims,
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
    const d = arange(0, 2 * PAIRS); // a value's place within its head
    const j = d >> 1; // its pair
    const pos = j < framePairs ? f : j < framePairs + heightPairs ? hh : ww;
    const c = load(cosT, pos * PAIRS + j); // [2*PAIRS]: each pair's value twice
    const s = load(sinT, pos * PAIRS + j);
    const h = expandDims(arange(0, HEADS), 1); // [HEADS, 1]
    const m = h < H;
    const offs = tok * H * 2 * PAIRS + h * (2 * PAIRS) + expandDims(d, 0); // [HEADS, 2*PAIRS]
    const v = cast(load(x, offs, m, 0), f32);
    const partner = swapPairs(v);
    // even d: re' = re*c - im*s; odd d: im' = re*s + im*c (partner is re)
    const odd = (d & 1) === 1;
    store(y, offs, v * c + (odd ? partner : -partner) * s, m);
  },
);
