// Runs compiled kernels on the CPU device: the JS backend's function gets the raw storage of each
// tensor argument as a typed array starting at the tensor's first element, plus `rt`, the numeric
// support the generated code calls (dtype tables and conversions, erf, RNG, bounds errors).
import type { KernelArtifact } from '../dsl/artifact.js';
import { dtypeOf } from '../dsl/dtypes.js';
import { SfcError } from '../dsl/errors.js';
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
import { rand, randn } from '../dsl/random.js';
import { rawArray, type RawArray } from './convert.js';
import type { CpuDevice } from './cpu.js';
import type { Tensor } from './tensor.js';

type JsKernel = (rt: CpuSupport, args: (RawArray | number)[], grid: number[]) => void;

function table(n: number, f: (b: number) => number): Float32Array {
  const t = new Float32Array(n);
  for (let b = 0; b < n; b++) t[b] = f(b);
  return t;
}

/** erf in double precision: Taylor series near 0, continued fraction for erfc beyond. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a < 2.5) {
    // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    let term = a;
    let sum = a;
    for (let n = 1; n < 60; n++) {
      term *= (-a * a) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  if (a > 6) return Math.sign(x);
  // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...)))), evaluated bottom-up
  let f = a;
  for (let n = 60; n >= 1; n--) f = a + n / 2 / f;
  const erfc = Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

function f2i(x: number, d: string): number {
  if (Number.isNaN(x)) return 0;
  const t = Math.trunc(x);
  if (d === 'u8') return Math.min(255, Math.max(0, t));
  if (d === 'i32') return Math.min(2147483647, Math.max(-2147483648, t));
  return t;
}

// NaN handling of CUDA's fmaxf/fminf: a NaN operand is ignored
const fmax = (a: number, b: number) => (Number.isNaN(a) ? b : Number.isNaN(b) ? a : a > b ? a : b);
const fmin = (a: number, b: number) => (Number.isNaN(a) ? b : Number.isNaN(b) ? a : a < b ? a : b);

export class CpuSupport {
  readonly dbf16 = table(65536, bf16BitsToF32);
  readonly df16 = table(65536, f16BitsToF32);
  readonly de4m3 = table(256, e4m3BitsToF32);
  readonly de5m2 = table(256, e5m2BitsToF32);
  readonly rbf16 = (x: number) => bf16BitsToF32(f32ToBf16Bits(x));
  readonly rf16 = (x: number) => f16BitsToF32(f32ToF16Bits(x));
  readonly re4m3 = (x: number) => e4m3BitsToF32(f32ToE4m3Bits(x));
  readonly re5m2 = (x: number) => e5m2BitsToF32(f32ToE5m2Bits(x));
  readonly ebf16 = f32ToBf16Bits;
  readonly ef16 = f32ToF16Bits;
  readonly ee4m3 = f32ToE4m3Bits;
  readonly ee5m2 = f32ToE5m2Bits;
  readonly erf = erf;
  readonly f2i = f2i;
  readonly fmax = fmax;
  readonly fmin = fmin;
  readonly rand = (seed: number, off: number) => rand(seed, off);
  readonly randn = (seed: number, off: number) => randn(seed, off);
  oob(op: string, name: string, offset: number, length: number, where: string): never {
    throw new SfcError(`${where}: ${op} of ${name}[${offset}] is out of bounds (the buffer has ${length} elements)`);
  }
}

/** Runs artifacts on the CPU; owns the numeric support tables and the compiled JS functions. */
export class CpuKernelRunner {
  private support: CpuSupport | undefined;
  private readonly fns = new Map<KernelArtifact, JsKernel>();

  private fn(a: KernelArtifact): JsKernel {
    let f = this.fns.get(a);
    if (!f) {
      f = new Function(a.js)() as JsKernel;
      this.fns.set(a, f);
    }
    return f;
  }

  launch(a: KernelArtifact, grid: readonly number[], args: readonly (Tensor | number)[]): void {
    this.support ??= new CpuSupport();
    const runtimeParams = a.params.filter((p) => p.kind !== 'const');
    if (args.length !== runtimeParams.length) {
      throw new SfcError(
        `${a.name} takes ${runtimeParams.length} arguments (${runtimeParams.map((p) => p.name).join(', ')}), got ${args.length}`,
      );
    }
    const packed: (RawArray | number)[] = [];
    let j = 0;
    a.params.forEach((p, i) => {
      if (p.kind === 'const') {
        packed[i] = p.value!;
        return;
      }
      const arg = args[j++]!;
      if (p.kind === 'ptr') {
        if (typeof arg === 'number') throw new SfcError(`${a.name}: argument '${p.name}' must be a tensor`);
        if (arg.dtype.name !== p.dtype)
          throw new SfcError(`${a.name}: '${p.name}' expects ${p.dtype}, got a ${arg.dtype.name} tensor`);
        if (arg.device.kind !== 'cpu')
          throw new SfcError(`${a.name}: '${p.name}' is on ${arg.device.name}, not the CPU`);
        const bytes = (arg.device as CpuDevice).bytesOf(arg.storage);
        const d = dtypeOf(p.dtype)!;
        packed[i] = rawArray(d, bytes.buffer, arg.byteOffset, (arg.storage.bytes - arg.byteOffset) / d.bytes);
      } else {
        if (typeof arg !== 'number') throw new SfcError(`${a.name}: argument '${p.name}' must be a number`);
        packed[i] = arg;
      }
    });
    this.fn(a)(this.support, packed, [...grid]);
  }
}
