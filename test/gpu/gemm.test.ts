// The sm_90a GEMM template on the GPU against a float64 reference on random inputs (odd sizes: tails
// in M, N and K), every epilogue, outputs poisoned with NaN first; and at the model's shape against
// cuBLASLt. The persistent schedules (ping-pong, cooperative, persistent) run on sizes with more tiles
// than SMs, so that every CTA loops, both ping-pong consumers hand the tensor cores back and forth and
// the cooperative consumers hand ring slots to the storing thread (or, with no C tensor map, the
// copying warps).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bf16, e4m3, f16, f32 } from '../../dsl/dtypes.js';
import { gemmSm90, maxStages } from '../../compiler/templates/gemm.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { cublasGemm, runGemm, tuneGemm } from '../../runtime/gemm.js';
import { Tensor } from '../../runtime/tensor.js';
import { noGpuReason, openDevice, relErr } from './gpu.js';
import { gemmOperands, runCase, sampleRows, tolerance, type Case } from './gemm-check.js';

// One device for the whole file: the native layer remembers each kernel's parameter size by its
// CUfunction handle, and a second context reuses the handles of a disposed one.
let dev: CudaDevice;
beforeAll(() => {
  if (!noGpuReason) dev = openDevice();
});
afterAll(() => dev?.dispose());

describe.skipIf(!!noGpuReason)('GEMM template (sm_90a) on the GPU', () => {
  const cases: Case[] = [
    { input: 'bf16', output: 'bf16', bn: 256, M: 300, N: 264, K: 200, e: {} },
    { input: 'bf16', output: 'f32', bn: 128, M: 129, N: 136, K: 1032, e: { bias: 'bf16', activation: 'gelu_tanh' } },
    { input: 'f16', output: 'f16', bn: 64, M: 77, N: 198, K: 64, e: { bias: 'f32', activation: 'silu' } },
    { input: 'bf16', output: 'f32', bn: 192, M: 333, N: 200, K: 136, e: { gatedResidual: { residual: 'f32' } } },
    { input: 'bf16', output: 'bf16', bn: 96, M: 256, N: 97, K: 72, e: { residual: 'bf16' } },
    { input: 'e4m3', output: 'bf16', bn: 256, M: 260, N: 272, K: 208, e: { alpha: true, colScale: true } },
    {
      input: 'e4m3',
      output: 'f32',
      bn: 128,
      M: 190,
      N: 128,
      K: 512,
      e: { rowScale: true, colScale: true, bias: 'bf16' },
    },
    { input: 'bf16', output: 'e4m3', bn: 128, M: 128, N: 128, K: 128, e: { outScale: true } },
    // the 224-wide tile (N = 1536: 7 column tiles, 259 CTAs in 2 waves of 132 SMs)
    { input: 'bf16', output: 'bf16', bn: 224, M: 400, N: 470, K: 200, e: { bias: 'bf16' } },
    { input: 'e4m3', output: 'bf16', bn: 224, M: 333, N: 448, K: 272, e: { alpha: true } },
  ];
  for (const c of cases) {
    const label = `${c.input} -> ${c.output}, bn ${c.bn}, ${c.M}x${c.N}x${c.K}, epilogue ${JSON.stringify(c.e)}`;
    it(label, () => {
      const art = gemmSm90({ input: c.input, output: c.output, bn: c.bn, stages: maxStages(c.bn), epilogue: c.e });
      const { err, written } = runCase(dev, art, c);
      expect(written, 'every output written, none NaN').toBe(true);
      // FP8 wgmma adds products in a narrower accumulator than f32 (about 2e-4 relative at K = 512 on
      // the H100/H200), so f32 outputs of FP8 inputs get a looser bound
      const tol = c.input === 'e4m3' && c.output === 'f32' ? 1e-3 : tolerance[c.output];
      expect(err, label).toBeLessThan(tol);
    });
  }

  it('matches cuBLASLt at the model shape (4680 x 1536 x 1536, bf16) and the tuner picks a tile', () => {
    const [M, N, K] = [4680, 1536, 1536];
    const { a, b } = gemmOperands(dev, bf16, M, N, K, 11);
    const ours = Tensor.empty(dev, bf16, [M, N]);
    const theirs = Tensor.empty(dev, bf16, [M, N]);
    dev.fill(ours.storage, 0, ours.nbytes, 0xff);
    const candidates = [128, 192, 256].map((bn) =>
      gemmSm90({ input: 'bf16', output: 'bf16', bn, stages: maxStages(bn) }),
    );
    const tuned = tuneGemm(dev, candidates, { a, b, c: ours }, { reps: 5 });
    expect(Object.keys(tuned.timings)).toHaveLength(3);
    dev.fill(ours.storage, 0, ours.nbytes, 0xff);
    runGemm(tuned.chosen, { a, b, c: ours });
    cublasGemm(dev, a, b, theirs);
    const got = ours.toArray() as Float32Array;
    expect(got.every(Number.isFinite)).toBe(true);
    expect(relErr(got, theirs.toArray() as Float32Array)).toBeLessThan(5e-3);
    // the choice is remembered
    const again = tuneGemm(dev, candidates, { a, b, c: ours });
    expect(again.fromCache).toBe(true);
    expect(again.chosen.name).toBe(tuned.chosen.name);
    for (const t of [a, b, ours, theirs]) t.dispose();
  });

  it('launches with the parameter layout the driver reports', () => {
    const art = gemmSm90({ input: 'bf16', output: 'bf16', bn: 128, stages: 4, epilogue: { bias: 'bf16' } });
    const k = dev.kernel({
      source: art.source,
      entry: art.entry,
      params: art.params.map((p) => p.type),
      label: art.name,
    });
    console.log(`driver parameter layout of ${art.entry}: ${JSON.stringify(k.layout)}`);
    expect(k.layout?.length ?? art.params.length).toBe(art.params.length);
  });

  it('rejects operands that do not fit the instantiation', () => {
    const art = gemmSm90({ input: 'bf16', output: 'bf16', bn: 128, stages: 4 });
    const a = Tensor.empty(dev, bf16, [64, 64]);
    const b = Tensor.empty(dev, bf16, [32, 48]);
    const c = Tensor.empty(dev, bf16, [64, 32]);
    expect(() => runGemm(art, { a, b, c })).toThrow(/b is \[32, 48\]/);
    expect(() => runGemm(art, { a: Tensor.empty(dev, f16, [64, 64]), b, c })).toThrow(/'a' must be bf16/);
    expect(() =>
      runGemm(art, {
        a: Tensor.empty(dev, bf16, [4, 4]),
        b: Tensor.empty(dev, bf16, [4, 4]),
        c: Tensor.empty(dev, bf16, [4, 4]),
      }),
    ).toThrow(/multiple of 16/);
    const fp8 = gemmSm90({ input: 'e4m3', output: 'bf16', bn: 128, stages: 4, epilogue: { alpha: true } });
    expect(() =>
      runGemm(fp8, {
        a: Tensor.empty(dev, e4m3, [64, 64]),
        b: Tensor.empty(dev, e4m3, [32, 64]),
        c: Tensor.empty(dev, bf16, [64, 32]),
      }),
    ).toThrow(/finite 'alpha'/);
    void f32;
  });
});

