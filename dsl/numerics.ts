// Exact host conversions between JS numbers and the bit patterns of each dtype, matching what the
// CUDA types do: the input is first rounded to float32 (CUDA converts from float), then rounded to
// nearest-even. f16/bf16 overflow to +-Inf and give the canonical NaN 0x7FFF; FP8 (e4m3, e5m2)
// saturate to the largest finite value (the `satfinite` conversion the kernels use) and give NaN 0x7F.
const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export function f32Bits(x: number): number {
  f32buf[0] = x;
  return u32buf[0]!;
}

export function bitsToF32(b: number): number {
  u32buf[0] = b >>> 0;
  return f32buf[0]!;
}

export function f32ToBf16Bits(x: number): number {
  const b = f32Bits(x);
  if ((b & 0x7fffffff) > 0x7f800000) return 0x7fff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  return bitsToF32((h & 0xffff) << 16);
}

export function f32ToF16Bits(x: number): number {
  const b = f32Bits(x);
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return mant ? 0x7fff : sign | 0x7c00;
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return h;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

interface MiniFloat {
  manBits: number;
  bias: number;
  maxFinite: number;
  /** e5m2 has Inf/NaN encodings like IEEE; e4m3 only NaN at S.1111.111 */
  ieeeSpecials: boolean;
}

const E4M3: MiniFloat = { manBits: 3, bias: 7, maxFinite: 448, ieeeSpecials: false };
const E5M2: MiniFloat = { manBits: 2, bias: 15, maxFinite: 57344, ieeeSpecials: true };

/** Round-to-nearest-even with saturation to the largest finite value (cvt.rn.satfinite). */
function f32ToMini(x: number, f: MiniFloat): number {
  const v = Math.fround(x);
  if (Number.isNaN(v)) return 0x7f;
  const sign = v < 0 || Object.is(v, -0) ? 0x80 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  const minNormalExp = 1 - f.bias;
  // exponent of a (a is a float32, so this is exact via its bits)
  const E = Math.max(((f32Bits(a) >>> 23) & 0xff) - 127, minNormalExp);
  const quantum = 2 ** (E - f.manBits);
  let n = a / quantum; // exact: a is a float32 and quantum a power of two in range
  const fl = Math.floor(n);
  const frac = n - fl;
  n = frac > 0.5 || (frac === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  const value = n * quantum;
  if (value > f.maxFinite) return sign | miniBits(f.maxFinite, f);
  return sign | miniBits(value, f);
}

/** Bits of a non-negative representable value. */
function miniBits(value: number, f: MiniFloat): number {
  if (value === 0) return 0;
  const minNormal = 2 ** (1 - f.bias);
  if (value < minNormal) return value / 2 ** (1 - f.bias - f.manBits);
  const E = ((f32Bits(value) >>> 23) & 0xff) - 127;
  const mant = value / 2 ** E - 1;
  return ((E + f.bias) << f.manBits) | Math.round(mant * (1 << f.manBits));
}

function miniToF32(b: number, f: MiniFloat): number {
  const sign = b & 0x80 ? -1 : 1;
  const expBits = 7 - f.manBits;
  const exp = (b >>> f.manBits) & ((1 << expBits) - 1);
  const mant = b & ((1 << f.manBits) - 1);
  const expMax = (1 << expBits) - 1;
  if (f.ieeeSpecials && exp === expMax) return mant ? NaN : sign * Infinity;
  if (!f.ieeeSpecials && exp === expMax && mant === (1 << f.manBits) - 1) return NaN;
  if (exp === 0) return sign * mant * 2 ** (1 - f.bias - f.manBits);
  return sign * (1 + mant / (1 << f.manBits)) * 2 ** (exp - f.bias);
}

export const f32ToE4m3Bits = (x: number): number => f32ToMini(x, E4M3);
export const e4m3BitsToF32 = (b: number): number => miniToF32(b, E4M3);
export const f32ToE5m2Bits = (x: number): number => f32ToMini(x, E5M2);
export const e5m2BitsToF32 = (b: number): number => miniToF32(b, E5M2);
