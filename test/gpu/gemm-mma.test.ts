// The mma.sync GEMM template (sm_80 / sm_89) on the GPU: on a newer GPU (the H100 of the GPU machine)
// its instantiations load as PTX for compute_80 / compute_89, JIT-compiled by the driver. Random odd
// sizes (tails in M, N and K), every epilogue and a generated one, outputs poisoned with NaN first,
// against the float64 reference; then the model's GEMM shapes timed against cuBLASLt (informative:
// Ampere / Ada code on a Hopper), written to $SFC_BENCH_OUT/kernels-gemm-mma-<device>.json.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bf16, e4m3, f32 } from '../../dsl/dtypes.js';
import { gemmMma, gemmMmaCandidates, mmaStages, type MmaArch } from '../../compiler/templates/gemm-mma.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { cublasGemm, runGemm, tuneGemm } from '../../runtime/gemm.js';
import { Tensor } from '../../runtime/tensor.js';
import { noGpuReason, openDevice, randn, relErr, reportResult } from './gpu.js';
import { gemmOperands, runCase, tolerance, type Case } from './gemm-check.js';

let dev: CudaDevice;
beforeAll(() => {
  if (!noGpuReason) dev = openDevice();
});
afterAll(() => dev?.dispose());

describe.skipIf(!!noGpuReason)('GEMM template (mma.sync, sm_80 / sm_89) on the GPU', () => {
  const cases: (Case & { arch: MmaArch; warps: 4 | 8 })[] = [
    { arch: 'sm_80', warps: 4, input: 'bf16', output: 'bf16', bn: 128, M: 300, N: 264, K: 200, e: {} },
    {
      arch: 'sm_80',
      warps: 8,
      input: 'bf16',
      output: 'f32',
      bn: 256,
      M: 129,
      N: 136,
      K: 1032,
      e: { bias: 'bf16', activation: 'gelu_tanh' },
    },
    {
      arch: 'sm_80',
      warps: 8,
      input: 'f16',
      output: 'f16',
      bn: 128,
      M: 77,
      N: 198,
      K: 64,
      e: { bias: 'f32', activation: 'silu' },
    },
    {
      arch: 'sm_80',
      warps: 8,
      input: 'bf16',
      output: 'f32',
      bn: 128,
      M: 333,
      N: 200,
      K: 136,
      e: { gatedResidual: { residual: 'f32' } },
    },
    // odd N: scalar stores
    { arch: 'sm_80', warps: 4, input: 'bf16', output: 'bf16', bn: 128, M: 256, N: 97, K: 72, e: { residual: 'bf16' } },
    {
      arch: 'sm_80',
      warps: 8,
      input: 'bf16',
      output: 'bf16',
      bn: 256,
      M: 1000,
      N: 1000,
      K: 1544,
      e: { activation: 'relu' },
    },
    {
      arch: 'sm_89',
      warps: 8,
      input: 'e4m3',
      output: 'bf16',
      bn: 256,
      M: 260,
      N: 272,
      K: 208,
      e: { alpha: true, colScale: true },
    },
    {
      arch: 'sm_89',
      warps: 8,
      input: 'e4m3',
      output: 'f32',
      bn: 128,
      M: 190,
      N: 128,
      K: 512,
      e: { rowScale: true, colScale: true, bias: 'bf16' },
    },
    { arch: 'sm_89', warps: 4, input: 'bf16', output: 'e4m3', bn: 128, M: 128, N: 128, K: 128, e: { outScale: true } },
    {
      arch: 'sm_89',
      warps: 4,
      input: 'e4m3',
      output: 'e4m3',
      bn: 128,
      M: 2001,
      N: 200,
      K: 1040,
      e: { colScale: true, outScale: true },
    },
    { arch: 'sm_89', warps: 8, input: 'bf16', output: 'bf16', bn: 256, M: 700, N: 520, K: 328, e: { bias: 'bf16' } },
  ];
  for (const c of cases) {
    const label = `${c.arch} ${c.input} -> ${c.output}, 128x${c.bn} on ${c.warps} warps, ${c.M}x${c.N}x${c.K}, epilogue ${JSON.stringify(c.e)}`;
    it(label, () => {
      const art = gemmMma({ ...c, stages: mmaStages(c.arch, c.bn), epilogue: c.e });
      const { err, written } = runCase(dev, art, c);
      expect(written, 'every output written, none NaN').toBe(true);
      // FP8 products summed in the tensor cores' narrower accumulator: a looser bound for f32 outputs
      expect(err, label).toBeLessThan(c.input === 'e4m3' && c.output === 'f32' ? 1e-3 : tolerance[c.output]);
    });
  }

  it('runs a generated (layer compiler) epilogue with its extra parameters', () => {
    const [M, N, K] = [150, 72, 96];
    const art = gemmMma({
      arch: 'sm_80',
      input: 'bf16',
      output: 'f32',
      bn: 128,
      warps: 4,
      stages: 3,
      epilogue: {
        custom: {
          params: [
            { name: 't0', type: 'ptr', ctype: 'const float* __restrict__' },
            { name: 'd_T', type: 'i32', ctype: 'const int' },
          ],
          body: 'y = y * t0[col] + (float)(row / d_T);',
        },
      },
    });
    const a = Tensor.from(dev, bf16, [M, K], randn(M * K, 5));
    const b = Tensor.from(dev, bf16, [N, K], randn(N * K, 6));
    const t0 = Tensor.from(dev, f32, [N], randn(N, 7));
    const c = Tensor.empty(dev, f32, [M, N]);
    dev.fill(c.storage, 0, c.nbytes, 0xff);
    runGemm(art, { a, b, c, extra: { t0, d_T: 7 } });
    const [A, B, T] = [a.toArray(), b.toArray(), t0.toArray()];
    const want = new Float64Array(M * N);
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let y = 0;
        for (let k = 0; k < K; k++) y += Number(A[i * K + k]) * Number(B[j * K + k]);
        want[i * N + j] = y * Number(T[j]) + Math.floor(i / 7);
      }
    expect(relErr(c.toArray() as Float32Array, want)).toBeLessThan(1e-5);
    for (const t of [a, b, t0, c]) t.dispose();
  });

  it('times the model shapes against cuBLASLt (bf16 and FP8)', () => {
    const M = 4680;
    const shapes = [
      [1536, 1536],
      [8960, 1536],
      [1536, 8960],
      [64, 1536],
    ] as const;
    const rows: Record<string, unknown>[] = [];
    const one = Tensor.from(dev, f32, [1], [1]);
    for (const input of ['bf16', 'e4m3'] as const)
      for (const [N, K] of shapes) {
        const dt = input === 'bf16' ? bf16 : e4m3;
        const { a, b } = gemmOperands(dev, dt, M, N, K, 21);
        const theirs = Tensor.empty(dev, bf16, [M, N]);
        const ours = Tensor.empty(dev, bf16, [M, N]);
        const scale = input === 'e4m3' ? one : undefined;
        const ts: number[] = [];
        for (let i = 0; i < 3; i++) cublasGemm(dev, a, b, theirs, scale);
        for (let i = 0; i < 20; i++)
          ts.push(
            dev.time(() => {
              for (let j = 0; j < 10; j++) cublasGemm(dev, a, b, theirs, scale);
            }) / 10,
          );
        ts.sort((x, y) => x - y);
        const cublasMs = ts[10]!;
        const candidates = gemmMmaCandidates({
          input,
          output: 'bf16',
          epilogue: input === 'e4m3' ? { alpha: true } : {},
        });
        const tuned = tuneGemm(dev, candidates, { a, b, c: ours, alpha: 1 }, { retune: true, reps: 20 });
        dev.fill(ours.storage, 0, ours.nbytes, 0xff);
        runGemm(tuned.chosen, { a, b, c: ours, alpha: 1 });
        const got = ours.toArray() as Float32Array;
        const err = relErr(got, theirs.toArray() as Float32Array);
        expect(got.every(Number.isFinite), `${tuned.chosen.name}: every output written`).toBe(true);
        expect(err, tuned.chosen.name).toBeLessThan(5e-3);
        const flops = 2 * M * N * K;
        const tflops = (ms: number) => Number((flops / ms / 1e9).toFixed(1));
        const best = tuned.timings[tuned.chosen.name]!;
        const row = {
          input,
          M,
          N,
          K,
          cublasLtMs: Number(cublasMs.toFixed(4)),
          cublasLtTflops: tflops(cublasMs),
          chosen: tuned.chosen.name,
          mmaMs: Number(best.toFixed(4)),
          mmaTflops: tflops(best),
          fractionOfCublasLt: Number((cublasMs / best).toFixed(3)),
          relErrVsCublasLt: err,
          candidates: Object.fromEntries(Object.entries(tuned.timings).map(([k, v]) => [k, Number(v.toFixed(4))])),
        };
        console.log(JSON.stringify(row));
        rows.push(row);
        for (const t of [a, b, theirs, ours]) t.dispose();
      }
    one.dispose();
    reportResult('kernels-gemm-mma', dev, {
      command: process.env.SFC_COMMAND ?? 'vitest run --config vitest.gpu.config.ts test/gpu/gemm-mma.test.ts',
      note: 'sm_80 / sm_89 mma.sync code loaded as compute_80 / compute_89 PTX and JIT-compiled for this GPU; CUDA-event medians of 20 timings of 10 launches',
      arch: dev.arch,
      rows,
    });
  });
});
