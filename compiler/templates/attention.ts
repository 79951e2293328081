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
//
// FP8 (input 'e4m3', D = 128, bc = 128): Q and K e4m3 in the same layout, V e4m3 transposed, [B, H,
// D, capacity rounded up to 16], because an 8-bit wgmma takes B only K-major (here: keys contiguous
// per channel); per-tensor scales fold into the softmax scale (Q, K) and the final normalisation (V);
// output bf16. P is converted to e4m3 in registers; the columns a thread holds after Q K^T are not
// the ones an 8-bit A fragment expects, so V's keys are permuted within each 16 to match
// (attentionFp8KeySlot) instead of moving P between threads. The artifact carries the quantise
// kernels that write Q, K and this V from bf16 (attentionQuantizeSource).
import { attentionFp8KeySlot, type AttentionArtifact, type AttentionSpec } from '../../dsl/artifact.js';
import { CUDA_PRELUDE } from '../cuda-prelude.js';
import { attentionDeviceHelpers, attentionMaskStruct, maskAndTileMax } from './attention-common.js';
import { SM90_MN_MAJOR_DESC, SM90_PINGPONG, SM90_PRELUDE, wgmmaCall, wgmmaCallRegA } from './sm90.js';

export type { AttentionArtifact, AttentionSpec } from '../../dsl/artifact.js';

const BM = 128;
const THREADS = 384;
const SM90_MAX_SHARED = 232448;

export function attentionSharedBytes(
  spec: Pick<AttentionSpec, 'headDim' | 'bc' | 'stages'> & Partial<Pick<AttentionSpec, 'input' | 'rowSumMma'>>,
): number {
  const eb = spec.input === 'e4m3' ? 1 : 2;
  const q = BM * spec.headDim * eb;
  // FP8 with rowSumMma: 8 rows of ones after each V tile
  const kv = 2 * spec.bc * spec.headDim * eb + (spec.rowSumMma ? 1024 : 0);
  return 1024 + q + spec.stages * kv + (1 + 2 * spec.stages) * 8;
}

export function validateAttentionSpec(spec: AttentionSpec): void {
  if (spec.headDim !== 64 && spec.headDim !== 128)
    throw new RangeError(`attention head dim must be 64 or 128, got ${spec.headDim}`);
  if (spec.bc !== 64 && spec.bc !== 128 && spec.bc !== 96)
    throw new RangeError(`attention KV tile must be 64, 96 or 128 keys, got ${spec.bc}`);
  if (spec.input === 'e4m3' && (spec.headDim !== 128 || spec.bc !== 128))
    throw new RangeError(
      `FP8 attention needs head dim 128 and 128-key tiles (one 128-byte swizzled row), got D=${spec.headDim} bc=${spec.bc}`,
    );
  const poly = spec.polyExp ?? 0;
  if (!Number.isInteger(poly) || poly < 0 || poly > spec.bc / 16 || (poly > 0 && spec.input !== 'e4m3'))
    throw new RangeError(`attention polyExp must be an integer in [0, ${spec.bc / 16}] (FP8 only), got ${poly}`);
  if ((spec.lazyRescale || spec.rowSumMma) && spec.input !== 'e4m3')
    throw new RangeError('attention lazyRescale and rowSumMma are FP8 options');
  if (!Number.isInteger(spec.stages) || spec.stages < 2)
    throw new RangeError(`attention needs at least 2 pipeline stages, got ${spec.stages}`);
  if (attentionSharedBytes(spec) > SM90_MAX_SHARED)
    throw new RangeError(
      `attention D=${spec.headDim} bc=${spec.bc} with ${spec.stages} stages needs ${attentionSharedBytes(spec)} bytes of shared memory`,
    );
}

const QUANT_THREADS = 256;

