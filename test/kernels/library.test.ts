// Every library kernel on the JS backend (CPU) against a float64 reference, on random inputs of odd
// sizes with poisoned outputs; and every kernel's CUDA variants compiled by nvcc for sm_80, sm_89 and
// sm_90a with zero spills.
import { describe, expect, it } from 'vitest';
import { BUILD_ARCHS, compileCuda, findNvcc } from '../../compiler/nvcc.js';
import { combinedSource } from '../../compiler/backend-cuda.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { cases as baseCases, library, relErr } from './library.js';
import { wanCases } from './library-wan.js';
import { taehvCases } from './library-taehv.js';
import { convCases } from './library-conv.js';

const cases = [...baseCases, ...wanCases, ...taehvCases, ...convCases];

describe('kernel library on the CPU (JS backend) vs float64', () => {
  const dev = new CpuDevice();
  it('has a test for every kernel', () => {
    const tested = new Set([...cases.map((c) => c.kernel), 'absmaxReduce', 'dequantizeE4m3']);
    expect([...library().keys()].filter((k) => !tested.has(k))).toEqual([]);
  });
  it.each(cases.map((c) => [c.kernel, c] as const))('%s', (_name, c) => {
    for (const seed of [1, 2]) {
      for (const o of c.run(dev, seed)) {
        const err = relErr(o.got.toF32(), o.ref);
        expect(err, `${c.kernel}.${o.name} (seed ${seed})`).toBeLessThan(o.tol);
      }
    }
  });
});

describe.skipIf(!findNvcc())('kernel library compiled by nvcc', () => {
  it.each(BUILD_ARCHS.map((a) => [a]))('%s: every variant compiles with zero spills', (arch) => {
    const variants = [...library().values()].flatMap((a) => a.cuda);
    const r = compileCuda({ source: combinedSource(variants.map((v) => v.source)), arch, name: `library-${arch}` });
    const byName = new Map(r.reports.map((k) => [k.name, k]));
    for (const v of variants) {
      const k = byName.get(v.entry);
      expect(k, v.entry).toBeDefined();
      expect(k!.spillStoreBytes + k!.spillLoadBytes, `${v.entry} spills on ${arch}`).toBe(0);
      expect(k!.stackBytes, `${v.entry} stack on ${arch}`).toBe(0);
    }
  });
});
