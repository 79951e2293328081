// Pieces of a flash-attention forward kernel that do not depend on how the tensor cores are fed
// (used by the mma.sync template, compiler/templates/attention-mma.ts; they follow the rules of the
// sm_90a template, compiler/templates/attention.ts):
//   - the mask rules as a device struct: the end hi(q) and window start lo(q) of the keys query q
//     sees, and the KV tiles a query tile visits (the sink tiles, then the window's)
//   - the online softmax of one S tile held as m16n8 accumulator fragments: per thread two rows,
//     A = g and B = g + 8 of a 16-row slab (g = lane / 4), columns 8 j + cq + {0, 1} (cq = 2 (lane % 4))
//     in sc[4 j + {0, 1}] (row A) and sc[4 j + {2, 3}] (row B). P is written packed to 16-bit pairs,
//     which is the A-operand fragment of the next m16n8k16 product (mma.sync and wgmma alike).
//   - the end: row sums finished across the quad, O / rowsum stored as 16-bit, log-sum-exp as f32.
// The code they generate reads the kernel's arguments (Lq, H, qRows, ldo, scaleLog2, windowTokens,
// sinkTokens, O, lse) and these per-thread values: lane, b, h, qa, qb (global query rows of A and B),
// cq, hiA, loA, hiB, loB (their visible keys: [lo, hi) plus [0, sinkTokens)), hiMin, loMax (the
// smallest hi and largest lo over the rows sharing the S tile), mA, mB (running maxima, raw score
// units), lA, lB (running sums), aA, aB (set: the rescale factors of the rows' outputs), o[] (the
// output accumulator, D / 8 fragments of 4).
import type { AttentionSpec } from '../../dsl/artifact.js';

/** -inf, exp2 and the f32 pair -> packed 16-bit conversion. */
export function attentionDeviceHelpers(input: AttentionSpec['input']): string {
  const cvt = input === 'bf16' ? 'bf16x2' : 'f16x2';
  return `#define SFC_NEG_INF __int_as_float(0xff800000)
__device__ __forceinline__ float sfc_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ unsigned sfc_pack2(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.${cvt}.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}`;
}

/** struct SfcMask for query tiles of bm rows and KV tiles of bc keys. */
export function attentionMaskStruct(bm: number, bc: number): string {
  return `struct SfcMask {
  int Lq, Lkv, blockTokens, qOffset, windowTokens, sinkTokens;
  // end of the keys query q sees: the end of its block (chunk), at most Lkv
  __device__ __forceinline__ int hi(int q) const {
    if (blockTokens <= 0) return Lkv;
    const int e = ((qOffset + q) / blockTokens + 1) * blockTokens;
    return e < Lkv ? e : Lkv;
  }
  // start of its local window (keys below it are visible only inside the sink)
  __device__ __forceinline__ int lo(int q) const {
    if (windowTokens <= 0) return 0;
    const int s = hi(q) - windowTokens;
    return s > 0 ? s : 0;
  }
  // KV tiles the query tile [q0, q0 + ${bm}) visits: [0, sinkEnd), then [from, to)
  __device__ __forceinline__ void tiles(int q0, int& sinkEnd, int& from, int& to) const {
    const int last = q0 + ${bm - 1} < Lq ? q0 + ${bm - 1} : Lq - 1;
    to = (hi(last) + ${bc - 1}) / ${bc};
    from = windowTokens > 0 ? lo(q0) / ${bc} : 0;
    sinkEnd = windowTokens > 0 ? (sinkTokens + ${bc - 1}) / ${bc} : 0;
    if (sinkEnd > from) sinkEnd = from;
  }
};`;
}

/**
 * The start of both templates' online softmax over the S tile `sc` of KV tile `tile` (bc keys): masks
 * it (only where some key of the tile is invisible to some row; bounds precomputed per row) and leaves
 * the tile's row maxima of rows A and B in tA, tB (raw score units). Opens a block the caller closes.
 */
