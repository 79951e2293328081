// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers:
// as easy as 1, 2, 3", SC'11), written twice with bit-identical integer results: in TypeScript for the
// CPU backend and as CUDA C++ device code (RNG_CUDA) pasted into generated kernels.
//
// Why counter-based: element i of a random tensor is a pure function of (seed, i), so CPU and GPU,
// any launch shape and any fusion produce the same bits, with no generator state to carry around.
//
// sfc random definitions (ours; any change here must be mirrored in RNG_CUDA and the tests):
//   randomBits(seed, offset) = word 0 of philox4x32(ctr = (offset, 0, 0, 0), key = (seed, 0x2545F491)).
//     seed and offset are taken as uint32 (`>>> 0`), so offsets wrap at 2^32. Key word 1 is a fixed
//     constant so that seed 0 does not give the all-zero key.
//   uniformFromBits(x) = ((x >>> 9) + 0.5) * 2^-23: the top 23 bits, centred in their bucket. Every
//     result is (2m+1) * 2^-24 with 2m+1 < 2^24, hence exactly representable in float32 and strictly
//     inside (0, 1): min 2^-24, max 1 - 2^-24. (Using the top 24 bits, ((x >>> 8) + 0.5) * 2^-24,
//     needs 25 significant bits: values >= 0.5 would round in float32 and the largest would round to 1.)
//   rand(seed, offset)  = uniformFromBits(randomBits(seed, offset)); bit-identical on CPU and GPU.
//   randn(seed, offset) = Box-Muller on words 0 and 1 of the same Philox call:
//     u0 = uniformFromBits(w0), u1 = uniformFromBits(w1), z = sqrt(-2 ln u0) * cos(2 pi u1),
//     rounded to float32. JS computes z in float64; CUDA computes in float32 with logf/cospif/sqrtf
//     (not the fast __logf/__cosf), so the two agree to about 2e-6 absolute, not bit-exactly
//     (max 1.6e-6 over 3 x 2^20 samples on an H100 via NVRTC; relative error is larger near z = 0).
const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
/** Key word 1 of randomBits (see header). */
const SFC_KEY1 = 0x2545f491;
const TWO_POW_M23 = 2 ** -23;

/** High 32 bits of the exact 64-bit product a*b (a, b uint32). Both partial products are < 2^48, exact in float64. */
function mulhi(a: number, b: number): number {
  const lo = a * (b & 0xffff);
  const hi = a * (b >>> 16);
  return Math.floor((hi + Math.floor(lo / 65536)) / 65536) >>> 0;
}

/** Philox4x32-10 of counter (c0..c3) under key (k0, k1); all inputs and outputs are uint32. */
export function philox4x32(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
): [number, number, number, number] {
  c0 >>>= 0;
  c1 >>>= 0;
  c2 >>>= 0;
  c3 >>>= 0;
  k0 >>>= 0;
  k1 >>>= 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  return [c0, c1, c2, c3];
}

/** 32 random bits for element `offset` of the stream `seed`. */
export function randomBits(seed: number, offset: number): number {
  return philox4x32(offset >>> 0, 0, 0, 0, seed >>> 0, SFC_KEY1)[0];
}

/** Maps 32 random bits to a float32-exact value in (0, 1) (see header). */
export function uniformFromBits(x: number): number {
  return ((x >>> 9) + 0.5) * TWO_POW_M23;
}

/** Uniform float32 in (0, 1); bit-identical to sfc_rand on the GPU. */
export function rand(seed: number, offset: number): number {
  return uniformFromBits(randomBits(seed, offset));
}

/** Standard normal sample, rounded to float32; agrees with sfc_randn to ~2e-6 absolute. */
export function randn(seed: number, offset: number): number {
  const w = philox4x32(offset >>> 0, 0, 0, 0, seed >>> 0, SFC_KEY1);
  const u0 = uniformFromBits(w[0]);
  const u1 = uniformFromBits(w[1]);
  return Math.fround(Math.sqrt(-2 * Math.log(u0)) * Math.cos(2 * Math.PI * u1));
}

/** CUDA C++ device code with the same definitions; needs no headers (NVRTC and nvcc). */
