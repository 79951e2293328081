// The causal Wan DiT's FP8 mode on the CPU (tiny preset; the JS backend quantises exactly as the
// kernels do): the weight quantiser against a float64 reference quantiser, the FP8 plans' structure
// (quantisation fused into the producing row kernels, e4m3 GEMMs with the scales in their epilogues),
// the FP8 forward against the bf16 forward of the same weights and against the PyTorch float32
// reference's rollout, determinism, and the precision checks.
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildWanDitBundle, WAN_FP8_LAYERS } from '../../compiler/bundle.js';
import { compileCudaAsync, findNvcc } from '../../compiler/nvcc.js';
import { countSm90Opcodes } from '../../compiler/sass.js';
import { loadModelPreset } from '../../configs/presets.js';
import { bf16, dtypeOf, type DTypeName } from '../../dsl/dtypes.js';
import { CausalWanModel, isWanFp8Weight, quantizeWeightE4m3, wanDitParams } from '../../models/wan/model.js';
import { canonicalize, openCheckpoint } from '../../runtime/checkpoint/state-dict.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { PlanRunner } from '../../runtime/plan.js';
import { rawArray } from '../../runtime/convert.js';
import { Tensor } from '../../runtime/tensor.js';
import { parseAvi } from '../../media/avi.js';
import { mulberry32, sfcCli } from '../helpers.js';
import { loadReferenceModel, relErr, replayRollout, type RolloutMeta } from './wan-rollout.js';

const dir = join(import.meta.dirname, '..', 'fixtures', 'wan-tiny');
const preset = loadModelPreset('tiny');
const nvcc = findNvcc();

/** Every finite non-negative e4m3 value, ascending (index = bit pattern): subnormals m * 2^-9, then (1 + m/8) 2^(e-7). */
const E4M3_VALUES: number[] = (() => {
  const v: number[] = [];
  for (let e = 0; e < 16; e++)
    for (let m = 0; m < 8; m++) {
      if (e === 15 && m === 7) continue; // NaN
      v.push(e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7));
    }
  return v;
})();

/** float64 reference: x rounded to e4m3, nearest with ties to the even bit pattern, saturating at 448. */
function e4m3Ref(x: number): { value: number; nearTie: boolean } {
  const a = Math.abs(x);
  const s = x < 0 ? -1 : 1;
  if (a >= 448) return { value: s * 448, nearTie: false };
  let i = 0;
  while (E4M3_VALUES[i + 1]! <= a) i++;
  const lo = E4M3_VALUES[i]!;
  if (lo === a) return { value: s * a, nearTie: false };
  const hi = E4M3_VALUES[i + 1]!;
  const mid = (lo + hi) / 2;
  const pick = a < mid ? lo : a > mid ? hi : i % 2 === 0 ? lo : hi;
  return { value: s * pick, nearTie: Math.abs(a - mid) <= 1e-6 * mid };
}

describe('FP8 weight quantisation against a float64 reference', () => {
  const bundle = buildWanDitBundle(preset.dit, { precision: 'fp8' });
  const dev = new CpuDevice();

  it('per output channel: scale = absmax / 448, q = e4m3(w / scale), on random rows of every magnitude', () => {
    const N = 40;
    const K = 256;
    const rnd = mulberry32(7);
    const gauss = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
    const w = new Float32Array(N * K);
    for (let n = 0; n < N; n++) {
      const mag = 10 ** (-6 + (12 * n) / N); // 1e-6 .. 1e6 (bf16 holds them all)
      for (let k = 0; k < K; k++) w[n * K + k] = n === 3 ? 0 : gauss() * mag;
    }
    w[5 * K + 17] = 1e3; // one outlier: the rest of its row goes subnormal or to zero in e4m3
    const wt = Tensor.from(dev, bf16, [N, K], w);
    const wb = wt.toF32(); // the bf16 values the quantiser sees
    const { q, scale } = quantizeWeightE4m3(bundle.kernels.quantizeWeightE4m3!, wt);
    const qv = q.toF32();
    const sv = scale.toF32();
    let exact = 0;
    let ties = 0;
    for (let n = 0; n < N; n++) {
      let amax = 0;
      for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(wb[n * K + k]!));
      const s = Math.max(amax / 448, 1e-12);
      // the kernel's scale is the float32 rounding of the float64 one
      expect(Math.abs(sv[n]! - s) / s, `row ${n} scale`).toBeLessThanOrEqual(2 ** -24);
      for (let k = 0; k < K; k++) {
        const r = e4m3Ref(wb[n * K + k]! / s);
        const got = qv[n * K + k]!;
        if (got === r.value) exact++;
        else {
          // only where w / s sits on a rounding midpoint to float32 precision may the other neighbour win
          expect(r.nearTie, `row ${n} col ${k}: ${got} vs ${r.value}`).toBe(true);
          ties++;
        }
      }
      if (n === 3) expect(sv[n]).toBe(Math.fround(1e-12)); // an all-zero row keeps a finite scale
    }
    expect(exact + ties).toBe(N * K);
    // bf16 inputs make exact midpoints common (w / s = 448 w / absmax, a ratio of two 8-bit mantissas);
    // the kernel's float32 scale and reciprocal break those ties either way (9 of 10240 here)
    expect(ties).toBeLessThan((N * K) / 200);
    // the largest magnitude of each non-zero row maps onto +-448 exactly
    for (let n = 0; n < N; n++) {
      if (n === 3) continue;
      let m = 0;
      for (let k = 0; k < K; k++) m = Math.max(m, Math.abs(qv[n * K + k]!));
      expect(m).toBe(448);
    }
  });
});