/**
 * The quantise kernels of FP8 attention (AttentionArtifact.quantize): bf16 -> e4m3 with 1 / scale,
 * for Q and K in place of layout, for V transposed to [B, H, D, capV] with attentionFp8KeySlot's
 * permutation (each thread writes the 4 slots 4q..4q+3 of a 16, i.e. keys 2q, 2q+1, 2q+8, 2q+9).
 */
export function attentionQuantizeSource(): NonNullable<AttentionArtifact['quantize']> {
  // the slot formula in the kernel below inverts attentionFp8KeySlot; checked here once
  for (let q = 0; q < 4; q++)
    [2 * q, 2 * q + 1, 2 * q + 8, 2 * q + 9].forEach((k, i) => {
      if (attentionFp8KeySlot(k) !== 4 * q + i) throw new Error('attention FP8 key permutation mismatch');
    });
  const tokens = 'sfc_attn_quant_e4m3';
  const vT = 'sfc_attn_quant_e4m3_vt';
  const source = `${CUDA_PRELUDE}
typedef unsigned int sfc_u32;
__device__ __forceinline__ sfc_u32 sfc_q4(float a, float b, float c, float d) {
  return (sfc_u32)sfc_to_e4m3x2(a, b) | ((sfc_u32)sfc_to_e4m3x2(c, d) << 16);
}
__device__ __forceinline__ float sfc_lo(sfc_u32 w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float sfc_hi(sfc_u32 w) { return __uint_as_float(w & 0xffff0000u); }
extern "C" __global__ void ${tokens}(const uint4* __restrict__ x, uint2* __restrict__ y, const int n8, const float inv) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += gridDim.x * blockDim.x) {
    const uint4 v = x[i];
    y[i] = make_uint2(sfc_q4(sfc_lo(v.x) * inv, sfc_hi(v.x) * inv, sfc_lo(v.y) * inv, sfc_hi(v.y) * inv),
                      sfc_q4(sfc_lo(v.z) * inv, sfc_hi(v.z) * inv, sfc_lo(v.w) * inv, sfc_hi(v.w) * inv));
  }
}
// one block: 64 keys x 64 channels of one (batch, head), staged as f32 in shared memory
extern "C" __global__ void ${vT}(const sfc_bf16* __restrict__ x, unsigned char* __restrict__ y, const int cap,
    const int capV, const int kvRows, const int H, const int D, const float inv) {
  __shared__ float t[64][65];
  const int k0 = blockIdx.x * 64, d0 = blockIdx.y * 64, bh = blockIdx.z, b = bh / H, h = bh % H;
  for (int i = threadIdx.x; i < 64 * 64; i += ${QUANT_THREADS}) {
    const int kk = i / 64, dd = i % 64, key = k0 + kk;
    t[kk][dd] = key < cap ? sfc_from_bf16(x[((long long)b * kvRows + key) * H * D + h * D + d0 + dd]) * inv : 0.0f;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 64 * 16; i += ${QUANT_THREADS}) {
    const int dd = i / 16, s = 4 * (i % 16);          // slots s .. s + 3 of channel d0 + dd
    if (k0 + s >= capV) continue;
    const int p = (s & ~15) + ((s & 15) >> 1);       // its keys: p, p + 1, p + 8, p + 9
    *reinterpret_cast<sfc_u32*>(y + ((long long)bh * D + d0 + dd) * capV + k0 + s) =
        sfc_q4(t[p][dd], t[p + 1][dd], t[p + 8][dd], t[p + 9][dd]);
  }
}
`;
  return { source, tokens, vT, threads: QUANT_THREADS };
}

