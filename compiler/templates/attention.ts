// The flash-attention forward template (sm_90a): O = softmax(scale * Q K^T + mask) V per head, with
// the log-sum-exp of each row, for Q [B, Lq, H, D] and K, V [B, Lkv, H, D] (bf16 / f16, D = 64 or
// 128; rows may be padded, e.g. a KV cache with room for more tokens).
//
// One CTA per (128-query tile, head, batch), 3 warpgroups:
//   producer: TMA loads of the Q tile (once) and of K and V tiles (bc keys) into a ring of `stages`
//     buffers, 128-byte swizzled, one `full` mbarrier per buffer.
//   consumers 1 and 2: 64 query rows each. Per KV tile: S = Q K^T with wgmma from shared memory
//     (f32 in registers), mask, online softmax in registers (running max and sum per row, the output
//     rescaled), P converted to bf16 in registers in the layout wgmma takes as its A operand, then
//     O += P V with V read MN-major (transposed) from shared memory; the buffer is released after.
//   end: O / rowsum stored as 16-bit, log-sum-exp (natural log) as f32.
//
// Masks (all runtime arguments, any combination):
//   - kvLen: keys at or past it are invisible (variable KV length, a partly filled cache)
//   - block causal: query q (at absolute position qOffset + q) sees keys below the end of its block of
//     blockTokens tokens (chunk-wise causal attention; queries of a chunk see the whole chunk)
//   - local window + sink: keys below hi(q) - windowTokens are invisible unless below sinkTokens
// KV tiles that are invisible to the whole query tile are skipped, not masked.
import type { AttentionArtifact, AttentionSpec } from '../../dsl/artifact.js';
import { CUDA_PRELUDE } from '../cuda-prelude.js';
import { SM90_MN_MAJOR_DESC, SM90_PRELUDE, wgmmaCall, wgmmaCallRegA } from './sm90.js';

export type { AttentionArtifact, AttentionSpec } from '../../dsl/artifact.js';

const BM = 128;
const THREADS = 384;
const SM90_MAX_SHARED = 232448;

export function attentionSharedBytes(spec: Pick<AttentionSpec, 'headDim' | 'bc' | 'stages'>): number {
  const q = BM * spec.headDim * 2;
  const kv = 2 * spec.bc * spec.headDim * 2;
  return 1024 + q + spec.stages * kv + (1 + 2 * spec.stages) * 8;
}

export function validateAttentionSpec(spec: AttentionSpec): void {
  if (spec.headDim !== 64 && spec.headDim !== 128)
    throw new RangeError(`attention head dim must be 64 or 128, got ${spec.headDim}`);
  if (spec.bc !== 64 && spec.bc !== 128 && spec.bc !== 96)
    throw new RangeError(`attention KV tile must be 64, 96 or 128 keys, got ${spec.bc}`);
  if (!Number.isInteger(spec.stages) || spec.stages < 2)
    throw new RangeError(`attention needs at least 2 pipeline stages, got ${spec.stages}`);
  if (attentionSharedBytes(spec) > SM90_MAX_SHARED)
    throw new RangeError(
      `attention D=${spec.headDim} bc=${spec.bc} with ${spec.stages} stages needs ${attentionSharedBytes(spec)} bytes of shared memory`,
    );
}

