// Packing kernel arguments into the C ABI parameter block cuLaunchKernel reads (each parameter at
// its natural alignment, no trailing padding), from a typed signature the compiler emits.

// 'tmap' is a TMA tensor map (CUtensorMap: 128 bytes, 64-byte aligned) passed by value.
export type ArgType = 'ptr' | 'i32' | 'u32' | 'i64' | 'f32' | 'f64' | 'tmap';

const sizeOf: Record<ArgType, number> = { ptr: 8, i32: 4, u32: 4, i64: 8, f32: 4, f64: 8, tmap: 128 };
const alignOf: Record<ArgType, number> = { ptr: 8, i32: 4, u32: 4, i64: 8, f32: 4, f64: 8, tmap: 64 };

export interface PackedLayout {
  offsets: number[];
  bytes: number;
}

export function layoutOf(types: readonly ArgType[]): PackedLayout {
  const offsets: number[] = [];
  let off = 0;
  for (const t of types) {
    const a = alignOf[t];
    off = Math.ceil(off / a) * a;
    offsets.push(off);
    off += sizeOf[t];
  }
  return { offsets, bytes: off };
}

/** Packs `values` by `types`; throws on a wrong count or a value that does not fit. */
export function packArgs(
  types: readonly ArgType[],
  values: readonly (number | bigint | Uint8Array)[],
  kernel = 'kernel',
  driverLayout?: readonly (readonly [number, number])[] | null,
): Uint8Array {
  if (values.length !== types.length) {
    throw new RangeError(`${kernel} takes ${types.length} arguments, got ${values.length}`);
  }
  let { offsets, bytes } = layoutOf(types);
  // The driver's own layout wins where it is known (it pads some by-value structs differently).
  if (driverLayout && driverLayout.length === types.length) {
    driverLayout.forEach(([, size], i) => {
      if (size !== sizeOf[types[i]!])
        throw new RangeError(`${kernel} parameter ${i} is ${size} bytes on the device, not a ${types[i]}`);
    });
    offsets = driverLayout.map(([off]) => off);
    bytes = driverLayout.length
      ? driverLayout[driverLayout.length - 1]![0] + driverLayout[driverLayout.length - 1]![1]
      : 0;
  }
  const buf = new Uint8Array(bytes);
  const dv = new DataView(buf.buffer);
  types.forEach((t, i) => {
    const v = values[i]!;
    const off = offsets[i]!;
    if (t === 'tmap') {
      if (!(v instanceof Uint8Array) || v.length !== 128)
        throw new RangeError(`${kernel} argument ${i} (tmap): must be a 128-byte tensor map`);
      buf.set(v, off);
      return;
    }
    if (v instanceof Uint8Array) throw new RangeError(`${kernel} argument ${i} (${t}): got bytes, expected a number`);
    const n = typeof v === 'bigint' ? Number(v) : v;
    const bad = (why: string) => new RangeError(`${kernel} argument ${i} (${t}): ${why}, got ${String(v)}`);
    switch (t) {
      case 'ptr':
      case 'i64':
        if (typeof v === 'bigint') dv.setBigInt64(off, v, true);
        else {
          if (!Number.isSafeInteger(v)) throw bad('must be an integer');
          if (t === 'ptr' && v < 0) throw bad('must be a non-negative address');
          dv.setBigInt64(off, BigInt(v), true);
        }
        break;
      case 'i32':
        if (!Number.isInteger(n) || n < -(2 ** 31) || n >= 2 ** 31) throw bad('must be a 32-bit integer');
        dv.setInt32(off, n, true);
        break;
      case 'u32':
        if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) throw bad('must be an unsigned 32-bit integer');
        dv.setUint32(off, n, true);
        break;
      case 'f32':
        dv.setFloat32(off, n, true);
        break;
      case 'f64':
        dv.setFloat64(off, n, true);
        break;
    }
  });
  return buf;
}
