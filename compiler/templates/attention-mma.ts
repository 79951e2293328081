// The flash-attention forward template for sm_80 / sm_89 (mma.sync), FlashAttention-2 style: the same
// contract, masks and argument list as the sm_90a template (compiler/templates/attention.ts), with
// Q, K and V passed as pointers instead of TMA maps. One artifact (arch 'sm_80') serves sm_80 and
// sm_89 (and newer GPUs through its PTX).
//
// One CTA per (bm-query tile, head, batch), bm / 16 warps, each owning 16 query rows:
//   - Q tile and K/V tiles (bc keys) arrive through cp.async (16-byte chunks, rows past Lq / Lkv
//     zero-filled) into shared memory, rows XOR-swizzled in 16-byte chunks so that ldmatrix reads
//     are free of bank conflicts; K/V go through a ring of `stages` buffers, one __syncthreads per tile
//   - each warp keeps its Q fragments in registers (ldmatrix, loaded once)
//   - per KV tile: S = Q K^T with mma.sync m16n8k16 (f32 accumulate; K via ldmatrix), mask, online
//     softmax in registers (attention-common.ts), P packed to 16-bit in registers is the A operand of
//     O += P V (V via ldmatrix.trans)
//   - end: O / rowsum as 16-bit, log-sum-exp (natural log) as f32
import type { AttentionArtifact, AttentionSpec } from '../../dsl/artifact.js';
import { CUDA_PRELUDE } from '../cuda-prelude.js';
import {
  attentionDeviceHelpers,
  attentionMaskStruct,
  onlineSoftmax,
  storeAttentionOutput,
} from './attention-common.js';

/** sm_89's per-block shared-memory limit (sm_80 allows 163 KB): the artifact runs on both */
const MMA_MAX_SHARED = 101376;

export function attentionMmaSharedBytes(spec: Pick<AttentionSpec, 'headDim' | 'bc' | 'stages' | 'bm'>): number {
  return ((spec.bm ?? 64) + 2 * spec.bc * spec.stages) * spec.headDim * 2;
}

export function validateAttentionMmaSpec(spec: AttentionSpec): void {
  if (spec.input !== 'bf16' && spec.input !== 'f16')
    throw new RangeError(`mma.sync attention takes bf16 or f16, got ${String(spec.input)}`);
  if (spec.headDim !== 64 && spec.headDim !== 128)
    throw new RangeError(`attention head dim must be 64 or 128, got ${spec.headDim}`);
  if (spec.bc !== 64 && spec.bc !== 128)
    throw new RangeError(`mma.sync attention KV tile must be 64 or 128 keys, got ${spec.bc}`);
  if (spec.headDim === 128 && spec.bc === 128)
    throw new RangeError('mma.sync attention with head dim 128 takes 64-key tiles (registers)');
  if (spec.bm !== undefined && spec.bm !== 64 && spec.bm !== 128)
    throw new RangeError(`mma.sync attention query tile must be 64 or 128 rows, got ${spec.bm}`);
  if (!Number.isInteger(spec.stages) || spec.stages < 2 || spec.stages > 4)
    throw new RangeError(`mma.sync attention takes 2 to 4 pipeline stages, got ${spec.stages}`);
  if (attentionMmaSharedBytes(spec) > MMA_MAX_SHARED)
    throw new RangeError(
      `attention D=${spec.headDim} bm=${spec.bm ?? 64} bc=${spec.bc} with ${spec.stages} stages needs ${attentionMmaSharedBytes(spec)} bytes of shared memory (sm_89 has ${MMA_MAX_SHARED})`,
    );
}

/**
 * The instantiation plans and bundles use: 64-query tiles (4 warps; 10% faster than 128 on the model's
 * shapes, measured as PTX on an H200, no sm_80 / sm_89 hardware measured), 64-key tiles, as deep a
 * ring as fits sm_89's shared memory.
 */
export function defaultAttentionMmaSpec(input: 'bf16' | 'f16', headDim: 64 | 128): AttentionSpec {
  return { input, headDim, bm: 64, bc: 64, stages: headDim === 128 ? 2 : 4 };
}