export function attentionSm90(spec: AttentionSpec): AttentionArtifact {
  validateAttentionSpec(spec);
  const { input, headDim: D, bc: BC, stages } = spec;
  const dsub = D / 64; // 128-byte column blocks of a row
  const qBytes = BM * D * 2;
  const kvTileBytes = BC * D * 2; // one of K or V
  const subBytes = BC * 128; // one 64-column block of a K or V tile
  const entry = `sfc_attn_fwd_sm90_${input}_d${D}_bc${BC}_s${stages}`;
  const cvt = input === 'bf16' ? 'bf16x2' : 'f16x2';
  const store16 = input === 'bf16' ? 'sfc_to_bf16' : 'sfc_to_f16';
  // S = Q K(stage)^T into sc (the first k-step overwrites it), committed as one wgmma group
  const issueQk = (stage: string) => `{
      const sfc_u32 kBase = sfc_smem(ring + (${stage}) * ${2 * kvTileBytes});
      sfc_wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < ${D / 16}; ++kk)
        sfc_qk(sc, sfc_wgmma_desc_sw128(qBase + (kk / 4) * ${BM * 128}) + 2 * (kk % 4),
               sfc_wgmma_desc_sw128(kBase + (kk / 4) * ${subBytes}) + 2 * (kk % 4), kk > 0);
      sfc_wgmma_commit();
    }`;
  // O += P V(stage), P from registers, committed as one wgmma group
  const issuePv = (stage: string, pv: string) => `{
      const sfc_u32 vBase = sfc_smem(ring + (${stage}) * ${2 * kvTileBytes}) + ${kvTileBytes};
      sfc_wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < ${BC / 16}; ++kk)
        sfc_pv(o, ${pv}[kk], sfc_wgmma_desc_sw128_mn(vBase + kk * 2048, ${subBytes}));
      sfc_wgmma_commit();
    }`;
  // scale + mask sc (KV tile starting at key k0), update the running max / sum, write P to `dst`
  // and the rescale factors aA, aB of the output rows
  const softmax = (tile: string, dst: string) => `{
      const int k0 = (${tile}) * ${BC};
      // masking only where some key of the tile is invisible to some row (bounds precomputed per row)
      if (!(k0 + ${BC} <= hiMin && (windowTokens <= 0 || k0 >= loMax || k0 + ${BC} <= sinkTokens))) {
#pragma unroll
        for (int j = 0; j < ${BC / 8}; ++j) {
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
      for (int j = 0; j < ${BC / 8}; ++j) {
        tA = fmaxf(tA, fmaxf(sc[4 * j], sc[4 * j + 1]));
        tB = fmaxf(tB, fmaxf(sc[4 * j + 2], sc[4 * j + 3]));
      }
      tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 1));
      tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 2));
      tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 1));
      tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 2));
      // running maxima in raw score units; exponents as one FFMA: exp2(s * scaleLog2 - max * scaleLog2)
      const float nA = fmaxf(mA, tA), nB = fmaxf(mB, tB);
      // a row that has seen no visible key yet keeps a zero base (no inf - inf)
      const float bA = nA == SFC_NEG_INF ? 0.0f : nA * scaleLog2, bB = nB == SFC_NEG_INF ? 0.0f : nB * scaleLog2;
      aA = sfc_exp2(fmaf(mA, scaleLog2, -bA));
      aB = sfc_exp2(fmaf(mB, scaleLog2, -bB));
      mA = nA;
      mB = nB;
      float sA = 0.0f, sB = 0.0f;
#pragma unroll
      for (int j = 0; j < ${BC / 8}; ++j) {
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
  // one pipelined step for tile position `i`: P of the previous tile is in `prev`, this tile's goes to `cur`
  const step = (i: string, prev: string, cur: string) => `{
      const int s = (${i}) % ${stages}, sp = ((${i}) - 1) % ${stages};
      sfc_mbar_wait(sfc_smem(&bars[1 + s]), ((${i}) / ${stages}) & 1);
      ${issueQk('s')}
      ${issuePv('sp', prev)}
      sfc_wgmma_wait<1>();
      float aA, aB;
      ${softmax(`tileOf(${i})`, cur)}
      sfc_wgmma_wait<0>();
      if (tid == 0) sfc_mbar_arrive(sfc_smem(&bars[1 + ${stages} + sp]));
#pragma unroll
      for (int j = 0; j < ${D / 8}; ++j) {
        o[4 * j] *= aA;
        o[4 * j + 1] *= aA;
        o[4 * j + 2] *= aB;
        o[4 * j + 3] *= aB;
      }
    }`;
  const source = `${CUDA_PRELUDE}
${SM90_PRELUDE}
${SM90_MN_MAJOR_DESC}
${wgmmaCall('sfc_qk', BC, input)}
${wgmmaCallRegA('sfc_pv', D, input, true)}
#define SFC_NEG_INF __int_as_float(0xff800000)
__device__ __forceinline__ float sfc_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ sfc_u32 sfc_pack2(float lo, float hi) {
  sfc_u32 r;
  asm("cvt.rn.${cvt}.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
struct SfcMask {
  int Lq, Lkv, blockTokens, qOffset, windowTokens, sinkTokens;
  // end of the keys query q may see
  __device__ __forceinline__ int hi(int q) const {
    if (blockTokens <= 0) return Lkv;
    const int h = ((qOffset + q) / blockTokens + 1) * blockTokens;
    return h < Lkv ? h : Lkv;
  }
  __device__ __forceinline__ int lo(int q) const {
    if (windowTokens <= 0) return 0;
    const int l = hi(q) - windowTokens;
    return l > 0 ? l : 0;
  }
  __device__ __forceinline__ bool visible(int q, int k) const {
    return k < hi(q) && (k >= lo(q) || k < sinkTokens);
  }
  // KV tiles of a query tile [q0, q0 + ${BM}): [0, sinkEnd) then [from, to)
  __device__ __forceinline__ void tiles(int q0, int& sinkEnd, int& from, int& to) const {
    const int qLast = (q0 + ${BM - 1} < Lq ? q0 + ${BM - 1} : Lq - 1);
    to = (hi(qLast) + ${BC - 1}) / ${BC};
    from = windowTokens > 0 ? lo(q0) / ${BC} : 0;
    sinkEnd = windowTokens > 0 ? (sinkTokens + ${BC - 1}) / ${BC} : 0;
    if (sinkEnd > from) sinkEnd = from;
  }
};

extern "C" __global__ void __launch_bounds__(${THREADS}, 1)
${entry}(const __grid_constant__ SfcTensorMap tmQ, const __grid_constant__ SfcTensorMap tmK,
    const __grid_constant__ SfcTensorMap tmV, ${input === 'bf16' ? 'sfc_bf16' : 'sfc_f16'}* __restrict__ O,
    float* __restrict__ lse, const int Lq, const int Lkv, const int H, const int qRows, const int kvRows,
    const int ldo, const float scaleLog2, const int blockTokens, const int qOffset, const int windowTokens,
    const int sinkTokens) {
  extern __shared__ unsigned char sfc_smem_raw[];
  unsigned char* smem = (unsigned char*)(((sfc_u64)sfc_smem_raw + 1023) & ~(sfc_u64)1023);
  unsigned char* Qs = smem;                            // [${dsub}][128 rows][128 bytes]
  unsigned char* ring = smem + ${qBytes};              // [stages][K | V][${dsub}][${BC} rows][128 bytes]
  sfc_u64* bars = (sfc_u64*)(ring + ${stages * 2 * kvTileBytes});
  // bars[0]: Q loaded; full[s] = bars[1 + s]; empty[s] = bars[1 + ${stages} + s]
  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
  const int q0 = blockIdx.x * ${BM}, h = blockIdx.y, b = blockIdx.z;
  const SfcMask mask = {Lq, Lkv, blockTokens, qOffset, windowTokens, sinkTokens};
  int sinkEnd, from, to;
  mask.tiles(q0, sinkEnd, from, to);
  const int nTiles = sinkEnd + (to > from ? to - from : 0);
  if (threadIdx.x == 0) {
    sfc_mbar_init(sfc_smem(&bars[0]), 1);
    for (int s = 0; s < ${stages}; ++s) {
      sfc_mbar_init(sfc_smem(&bars[1 + s]), 1);
      sfc_mbar_init(sfc_smem(&bars[1 + ${stages} + s]), 2);
    }
    sfc_mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {
    sfc_setmaxnreg_dec<24>();
    if (tid == 0) {
      sfc_tma_prefetch_map(&tmQ);
      sfc_tma_prefetch_map(&tmK);
      sfc_tma_prefetch_map(&tmV);
      const sfc_u32 qbar = sfc_smem(&bars[0]);
      sfc_mbar_expect_tx(qbar, ${qBytes});
      for (int d = 0; d < ${dsub}; ++d)
        sfc_tma_load_2d(sfc_smem(Qs + d * ${BM * 128}), &tmQ, h * ${D} + d * 64, b * qRows + q0, qbar);
      for (int i = 0; i < nTiles; ++i) {
        const int t = i < sinkEnd ? i : from + (i - sinkEnd);
        const int s = i % ${stages};
        sfc_mbar_wait(sfc_smem(&bars[1 + ${stages} + s]), ((i / ${stages}) & 1) ^ 1);
        const sfc_u32 full = sfc_smem(&bars[1 + s]);
        sfc_mbar_expect_tx(full, ${2 * kvTileBytes});
        unsigned char* Ks = ring + s * ${2 * kvTileBytes};
        for (int d = 0; d < ${dsub}; ++d) {
          sfc_tma_load_2d(sfc_smem(Ks + d * ${subBytes}), &tmK, h * ${D} + d * 64, b * kvRows + t * ${BC}, full);
          sfc_tma_load_2d(sfc_smem(Ks + ${kvTileBytes} + d * ${subBytes}), &tmV, h * ${D} + d * 64, b * kvRows + t * ${BC}, full);
        }
      }
    }
  } else {
    sfc_setmaxnreg_inc<240>();
    const int c = wg - 1;
    const int warp = tid / 32, lane = tid % 32;
    const int ra = 16 * warp + lane / 4;       // this thread's rows: ra and ra + 8 of the consumer's 64
    const int cq = 2 * (lane % 4);
    const int qa = q0 + 64 * c + ra, qb = qa + 8;
    auto tileOf = [&](int i) { return i < sinkEnd ? i : from + (i - sinkEnd); };
    // visible keys of this thread's two rows: [loX, hiX) plus [0, sinkTokens); of the whole tile
    const int hiA = mask.hi(qa), loA = mask.lo(qa), hiB = mask.hi(qb), loB = mask.lo(qb);
    const int hiMin = mask.hi(q0), loMax = mask.lo(q0 + ${BM - 1});
    float o[${D / 2}];
#pragma unroll
    for (int i = 0; i < ${D / 2}; ++i) o[i] = 0.0f;
    float mA = SFC_NEG_INF, mB = SFC_NEG_INF, lA = 0.0f, lB = 0.0f;
    sfc_mbar_wait(sfc_smem(&bars[0]), 0);
    const sfc_u32 qBase = sfc_smem(Qs + c * ${64 * 128});
    // Software pipeline (per warpgroup): while the softmax of tile i runs on the ALUs, the tensor
    // cores multiply P(i-1) V(i-1); S(i) = Q K(i)^T was issued just before.
    float sc[${BC / 2}];
    sfc_u32 pc[${BC / 16}][4], pn[${BC / 16}][4];
    if (nTiles > 0) {
      sfc_mbar_wait(sfc_smem(&bars[1]), 0);
      ${issueQk('0')}
      sfc_wgmma_wait<0>();
      float aA, aB;
      ${softmax('tileOf(0)', 'pc')}
    }
    // unrolled by two so that P alternates between pc and pn without register copies (a copy would
    // make ptxas serialise the wgmma pipeline): tile i's P lives in pc for even i, pn for odd i
    for (int i = 1; i < nTiles; i += 2) {
      ${step('i', 'pc', 'pn')}
      if (i + 1 < nTiles) {
        ${step('i + 1', 'pn', 'pc')}
      }
    }
    if (nTiles > 0) {
      const int sp = (nTiles - 1) % ${stages};
      if ((nTiles - 1) & 1) {
        ${issuePv('sp', 'pn')}
      } else {
        ${issuePv('sp', 'pc')}
      }
      sfc_wgmma_wait<0>();
      if (tid == 0) sfc_mbar_arrive(sfc_smem(&bars[1 + ${stages} + sp]));
    }
    // finish the row sums across the quad, normalise, store
    lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);
    const float iA = lA > 0.0f ? 1.0f / lA : 0.0f, iB = lB > 0.0f ? 1.0f / lB : 0.0f;
    const long long rowA = (long long)(b * qRows + qa) * ldo + h * ${D}, rowB = rowA + 8LL * ldo;
#pragma unroll
    for (int j = 0; j < ${D / 8}; ++j) {
      const int col = 8 * j + cq;
      if (qa < Lq)
        *reinterpret_cast<sfc_u32*>(O + rowA + col) = (sfc_u32)${store16}(o[4 * j] * iA) | ((sfc_u32)${store16}(o[4 * j + 1] * iA) << 16);
      if (qb < Lq)
        *reinterpret_cast<sfc_u32*>(O + rowB + col) = (sfc_u32)${store16}(o[4 * j + 2] * iB) | ((sfc_u32)${store16}(o[4 * j + 3] * iB) << 16);
    }
    if (lse != nullptr && (lane % 4) == 0) {
      const float ln2 = 0.6931471805599453f;
      float* row = lse + ((long long)b * H + h) * Lq;
      if (qa < Lq) row[qa] = lA > 0.0f ? (mA * scaleLog2 + __log2f(lA)) * ln2 : SFC_NEG_INF;
      if (qb < Lq) row[qb] = lB > 0.0f ? (mB * scaleLog2 + __log2f(lB)) * ln2 : SFC_NEG_INF;
    }
  }
}
`;
  return {
    kind: 'attention',
    name: entry,
    arch: 'sm_90a',
    spec: { ...spec },
    bm: BM,
    threads: THREADS,
    sharedBytes: attentionSharedBytes(spec),
    source,
    entry,
    params: [
      { name: 'tmQ', type: 'tmap' },
      { name: 'tmK', type: 'tmap' },
      { name: 'tmV', type: 'tmap' },
      { name: 'O', type: 'ptr' },
      { name: 'lse', type: 'ptr' },
      { name: 'Lq', type: 'i32' },
      { name: 'Lkv', type: 'i32' },
      { name: 'H', type: 'i32' },
      { name: 'qRows', type: 'i32' },
      { name: 'kvRows', type: 'i32' },
      { name: 'ldo', type: 'i32' },
      { name: 'scaleLog2', type: 'f32' },
      { name: 'blockTokens', type: 'i32' },
      { name: 'qOffset', type: 'i32' },
      { name: 'windowTokens', type: 'i32' },
      { name: 'sinkTokens', type: 'i32' },
    ],
  };
}