describe('FP8 plans of the DiT', () => {
  const b16 = buildWanDitBundle(preset.dit);
  const b8 = buildWanDitBundle(preset.dit, { precision: 'fp8' });

  it('the bf16 bundle is unchanged: no FP8 weights, bf16 GEMMs', () => {
    expect(b16.precision).toBeUndefined();
    for (const p of Object.values(b16.plans)) {
      expect(p.fp8Weights).toBeUndefined();
      for (const s of p.steps) if (s.kind === 'gemm') expect(s.candidates[0]!.spec.input).toBe('bf16');
    }
  });

  it('a bf16 block is 12 launches: its three layer plans + self- and cross-attention', () => {
    const steps = (n: string) => b16.plans[n]!.steps.map((s) => s.kind);
    // modulated LN; the q/k/v GEMM; norms + RoPE + v in one kernel
    expect(steps('selfAttnQkv')).toEqual(['kernel', 'gemm', 'kernel']);
    // o-projection; residual + LayerNorm; cross q GEMM with bias + RMSNorm (row-sum epilogue)
    expect(steps('selfAttnOutCrossQ')).toEqual(['matmul', 'kernel', 'gemm']);
    // o-projection; residual + modulated LN; fc1 + GELU; fc2 + gated residual
    expect(steps('crossOutFfn')).toEqual(['matmul', 'kernel', 'gemm', 'gemm']);
    const cq = b16.plans.selfAttnOutCrossQ!.steps[2]!;
    expect(cq.kind === 'gemm' && cq.candidates.every((c) => !!c.spec.epilogue.custom?.rowSum)).toBe(true);
    const layers = ['selfAttnQkv', 'selfAttnOutCrossQ', 'crossOutFfn'];
    expect(layers.reduce((n, l) => n + steps(l).length, 2 /* the two attention launches */)).toBe(12);
  });

  it('the blocks run e4m3 GEMMs; activations are quantised in the kernels that produce them', () => {
    expect(b8.precision).toBe('fp8');
    for (const [name, p] of Object.entries(b8.plans)) {
      const fp8 = WAN_FP8_LAYERS.includes(name);
      const weights = p.fp8Weights ?? [];
      // every FP8 weight is e4m3 [N, K] followed by its f32 [N] scale
      for (const i of weights) {
        const w = p.buffers[p.inputs[i]!]!;
        const s = p.buffers[p.inputs[i + 1]!]!;
        expect([w.dtype, s.dtype, s.name, s.shape]).toEqual(['e4m3', 'f32', `${w.name}_scale`, [w.shape[0]]]);
      }
      const gemms = p.steps.filter((s) => s.kind === 'gemm');
      const kernels = p.steps.filter((s) => s.kind === 'kernel');
      if (!fp8) {
        expect(weights, name).toHaveLength(0);
        continue;
      }
      // no unfused matmul is left: each e4m3 GEMM carries the dequantisation in its epilogue
      expect(
        p.steps.filter((s) => s.kind === 'matmul'),
        name,
      ).toHaveLength(0);
      expect(gemms.length, name).toBe(weights.length);
      for (const g of gemms) {
        expect(g.candidates[0]!.spec.input).toBe('e4m3');
        expect(g.candidates[0]!.spec.epilogue.custom!.body).toMatch(
          /const float m_ = y;\n\s*.*\n\s*const float v\d+ = \(m_ \* v\d+\);/,
        );
      }
      // launches: selfAttnQkv 3 (as bf16), selfAttnOutCrossQ 4 and crossOutFfn 6 (bf16: 3 and 4): one
      // quantisation kernel for each attention output (a flash-attention row is one head) and one for
      // the GELU output (computed in fc1's epilogue, whose rows span several CTAs)
      expect(p.steps.length, name).toBe({ selfAttnQkv: 3, selfAttnOutCrossQ: 4, crossOutFfn: 6 }[name]);
      const e4m3Writers = kernels.filter((k) => k.artifact.params.some((q) => q.kind === 'ptr' && q.dtype === 'e4m3'));
      expect(e4m3Writers.length, name).toBe(name === 'selfAttnQkv' ? 1 : name === 'selfAttnOutCrossQ' ? 2 : 3);
    }
    // the modulated LayerNorm kernel of the q/k/v projections writes their e4m3 input and row scales
    const qkv = b8.plans.selfAttnQkv!;
    const first = qkv.steps[0]!;
    expect(first.kind).toBe('kernel');
    if (first.kind === 'kernel') {
      expect(first.label).toMatch(/reduce.*abs|abs.*reduce/);
      expect(first.artifact.params.filter((q) => q.kind === 'ptr').map((q) => q.dtype)).toEqual(
        expect.arrayContaining(['e4m3', 'f32']),
      );
    }
  });

  it.skipIf(!nvcc)(
    'the FP8 GEMMs compile for sm_90a to QGMMA, without spills',
    async () => {
      const p = b8.plans.crossOutFfn!;
      // the last sm_90a candidate (the ping-pong); the plans also carry the sm_80 / sm_89 mma.sync ones
      const arts = p.steps.flatMap((s) =>
        s.kind === 'gemm' ? [s.candidates.filter((c) => c.arch === 'sm_90a').at(-1)!] : [],
      );
      const results = await Promise.all(
        arts.map((art) => compileCudaAsync({ source: art.source, arch: 'sm_90a', name: `${art.entry}.cu` })),
      );
      results.forEach((r, i) => {
        const ops = countSm90Opcodes(r.cubin, arts[i]!.entry);
        expect(ops.QGMMA, arts[i]!.entry).toBeGreaterThan(0);
        expect(ops.HGMMA).toBe(0);
        expect(r.reports[0]!.spillStoreBytes + r.reports[0]!.spillLoadBytes).toBe(0);
      });
    },
    240_000,
  );
});