export function attentionSm90(spec: AttentionSpec): AttentionArtifact {
  validateAttentionSpec(spec);
  const { input, headDim: D, bc: BC, stages } = spec;
  const fp8 = input === 'e4m3';
  const eb = fp8 ? 1 : 2; // bytes per input element
  const kSteps = (D * eb) / 32; // wgmma k-steps of Q K^T (32 bytes of each row per step)
  const pSlices = (BC * eb) / 32; // wgmma k-steps of P V, one A fragment of P each
  const dsub = (D * eb) / 128; // 128-byte column blocks of a row
  const blockCols = 128 / eb; // elements per 128-byte block
  const qBytes = BM * D * eb;
  const kvTileBytes = BC * D * eb; // one of K or V
  const lazy = spec.lazyRescale ?? false;
  const rs = spec.rowSumMma ?? false;
  const stageBytes = 2 * kvTileBytes + (rs ? 1024 : 0); // K, V (and 8 rows of ones: rowSumMma)
  const oCols = rs ? D + 8 : D; // output accumulator columns (rowSumMma: + 8 copies of the row sum)
  const subBytes = BC * 128; // one 128-byte column block of a K (or 16-bit V) tile
  const pp = spec.pingpong ?? false;
  const poly = spec.polyExp ?? 0;
  const entry = `sfc_attn_fwd_sm90_${input}_d${D}_bc${BC}_s${stages}${pp ? '_pp' : ''}${poly ? `_px${poly}` : ''}${lazy ? '_lz' : ''}${rs ? '_rs' : ''}`;
  // ping-pong: consumer c waits for its turn (named barrier 1 + c) before issuing a batch of wgmma and
  // hands the turn over (barrier 2 - c) after; consumer 1 starts by handing it to consumer 0
  const turn = pp ? 'sfc_bar_sync(1 + c, 256);' : '';
  const pass = pp ? 'sfc_bar_arrive(2 - c, 256);' : '';
  const store16 = input === 'f16' ? 'sfc_to_f16' : 'sfc_to_bf16';
  // FP8: P is stored as 256 p (exponent base lowered by 8) so that probabilities down to 2^-14 stay
  // normal e4m3 numbers; the factor cancels in O / rowsum and is taken out of the log-sum-exp
  // With lazyRescale the running max only moves when a tile's max exceeds it by more than 2^4 (so P
  // stays below 2^(4 + 4) = 256); the shift is 4 then.
  const shift = lazy ? 4 : 8;
  const pShift = fp8 ? ` - ${shift}.0f` : '';
  // S = Q K(stage)^T into sc (the first k-step overwrites it), committed as one wgmma group
  const issueQk = (stage: string) => `{
      const sfc_u32 kBase = sfc_smem(ring + (${stage}) * ${stageBytes});
      sfc_wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < ${kSteps}; ++kk)
        sfc_qk(sc, sfc_wgmma_desc_sw128(qBase + (kk / 4) * ${BM * 128}) + 2 * (kk % 4),
               sfc_wgmma_desc_sw128(kBase + (kk / 4) * ${subBytes}) + 2 * (kk % 4), kk > 0);
      sfc_wgmma_commit();
    }`;
  // O += P V(stage), P from registers, committed as one wgmma group. 16-bit V is read MN-major
  // (transposed) from its [keys][D] tile; FP8 V arrives transposed, [D rows][BC keys], K-major.
  const vDesc = fp8
    ? `sfc_wgmma_desc_sw128(vBase + (kk / 4) * ${D * 128}) + 2 * (kk % 4)`
    : `sfc_wgmma_desc_sw128_mn(vBase + kk * 2048, ${subBytes})`;
  const issuePv = (stage: string, pv: string) => `{
      const sfc_u32 vBase = sfc_smem(ring + (${stage}) * ${stageBytes}) + ${kvTileBytes};
      sfc_wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < ${pSlices}; ++kk)
        sfc_pv(o, ${pv}[kk], ${vDesc});
      sfc_wgmma_commit();
    }`;
  // P of one tile into A fragments: 16-bit, 8 columns (j) per register pair; e4m3, a register holds
  // the columns 2q, 2q+1, 2q+8, 2q+9 (q = lane % 4) of 16 (jj), which wgmma reads as 4q..4q+3: the
  // keys of FP8 V are permuted the same way in every 16 (attentionFp8KeySlot), so the product matches
  const writeP = (dst: string) =>
    fp8
      ? `#pragma unroll
      for (int jj = 0; jj < ${BC / 16}; ++jj) {
        float p[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const float x = fmaf(sc[8 * jj + e], scaleLog2, e & 2 ? -bB : -bA);
          p[e] = jj < ${poly} ? sfc_exp2_poly(x) : sfc_exp2(x);
        }
        ${rs ? '' : 'sA += (p[0] + p[1]) + (p[4] + p[5]);'}
        ${rs ? '' : 'sB += (p[2] + p[3]) + (p[6] + p[7]);'}
        ${dst}[jj / 2][(jj % 2) * 2] = sfc_pack4(p[0], p[1], p[4], p[5]);
        ${dst}[jj / 2][(jj % 2) * 2 + 1] = sfc_pack4(p[2], p[3], p[6], p[7]);
      }`
      : `#pragma unroll
      for (int j = 0; j < ${BC / 8}; ++j) {
        const float p0 = sfc_exp2(fmaf(sc[4 * j], scaleLog2, -bA)), p1 = sfc_exp2(fmaf(sc[4 * j + 1], scaleLog2, -bA));
        const float p2 = sfc_exp2(fmaf(sc[4 * j + 2], scaleLog2, -bB)), p3 = sfc_exp2(fmaf(sc[4 * j + 3], scaleLog2, -bB));
        sA += p0 + p1;
        sB += p2 + p3;
        ${dst}[j / 2][(j % 2) * 2] = sfc_pack2(p0, p1);
        ${dst}[j / 2][(j % 2) * 2 + 1] = sfc_pack2(p2, p3);
      }`;
  // scale + mask sc (KV tile starting at key k0), update the running max / sum, write P to `dst`
  // and the rescale factors aA, aB of the output rows
  const softmax = (tile: string, dst: string) => `${maskAndTileMax(BC, tile)}
      // running maxima in raw score units; exponents as one FFMA: exp2(s * scaleLog2 - max * scaleLog2)
      ${
        lazy
          ? `const float nA = (tA - mA) * scaleLog2 > 4.0f ? tA : mA, nB = (tB - mB) * scaleLog2 > 4.0f ? tB : mB;`
          : 'const float nA = fmaxf(mA, tA), nB = fmaxf(mB, tB);'
      }
      // a row that has seen no visible key yet keeps a zero base (no inf - inf)
      const float bA = nA == SFC_NEG_INF ? 0.0f : nA * scaleLog2${pShift};
      const float bB = nB == SFC_NEG_INF ? 0.0f : nB * scaleLog2${pShift};
      aA = ${lazy ? 'nA == mA ? 1.0f : ' : ''}sfc_exp2(fmaf(mA, scaleLog2, -bA)${pShift});
      aB = ${lazy ? 'nB == mB ? 1.0f : ' : ''}sfc_exp2(fmaf(mB, scaleLog2, -bB)${pShift});
      mA = nA;
      mB = nB;
      ${rs ? '' : 'float sA = 0.0f, sB = 0.0f;'}
      ${writeP(dst)}
      ${rs ? '' : 'lA = lA * aA + sA;'}
      ${rs ? '' : 'lB = lB * aB + sB;'}
    }`;
  // one pipelined step for tile position `i`: P of the previous tile is in `prev`, this tile's goes to `cur`
  const step = (i: string, prev: string, cur: string) => `{
      const int s = (${i}) % ${stages}, sp = ((${i}) - 1) % ${stages};
      sfc_mbar_wait(sfc_smem(&bars[1 + s]), ((${i}) / ${stages}) & 1);
      ${turn}
      ${issueQk('s')}
      ${issuePv('sp', prev)}
      ${pass}
      sfc_wgmma_wait<1>();
      float aA, aB;
      ${softmax(`tileOf(${i})`, cur)}
      sfc_wgmma_wait<0>();
      if (tid == 0) sfc_mbar_arrive(sfc_smem(&bars[1 + ${stages} + sp]));
      ${lazy ? 'if (aA != 1.0f || aB != 1.0f)' : ''}
#pragma unroll
      for (int j = 0; j < ${oCols / 8}; ++j) {
        o[4 * j] *= aA;
        o[4 * j + 1] *= aA;
        o[4 * j + 2] *= aB;
        o[4 * j + 3] *= aB;
      }
    }`;
  const source = `${CUDA_PRELUDE}
${SM90_PRELUDE}
${SM90_MN_MAJOR_DESC}
${pp ? SM90_PINGPONG : ''}
${wgmmaCall('sfc_qk', BC, input)}
${wgmmaCallRegA('sfc_pv', oCols, input, !fp8)}
${attentionDeviceHelpers(input === 'f16' ? 'f16' : 'bf16')}
// 2^x on the FMA units (x <= 8): 2^round(x) into the exponent of a degree-3 polynomial for 2^f,
// f in [-0.5, 0.5] (Taylor: relative error below 5e-4, far under e4m3's 2^-4)
__device__ __forceinline__ float sfc_exp2_poly(float x) {
  x = fmaxf(x, -125.0f);
  const float t = x + 12582912.0f;  // 1.5 * 2^23: round(x) in the low mantissa bits
  const float f = x - (t - 12582912.0f);
  const float p = fmaf(fmaf(fmaf(0.0555041086f, f, 0.2402264923f), f, 0.6931471806f), f, 1.0f);
  return __int_as_float(__float_as_int(p) + (__float_as_int(t) << 23));
}
// four e4m3, the first in the lowest byte
__device__ __forceinline__ sfc_u32 sfc_pack4(float a, float b, float c, float d) {
  return (sfc_u32)sfc_to_e4m3x2(a, b) | ((sfc_u32)sfc_to_e4m3x2(c, d) << 16);
}
${attentionMaskStruct(BM, BC)}

extern "C" __global__ void __launch_bounds__(${THREADS}, 1)
${entry}(const __grid_constant__ SfcTensorMap tmQ, const __grid_constant__ SfcTensorMap tmK,
    const __grid_constant__ SfcTensorMap tmV, ${input === 'f16' ? 'sfc_f16' : 'sfc_bf16'}* __restrict__ O,
    float* __restrict__ lse, const int Lq, const int Lkv, const int H, const int qRows, const int kvRows,
    const int ldo, const float scaleLog2, const int blockTokens, const int qOffset, const int windowTokens,
    const int sinkTokens${fp8 ? ', const float vScale' : ''}) {
  extern __shared__ unsigned char sfc_smem_raw[];
  unsigned char* smem = (unsigned char*)(((sfc_u64)sfc_smem_raw + 1023) & ~(sfc_u64)1023);
  unsigned char* Qs = smem;                            // [${dsub}][128 rows][128 bytes]
  // [stages][K | V]: K [${dsub}][${BC} rows][128 bytes], V ${fp8 ? `[${D} rows][${BC} keys]` : `as K`}
  unsigned char* ring = smem + ${qBytes};
  sfc_u64* bars = (sfc_u64*)(ring + ${stages * stageBytes});
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
  ${
    rs
      ? `// rowSumMma: 8 rows of e4m3 ones (0x38) after each stage's V tile, read by the tensor cores
  for (int i = threadIdx.x; i < ${stages * 256}; i += ${THREADS})
    reinterpret_cast<sfc_u32*>(ring + (i / 256) * ${stageBytes} + ${2 * kvTileBytes})[i % 256] = 0x38383838u;
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");`
      : ''
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
        sfc_tma_load_2d(sfc_smem(Qs + d * ${BM * 128}), &tmQ, h * ${D} + d * ${blockCols}, b * qRows + q0, qbar);
      for (int i = 0; i < nTiles; ++i) {
        const int t = i < sinkEnd ? i : from + (i - sinkEnd);
        const int s = i % ${stages};
        sfc_mbar_wait(sfc_smem(&bars[1 + ${stages} + s]), ((i / ${stages}) & 1) ^ 1);
        const sfc_u32 full = sfc_smem(&bars[1 + s]);
        sfc_mbar_expect_tx(full, ${2 * kvTileBytes});
        unsigned char* Ks = ring + s * ${stageBytes};
        for (int d = 0; d < ${dsub}; ++d) {
          sfc_tma_load_2d(sfc_smem(Ks + d * ${subBytes}), &tmK, h * ${D} + d * ${blockCols}, b * kvRows + t * ${BC}, full);
          ${
            fp8
              ? `sfc_tma_load_2d(sfc_smem(Ks + ${kvTileBytes}), &tmV, t * ${BC}, (b * H + h) * ${D}, full);`
              : `sfc_tma_load_2d(sfc_smem(Ks + ${kvTileBytes} + d * ${subBytes}), &tmV, h * ${D} + d * 64, b * kvRows + t * ${BC}, full);`
          }
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
    float o[${oCols / 2}];
#pragma unroll
    for (int i = 0; i < ${oCols / 2}; ++i) o[i] = 0.0f;
    float mA = SFC_NEG_INF, mB = SFC_NEG_INF, lA = 0.0f, lB = 0.0f;
    sfc_mbar_wait(sfc_smem(&bars[0]), 0);
    const sfc_u32 qBase = sfc_smem(Qs + c * ${64 * 128});
    // Software pipeline (per warpgroup): while the softmax of tile i runs on the ALUs, the tensor
    // cores multiply P(i-1) V(i-1); S(i) = Q K(i)^T was issued just before.
    float sc[${BC / 2}];
    sfc_u32 pc[${pSlices}][4], pn[${pSlices}][4];
    if (nTiles > 0) {
      sfc_mbar_wait(sfc_smem(&bars[1]), 0);
      ${pp ? 'if (c == 1) sfc_bar_arrive(1, 256);' : ''}
      ${turn}
      ${issueQk('0')}
      ${pass}
      sfc_wgmma_wait<0>();
      float aA, aB;
      ${softmax('tileOf(0)', 'pc')}
      ${rs ? 'lA = aA; // the prologue has no output to rescale; lA is set from o at the end' : ''}
      ${rs ? 'lB = aB;' : ''}
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
      ${turn}
      if ((nTiles - 1) & 1) {
        ${issuePv('sp', 'pn')}
      } else {
        ${issuePv('sp', 'pc')}
      }
      ${pp ? 'if (c == 0) sfc_bar_arrive(2, 256); // the last turn: consumer 1 has nothing left to pass' : ''}
      sfc_wgmma_wait<0>();
      if (tid == 0) sfc_mbar_arrive(sfc_smem(&bars[1 + ${stages} + sp]));
    }
    // finish the row sums across the quad, normalise, store
    ${
      rs
        ? `// rowSumMma: columns ${D}.. of O are P times ones, the row sums over every key
    lA = o[${D / 2}];
    lB = o[${D / 2 + 2}];`
        : `lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);`
    }
    const float iA = lA > 0.0f ? ${fp8 ? 'vScale' : '1.0f'} / lA : 0.0f, iB = lB > 0.0f ? ${fp8 ? 'vScale' : '1.0f'} / lB : 0.0f;
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
      if (qa < Lq) row[qa] = lA > 0.0f ? (mA * scaleLog2 + __log2f(lA)${pShift}) * ln2 : SFC_NEG_INF;
      if (qb < Lq) row[qb] = lB > 0.0f ? (mB * scaleLog2 + __log2f(lB)${pShift}) * ln2 : SFC_NEG_INF;
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
      ...(fp8 ? [{ name: 'vScale', type: 'f32' as const }] : []),
    ],
    ...(fp8 ? { quantize: attentionQuantizeSource() } : {}),
  };
}
