// The UMT5 encoder's two steps that are not layer-DSL ops: the token-embedding gather and T5's
// self-attention with a relative position bias.
//
// T5 attention: softmax(q k^T + bias) v per head, with no 1/sqrt(d) scaling. The bias of query i and
// key j depends only on the offset j - i: the layer's embedding table [buckets, H] is read at the
// offset's bucket, and `bucketOf` [2L - 1] maps offset + L - 1 to its bucket (the host computes it
// once per prompt length). One program per (query, head); keys and values stream in blocks of BK
// with the online softmax of attention.ts (its helpers, inlined by the compiler). Scores
// are materialised one key block at a time only; memory is O(head dim) per program. q, k, v and o
// are [L, H, DH] (each token's heads contiguous, as the projections' reshape gives them).
import {
  arange,
  cast,
  expandDims,
  f32,
  full,
  kernel,
  load,
  programId,
  store,
  sum,
  type bf16,
  type Const,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';
import { headRows, softmaxBlock } from './attention.js';

/** out[t, :] = table[ids[t], :] as float32 (the residual stream); one program per token */
export const tokenEmbedding = kernel((ids: Ptr<i32>, table: Ptr<bf16>, out: Ptr<f32>, DIM: Const<4096>) => {
  const t = programId(0);
  const e = arange(0, DIM);
  const id = load(ids, t);
  store(out, t * DIM + e, cast(load(table, id * DIM + e), f32));
});

/** o = softmax(q k^T + relative position bias) v per head over the L tokens of one prompt */
export const relPosAttention = kernel(
  (
    q: Ptr<bf16>,
    k: Ptr<bf16>,
    v: Ptr<bf16>,
    o: Ptr<bf16>,
    table: Ptr<bf16>,
    bucketOf: Ptr<i32>,
    H: i32,
    L: i32,
    DH: Const<64>,
    BK: Const<64>,
  ) => {
    const qi = programId(0);
    const h = programId(1);
    const d = arange(0, DH);
    const qv = cast(load(q, (qi * H + h) * DH + d), f32);
    let m = -Infinity;
    let l = 0.0;
    let acc = full([DH], 0, f32);
    for (let s = 0; s < L; s += BK) {
      const ks = s + arange(0, BK);
      const kmask = ks < L;
      const kt = headRows(k, ks, kmask, H, h, DH);
      const bucket = load(bucketOf, ks - qi + L - 1, kmask, 0);
      const bias = cast(load(table, bucket * H + h, kmask, 0), f32);
      const scores = kmask ? sum(kt * expandDims(qv, 0), 1) + bias : -Infinity; // [BK]
      const [m1, l1, acc1] = softmaxBlock(scores, headRows(v, ks, kmask, H, h, DH), m, l, acc);
      m = m1;
      l = l1;
      acc = acc1;
    }
    store(o, (qi * H + h) * DH + d, acc / l);
  },
);