/** The rollout's passes (the first `limit`) through two models, each with its own KV cache: ||flow_a - flow_b|| / ||flow_b|| per pass. */
function sideBySide(d: string, name: string, a: CausalWanModel, b: CausalWanModel, limit = Infinity): number[] {
  const meta = JSON.parse(readFileSync(join(d, `${name}.json`), 'utf8')) as RolloutMeta;
  const ck = openCheckpoint(join(d, `${name}.safetensors`));
  const dev = a.device;
  const read = (n: string): Tensor => {
    const t = ck.tensors.get(n)!;
    return Tensor.fromRaw(
      dev,
      t.dtype!,
      t.shape,
      rawArray(
        t.dtype!,
        t.read().slice().buffer,
        0,
        t.shape.reduce((x, y) => x * y, 1),
      ),
    );
  };
  const ctx = read('context');
  const texts = [a.encodeContext(ctx), b.encodeContext(ctx)];
  ctx.dispose();
  const opts = {
    frameTokens: (meta.latent_height / 2) * (meta.latent_width / 2),
    localAttnSize: meta.local_attn_size,
    sinkSize: meta.sink_size,
  };
  const caches = [a.newCache(opts), b.newCache(opts)];
  try {
    return meta.passes.slice(0, limit).map((p, i) => {
      const x = read(`pass${i}.x`);
      const ts = new Array<number>(meta.frames_per_chunk).fill(p.timestep);
      const [fa, fb] = [a, b].map((m, j) => m.forward(x, ts, p.start_frame, texts[j]!, caches[j]!));
      const e = relErr(fa!.toF32(), fb!.toF32());
      [x, fa!, fb!].forEach((t) => t.dispose());
      return e;
    });
  } finally {
    texts.forEach((t) => t.dispose());
    caches.forEach((c) => c.dispose());
    ck.close();
  }
}

