// The addon builds and loads everywhere; on a machine without a GPU it says why CUDA is unavailable
// and every CUDA call throws a clear error instead of crashing.
import { describe, expect, it } from 'vitest';
import { layoutOf, packArgs } from '../../runtime/launch.js';
import { cudaUnavailableReason, loadNative, nativeLoadError, requireCuda } from '../../runtime/native/load.js';
import { errorOf } from '../helpers.js';

describe('native addon', () => {
  it('loads', () => {
    expect(nativeLoadError()).toBeUndefined();
    const addon = loadNative()!;
    expect(typeof addon.status).toBe('function');
    const s = addon.status();
    for (const lib of [s.cuda, s.nvrtc, s.cublasLt, s.nccl]) {
      expect(typeof lib.loaded).toBe('boolean');
      if (!lib.loaded) expect(lib.error).toMatch(/.+/);
    }
  });

  it.skipIf(!cudaUnavailableReason())('reports no GPU clearly and refuses CUDA calls', () => {
    expect(cudaUnavailableReason()).toMatch(/CUDA driver unavailable|no CUDA device/);
    expect(errorOf(() => requireCuda())).toMatch(/CUDA driver unavailable|no CUDA device/);
    const addon = loadNative()!;
    expect(errorOf(() => addon.malloc(16))).toMatch(/CUDA driver not available/);
    expect(errorOf(() => addon.init())).toMatch(/CUDA driver not available/);
  });

  it('validates arguments before touching CUDA', () => {
    const addon = loadNative()!;
    expect(() => addon.malloc(-1 as number)).toThrow();
    expect(() => (addon.launch as unknown as () => void)()).toThrow();
  });
});

describe('argument packing', () => {
  it('lays parameters out as the C ABI does', () => {
    expect(layoutOf(['ptr', 'i32', 'f32', 'ptr', 'i32'])).toEqual({ offsets: [0, 8, 12, 16, 24], bytes: 28 });
    expect(layoutOf(['i32', 'ptr'])).toEqual({ offsets: [0, 8], bytes: 16 });
    const b = packArgs(['ptr', 'i32', 'f32'], [0x1234, -5, 1.5]);
    const dv = new DataView(b.buffer);
    expect(dv.getBigInt64(0, true)).toBe(0x1234n);
    expect(dv.getInt32(8, true)).toBe(-5);
    expect(dv.getFloat32(12, true)).toBe(1.5);
  });

  it('rejects wrong counts and values that do not fit', () => {
    expect(errorOf(() => packArgs(['ptr', 'i32'], [1], 'rmsNorm'))).toBe('rmsNorm takes 2 arguments, got 1');
    expect(errorOf(() => packArgs(['i32'], [2 ** 31]))).toBe(
      'kernel argument 0 (i32): must be a 32-bit integer, got 2147483648',
    );
    expect(errorOf(() => packArgs(['ptr'], [-8]))).toBe(
      'kernel argument 0 (ptr): must be a non-negative address, got -8',
    );
    expect(errorOf(() => packArgs(['u32'], [1.5]))).toBe(
      'kernel argument 0 (u32): must be an unsigned 32-bit integer, got 1.5',
    );
  });
});
