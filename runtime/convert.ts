// Host-side arrays of dtype elements: raw storage views, encoding JS values into them and decoding
// them back. The scalar bit conversions live in dsl/numerics.ts (shared with the compiler).
import type { DType, DTypeName } from '../dsl/dtypes.js';
import {
  bf16BitsToF32,
  e4m3BitsToF32,
  e5m2BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToE4m3Bits,
  f32ToE5m2Bits,
  f32ToF16Bits,
} from '../dsl/numerics.js';

export * from '../dsl/numerics.js';

/** The typed array used to hold raw elements of each dtype (bits for the 16- and 8-bit floats). */
export type RawArray = Float32Array | Uint16Array | Uint8Array | Int32Array | BigInt64Array;
/** The typed array of decoded values returned to users. */
export type ValueArray = Float32Array | Int32Array | BigInt64Array | Uint8Array;

export function rawArray(dtype: DType, buffer: ArrayBufferLike, byteOffset: number, length: number): RawArray {
  switch (dtype.name) {
    case 'f32':
      return new Float32Array(buffer, byteOffset, length);
    case 'f16':
    case 'bf16':
      return new Uint16Array(buffer, byteOffset, length);
    case 'e4m3':
    case 'e5m2':
    case 'u8':
      return new Uint8Array(buffer, byteOffset, length);
    case 'i32':
      return new Int32Array(buffer, byteOffset, length);
    case 'i64':
      return new BigInt64Array(buffer, byteOffset, length);
  }
}

const encoders: Record<DTypeName, ((x: number) => number) | undefined> = {
  f32: undefined,
  f16: f32ToF16Bits,
  bf16: f32ToBf16Bits,
  e4m3: f32ToE4m3Bits,
  e5m2: f32ToE5m2Bits,
  i32: undefined,
  i64: undefined,
  u8: undefined,
};

const decoders: Record<DTypeName, ((b: number) => number) | undefined> = {
  f32: undefined,
  f16: f16BitsToF32,
  bf16: bf16BitsToF32,
  e4m3: e4m3BitsToF32,
  e5m2: e5m2BitsToF32,
  i32: undefined,
  i64: undefined,
  u8: undefined,
};

/** Encodes JS values into raw storage of `dtype` (integers are truncated toward zero, as C casts). */
export function encodeInto(dtype: DType, values: ArrayLike<number> | ArrayLike<bigint>, out: RawArray): void {
  const enc = encoders[dtype.name];
  const n = out.length;
  if (dtype.name === 'i64') {
    const o = out as BigInt64Array;
    for (let i = 0; i < n; i++) {
      const v = values[i]!;
      o[i] = typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
    }
  } else if (enc) {
    for (let i = 0; i < n; i++) out[i] = enc(Number(values[i]));
  } else {
    const o = out as Float32Array | Int32Array | Uint8Array;
    for (let i = 0; i < n; i++) o[i] = Number(values[i]);
  }
}

/** Decodes raw storage into user-facing values (floats as Float32Array: every dtype here fits exactly). */
export function decode(dtype: DType, raw: RawArray): ValueArray {
  const dec = decoders[dtype.name];
  if (!dec) return raw.slice() as ValueArray;
  const out = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = dec(raw[i] as number);
  return out;
}

/** Rounds a JS number to the nearest value of `dtype` (what a store then a load gives). */
export function roundTo(dtype: DType, x: number): number {
  const enc = encoders[dtype.name];
  const dec = decoders[dtype.name];
  if (enc && dec) return dec(enc(x));
  if (dtype.name === 'f32') return Math.fround(x);
  return x;
}
