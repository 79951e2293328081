// Host dtype conversions against exhaustive tables: every finite value of each small format is
// enumerated, and the nearest-even rounding of random float32 inputs is checked against a search of
// that table (an implementation independent of the bit tricks in runtime/convert.ts).
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../helpers.js';
import {
  bf16BitsToF32,
  e4m3BitsToF32,
  e5m2BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToE4m3Bits,
  f32ToE5m2Bits,
  f32ToF16Bits,
} from '../../runtime/convert.js';

interface Format {
  name: string;
  bits: number;
  encode: (x: number) => number;
  decode: (b: number) => number;
  /** what the format does past its largest finite value: overflow to Inf, or saturate */
  saturates: boolean;
  nan: number;
}

const formats: Format[] = [
  { name: 'bf16', bits: 16, encode: f32ToBf16Bits, decode: bf16BitsToF32, saturates: false, nan: 0x7fff },
  { name: 'f16', bits: 16, encode: f32ToF16Bits, decode: f16BitsToF32, saturates: false, nan: 0x7fff },
  { name: 'e4m3', bits: 8, encode: f32ToE4m3Bits, decode: e4m3BitsToF32, saturates: true, nan: 0x7f },
  { name: 'e5m2', bits: 8, encode: f32ToE5m2Bits, decode: e5m2BitsToF32, saturates: true, nan: 0x7f },
];

for (const f of formats) {
  describe(f.name, () => {
    const all = Array.from({ length: 1 << f.bits }, (_, b) => b);
    const finite = all.filter((b) => Number.isFinite(f.decode(b)));
    // non-negative finite values, sorted, with their bits (the positive half of the table)
    const table = finite
      .filter((b) => !(f.decode(b) < 0) && !Object.is(f.decode(b), -0))
      .map((b) => ({ b, v: f.decode(b) }))
      .sort((p, q) => p.v - q.v);
    const maxFinite = table[table.length - 1]!.v;

    it(`every one of the ${1 << f.bits} bit patterns round-trips (NaN to the canonical NaN)`, () => {
      for (const b of all) {
        const v = f.decode(b);
        const back = f.encode(v);
        if (Number.isNaN(v)) expect(back).toBe(f.nan);
        else if (!Number.isFinite(v) && f.saturates) expect(f.decode(back)).toBe(Math.sign(v) * maxFinite);
        else expect(back, `bits 0x${b.toString(16)} = ${v}`).toBe(b);
      }
    });

    it('rounds random float32 values to the nearest value, ties to even', () => {
      const rand = mulberry32(f.bits * 7919 + f.name.length);
      const reference = (x: number): number => {
        const a = Math.abs(Math.fround(x));
        let lo = 0;
        let hi = table.length - 1;
        if (a >= maxFinite) {
          // past the top: IEEE formats round to Inf beyond max + half an ulp; FP8 saturates
          const ulp = maxFinite - table[table.length - 2]!.v;
          if (!f.saturates && a >= maxFinite + ulp / 2) return Math.sign(x) * Infinity;
          return Math.sign(x) * maxFinite;
        }
        while (hi - lo > 1) {
          const mid = (lo + hi) >> 1;
          if (table[mid]!.v <= a) lo = mid;
          else hi = mid;
        }
        const below = table[lo]!;
        const above = table[hi]!;
        const dl = a - below.v;
        const du = above.v - a;
        const pick = dl < du ? below : du < dl ? above : (below.b & 1) === 0 ? below : above;
        return (x < 0 ? -1 : 1) * pick.v;
      };
      for (let i = 0; i < 20000; i++) {
        // spread over the whole range of the format, including subnormals and overflow
        const mag = maxFinite * 2 ** -(rand() * (f.bits === 8 ? 20 : 40));
        const x = Math.fround((rand() < 0.5 ? -1 : 1) * mag * (1 + rand() * 0.5));
        const got = f.decode(f.encode(x));
        expect(got, `x = ${x}`).toBe(reference(x));
      }
      // exact ties between neighbours go to the even mantissa
      for (let i = 0; i + 1 < table.length; i++) {
        const mid = (table[i]!.v + table[i + 1]!.v) / 2;
        if (Math.fround(mid) !== mid) continue; // not representable in float32: no exact tie
        const even = (table[i]!.b & 1) === 0 ? table[i]! : table[i + 1]!;
        expect(f.decode(f.encode(mid)), `tie at ${mid}`).toBe(even.v);
      }
    });

    it('handles specials as the CUDA types do', () => {
      expect(f.encode(NaN)).toBe(f.nan);
      expect(f.encode(-0)).toBe(1 << (f.bits - 1));
      if (f.saturates) {
        expect(f.decode(f.encode(Infinity))).toBe(maxFinite);
        expect(f.decode(f.encode(-Infinity))).toBe(-maxFinite);
        expect(f.decode(f.encode(1e30))).toBe(maxFinite);
      } else {
        expect(f.decode(f.encode(Infinity))).toBe(Infinity);
        expect(f.decode(f.encode(-1e39))).toBe(-Infinity);
      }
    });
  });
}

describe('known values', () => {
  it('matches published constants', () => {
    expect(e4m3BitsToF32(0x7e)).toBe(448);
    expect(e5m2BitsToF32(0x7b)).toBe(57344);
    expect(e4m3BitsToF32(0x01)).toBe(2 ** -9);
    expect(e5m2BitsToF32(0x01)).toBe(2 ** -16);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie -> even (up)
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds to Inf
    expect(f32ToE4m3Bits(464)).toBe(0x7e); // tie between 448 and 480 (NaN): even, 448
  });
});