describe('causal Wan DiT (tiny) in FP8 against bf16 and the PyTorch reference', () => {
  const dev = new CpuDevice();
  const b8 = buildWanDitBundle(preset.dit, { precision: 'fp8' });
  const b16 = buildWanDitBundle(preset.dit);
  const m8 = loadReferenceModel(dir, dev, preset.dit, b8);
  const m16 = loadReferenceModel(dir, dev, preset.dit, b16);

  it('loads the blocks Linear weights quantised and keeps the rest bf16', () => {
    expect(m8.precision).toBe('fp8');
    expect(m16.precision).toBe('bf16');
    // q, k and v of the self-attention are one [3 dim, dim] Linear (fuseQkvWeights)
    const d = preset.dit.dim;
    const names = [
      ...wanDitParams(preset.dit)
        .filter((p) => isWanFp8Weight(p.name))
        .map((p) => ({ name: p.name, shape: p.shape })),
      ...Array.from({ length: preset.dit.num_layers }, (_, i) => ({
        name: `blocks.${i}.self_attn.qkv.weight`,
        shape: [3 * d, d],
      })),
    ];
    expect(names).toHaveLength(6 * preset.dit.num_layers);
    expect(isWanFp8Weight('blocks.0.self_attn.qkv.weight')).toBe(true);
    for (const p of names) {
      const w = m8.fp8Weight(p.name)!;
      expect(w.q.dtype.name).toBe('e4m3');
      expect(w.q.shape).toEqual(p.shape);
      expect(w.scale.shape).toEqual([p.shape[0]]);
    }
    expect(m8.fp8Weight('blocks.0.self_attn.q.weight')).toBeUndefined();
    expect(m8.fp8Weight('blocks.0.cross_attn.k.weight')).toBeUndefined();
    expect(m16.fp8Weight('blocks.0.ffn.0.weight')).toBeUndefined();
  });

  it('one FP8 GEMM: D = (A_q s_A)(W_q s_W)^T is within e4m3 rounding of the exact product', () => {
    // the per-GEMM error the model-level bounds below are measured against
    const [M, N, K] = [64, 96, 256];
    const rnd = mulberry32(3);
    const g = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
    const a = Tensor.from(dev, bf16, [M, K], Float32Array.from({ length: M * K }, g));
    const w = Tensor.from(
      dev,
      bf16,
      [N, K],
      Float32Array.from({ length: N * K }, () => g() / 16),
    );
    const k = b8.kernels.quantizeWeightE4m3!;
    const [qa, qw] = [quantizeWeightE4m3(k, a), quantizeWeightE4m3(k, w)];
    const [av, wv, qav, qwv, sa, sw] = [a, w, qa.q, qw.q, qa.scale, qw.scale].map((t) => t.toF32());
    const exact = new Float64Array(M * N);
    const fp8 = new Float64Array(M * N);
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let e = 0;
        let q = 0;
        for (let c = 0; c < K; c++) {
          e += av![i * K + c]! * wv![j * K + c]!;
          q += qav![i * K + c]! * qwv![j * K + c]!;
        }
        exact[i * N + j] = e;
        fp8[i * N + j] = q * sa![i]! * sw![j]!;
      }
    const err = relErr(fp8, exact);
    console.log(`one FP8 GEMM ${M}x${N}x${K}, Gaussian data: relative error ${err.toExponential(2)}`);
    expect(err).toBeGreaterThan(1e-2); // e4m3 keeps 3 mantissa bits: about 2.5% per operand
    expect(err).toBeLessThan(6e-2);
  });

  it('every pass of the 2-chunk rollout: FP8 within 4e-2 of bf16 and of the float32 reference', () => {
    // measured: 1.2e-2 .. 2.1e-2 both ways (bf16 vs the reference: 4.5e-3 .. 5.2e-3), below one FP8
    // GEMM's error above: the residual stream and the flow's input path are not quantised
    const ref = replayRollout(dir, 'global', m8);
    const vsBf16 = sideBySide(dir, 'global', m8, m16);
    console.log(
      ref
        .map(
          (p, i) =>
            `chunk ${p.chunk} t=${p.timestep.toFixed(1)}: fp8 vs reference ${p.relErr.toExponential(2)}, vs bf16 ${vsBf16[i]!.toExponential(2)}`,
        )
        .join('\n'),
    );
    expect(ref).toHaveLength(10);
    for (const [i, p] of ref.entries()) {
      expect(p.relErr, `chunk ${p.chunk} t=${p.timestep}`).toBeLessThan(4e-2);
      expect(vsBf16[i]!, `chunk ${p.chunk} t=${p.timestep}`).toBeLessThan(4e-2);
      expect(vsBf16[i]!).toBeGreaterThan(3e-3); // the FP8 GEMMs really ran
    }
  });

  it('is deterministic: the same passes give the same bits', () => {
    const again = loadReferenceModel(dir, dev, preset.dit, b8);
    try {
      expect(sideBySide(dir, 'global', m8, again, 5)).toEqual([0, 0, 0, 0, 0]);
    } finally {
      again.dispose();
    }
  });

  it('refuses mismatched precisions with clear errors', () => {
    const ck = openCheckpoint(join(dir, 'weights.safetensors'));
    try {
      const t = canonicalize(ck);
      expect(() => CausalWanModel.load(dev, preset.dit, b16, t, { precision: 'fp8' })).toThrow(
        /compiled for bf16; fp8 needs one built with \{ precision: 'fp8' \}/,
      );
      expect(() => CausalWanModel.load(dev, preset.dit, b8, t, { precision: 'bf16' })).toThrow(/compiled for fp8/);
    } finally {
      ck.close();
    }
    const fp8Plan = new PlanRunner(b8.plans.crossOutFfn!);
    const bf16Plan = new PlanRunner(b16.plans.crossOutFfn!);
    const x = Tensor.zeros(dev, bf16, [4, 4]);
    const w = { q: x, scale: x };
    expect(() => bf16Plan.run([x, w])).toThrow(/argument 1 is an FP8 weight, but the plan takes no FP8 weights/);
    // every input at its planned shape (symbolic dims 1), but the FP8 weights given in bf16
    const args = b8.plans.crossOutFfn!.inputs.map((bid) => {
      const buf = b8.plans.crossOutFfn!.buffers[bid]!;
      return Tensor.zeros(
        dev,
        buf.dtype === 'e4m3' ? bf16 : (dtypeOf(buf.dtype as DTypeName) ?? bf16),
        buf.shape.map((n) => (typeof n === 'number' ? n : 1)),
      );
    });
    expect(() => fp8Plan.run(args)).toThrow(/'wo' is an FP8 Linear weight: pass it quantised/);
  });
});

