// The CUDA C++ every generated kernel starts with: storage types and conversions for bf16, f16 and
// FP8 (no CUDA headers: NVRTC and nvcc both compile it as is), and the block-level helpers the
// backend calls. Conversions round to nearest even; FP8 saturates to the largest finite value and
// maps NaN to 0x7F, exactly as dsl/numerics.ts does on the host.

export const CUDA_PRELUDE = String.raw`
typedef unsigned short sfc_bf16;
typedef unsigned short sfc_f16;
typedef unsigned char sfc_e4m3;
typedef unsigned char sfc_e5m2;

__device__ __forceinline__ float sfc_from_bf16(unsigned short b) { return __uint_as_float(((unsigned)b) << 16); }
__device__ __forceinline__ unsigned short sfc_to_bf16(float f) {
  unsigned short r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
}
__device__ __forceinline__ float sfc_round_bf16(float f) { return sfc_from_bf16(sfc_to_bf16(f)); }

__device__ __forceinline__ float sfc_from_f16(unsigned short h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
__device__ __forceinline__ unsigned short sfc_to_f16(float f) {
  unsigned short r;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
}
__device__ __forceinline__ float sfc_round_f16(float f) { return sfc_from_f16(sfc_to_f16(f)); }

// FP8 (OCP e4m3 / e5m2): decode is exact arithmetic; encode is round-to-nearest-even with
// saturation (the satfinite conversion), written out so sm_80 gets the same bits as sm_89+.
__device__ __forceinline__ unsigned sfc_to_mini(float f, int man, int bias, float maxFinite) {
  if (f != f) return 0x7f;
  const unsigned sign = (__float_as_uint(f) >> 24) & 0x80;
  float a = fabsf(f);
  if (a == 0.0f) return sign;
  const int minExp = 1 - bias;
  int E = (int)((__float_as_uint(a) >> 23) & 0xff) - 127;
  if (E < minExp) E = minExp;
  const float quantum = ldexpf(1.0f, E - man);
  float n = rintf(a / quantum);  // exact division by a power of two; rintf rounds half to even
  float v = n * quantum;
  if (v > maxFinite) v = maxFinite;
  const float minNormal = ldexpf(1.0f, minExp);
  if (v < minNormal) return sign | (unsigned)(v / ldexpf(1.0f, minExp - man));
  const int ve = (int)((__float_as_uint(v) >> 23) & 0xff) - 127;
  const unsigned mant = (unsigned)rintf((v / ldexpf(1.0f, ve) - 1.0f) * (float)(1 << man));
  return sign | ((unsigned)(ve + bias) << man) | mant;
}
// decode with integer ops: normal numbers are a re-biased exponent, subnormals a small multiple of 2^-k
__device__ __forceinline__ float sfc_from_e4m3(unsigned char b) {
  const unsigned sign = (unsigned)(b & 0x80) << 24, e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return __int_as_float(0x7fc00000);
  if (e == 0) return __uint_as_float(sign | __float_as_uint((float)m * 0.001953125f));  // m * 2^-9
  return __uint_as_float(sign | ((e + 120) << 23) | (m << 20));
}
__device__ __forceinline__ float sfc_from_e5m2(unsigned char b) {
  const unsigned sign = (unsigned)(b & 0x80) << 24, e = (b >> 2) & 31, m = b & 3;
  if (e == 31) return m ? __int_as_float(0x7fc00000) : __uint_as_float(sign | 0x7f800000u);
  if (e == 0) return __uint_as_float(sign | __float_as_uint((float)m * 1.52587890625e-05f));  // m * 2^-16
  return __uint_as_float(sign | ((e + 112) << 23) | (m << 21));
}
// sm_89+ converts in hardware (cvt.rn.satfinite: same rounding, saturation and NaN as the code below)
__device__ __forceinline__ unsigned char sfc_to_e4m3(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  unsigned short r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(0.0f), "f"(f));
  return (unsigned char)(r & 0xff);
#else
  return (unsigned char)sfc_to_mini(f, 3, 7, 448.0f);
#endif
}
__device__ __forceinline__ unsigned char sfc_to_e5m2(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  unsigned short r;
  asm("cvt.rn.satfinite.e5m2x2.f32 %0, %1, %2;" : "=h"(r) : "f"(0.0f), "f"(f));
  return (unsigned char)(r & 0xff);
#else
  return (unsigned char)sfc_to_mini(f, 2, 15, 57344.0f);
#endif
}
__device__ __forceinline__ float sfc_round_e4m3(float f) { return sfc_from_e4m3(sfc_to_e4m3(f)); }
__device__ __forceinline__ float sfc_round_e5m2(float f) { return sfc_from_e5m2(sfc_to_e5m2(f)); }

// Two adjacent elements converted at once (lo at the lower address), bit-identical to two of the
// conversions above: vectorised stores use these.
__device__ __forceinline__ unsigned sfc_to_bf16x2(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
__device__ __forceinline__ unsigned sfc_to_f16x2(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
__device__ __forceinline__ unsigned short sfc_to_e4m3x2(float lo, float hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  unsigned short r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
  return r;
#else
  return (unsigned short)(sfc_to_mini(lo, 3, 7, 448.0f) | (sfc_to_mini(hi, 3, 7, 448.0f) << 8));
#endif
}
__device__ __forceinline__ unsigned short sfc_to_e5m2x2(float lo, float hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  unsigned short r;
  asm("cvt.rn.satfinite.e5m2x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
  return r;
#else
  return (unsigned short)(sfc_to_mini(lo, 2, 15, 57344.0f) | (sfc_to_mini(hi, 2, 15, 57344.0f) << 8));
#endif
}

// float -> int as C casts do on the GPU: truncate, saturate, NaN -> 0
__device__ __forceinline__ int sfc_f2i(float f) {
  int r;
  asm("cvt.rzi.sat.s32.f32 %0, %1;" : "=r"(r) : "f"(f));
  return r;
}
__device__ __forceinline__ float sfc_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ float sfc_atomic_max(float* p, float v) {
  int* ip = (int*)p;
  int old = *ip;
  while (v > __int_as_float(old) || (v == v && __int_as_float(old) != __int_as_float(old))) {
    const int seen = atomicCAS(ip, old, __float_as_int(v));
    if (seen == old) break;
    old = seen;
  }
  return __int_as_float(old);
}

template <typename T> struct SfcSum { __device__ __forceinline__ static T f(T a, T b) { return a + b; } };
template <typename T> struct SfcMax { __device__ __forceinline__ static T f(T a, T b) { return a > b || b != b ? a : b; } };
template <typename T> struct SfcMin { __device__ __forceinline__ static T f(T a, T b) { return a < b || b != b ? a : b; } };
template <> struct SfcMax<float> { __device__ __forceinline__ static float f(float a, float b) { return fmaxf(a, b); } };
template <> struct SfcMin<float> { __device__ __forceinline__ static float f(float a, float b) { return fminf(a, b); } };

// Reduces v over the block; every thread gets the result. With LEAD it starts with a barrier, so
// the shared scratch (one slot per warp) may be reused by the caller right after its previous use;
// the backend drops it where no thread can still be reading the scratch (the first shared-memory
// use of a kernel, or a reduction into the other of two scratch areas right after another one,
// whose own barrier already separates the readers of this area from the next writers).
template <typename Op, typename T, int WARPS, bool LEAD = true>
__device__ __forceinline__ T sfc_block_reduce(T v, T* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = Op::f(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (WARPS == 1) return v;
  if (LEAD) __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  T r = scratch[0];
#pragma unroll
  for (int w = 1; w < WARPS; ++w) r = Op::f(r, scratch[w]);
  return r;
}
`;
