// Attention forward as a DSL kernel: one program per (query, head), keys and values streamed in
// blocks of BK with an online softmax (running max and sum, rescaled accumulator), so memory is
// O(head dim) per program and any key length works. It returns the log-sum-exp per (query, head)
// for training. This is the correctness path for layer plans on any GPU; it does not use tensor
// cores (the DSL has no tile `dot` yet) and is far from the speed of the flash-attention template
// that replaces it (issue 6). q is [Lq, H, DH], k and v [Lk, H, DH], o [Lq, H, DH], lse [Lq, H].
// Keys at positions >= kvLen are masked (a KV cache holding fewer tokens than its capacity).
import {
  arange,
  cast,
  exp,
  expandDims,
  f32,
  full,
  kernel,
  load,
  log,
  max,
  maximum,
  programId,
  store,
  sum,
  type bf16,
  type Const,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';

/** Rows `ks` (masked by kmask; others read 0) of head h of an [L, H, DH] tensor, as f32 [BK, DH]. */
export function headRows(t: Ptr<bf16>, ks: number, kmask: boolean, H: number, h: number, DH: number): number {
  const offs = expandDims((ks * H + h) * DH, 1) + expandDims(arange(0, DH), 0);
  return cast(load(t, offs, expandDims(kmask, 1), 0), f32);
}

/**
 * Folds one block of scores [BK] (masked keys -Infinity) and their values [BK, DH] into the online
 * softmax state: running max m, running sum l, rescaled accumulator acc [DH].
 */
export function softmaxBlock(scores: number, vt: number, m: number, l: number, acc: number): [number, number, number] {
  const mNew = maximum(m, max(scores));
  const p = exp(scores - mNew);
  const alpha = exp(m - mNew);
  return [mNew, l * alpha + sum(p), acc * alpha + sum(expandDims(p, 1) * vt, 0)];
}

export const attentionFwd = kernel(
  (
    q: Ptr<bf16>,
    k: Ptr<bf16>,
    v: Ptr<bf16>,
    o: Ptr<bf16>,
    lse: Ptr<f32>,
    H: i32,
    kvLen: i32,
    scale: f32,
    DH: Const<128>,
    BK: Const<64>,
  ) => {
    const qi = programId(0);
    const h = programId(1);
    const d = arange(0, DH);
    const qv = cast(load(q, (qi * H + h) * DH + d), f32) * scale;
    let m = -Infinity;
    let l = 0.0;
    let acc = full([DH], 0, f32);
    for (let s = 0; s < kvLen; s += BK) {
      const ks = s + arange(0, BK);
      const kmask = ks < kvLen;
      const kt = headRows(k, ks, kmask, H, h, DH);
      const scores = kmask ? sum(kt * expandDims(qv, 0), 1) : -Infinity; // [BK]
      const [m1, l1, acc1] = softmaxBlock(scores, headRows(v, ks, kmask, H, h, DH), m, l, acc);
      m = m1;
      l = l1;
      acc = acc1;
    }
    store(o, (qi * H + h) * DH + d, acc / l);
    store(lse, qi * H + h, m + log(l));
  },
);
