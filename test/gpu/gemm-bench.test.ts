// `sfc bench kernels --only gemm` from the TypeScript sources (no dist build needed): the model's GEMM
// shapes, every tile candidate tuned, against cuBLASLt in the same process. Runs only with
// SFC_GEMM_BENCH=1; writes kernels-gemm-<device>.json to $SFC_BENCH_OUT (else bench/results/).
import { describe, expect, it } from 'vitest';
import { benchGemm } from '../../bench/kernels/gemm.js';
import { stamp, writeResult } from '../../bench/harness.js';
import { noGpuReason, openDevice } from './gpu.js';

describe.skipIf(!!noGpuReason || process.env.SFC_GEMM_BENCH !== '1')('GEMM benchmark (sm_90a vs cuBLASLt)', () => {
  it('times every candidate at the model shapes', () => {
    const dev = openDevice();
    try {
      const r = benchGemm(dev);
      const path = writeResult(`kernels-gemm-${dev.info.name.replace(/\W+/g, '_')}`, { ...stamp(dev), ...r });
      for (const x of r.results)
        console.log(
          `${String(x.input).padEnd(5)} ${x.M}x${x.N}x${x.K}: sfc ${(x.sfcTflops as number).toFixed(0)} TFLOP/s, ` +
            `cuBLASLt ${(x.cublasLtTflops as number).toFixed(0)} (${((x.fractionOfCublasLt as number) * 100).toFixed(1)}%) [${x.chosen}]`,
        );
      console.log(`wrote ${path}`);
      expect(r.results).toHaveLength(8);
    } finally {
      dev.dispose();
    }
  });
});
