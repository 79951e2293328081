// Hopper building blocks shared by the sm_90a templates (GEMM, attention), as CUDA C++ over inline
// PTX (no CUDA headers, so NVRTC and nvcc compile it as is):
//   - shared-memory addresses, mbarriers (init, arrive, arrive with an expected transaction count,
//     parity wait), named barriers for a subset of warps
//   - TMA: 2-D tiled copies global -> shared completing on an mbarrier; the tensor map is a 128-byte
//     kernel parameter passed by value (__grid_constant__)
//   - wgmma: shared-memory matrix descriptors for the 128-byte swizzled K-major layout TMA writes,
//     fence / commit / wait, and register reallocation between producer and consumer warpgroups
// The wgmma instructions themselves are generated per shape (wgmmaCall below): their operand lists
// are as long as the accumulator tile.

export const SM90_PRELUDE = String.raw`
typedef unsigned long long sfc_u64;
typedef unsigned int sfc_u32;
struct __align__(64) SfcTensorMap { unsigned char bytes[128]; };

__device__ __forceinline__ sfc_u32 sfc_smem(const void* p) {
  sfc_u32 r;
  asm volatile("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
  return r;
}
__device__ __forceinline__ void sfc_mbar_init(sfc_u32 bar, sfc_u32 count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void sfc_mbar_fence_init() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void sfc_mbar_arrive(sfc_u32 bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(bar) : "memory");
}
__device__ __forceinline__ void sfc_mbar_expect_tx(sfc_u32 bar, sfc_u32 bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ sfc_u32 sfc_mbar_try_wait(sfc_u32 bar, sfc_u32 parity) {
  sfc_u32 done;
  asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
               : "=r"(done) : "r"(bar), "r"(parity) : "memory");
  return done;
}
// Waits until the phase with this parity has completed (a fresh barrier counts parity 1 as done).
__device__ __forceinline__ void sfc_mbar_wait(sfc_u32 bar, sfc_u32 parity) {
  while (!sfc_mbar_try_wait(bar, parity)) {}
}
// Named barrier among 'threads' threads (a multiple of 32) of the block; id 0 is __syncthreads.
__device__ __forceinline__ void sfc_bar_sync(sfc_u32 id, sfc_u32 threads) {
  asm volatile("bar.sync %0, %1;" :: "r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void sfc_tma_load_2d(sfc_u32 dst, const SfcTensorMap* map, int c0, int c1, sfc_u32 bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
      :: "r"(dst), "l"(map), "r"(c0), "r"(c1), "r"(bar) : "memory");
}
__device__ __forceinline__ void sfc_tma_prefetch_map(const SfcTensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" :: "l"(map) : "memory");
}
// Matrix descriptor of a K-major tile whose rows are 128 bytes, written by TMA with the 128-byte
// swizzle: 8-row core-matrix groups 1024 bytes apart (stride byte offset); the leading byte offset
// is unused for this layout. Stepping along K inside the row adds bytes / 16 to the start address.
__device__ __forceinline__ sfc_u64 sfc_wgmma_desc_sw128(sfc_u32 smem_addr) {
  sfc_u64 d = (sfc_u64)((smem_addr & 0x3FFFF) >> 4);
  d |= (sfc_u64)1 << 16;
  d |= (sfc_u64)(1024 >> 4) << 32;
  d |= (sfc_u64)1 << 62;
  return d;
}
__device__ __forceinline__ void sfc_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void sfc_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> __device__ __forceinline__ void sfc_wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" :: "n"(N) : "memory");
}
template <int R> __device__ __forceinline__ void sfc_setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" :: "n"(R));
}
template <int R> __device__ __forceinline__ void sfc_setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" :: "n"(R));
}
`;

/**
 * What the persistent ping-pong GEMM adds (appended after SM90_PRELUDE, so other kernels' sources are
 * unchanged): a named-barrier arrive for the consumers' hand-off, and for the 2-CTA cluster variant
 * the CTA's rank in its cluster, a cluster-wide barrier, TMA loads multicast to both CTAs of the
 * cluster and arrivals on the peer CTA's mbarrier (mapa), waited on with sfc_mbar_wait.
 */
export const SM90_PINGPONG = String.raw`
// Arrives on a named barrier without waiting: the signalling side of a hand-off whose other side
// calls sfc_bar_sync with the same id and thread count.
__device__ __forceinline__ void sfc_bar_arrive(sfc_u32 id, sfc_u32 threads) {
  asm volatile("bar.arrive %0, %1;" :: "r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ sfc_u32 sfc_cluster_rank() {
  sfc_u32 r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
// Every thread of every CTA of the cluster (that has not exited) arrives, then waits for the others
// (the non-.aligned forms: threads of a warp may get here apart).
__device__ __forceinline__ void sfc_cluster_sync() {
  asm volatile("barrier.cluster.arrive.release;" ::: "memory");
  asm volatile("barrier.cluster.wait.acquire;" ::: "memory");
}
// A 2-D TMA load written to the same shared-memory offset of every CTA in ctaMask, each completing
// its bytes on the mbarrier at the same offset in that CTA.
__device__ __forceinline__ void sfc_tma_load_2d_multicast(sfc_u32 dst, const SfcTensorMap* map, int c0, int c1,
                                                          sfc_u32 bar, unsigned short ctaMask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%2, %3}], [%4], %5;"
      :: "r"(dst), "l"(map), "r"(c0), "r"(c1), "r"(bar), "h"(ctaMask) : "memory");
}
// Arrives on the mbarrier at this shared-memory offset in CTA 'rank' of the cluster. The default
// (CTA-scope) release, as CUTLASS's cluster barriers use: with .release.cluster a 2-CTA cooperative GEMM
// whose consumers release every ring slot in both CTAs ran at half speed (H100, bench/lab, 2026-11-26).
__device__ __forceinline__ void sfc_mbar_arrive_cluster(sfc_u32 bar, sfc_u32 rank) {
  asm volatile(
      "{ .reg .b32 ra; mapa.shared::cluster.u32 ra, %0, %1; mbarrier.arrive.shared::cluster.b64 _, [ra]; }"
      :: "r"(bar), "r"(rank) : "memory");
}
`;

