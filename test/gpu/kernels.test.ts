// Every library kernel on the GPU (CUDA backend, aligned and generic variants) against the same
// float64 references as the CPU suite, with poisoned outputs and odd sizes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bf16, f32 } from '../../dsl/dtypes.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { roundTo } from '../../runtime/convert.js';
import { launch, pickVariant } from '../../runtime/kernels.js';
import { Tensor } from '../../runtime/tensor.js';
import { cases as baseCases, library, relErr } from '../kernels/library.js';
import { wanCases } from '../kernels/library-wan.js';
import { taehvCases } from '../kernels/library-taehv.js';

const cases = [...baseCases, ...wanCases, ...taehvCases];
import { noGpuReason, openDevice } from './gpu.js';

describe.skipIf(!!noGpuReason)('kernel library on the GPU', () => {
  let dev: CudaDevice;
  beforeAll(() => {
    dev = openDevice();
  });
  afterAll(() => dev?.dispose());

  it.each(cases.map((c) => [c.kernel, c] as const))('%s', (_name, c) => {
    for (const seed of [11, 12]) {
      for (const o of c.run(dev, seed)) {
        const err = relErr(o.got.toF32(), o.ref);
        expect(err, `${c.kernel}.${o.name} (seed ${seed})`).toBeLessThan(o.tol);
      }
    }
  });

  it('runs the generic variant when arguments are not aligned, with the same results', () => {
    const a = library().get('add')!;
    const n = 1001;
    const base = Tensor.from(
      dev,
      bf16,
      [n + 1],
      Array.from({ length: n + 1 }, (_, i) => i / 7),
    );
    const x = base.narrow(0, 1, n); // 2-byte offset: not 16-byte aligned
    const out = Tensor.empty(dev, bf16, [n]);
    expect(pickVariant(a, [x, x, out, n], dev).entry).toBe('add__generic');
    launch(a, [1], [x, x, out, n]);
    const want = Array.from(x.toF32(), (v) => v + v);
    expect(relErr(out.toF32(), want)).toBeLessThan(1e-2);
    const y = Tensor.from(dev, bf16, [1024], new Array(1024).fill(1));
    const o2 = Tensor.empty(dev, bf16, [1024]);
    expect(pickVariant(a, [y, y, o2, 1024], dev).entry).toBe('add__aligned');
  });

  it('agrees with the CPU backend bit for bit on exact arithmetic', () => {
    const a = library().get('gatedResidual')!;
    const [R, D] = [3, 1536];
    const vals = Array.from({ length: R * D }, (_, i) => ((i * 7919) % 1000) / 64);
    const x = Tensor.from(dev, f32, [R, D], vals);
    const y = Tensor.from(
      dev,
      bf16,
      [R, D],
      vals.map((v) => v / 2),
    );
    const g = Tensor.from(dev, f32, [1, D], new Array(D).fill(0.25));
    const out = Tensor.empty(dev, f32, [R, D]);
    launch(a, [R], [x, y, g, out, D, 1560]);
    const want = vals.map((v) => Math.fround(v + roundTo(bf16, v / 2) * 0.25));
    expect(Array.from(out.toF32())).toEqual(want);
  });
});
