// The native CUDA runtime on a real GPU: copies, memset, NVRTC kernels, graphs, events, cuBLASLt,
// the kernel cache and error paths. Every output is poisoned before it is written.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bf16, e4m3, f32 } from '../../dsl/dtypes.js';
import { OutOfMemoryError } from '../../runtime/allocator.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { CudaDataType } from '../../runtime/native/api.js';
import { Tensor } from '../../runtime/tensor.js';
import { noGpuReason, openDevice, randn, relErr } from './gpu.js';

const axpy = {
  source: `extern "C" __global__ void axpy(float* y, const float* x, float a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
extern "C" __global__ void inc(float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] += 1.0f;
}`,
  options: [],
};

describe.skipIf(!!noGpuReason)('CUDA runtime', () => {
  let dev: CudaDevice;
  beforeAll(() => {
    dev = openDevice();
  });
  afterAll(() => dev?.dispose());

  it('reports the device', () => {
    expect(dev.info.name).toMatch(/NVIDIA|H100|H200|A100|L40|RTX/);
    expect(dev.info.multiprocessors).toBeGreaterThan(0);
    expect(dev.info.maxSharedMemoryPerBlockOptin).toBeGreaterThan(48 * 1024);
  });

  it('copies host->device->device->host and memsets, exactly', () => {
    const n = 1 << 20;
    const v = Float32Array.from(randn(n, 1));
    const a = Tensor.from(dev, f32, [n], v);
    const b = Tensor.empty(dev, f32, [n]);
    dev.fill32(b.storage, 0, n, 0x7fc00000); // NaN poison
    dev.copy(b.storage, 0, a.storage, 0, n * 4);
    expect(b.toF32()).toEqual(v);
    dev.fill(b.storage, 4 * 10, 4 * 5, 0);
    const back = b.toF32();
    expect(Array.from(back.subarray(10, 15))).toEqual([0, 0, 0, 0, 0]);
    expect(back[9]).toBe(v[9]);
    expect(back[15]).toBe(v[15]);
    // strided view read back from the GPU
    const m = Tensor.from(dev, bf16, [3, 4], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(Array.from(m.transpose(0, 1).toF32())).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    a.dispose();
    b.dispose();
  });

  it('compiles a kernel with NVRTC, launches it, and loads it from the cache the second time', () => {
    const n = 100_003;
    const x = Float32Array.from(randn(n, 2));
    const y0 = Float32Array.from(randn(n, 3));
    const tx = Tensor.from(dev, f32, [n], x);
    const ty = Tensor.from(dev, f32, [n], y0);
    const k = dev.kernel({ ...axpy, entry: 'axpy', params: ['ptr', 'ptr', 'f32', 'i32'] });
    expect(k.compiled).toBe(true);
    expect(k.attributes.registers).toBeGreaterThan(0);
    dev.launch(k, { grid: Math.ceil(n / 256), block: 256 }, [dev.ptrOf(ty.storage), dev.ptrOf(tx.storage), 2.5, n]);
    const got = ty.toF32();
    // NVRTC contracts a * x + y into an FMA: compare with the exact result, one rounding allowed
    const ref = Array.from(x, (xi, i) => 2.5 * xi + y0[i]!);
    expect(relErr(got, ref)).toBeLessThan(1e-7);
    // a second device object on the same cache directory loads the cubin without compiling
    const again = openDevice(dev.cache.dir.replace(/\/kernels$/, ''));
    const k2 = again.kernel({ ...axpy, entry: 'axpy', params: ['ptr', 'ptr', 'f32', 'i32'] });
    expect(k2.compiled).toBe(false);
    expect(again.cache.counters.hits).toBe(1);
    again.dispose();
    tx.dispose();
    ty.dispose();
  });

  it('replays a graph of 100 launches', () => {
    const n = 4096;
    const t = Tensor.zeros(dev, f32, [n]);
    const k = dev.kernel({ ...axpy, entry: 'inc', params: ['ptr', 'i32'] });
    const g = dev.capture(() => {
      for (let i = 0; i < 100; i++) dev.launch(k, { grid: n / 256, block: 256 }, [dev.ptrOf(t.storage), n]);
    });
    expect(Array.from(t.toF32().subarray(0, 4))).toEqual([0, 0, 0, 0]); // capture does not run
    g.replay();
    g.replay();
    dev.synchronize();
    expect(new Set(t.toF32())).toEqual(new Set([200]));
    g.destroy();
    t.dispose();
  });

  it('times work with events', () => {
    const n = 1 << 24;
    const t = Tensor.zeros(dev, f32, [n]);
    const k = dev.kernel({ ...axpy, entry: 'inc', params: ['ptr', 'i32'] });
    const ms = dev.time(() => {
      for (let i = 0; i < 10; i++) dev.launch(k, { grid: n / 256, block: 256 }, [dev.ptrOf(t.storage), n]);
    });
    expect(ms).toBeGreaterThan(0);
    expect(ms).toBeLessThan(1000);
    t.dispose();
  });

  it('cuBLASLt bf16 GEMM matches a float64 reference (rel err <= 1e-2)', () => {
    for (const [m, n, k, transB] of [
      [257, 383, 130, false],
      [512, 256, 1536, true],
    ] as const) {
      const a = randn(m * k, 11);
      const b = randn(k * n, 12);
      const ta = Tensor.from(dev, bf16, [m, k], a);
      const tb = Tensor.from(dev, bf16, transB ? [n, k] : [k, n], b);
      const td = Tensor.empty(dev, bf16, [m, n]);
      dev.fill(td.storage, 0, td.storage.bytes, 0xff); // NaN poison
      dev.gemm({
        m,
        n,
        k,
        a: dev.ptrOf(ta.storage),
        b: dev.ptrOf(tb.storage),
        c: dev.ptrOf(td.storage),
        d: dev.ptrOf(td.storage),
        typeA: CudaDataType.bf16,
        typeB: CudaDataType.bf16,
        typeC: CudaDataType.bf16,
        typeD: CudaDataType.bf16,
        lda: k,
        ldb: transB ? k : n,
        ldc: n,
        ldd: n,
        transA: false,
        transB,
        alpha: 1,
        beta: 0,
        aScale: 0,
        bScale: 0,
      });
      // reference on the bf16-rounded inputs, in float64
      const ar = ta.toF32();
      const br = tb.toF32();
      const ref = new Float64Array(m * n);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) s += ar[i * k + p]! * (transB ? br[j * k + p]! : br[p * n + j]!);
          ref[i * n + j] = s;
        }
      const got = td.toF32();
      expect(got.every((x) => Number.isFinite(x))).toBe(true);
      expect(relErr(got, ref)).toBeLessThan(1e-2);
      for (const t of [ta, tb, td]) t.dispose();
    }
  });

  it('cuBLASLt FP8 e4m3 GEMM with per-tensor scales (sm_89+)', (ctx) => {
    if (dev.info.computeCapability[0] * 10 + dev.info.computeCapability[1] < 89) ctx.skip('FP8 needs sm_89 or newer');
    const [m, n, k] = [256, 512, 1024];
    const a = randn(m * k, 21);
    const b = randn(n * k, 22);
    const sa = 4 / 448;
    const sb = 4 / 448;
    const ta = Tensor.from(
      dev,
      e4m3,
      [m, k],
      Array.from(a, (v) => v / sa),
    );
    const tb = Tensor.from(
      dev,
      e4m3,
      [n, k],
      Array.from(b, (v) => v / sb),
    );
    const scaleA = Tensor.from(dev, f32, [1], [sa]);
    const scaleB = Tensor.from(dev, f32, [1], [sb]);
    const td = Tensor.empty(dev, bf16, [m, n]);
    dev.fill(td.storage, 0, td.storage.bytes, 0xff);
    dev.gemm({
      m,
      n,
      k,
      a: dev.ptrOf(ta.storage),
      b: dev.ptrOf(tb.storage),
      c: dev.ptrOf(td.storage),
      d: dev.ptrOf(td.storage),
      typeA: CudaDataType.e4m3,
      typeB: CudaDataType.e4m3,
      typeC: CudaDataType.bf16,
      typeD: CudaDataType.bf16,
      lda: k,
      ldb: k,
      ldc: n,
      ldd: n,
      transA: false,
      transB: true,
      alpha: 1,
      beta: 0,
      aScale: dev.ptrOf(scaleA.storage),
      bScale: dev.ptrOf(scaleB.storage),
    });
    const aq = ta.toF32();
    const bq = tb.toF32();
    const ref = new Float64Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += aq[i * k + p]! * sa * bq[j * k + p]! * sb;
        ref[i * n + j] = s;
      }
    expect(relErr(td.toF32(), ref)).toBeLessThan(1e-2);
  });

  it('throws on bad arguments instead of crashing', () => {
    const k = dev.kernel({ ...axpy, entry: 'axpy', params: ['ptr', 'ptr', 'f32', 'i32'] });
    expect(() => dev.launch(k, { grid: 1, block: 32 }, [0, 0, 1])).toThrow('axpy takes 4 arguments, got 3');
    const wrong = { ...k, params: ['ptr', 'ptr', 'f32'] as const };
    expect(() => dev.launch(wrong, { grid: 1, block: 32 }, [0, 0, 1])).toThrow(
      /expects 2[48] bytes of parameters, got 20/,
    );
    expect(() => dev.launch(k, { grid: 1, block: 2048 }, [0, 0, 1, 1])).toThrow('block has more than 1024 threads');
    const t = Tensor.empty(dev, f32, [16]);
    const p = dev.ptrOf(t.storage);
    // the tensor layer checks its own storage; the addon checks the driver allocation (segment)
    expect(() => dev.write(t.storage, 60, new Uint8Array(8))).toThrow(
      'write: bytes 60..68 out of range of a 64-byte storage',
    );
    expect(() => dev.native.copyHtoD(p, new Uint8Array(2 * 1024 * 1024 + 8), dev.stream)).toThrow(/run past the end/);
    t.dispose();
    expect(() => dev.native.copyDtoH(new Uint8Array(4), p + 1e12, dev.stream)).toThrow(
      /not inside a live device allocation/,
    );
    expect(() => dev.native.free(p + 12345)).toThrow(/double free/);
    expect(() => dev.native.moduleLoad(new Uint8Array([1, 2, 3]))).toThrow(/cuModuleLoadData failed: CUDA_ERROR_/);
  });

  it('NVRTC errors carry the compiler log', () => {
    expect(() =>
      dev.kernel({ source: 'extern "C" __global__ void broken() { int x = ; }', entry: 'broken', params: [] }),
    ).toThrow(/NVRTC failed to compile broken for sm_\d+a?:\n.*error/s);
  });

  it('out of memory is a clear error that names the request', () => {
    const tooMuch = dev.info.totalMemory * 2;
    let err: unknown;
    try {
      Tensor.empty(dev, f32, [tooMuch / 4]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as Error).message).toMatch(/^GPU out of memory: tried to allocate [\d.]+ GiB; the GPU has/);
  });
});
