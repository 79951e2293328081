// The model's GEMMs (Wan2.1-1.3B, one chunk of 3 latent frames = 4680 tokens): sfc's sm_90a template
// (tile width tuned per shape) against cuBLASLt called directly, bf16 and FP8 e4m3 (per-tensor
// scales, bf16 out). FLOPs = 2 M N K; TFLOP/s from the median of 30 CUDA-event timings after warm-up
// on random inputs, each timing covering 10 back-to-back launches, sfc and cuBLASLt in alternation.
// The PyTorch numbers (torch.matmul, torch._scaled_mm) come from bench/reference/gemm.py in the same
// device session; bench/report.ts joins the two.
import {
  gemmCooperativeCandidates,
  gemmPingpongCandidates,
  gemmSm90,
  maxStages,
} from '../../compiler/templates/gemm.js';
import type { GemmArtifact } from '../../dsl/artifact.js';
import { bf16, e4m3, f32 } from '../../dsl/dtypes.js';
import { CudaDevice } from '../../runtime/cuda.js';
import { cublasGemm, runGemm, tuneGemm } from '../../runtime/gemm.js';
import { Tensor } from '../../runtime/tensor.js';
import { median, stamp, writeResult } from '../harness.js';

const M = 4680;
const SHAPES: [number, number][] = [
  [1536, 1536],
  [8960, 1536],
  [1536, 8960],
  [64, 1536],
];

/**
 * Medians over `reps` timings of 10 back-to-back calls of `a` and of `b`, taken in alternation (host
 * launch work overlaps the GPU's; clock changes under sustained load reach both alike).
 */
function timePairMs(dev: CudaDevice, a: () => void, b: () => void, reps = 30): [number, number] {
  for (let i = 0; i < 3; i++) {
    a();
    b();
  }
  const ta: number[] = [];
  const tb: number[] = [];
  const ten = (fn: () => void) => () => {
    for (let j = 0; j < 10; j++) fn();
  };
  for (let i = 0; i < reps; i++) {
    ta.push(dev.time(ten(a)) / 10);
    tb.push(dev.time(ten(b)) / 10);
  }
  return [median(ta), median(tb)];
}

export function benchGemm(dev: CudaDevice) {
  // random inputs made on the host (a seeded normal generator), rounded to the input dtype
  const random = (dtype: typeof bf16 | typeof e4m3, rows: number, cols: number, seed: number, scale: number) => {
    const n = rows * cols;
    const v = new Float32Array(n);
    let st = seed >>> 0 || 1;
    const u = () => ((st = (Math.imul(st, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
    for (let i = 0; i < n; i++) v[i] = scale * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
    return Tensor.from(dev, dtype, [rows, cols], v);
  };
  const one = Tensor.from(dev, f32, [4], [1, 1, 1, 1]); // cuBLASLt FP8 scale (own 16-byte-aligned allocation)
  const results: Record<string, unknown>[] = [];
  for (const input of ['bf16', 'e4m3'] as const) {
    const dtype = input === 'bf16' ? bf16 : e4m3;
    for (const [N, K] of SHAPES) {
      const flops = 2 * M * N * K;
      const a = random(dtype, M, K, 1, 1);
      const b = random(dtype, N, K, 2, 1 / Math.sqrt(K));
      const c = Tensor.empty(dev, bf16, [M, N]);
      const epilogue = input === 'e4m3' ? { alpha: true } : {};
      const widths = N <= 64 ? [64] : [128, 192, 224, 256];
      // the plan's candidates (one CTA per tile at each width, the ping-pong schedule at 160 columns,
      // the cooperative schedule at 224 and 256) and, for the record, the ping-pong at 128 columns, the
      // cooperative at 192 and the 2-CTA-cluster ping-pong (slower on every shape here;
      // SFC_GEMM_CLUSTER=0 leaves the cluster variant out)
      const pingpongWidths = [128, 160];
      const candidates: GemmArtifact[] = [
        ...widths.map((bn) => gemmSm90({ input, output: 'bf16', bn, stages: maxStages(bn), epilogue })),
        ...gemmPingpongCandidates({ input, output: 'bf16', epilogue }, N, 'pingpong', pingpongWidths),
        ...gemmCooperativeCandidates({ input, output: 'bf16', epilogue }, N, [192, 224, 256]),
        ...(process.env.SFC_GEMM_CLUSTER === '0'
          ? []
          : gemmPingpongCandidates({ input, output: 'bf16', epilogue }, N, 'pingpong-cluster', pingpongWidths)),
      ];
      const op = { a, b, c, alpha: 1 };
      const tuned = tuneGemm(dev, candidates, op, { retune: true });
      const [ours, lt] = timePairMs(
        dev,
        () => runGemm(tuned.chosen, op),
        () => cublasGemm(dev, a, b, c, input === 'e4m3' ? one : undefined),
      );
      results.push({
        input,
        M,
        N,
        K,
        flops,
        chosen: tuned.chosen.name,
        tileTimings: tuned.timings,
        sfcMs: ours,
        sfcTflops: flops / (ours * 1e9),
        cublasLtMs: lt,
        cublasLtTflops: flops / (lt * 1e9),
        fractionOfCublasLt: lt / ours,
      });
      // progress on stderr (the CLI prints the table at the end): each shape's tile timings as measured
      process.stderr.write(
        `gemm ${input} ${M}x${N}x${K}: cuBLASLt ${lt.toFixed(4)} ms, ${Object.entries(tuned.timings)
          .map(([n, ms]) => `${n.replace(/^sfc_gemm_sm90_/, '')} ${ms.toFixed(4)}`)
          .join(', ')}\n`,
      );
      [a, b, c].forEach((t) => t.dispose());
    }
  }
  one.dispose();
  return { results };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dev = CudaDevice.open(0);
  const r = benchGemm(dev);
  writeResult(`kernels-gemm-${dev.info.name.replace(/\W+/g, '_')}`, { ...stamp(dev), ...r });
  for (const x of r.results)
    console.log(
      `${String(x.input).padEnd(5)} ${x.M}x${x.N}x${x.K}: sfc ${(x.sfcTflops as number).toFixed(0)} TFLOP/s, ` +
        `cuBLASLt ${(x.cublasLtTflops as number).toFixed(0)} TFLOP/s (${((x.fractionOfCublasLt as number) * 100).toFixed(0)}%) [${x.chosen}]`,
    );
}