export function attentionMma(specIn: AttentionSpec): AttentionArtifact {
  const spec: AttentionSpec = { ...specIn, bm: specIn.bm ?? 64 };
  validateAttentionMmaSpec(spec);
  const { input, headDim: D, bc: BC, stages: S } = spec;
  const BM = spec.bm!;
  const threads = 2 * BM; // 32 per 16 rows
  const chunks = D / 8; // 16-byte chunks per row
  const kvBytes = BC * D * 2; // one of K or V
  const T = input === 'bf16' ? 'sfc_bf16' : 'sfc_f16';
  const entry = `sfc_attn_fwd_sm80_${input}_d${D}_m${BM}_bc${BC}_s${S}`;
  const source = `${CUDA_PRELUDE}
${attentionDeviceHelpers(input)}
${attentionMaskStruct(BM, BC)}
typedef unsigned int sfc_u32;
__device__ __forceinline__ sfc_u32 sfc_smem_addr(const void* p) {
  return (sfc_u32)__cvta_generic_to_shared(p);
}
// 16 bytes global -> shared, asynchronously; zeros when !ok (src is not read then)
__device__ __forceinline__ void sfc_cp16(sfc_u32 dst, const void* src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(ok ? 16 : 0) : "memory");
}
__device__ __forceinline__ void sfc_cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void sfc_cp_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
__device__ __forceinline__ void sfc_ldsm4(sfc_u32* r, sfc_u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void sfc_ldsm4t(sfc_u32* r, sfc_u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
// c[0..3] += A (16 x 16, a[0..3]) B (16 x 8, b0 b1)
__device__ __forceinline__ void sfc_mma(float* c, const sfc_u32* a, sfc_u32 b0, sfc_u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.${input}.${input}.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// byte offset of 16-byte chunk c of row r in a tile of ${D * 2}-byte rows, chunks XOR-swizzled by row
__device__ __forceinline__ sfc_u32 sfc_sw(int r, int c) { return r * ${D * 2} + ((c ^ (r & 7)) << 4); }

extern "C" __global__ void __launch_bounds__(${threads})
${entry}(const ${T}* __restrict__ Q, const ${T}* __restrict__ K, const ${T}* __restrict__ V, ${T}* __restrict__ O,
    float* __restrict__ lse, const int Lq, const int Lkv, const int H, const int qRows, const int kvRows,
    const int ldo, const float scaleLog2, const int blockTokens, const int qOffset, const int windowTokens,
    const int sinkTokens) {
  extern __shared__ __align__(128) unsigned char sfc_smem_raw[];
  const sfc_u32 sQ = sfc_smem_addr(sfc_smem_raw), ring = sQ + ${BM * D * 2}; // ring: [stages][K | V][${BC} rows]
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int q0 = blockIdx.x * ${BM}, h = blockIdx.y, b = blockIdx.z;
  const SfcMask mask = {Lq, Lkv, blockTokens, qOffset, windowTokens, sinkTokens};
  int sinkEnd, from, to;
  mask.tiles(q0, sinkEnd, from, to);
  const int nTiles = sinkEnd + (to > from ? to - from : 0);
  auto tileOf = [&](int i) { return i < sinkEnd ? i : from + (i - sinkEnd); };
  {
    const ${T}* g = Q + ((long long)b * qRows + q0) * ldo + h * ${D};
    for (int x = tid; x < ${BM * chunks}; x += ${threads}) {
      const int r = x / ${chunks}, c = x % ${chunks};
      const bool ok = q0 + r < Lq;
      sfc_cp16(sQ + sfc_sw(r, c), g + (long long)(ok ? r : 0) * ldo + 8 * c, ok);
    }
    sfc_cp_commit();
  }
  // K and V of tile position i into ring slot i % ${S}; keys at or past Lkv read as zeros
  auto load = [&](int i) {
    const int k0 = tileOf(i) * ${BC};
    const sfc_u32 dst = ring + (i % ${S}) * ${2 * kvBytes};
    const long long base = ((long long)b * kvRows + k0) * ldo + h * ${D};
    for (int x = tid; x < ${BC * chunks}; x += ${threads}) {
      const int r = x / ${chunks}, c = x % ${chunks};
      const bool ok = k0 + r < Lkv;
      const long long off = base + (long long)(ok ? r : 0) * ldo + 8 * c;
      sfc_cp16(dst + sfc_sw(r, c), K + off, ok);
      sfc_cp16(dst + ${kvBytes} + sfc_sw(r, c), V + off, ok);
    }
  };
#pragma unroll
  for (int i = 0; i < ${S - 1}; ++i) {
    if (i < nTiles) load(i);
    sfc_cp_commit();
  }
  // this thread's rows qa, qb (= qa + 8) and their visible keys; the warp's extreme bounds
  const int cq = 2 * (lane % 4), w0 = q0 + 16 * warp;
  const int qa = w0 + lane / 4, qb = qa + 8;
  const int hiA = mask.hi(qa), loA = mask.lo(qa), hiB = mask.hi(qb), loB = mask.lo(qb);
  const int hiMin = mask.hi(w0), loMax = mask.lo(w0 + 15);
  float o[${D / 2}];
#pragma unroll
  for (int i = 0; i < ${D / 2}; ++i) o[i] = 0.0f;
  float mA = SFC_NEG_INF, mB = SFC_NEG_INF, lA = 0.0f, lB = 0.0f;
  // the warp's Q fragments (A operands of S = Q K^T), one per 16 columns
  sfc_u32 qf[${D / 16}][4];
  sfc_cp_wait<${S - 1}>();
  __syncthreads();
#pragma unroll
  for (int kk = 0; kk < ${D / 16}; ++kk)
    sfc_ldsm4(qf[kk], sQ + sfc_sw(16 * warp + (lane % 8) + 8 * ((lane / 8) % 2), 2 * kk + lane / 16));
  for (int i = 0; i < nTiles; ++i) {
    // tile i has landed and every warp is done with tile i - 1, whose slot the next load refills
    sfc_cp_wait<${S - 2}>();
    __syncthreads();
    if (i + ${S - 1} < nTiles) load(i + ${S - 1});
    sfc_cp_commit();
    const sfc_u32 sK = ring + (i % ${S}) * ${2 * kvBytes}, sV = sK + ${kvBytes};
    float sc[${BC / 2}];
#pragma unroll
    for (int j = 0; j < ${BC / 2}; ++j) sc[j] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < ${D / 16}; ++kk)
#pragma unroll
      for (int j = 0; j < ${BC / 8}; j += 2) {
        sfc_u32 kf[4]; // B operands of key blocks j and j + 1 (rows of K are columns of K^T)
        sfc_ldsm4(kf, sK + sfc_sw(8 * j + (lane % 8) + 8 * (lane / 16), 2 * kk + (lane / 8) % 2));
        sfc_mma(sc + 4 * j, qf[kk], kf[0], kf[1]);
        sfc_mma(sc + 4 * j + 4, qf[kk], kf[2], kf[3]);
      }
    float aA, aB;
    sfc_u32 p[${BC / 16}][4];
    ${onlineSoftmax(BC, 'tileOf(i)', 'p')}
#pragma unroll
    for (int j = 0; j < ${D / 8}; ++j) {
      o[4 * j] *= aA;
      o[4 * j + 1] *= aA;
      o[4 * j + 2] *= aB;
      o[4 * j + 3] *= aB;
    }
#pragma unroll
    for (int kk = 0; kk < ${BC / 16}; ++kk)
#pragma unroll
      for (int n = 0; n < ${D / 8}; n += 2) {
        sfc_u32 vf[4]; // B operands of output columns 8 n.. and 8 (n + 1).., V read transposed
        sfc_ldsm4t(vf, sV + sfc_sw(16 * kk + (lane % 8) + 8 * ((lane / 8) % 2), n + lane / 16));
        sfc_mma(o + 4 * n, p[kk], vf[0], vf[1]);
        sfc_mma(o + 4 * n + 4, p[kk], vf[2], vf[3]);
      }
  }
  ${storeAttentionOutput(D, input)}
}
`;
  const ptr = (name: string) => ({ name, type: 'ptr' as const });
  const i32 = (name: string) => ({ name, type: 'i32' as const });
  return {
    kind: 'attention',
    name: entry,
    arch: 'sm_80',
    spec,
    bm: BM,
    threads,
    sharedBytes: attentionMmaSharedBytes(spec),
    source,
    entry,
    params: [
      ...['Q', 'K', 'V', 'O', 'lse'].map(ptr),
      ...['Lq', 'Lkv', 'H', 'qRows', 'kvRows', 'ldo'].map(i32),
      { name: 'scaleLog2', type: 'f32' },
      ...['blockTokens', 'qOffset', 'windowTokens', 'sinkTokens'].map(i32),
    ],
  };
}