/** PTX type names of the wgmma input types. */
export type WgmmaInput = 'bf16' | 'f16' | 'e4m3';

/** K of one wgmma instruction: 32 bytes of each row. */
export function wgmmaK(input: WgmmaInput): number {
  return input === 'e4m3' ? 32 : 16;
}

/**
 * A device function `name(float (&d)[n/2], sfc_u64 a, sfc_u64 b)` issuing one
 * wgmma.m64nNk{16,32} with both operands in shared memory (K-major) and f32 accumulators, adding
 * into d (or overwriting it when `accumulate` is 0). Each of the 128 threads of the warpgroup holds
 * n/2 accumulators.
 */
export function wgmmaCall(name: string, n: number, input: WgmmaInput): string {
  if (n % 8 !== 0 || n < 8 || n > 256) throw new RangeError(`wgmma N must be a multiple of 8 in [8, 256], got ${n}`);
  const regs = n / 2;
  const k = wgmmaK(input);
  const list = Array.from({ length: regs }, (_, i) => `%${i}`).join(', ');
  const outs = Array.from({ length: regs }, (_, i) => `"+f"(d[${i}])`).join(', ');
  // 16-bit inputs take transpose flags (both 0: K-major); 8-bit inputs have none
  const tail = input === 'e4m3' ? 'p, 1, 1' : 'p, 1, 1, 0, 0';
  const mnemonic = `wgmma.mma_async.sync.aligned.m64n${n}k${k}.f32.${input}.${input}`;
  return `__device__ __forceinline__ void ${name}(float (&d)[${regs}], sfc_u64 a, sfc_u64 b, int accumulate = 1) {
  asm volatile(
      "{\\n.reg .pred p;\\nsetp.ne.b32 p, %${regs + 2}, 0;\\n"
      "${mnemonic} {${list}}, %${regs}, %${regs + 1}, ${tail};\\n}\\n"
      : ${outs}
      : "l"(a), "l"(b), "r"(accumulate));
}
`;
}

/**
 * A device function `name(float (&d)[n/2], const sfc_u32 (&a)[4], sfc_u64 b)` issuing one
 * wgmma.m64nNk16 (16-bit inputs) or m64nNk32 (e4m3) with A from registers and B from shared memory,
 * K-major or, with `transB` (16-bit only), MN-major. A's four registers per thread: rows r = lane / 4
 * and r + 8 of the warp's 16 rows, columns c = 2 (lane % 4) + {0, 1} and c + 8 for 16-bit inputs (the
 * layout of an m64n16 accumulator fragment, packed in pairs), 4 (lane % 4) + {0..3} and 16 + those
 * for e4m3 (lowest column in the lowest byte): {(r, c), (r + 8, c), (r, c'), (r + 8, c')}.
 */
export function wgmmaCallRegA(name: string, n: number, input: WgmmaInput, transB: boolean): string {
  if (n % 8 !== 0 || n < 8 || n > 256) throw new RangeError(`wgmma N must be a multiple of 8 in [8, 256], got ${n}`);
  if (input === 'e4m3' && transB) throw new RangeError('8-bit wgmma takes B K-major only');
  const regs = n / 2;
  const list = Array.from({ length: regs }, (_, i) => `%${i}`).join(', ');
  const outs = Array.from({ length: regs }, (_, i) => `"+f"(d[${i}])`).join(', ');
  const mnemonic = `wgmma.mma_async.sync.aligned.m64n${n}k${wgmmaK(input)}.f32.${input}.${input}`;
  const tail = input === 'e4m3' ? 'p, 1, 1' : `p, 1, 1, ${transB ? 1 : 0}`;
  return `__device__ __forceinline__ void ${name}(float (&d)[${regs}], const sfc_u32 (&a)[4], sfc_u64 b) {
  asm volatile(
      "{\\n.reg .pred p;\\nsetp.ne.b32 p, %${regs + 5}, 0;\\n"
      "${mnemonic} {${list}}, {%${regs}, %${regs + 1}, %${regs + 2}, %${regs + 3}}, %${regs + 4}, ${tail};\\n}\\n"
      : ${outs}
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
}
`;
}

/**
 * Matrix descriptor of an MN-major operand (16-bit) in the 128-byte swizzled layout TMA writes for
 * a [K rows][64 MN elements] box: 8-row groups along K are 1024 bytes apart (stride byte offset),
 * 64-element blocks along MN are `mnBlockBytes` apart (leading byte offset).
 */
export const SM90_MN_MAJOR_DESC = String.raw`
__device__ __forceinline__ sfc_u64 sfc_wgmma_desc_sw128_mn(sfc_u32 smem_addr, sfc_u32 mnBlockBytes) {
  sfc_u64 d = (sfc_u64)((smem_addr & 0x3FFFF) >> 4);
  d |= (sfc_u64)((mnBlockBytes >> 4) & 0x3FFF) << 16;
  d |= (sfc_u64)(1024 >> 4) << 32;
  d |= (sfc_u64)1 << 62;
  return d;
}
`;
