// The GEMM template on mma.sync for sm_80 (Ampere) and sm_89 (Ada): the same contract as the sm_90a
// template in gemm.ts (C[M, N] = epilogue(A[M, K] . B[N, K]^T), A and B row-major with K contiguous,
// f32 accumulation, the same GemmSpec, epilogue hook and parameters after the operands), for GPUs
// without wgmma and TMA.
//
// One CTA per 128 x bn output tile, 4 or 8 warps in a 2 x (warps / 2) grid, each warp owning a
// 64 x (bn / (warps / 2)) block of the tile:
//   mainloop: K-slices of 128 bytes per row (64 bf16 / f16, 128 e4m3) of A (128 rows) and B (bn rows)
//     stream into a ring of `stages` shared-memory buffers with cp.async (16-byte chunks, rows past M
//     or N and chunks past K zero-filled). The 16-byte chunk c of row r is stored at chunk
//     c ^ (r & 7) of its 128-byte row, so both the cp.async writes (8 threads per row) and the
//     ldmatrix reads (8 rows per 8-lane phase) touch all 32 banks once. Per 32-byte K step each warp
//     loads its A fragments (ldmatrix.x4, one per 16 rows) and B fragments (ldmatrix.x4, one per
//     16 columns) and issues mma.sync.m16n8k16 (bf16 / f16) or m16n8k32 (e4m3, sm_89): in bytes the
//     fragment layouts of the two are the same, so the 8-bit path differs only in the instruction.
//   epilogue: straight from the accumulator fragments, through the shared `sfc_epilogue` hook
//     (gemm.ts), pairs of adjacent columns per store.
import type { GemmArtifact, GemmInput, GemmSpec } from '../../dsl/artifact.js';
import { CUDA_PRELUDE } from '../cuda-prelude.js';
import {
  ctype,
  elementBytes,
  epilogueFunction,
  epilogueParams,
  epiloguePairStore,
  tag,
  validateGemmEpilogue,
} from './gemm.js';

/** The architectures of the mma.sync path. */
export type MmaArch = 'sm_80' | 'sm_89';

export interface GemmMmaSpec extends Omit<GemmSpec, 'persistent' | 'schedule' | 'conv'> {
  arch: MmaArch;
  /** warps per CTA, 2 along M and warps / 2 along N (default 8) */
  warps?: 4 | 8;
}

const BM = 128;
/** bytes of each row per K-slice */
const ROW_BYTES = 128;

/** The largest dynamic shared memory one block may opt into (A100: 163 KiB; Ada: 99 KiB). */
export const MMA_MAX_SHARED: Record<MmaArch, number> = { sm_80: 166912, sm_89: 101376 };

/** Shared memory of one instantiation: the cp.async ring of A and B K-slices. */
export function gemmMmaSharedBytes(spec: Pick<GemmMmaSpec, 'bn' | 'stages'>): number {
  return spec.stages * (BM + spec.bn) * ROW_BYTES;
}

/** The deepest ring (at most 4 stages) that fits the architecture's shared memory at this tile width. */
export function mmaStages(arch: MmaArch, bn: number): number {
  let s = 2;
  while (s < 4 && gemmMmaSharedBytes({ bn, stages: s + 1 }) <= MMA_MAX_SHARED[arch]) s++;
  return s;
}

