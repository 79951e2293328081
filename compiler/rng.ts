// The CUDA twin of dsl/random.ts (Philox4x32-10 and the sfc rand/randn definitions), pasted into
// generated kernels that draw random numbers. Integer results are bit-identical to the JS side.
export { philox4x32, rand, randn, randomBits, uniformFromBits } from '../dsl/random.js';

export const RNG_CUDA = `
// sfc RNG: Philox4x32-10 and the sfc random definitions (mirrors compiler/rng.ts).
__device__ __forceinline__ void sfc_philox4x32(unsigned c0, unsigned c1, unsigned c2, unsigned c3,
                                               unsigned k0, unsigned k1, unsigned out[4]) {
  #pragma unroll
  for (int round = 0; round < 10; ++round) {
    if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
    unsigned hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    unsigned hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    c0 = hi1 ^ c1 ^ k0; c1 = lo1; c2 = hi0 ^ c3 ^ k1; c3 = lo0;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}
__device__ __forceinline__ unsigned sfc_random_bits(unsigned seed, unsigned offset) {
  unsigned w[4];
  sfc_philox4x32(offset, 0u, 0u, 0u, seed, 0x2545F491u, w);
  return w[0];
}
__device__ __forceinline__ float sfc_uniform_from_bits(unsigned x) {
  return ((float)(x >> 9) + 0.5f) * 1.1920928955078125e-7f;  // 2^-23; exact in float32
}
__device__ __forceinline__ float sfc_rand(unsigned seed, unsigned offset) {
  return sfc_uniform_from_bits(sfc_random_bits(seed, offset));
}
__device__ __forceinline__ float sfc_randn(unsigned seed, unsigned offset) {
  unsigned w[4];
  sfc_philox4x32(offset, 0u, 0u, 0u, seed, 0x2545F491u, w);
  float u0 = sfc_uniform_from_bits(w[0]), u1 = sfc_uniform_from_bits(w[1]);
  // cospif(2 u1) = cos(2 pi u1) without cosf's large-argument reduction (which needs a stack frame)
  return sqrtf(-2.0f * logf(u0)) * cospif(2.0f * u1);
}
`;