export function maskAndTileMax(bc: number, tile: string): string {
  return `{
      const int k0 = (${tile}) * ${bc};
      // masking only where some key of the tile is invisible to some row (bounds precomputed per row)
      if (!(k0 + ${bc} <= hiMin && (windowTokens <= 0 || k0 >= loMax || k0 + ${bc} <= sinkTokens))) {
#pragma unroll
        for (int j = 0; j < ${bc / 8}; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int k = k0 + 8 * j + cq + (e & 1);
            const bool ok = e < 2 ? (k < hiA && (k >= loA || k < sinkTokens)) : (k < hiB && (k >= loB || k < sinkTokens));
            if (!ok) sc[4 * j + e] = SFC_NEG_INF;
          }
        }
      }
      float tA = SFC_NEG_INF, tB = SFC_NEG_INF;
#pragma unroll
      for (int j = 0; j < ${bc / 8}; ++j) {
        tA = fmaxf(tA, fmaxf(sc[4 * j], sc[4 * j + 1]));
        tB = fmaxf(tB, fmaxf(sc[4 * j + 2], sc[4 * j + 3]));
      }
      tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 1));
      tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 2));
      tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 1));
      tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 2));`;
}

/**
 * Masks the S tile `sc` of KV tile `tile` (only where some key of it is invisible to some row),
 * updates the running maxima and sums, sets aA / aB and writes P to dst[bc / 16][4].
 */
export function onlineSoftmax(bc: number, tile: string, dst: string): string {
  const J = bc / 8;
  return `${maskAndTileMax(bc, tile)}
      const float nA = fmaxf(mA, tA), nB = fmaxf(mB, tB);
      // exp2(s * scaleLog2 - base) as one FFMA; a row with no visible key yet keeps base 0 (no inf - inf)
      const float bA = nA == SFC_NEG_INF ? 0.0f : nA * scaleLog2, bB = nB == SFC_NEG_INF ? 0.0f : nB * scaleLog2;
      aA = sfc_exp2(fmaf(mA, scaleLog2, -bA));
      aB = sfc_exp2(fmaf(mB, scaleLog2, -bB));
      mA = nA;
      mB = nB;
      float sA = 0.0f, sB = 0.0f;
#pragma unroll
      for (int j = 0; j < ${J}; ++j) {
        const float p0 = sfc_exp2(fmaf(sc[4 * j], scaleLog2, -bA)), p1 = sfc_exp2(fmaf(sc[4 * j + 1], scaleLog2, -bA));
        const float p2 = sfc_exp2(fmaf(sc[4 * j + 2], scaleLog2, -bB)), p3 = sfc_exp2(fmaf(sc[4 * j + 3], scaleLog2, -bB));
        sA += p0 + p1;
        sB += p2 + p3;
        ${dst}[j / 2][(j % 2) * 2] = sfc_pack2(p0, p1);
        ${dst}[j / 2][(j % 2) * 2 + 1] = sfc_pack2(p2, p3);
      }
      lA = lA * aA + sA;
      lB = lB * aB + sB;
    }`;
}

/** Finishes the row sums, stores O / rowsum (rows below Lq) and the natural-log LSE when lse is set. */
export function storeAttentionOutput(headDim: number, input: AttentionSpec['input']): string {
  const to16 = input === 'bf16' ? 'sfc_to_bf16' : 'sfc_to_f16';
  const pair = (v: string, i: string) =>
    `(unsigned)${to16}(${v} * ${i}) | ((unsigned)${to16}(${v.replace(/\]$/, ' + 1]')} * ${i}) << 16)`;
  return `{
#pragma unroll
    for (int x = 1; x < 4; x *= 2) {
      lA += __shfl_xor_sync(0xffffffffu, lA, x);
      lB += __shfl_xor_sync(0xffffffffu, lB, x);
    }
    const float iA = lA > 0.0f ? 1.0f / lA : 0.0f, iB = lB > 0.0f ? 1.0f / lB : 0.0f;
    const long long rowA = (long long)(b * qRows + qa) * ldo + h * ${headDim}, rowB = rowA + 8LL * ldo;
#pragma unroll
    for (int j = 0; j < ${headDim / 8}; ++j) {
      if (qa < Lq) *reinterpret_cast<unsigned*>(O + rowA + 8 * j + cq) = ${pair('o[4 * j]', 'iA')};
      if (qb < Lq) *reinterpret_cast<unsigned*>(O + rowB + 8 * j + cq) = ${pair('o[4 * j + 2]', 'iB')};
    }
    if (lse != nullptr && cq == 0) {
      float* row = lse + ((long long)b * H + h) * Lq;
      if (qa < Lq) row[qa] = lA > 0.0f ? (mA * scaleLog2 + __log2f(lA)) * 0.6931471805599453f : SFC_NEG_INF;
      if (qb < Lq) row[qb] = lB > 0.0f ? (mB * scaleLog2 + __log2f(lB)) * 0.6931471805599453f : SFC_NEG_INF;
    }
  }`;
}