export function validateGemmMmaSpec(spec: GemmMmaSpec): void {
  const warps = spec.warps ?? 8;
  if (spec.arch !== 'sm_80' && spec.arch !== 'sm_89')
    throw new RangeError(`the mma.sync GEMM is built for sm_80 or sm_89, got ${String(spec.arch)}`);
  if (warps !== 4 && warps !== 8) throw new RangeError(`the mma.sync GEMM runs 4 or 8 warps, got ${String(warps)}`);
  const wn = spec.bn / (warps / 2);
  if (!Number.isInteger(spec.bn) || !Number.isInteger(wn) || wn % 16 !== 0 || wn > 64 || spec.bn < 64)
    throw new RangeError(
      `mma.sync GEMM: bn = ${spec.bn} does not split into ${warps / 2} warp columns of 16 to 64 (a multiple of 16)`,
    );
  if (!Number.isInteger(spec.stages) || spec.stages < 2)
    throw new RangeError(`GEMM pipeline needs at least 2 stages, got ${spec.stages}`);
  if (gemmMmaSharedBytes(spec) > MMA_MAX_SHARED[spec.arch])
    throw new RangeError(
      `GEMM bn=${spec.bn} with ${spec.stages} stages needs ${gemmMmaSharedBytes(spec)} bytes of shared memory (${spec.arch}: at most ${MMA_MAX_SHARED[spec.arch]})`,
    );
  if (spec.input === 'e4m3' && spec.arch !== 'sm_89')
    throw new RangeError('FP8 (e4m3) mma.sync needs sm_89; sm_80 has no 8-bit float tensor cores');
  const extra = Object.keys(spec.epilogue?.custom ?? {}).filter((k) => k !== 'params' && k !== 'body');
  if (extra.length)
    throw new RangeError(
      `the mma.sync GEMM takes generated epilogues of per-element statements only (no ${extra.join(', ')})`,
    );
  validateGemmEpilogue(spec);
}

const MMA_PRELUDE = String.raw`
typedef unsigned long long sfc_u64;
typedef unsigned int sfc_u32;
__device__ __forceinline__ sfc_u32 sfc_smem(const void* p) {
  sfc_u32 r;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
  return r;
}
// 16 bytes global -> shared, bypassing L1; with valid == 0 nothing is read and the 16 bytes are zeros
__device__ __forceinline__ void sfc_cp_async16(sfc_u32 dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void sfc_cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void sfc_cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory");
}
__device__ __forceinline__ void sfc_ldmatrix_x4(sfc_u32 (&r)[4], sfc_u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
`;

/** The mma.sync of one 32-byte K step: `sfc_mma(d[4], a[4], b0, b1)`, d += A(16 x k) . B(k x 8). */
function mmaCall(input: GemmInput): string {
  const shape = input === 'e4m3' ? 'm16n8k32' : 'm16n8k16';
  return `__device__ __forceinline__ void sfc_mma(float (&d)[4], const sfc_u32 (&a)[4], sfc_u32 b0, sfc_u32 b1) {
  asm volatile("mma.sync.aligned.${shape}.row.col.f32.${input}.${input}.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
`;
}