describe.skipIf(!!noGpuReason)('GEMM ping-pong and persistent schedules (sm_90a) on the GPU', () => {
  // more 128-row tiles than the H100's 132 SMs: CTAs loop over 2-3 tiles, so both consumers of the
  // ping-pong take tiles and hand the mainloop over; tails in M, N and K (odd N: scalar stores); odd
  // tile columns (the 2-CTA cluster's last pair has a column past N) and last tiles of at most 64
  // rows (its second CTA's half of A lies past M)
  const pingpongCases: Case[] = [
    { input: 'bf16', output: 'bf16', bn: 128, M: 4100, N: 1100, K: 200, e: {} },
    { input: 'bf16', output: 'f32', bn: 160, M: 2999, N: 1000, K: 1544, e: { bias: 'bf16', activation: 'gelu_tanh' } },
    { input: 'bf16', output: 'bf16', bn: 160, M: 8200, N: 777, K: 328, e: { gatedResidual: { residual: 'bf16' } } },
    { input: 'f16', output: 'f16', bn: 128, M: 300, N: 131, K: 64, e: { bias: 'f32', activation: 'silu' } },
    { input: 'e4m3', output: 'bf16', bn: 128, M: 5000, N: 1030, K: 528, e: { alpha: true, colScale: true } },
    {
      input: 'e4m3',
      output: 'e4m3',
      bn: 160,
      M: 3001,
      N: 998,
      K: 272,
      e: { rowScale: true, residual: 'bf16', outScale: true },
    },
    {
      input: 'e4m3',
      output: 'f32',
      bn: 128,
      M: 4500,
      N: 1001,
      K: 528,
      e: { rowScale: true, colScale: true, bias: 'bf16', activation: 'relu' },
    },
  ];
  const viewCase = { input: 'bf16', output: 'bf16', bn: 224, M: 1000, N: 1000, K: 200, e: {} } as const;
  const cases: (Case & { schedule: 'pingpong' | 'pingpong-cluster' | 'persistent' | 'cooperative' })[] = [
    ...pingpongCases.map((c) => ({ ...c, schedule: 'pingpong' as const })),
    ...pingpongCases.map((c) => ({ ...c, schedule: 'pingpong-cluster' as const })),
    // the cooperative schedule: the same cases (odd N: no C tensor map, element-wise copies out of the
    // output slots; f32 outputs 96 columns wide), and the tuner's widths with 16-byte rows (TMA tensor
    // stores; a last column tile narrower than bn)
    ...pingpongCases.map((c) => ({
      ...c,
      // f32: 96 columns (6 boxes of 64 bytes fit a slot); e4m3: whole 64-byte boxes
      ...(c.output === 'f32' ? { bn: 96 } : c.output === 'e4m3' ? { bn: 128 } : {}),
      schedule: 'cooperative' as const,
    })),
    // a tail in M and N with a residual, and the model's FP8 shape: cooperative and persistent
    ...(['cooperative', 'persistent'] as const).flatMap((schedule) => [
      { schedule, input: 'bf16', output: 'bf16', bn: 224, M: 4100, N: 1000, K: 200, e: { residual: 'bf16' } } as const,
      { schedule, input: 'e4m3', output: 'bf16', bn: 256, M: 4680, N: 1536, K: 512, e: { alpha: true } } as const,
    ]),
    {
      schedule: 'cooperative',
      input: 'bf16',
      output: 'bf16',
      bn: 256,
      M: 3000,
      N: 1480,
      K: 72,
      e: { bias: 'f32', activation: 'gelu_tanh' },
    },
    { schedule: 'cooperative', input: 'bf16', output: 'f32', bn: 64, M: 1000, N: 1480, K: 136, e: { bias: 'f32' } },
    { schedule: 'cooperative', input: 'bf16', output: 'f32', bn: 128, M: 1100, N: 1000, K: 80, e: {} },
    {
      schedule: 'cooperative',
      input: 'e4m3',
      output: 'e4m3',
      bn: 192,
      M: 2001,
      N: 2000,
      K: 1040,
      e: { colScale: true, outScale: true },
    },
    { schedule: 'cooperative', input: 'f16', output: 'f16', bn: 192, M: 60, N: 64, K: 64, e: {} },
    // C as a view of a wider output: 2 bytes into a row (no tensor map: element copies), and 16 bytes in
    // with a row pitch past N (TMA stores clipped at N); nothing written outside the view
    ...[
      { pad: 8, offset: 1 },
      { pad: 16, offset: 8 },
    ].map((view) => ({ schedule: 'cooperative' as const, ...viewCase, view })),
    // 1-2 K-slices a tile and 3-4 tiles a CTA: the output slots go round the ring many times
    { schedule: 'cooperative', input: 'bf16', output: 'bf16', bn: 224, M: 9000, N: 1344, K: 128, e: {} },
    { schedule: 'cooperative', input: 'e4m3', output: 'bf16', bn: 128, M: 8000, N: 1024, K: 128, e: { alpha: true } },
  ];
  for (const c of cases) {
    const label = `${c.schedule}: ${c.input} -> ${c.output}, bn ${c.bn}, ${c.M}x${c.N}x${c.K}, epilogue ${JSON.stringify(c.e)}`;
    it(label, () => {
      const art = gemmSm90({
        input: c.input,
        output: c.output,
        bn: c.bn,
        stages: maxStages(c.bn, true),
        ...(c.schedule === 'persistent' ? { persistent: true } : { schedule: c.schedule }),
        epilogue: c.e,
      });
      expect(art.name).toMatch(
        { pingpong: /_pp(_|$)/, 'pingpong-cluster': /_ppc(_|$)/, persistent: /_p(_|$)/, cooperative: /_co(_|$)/ }[
          c.schedule
        ],
      );
      const { err, written } = runCase(dev, art, c, sampleRows(c.M));
      expect(written, 'every output written, none NaN').toBe(true);
      const tol = c.input === 'e4m3' && c.output === 'f32' ? 1e-3 : tolerance[c.output];
      expect(err, label).toBeLessThan(tol);
    });
  }

  for (const schedule of ['pingpong', 'pingpong-cluster', 'cooperative'] as const)
    for (const input of ['bf16', 'e4m3'] as const)
      for (const [N, K] of [
        [1536, 1536],
        [8960, 1536],
      ] as const)
        it(`${schedule} matches cuBLASLt at the model shape 4680 x ${N} x ${K}, ${input}, its tile widths`, () => {
          const M = 4680;
          const dt = input === 'bf16' ? bf16 : e4m3;
          const { a, b } = gemmOperands(dev, dt, M, N, K, 21);
          const theirs = Tensor.empty(dev, bf16, [M, N]);
          const one = Tensor.from(dev, f32, [4], [1, 1, 1, 1]);
          cublasGemm(dev, a, b, theirs, input === 'e4m3' ? one : undefined);
          const want = theirs.toArray() as Float32Array;
          for (const bn of schedule === 'cooperative' ? [224, 256] : [128, 160]) {
            const art = gemmSm90({
              input,
              output: 'bf16',
              bn,
              stages: maxStages(bn, true),
              schedule,
              epilogue: input === 'e4m3' ? { alpha: true } : {},
            });
            const ours = Tensor.empty(dev, bf16, [M, N]);
            dev.fill(ours.storage, 0, ours.nbytes, 0xff);
            runGemm(art, { a, b, c: ours, alpha: 1 });
            const got = ours.toArray() as Float32Array;
            expect(got.every(Number.isFinite), `${art.name}: every output written`).toBe(true);
            expect(relErr(got, want), art.name).toBeLessThan(5e-3);
            ours.dispose();
          }
          for (const t of [a, b, theirs, one]) t.dispose();
        });
});