describe('sfc infer --precision', () => {
  it('generates with the FP8 DiT on the CPU (tiny preset), a video unlike the bf16 one; bad values are errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfc-infer-fp8-'));
    process.env.SFC_CACHE_DIR = join(dir, 'cache');
    const run = (out: string, precision: string) =>
      sfcCli(
        'infer',
        '--model',
        'tiny',
        '--prompt',
        'a red fox',
        '--num-frames',
        '3',
        '--out',
        out,
        '--format',
        'avi',
        '--device',
        'cpu',
        '--no-progress',
        '--precision',
        precision,
      );
    const [r8, r16] = [await run(join(dir, 'fp8'), 'fp8'), await run(join(dir, 'bf16'), 'bf16')];
    expect(r8.code, r8.err).toBe(0);
    expect(r16.code, r16.err).toBe(0);
    const file = (d: string) =>
      readFileSync(
        join(
          dir,
          d,
          readdirSync(join(dir, d)).find((f) => f.endsWith('.avi'))!,
        ),
      );
    const [v8, v16] = [parseAvi(file('fp8')), parseAvi(file('bf16'))];
    expect([v8.width, v8.height, v8.frames.length]).toEqual([v16.width, v16.height, v16.frames.length]);
    expect(file('fp8')).not.toEqual(file('bf16'));
    // the two precisions are separate bundle cache entries
    const bundles = readdirSync(join(dir, 'cache', 'bundles'));
    expect(bundles.filter((f) => f.startsWith('wan-dit-fp8-'))).toHaveLength(1);
    expect(bundles.filter((f) => /^wan-dit-[0-9a-f]+\.json$/.test(f))).toHaveLength(1);
    const bad = await run(join(dir, 'x'), 'fp16');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--precision.*fp16.*(bf16|choices)/);
  }, 240_000);
});