/** Instantiates the mma.sync GEMM template for sm_80 or sm_89. */
export function gemmMma(specIn: GemmMmaSpec): GemmArtifact {
  validateGemmMmaSpec(specIn);
  const warps = specIn.warps ?? 8;
  const epilogue = specIn.epilogue ?? {};
  const { arch, input, output, bn, stages } = specIn;
  const spec = { input, output, bn, stages, persistent: false, schedule: 'default' as const, conv: false, epilogue };
  const eb = elementBytes(input);
  const bk = ROW_BYTES / eb;
  const threads = warps * 32;
  const warpsN = warps / 2;
  const wn = bn / warpsN; // warp tile columns
  const mi = 64 / 16; // m16 fragments per warp
  const ni = wn / 8; // n8 fragments per warp
  const chunk = 16 / eb; // elements per 16-byte chunk
  const aBytes = BM * ROW_BYTES;
  const bBytes = bn * ROW_BYTES;
  const entry = `sfc_gemm_${arch.replace('_', '')}_${input}_${output}_128x${bn}x${bk}_w${warps}_s${stages}${tag(epilogue)}`;
  const extra = epilogueParams(epilogue);
  const args = extra.map((p) => `, ${p.name}`).join('');
  const params: GemmArtifact['params'] = [
    { name: 'A', type: 'ptr' },
    { name: 'B', type: 'ptr' },
    { name: 'C', type: 'ptr' },
    { name: 'M', type: 'i32' },
    { name: 'N', type: 'i32' },
    { name: 'K', type: 'i32' },
    { name: 'ldc', type: 'i32' },
    { name: 'lda', type: 'i32' },
    { name: 'ldb', type: 'i32' },
    ...extra.map(({ name, type }) => ({ name, type })),
  ];
  const it = ctype[input]!;
  const rowsPerPass = threads / 8; // rows one cp.async pass of the block covers (8 chunks per row)
  const loads = (rows: number, ring: string, ptr: string, ld: string, bound: string, tileBytes: number, r0: string) => `
#pragma unroll
    for (int i = 0; i < ${(rows * 8) / threads}; ++i) {
      const int row = ${r0} + lr + i * ${rowsPerPass};
      const bool ok = kin && row < ${bound};
      sfc_cp_async16(${ring} + s * ${tileBytes} + dstOff + i * ${rowsPerPass * ROW_BYTES},
                     ok ? (const void*)(${ptr} + (long long)row * ${ld} + k) : (const void*)${ptr}, ok);
    }`;
  const source = `${CUDA_PRELUDE}
${MMA_PRELUDE}
${mmaCall(input)}
${epilogueFunction(epilogue)}
extern "C" __global__ void __launch_bounds__(${threads}, 1)
${entry}(const ${it}* __restrict__ A, const ${it}* __restrict__ B, ${ctype[output]}* __restrict__ C,
    const int M, const int N, const int K, const int ldc, const int lda, const int ldb${extra.map((p) => `,\n    ${p.decl}`).join('')}) {
  extern __shared__ __align__(128) unsigned char smem[];
  const sfc_u32 ringA = sfc_smem(smem);              // [stages][128 rows][128 bytes], 16-byte chunks swizzled
  const sfc_u32 ringB = ringA + ${stages * aBytes};  // [stages][${bn} rows][128 bytes]
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / ${warpsN}, wn = warp % ${warpsN};
  const int m0 = blockIdx.x * ${BM}, n0 = blockIdx.y * ${bn};
  const int kTiles = (K + ${bk - 1}) / ${bk};
  // cp.async: this thread copies chunk tid % 8 of rows tid / 8 + i * ${rowsPerPass}; K * ${eb} bytes is a
  // multiple of 16 (checked at launch), so a chunk lies all inside K or all past it (zero-filled)
  const int lc = tid % 8, lr = tid / 8;
  const sfc_u32 dstOff = lr * ${ROW_BYTES} + ((lc ^ (lr & 7)) << 4);
  auto loadSlice = [&](const int kt) {
    const int s = kt % ${stages}, k = kt * ${bk} + lc * ${chunk};
    const bool kin = k < K;${loads(BM, 'ringA', 'A', 'lda', 'M', aBytes, 'm0')}${loads(bn, 'ringB', 'B', 'ldb', 'N', bBytes, 'n0')}
  };
  float acc[${mi}][${ni}][4];
#pragma unroll
  for (int i = 0; i < ${mi}; ++i)
#pragma unroll
    for (int j = 0; j < ${ni}; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
#pragma unroll
  for (int s = 0; s < ${stages - 1}; ++s) {
    if (s < kTiles) loadSlice(s);
    sfc_cp_async_commit();
  }
  // ldmatrix.x4 rows of this lane (all == lane (mod 8), so the swizzle is chunk ^ (lane & 7)):
  // A: 16 rows x chunks (2 kk, 2 kk + 1); B: 2 x 8 rows x chunks (2 kk, 2 kk + 1)
  const int sw = lane & 7;
  const sfc_u32 aLane = (wm * 64 + lane % 16) * ${ROW_BYTES}, aHalf = lane / 16;
  const sfc_u32 bLane = (wn * ${wn} + (lane / 16) * 8 + lane % 8) * ${ROW_BYTES}, bHalf = (lane / 8) % 2;
  for (int kt = 0; kt < kTiles; ++kt) {
    sfc_cp_async_wait<${stages - 2}>();
    // slice kt has landed for every thread, and every warp is done with slice kt - 1, whose buffer
    // the next load refills
    __syncthreads();
    if (kt + ${stages - 1} < kTiles) loadSlice(kt + ${stages - 1});
    sfc_cp_async_commit();
    const int s = kt % ${stages};
    const sfc_u32 sa = ringA + s * ${aBytes} + aLane, sb = ringB + s * ${bBytes} + bLane;
#pragma unroll
    for (int kk = 0; kk < ${ROW_BYTES / 32}; ++kk) {
      sfc_u32 a[${mi}][4], b[${ni / 2}][4];
#pragma unroll
      for (int i = 0; i < ${mi}; ++i) sfc_ldmatrix_x4(a[i], sa + i * ${16 * ROW_BYTES} + (((2 * kk + aHalf) ^ sw) << 4));
#pragma unroll
      for (int j = 0; j < ${ni / 2}; ++j) sfc_ldmatrix_x4(b[j], sb + j * ${16 * ROW_BYTES} + (((2 * kk + bHalf) ^ sw) << 4));
#pragma unroll
      for (int i = 0; i < ${mi}; ++i)
#pragma unroll
        for (int j = 0; j < ${ni}; ++j) sfc_mma(acc[i][j], a[i], b[j / 2][2 * (j % 2)], b[j / 2][2 * (j % 2) + 1]);
    }
  }
  sfc_cp_async_wait<0>();
  // epilogue straight from the accumulator fragments (c0, c1: row g, columns 2 (lane % 4) + 0, 1;
  // c2, c3: row g + 8), pairs of adjacent columns per store
  const int g = lane / 4, c0 = 2 * (lane % 4);
  const bool pairs = (N % 2 == 0) && (ldc % 2 == 0);
#pragma unroll
  for (int i = 0; i < ${mi}; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = m0 + wm * 64 + i * 16 + g + 8 * h;
      if (row >= M) continue;
#pragma unroll
      for (int j = 0; j < ${ni}; ++j) {
        const int col = n0 + wn * ${wn} + j * 8 + c0;
        if (col >= N) continue;
        ${epiloguePairStore(output, 'acc[i][j][2 * h]', 'acc[i][j][2 * h + 1]', args)}
      }
    }
}
`;
  return {
    kind: 'gemm',
    name: entry,
    arch,
    spec,
    bm: BM,
    bk,
    threads,
    sharedBytes: gemmMmaSharedBytes(spec),
    source,
    entry,
    params,
  };
}

/**
 * Tile configurations the plans offer the autotuner on each mma.sync architecture: 128 x 128 on 4
 * warps (64 x 64 per warp) or 8 warps (64 x 32), and 128 x 256 on 8 warps (64 x 64), each with the
 * deepest ring that fits (sm_80: 4, 4, 3 stages; sm_89's 99 KiB: 3, 3, 2).
 */
export const MMA_TILES: readonly { bn: number; warps: 4 | 8 }[] = [
  { bn: 128, warps: 4 },
  { bn: 128, warps: 8 },
  { bn: 256, warps: 8 },
];

/**
 * The mma.sync instantiations a plan offers for a GEMM, for each architecture that has the input
 * type (FP8 only on sm_89).
 */
export function gemmMmaCandidates(
  base: Omit<GemmMmaSpec, 'arch' | 'bn' | 'stages' | 'warps'>,
  archs: readonly MmaArch[] = ['sm_80', 'sm_89'],
): GemmArtifact[] {
  return archs
    .filter((arch) => base.input !== 'e4m3' || arch === 'sm_89')
    .flatMap((arch) =>
      MMA_TILES.map(({ bn, warps }) => gemmMma({ ...base, arch, bn, warps, stages: mmaStages(arch, bn) })),
    );
}
