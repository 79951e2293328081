// The multi-step samplers with classifier-free guidance on the CPU with the tiny model (golden-checked
// weights from test/fixtures/wan-tiny): the causal per-chunk sampler on two KV caches and the
// bidirectional whole-video sampler. Reproducibility, guidance 1 = the prompt alone (against a plain
// loop written here), one step = the x0 prediction, solver choice, chunking, and option errors.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildWanDitBundle } from '../../compiler/bundle.js';
import { compileFiles } from '../../compiler/compile.js';
import { loadModelPreset } from '../../configs/presets.js';
import { bf16, f32 } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import { packageRoot } from '../../dsl/paths.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { launch } from '../../runtime/kernels.js';
import { Tensor } from '../../runtime/tensor.js';
import { chunkCacheOptions, noiseSeed, type FlowKernels } from '../../models/pipeline/causal.js';
import {
  BidirectionalPipeline,
  CausalMultistepPipeline,
  EulerSolver,
  makeSolver,
  type BidirectionalOptions,
  type CausalMultistepOptions,
  type MultistepKernels,
  type SolverName,
} from '../../models/pipeline/multistep.js';
import { SolverRunner, combineKernelsFrom, tensorBackend } from '../../models/schedulers/linear.js';
import { WanModel } from '../../models/wan/bidirectional.js';
import type { TextContext } from '../../models/wan/model.js';
import { loadReferenceModel, relErr } from './wan-rollout.js';

const preset = loadModelPreset('tiny');

describe('multi-step solvers', () => {
  it('makes UniPC, DPM++ and Euler schedules; Euler steps as the flow-matching scheduler', () => {
    expect(makeSolver('unipc', 4, 5).timesteps).toHaveLength(4);
    expect(makeSolver('dpm++', 4, 5).timesteps[0]).toBe(1000);
    const e = makeSolver('euler', 4, 1);
    expect(e.timesteps).toEqual([1000, 750, 500, 250]);
    expect(e.sigmas).toEqual([1, 0.75, 0.5, 0.25, 0]);
    const plan = e.next();
    expect(plan.ops).toEqual([
      {
        out: 'result',
        terms: [
          { coef: 1, of: 'sample' },
          { coef: -0.25, of: 'output' },
        ],
      },
    ]);
    const f = Math.fround;
    expect(EulerSolver.schedule(2, 5)).toEqual({ sigmas: [1, f(2.5 / 3), 0], timesteps: [1000, f(f(2.5 / 3) * 1000)] });
    expect(() => makeSolver('ddim' as SolverName, 4, 5)).toThrow(/unknown solver 'ddim'/);
  });
});

describe('multi-step pipelines on the tiny model (CPU)', () => {
  const dev = new CpuDevice();
  const bundle = buildWanDitBundle(preset.dit);
  const combine = combineKernelsFrom(
    Object.fromEntries(
      compileFiles([join(packageRoot(import.meta.url), 'models', 'kernels', 'combine.ts')]).map((a) => [a.name, a]),
    ),
  );
  const kernels: MultistepKernels = { ...(bundle.kernels as unknown as FlowKernels), ...combine };
  const model = loadReferenceModel(join(import.meta.dirname, '..', 'fixtures', 'wan-tiny'), dev, preset.dit, bundle);
  const wan = WanModel.sharing(model);
  const ctxOf = (f: (i: number) => number) =>
    model.encodeContext(
      Tensor.from(
        dev,
        bf16,
        [16, 32],
        Array.from({ length: 512 }, (_, i) => f(i)),
      ),
    );
  const text = ctxOf((i) => Math.sin(i * 0.37));
  const neg = ctxOf((i) => Math.cos(i * 0.11));
  const neg2 = ctxOf((i) => Math.sin(i * 0.05 + 1));
  afterAll(() => {
    for (const t of [text, neg, neg2]) t.dispose();
    wan.dispose();
    model.dispose();
  });

  const base = { numFrames: 6, framesPerChunk: 3, height: 4, width: 6, steps: 3, seed: 7 };
  // negative prompt: `null` for none
  const causal = (o: Partial<CausalMultistepOptions> = {}, negative: TextContext | null = neg) => {
    const p = new CausalMultistepPipeline(model, kernels, { ...base, guidanceScale: 4, ...o });
    const caches = p.newCaches();
    const out: { start: number; x: Float32Array }[] = [];
    try {
      for (const c of p.generate(() => text, negative ?? undefined, caches)) {
        out.push({ start: c.startFrame, x: c.latents.toF32() });
        c.latents.dispose();
      }
    } finally {
      caches.dispose();
    }
    return out;
  };
  const bidir = (o: Partial<BidirectionalOptions> = {}, negative: TextContext | null = neg) => {
    const p = new BidirectionalPipeline(wan, kernels, { ...base, framesPerChunk: undefined, guidanceScale: 4, ...o });
    const out: { start: number; x: Float32Array; frames: number }[] = [];
    for (const c of p.generate(text, negative ?? undefined)) {
      out.push({ start: c.startFrame, x: c.latents.toF32(), frames: c.latents.shape[1]! });
      c.latents.dispose();
    }
    return out;
  };
  /** the initial noise of the chunk at `start` with `F` frames, as the pipelines draw it */
  const noiseOf = (seed: number, start: number, F: number, h = 4, w = 6) => {
    const n = 16 * F * h * w;
    const x = Tensor.empty(dev, f32, [16, F, h, w]);
    launch(kernels.randnFill, [Math.ceil(n / 1024)], [x, n, noiseSeed(seed, 0), start * 16 * h * w]);
    return x;
  };

  it('causal: every chunk, finite, reproducible from the seed; another seed differs', () => {
    const a = causal();
    const b = causal();
    const c = causal({ seed: 8 });
    expect(a.map((x) => x.start)).toEqual([0, 3]);
    for (const ch of a) expect(ch.x.every(Number.isFinite)).toBe(true);
    expect(b.map((x) => x.x)).toEqual(a.map((x) => x.x));
    expect(c[0]!.x).not.toEqual(a[0]!.x);
    expect(c[1]!.x).not.toEqual(a[1]!.x);
  });

  /**
   * The causal multi-step run written out plainly: per chunk the noise, a fresh UniPC run where the
   * guided flow is uncond + g (cond - uncond) computed here in float64, then the clean passes at t = 0
   * into both caches.
   */
  const plainCausal = (g: number) => {
    const caches = [text, neg].map(() => model.newCache(chunkCacheOptions(base)));
    const backend = tensorBackend(kernels);
    const out: Float32Array[] = [];
    for (const start of [0, 3]) {
      let x = noiseOf(7, start, 3);
      const runner = new SolverRunner(makeSolver('unipc', 3, 5), backend);
      for (const t of runner.solver.timesteps) {
        let flow = model.forward(x, [t, t, t], start, text, caches[0]!);
        if (g !== 1) {
          const u = model.forward(x, [t, t, t], start, neg, caches[1]!);
          const uv = u.toF32();
          const cv = flow.toF32();
          flow.dispose();
          u.dispose();
          flow = Tensor.from(
            dev,
            f32,
            x.shape,
            uv.map((v, i) => v + g * (cv[i]! - v)),
          );
        }
        const next = runner.step(flow, x);
        flow.dispose();
        x.dispose();
        x = next;
      }
      runner.dispose();
      model.forward(x, [0, 0, 0], start, text, caches[0]!).dispose();
      model.forward(x, [0, 0, 0], start, neg, caches[1]!).dispose();
      out.push(x.toF32());
      x.dispose();
    }
    for (const c of caches) c.dispose();
    return out;
  };

  it('causal, guidance 1: the prompt alone (a plain loop on one cache), whatever the negative prompt', () => {
    const g1 = causal({ guidanceScale: 1 }, null);
    expect(causal({ guidanceScale: 1 }, neg2).map((c) => c.x)).toEqual(g1.map((c) => c.x));
    expect(g1.map((c) => c.x)).toEqual(plainCausal(1));
    // guidance changes the result, and needs the negative prompt
    expect(causal()[0]!.x).not.toEqual(g1[0]!.x);
    expect(() => causal({}, null)).toThrow(/guidance scale 4 needs the negative prompt/);
  });

  it('causal, guidance 4: CFG on two caches, each chunk cached clean under both prompts', () => {
    const got = causal();
    const want = plainCausal(4);
    got.forEach((c, i) => expect(relErr(c.x, want[i]!), `chunk ${i}`).toBeLessThan(1e-5));
    // the negative prompt matters under guidance
    expect(causal({}, neg2)[0]!.x).not.toEqual(got[0]!.x);
  });

  it('causal with one step: each chunk is the x0 prediction x - sigma_0 * flow from its noise', () => {
    for (const solver of ['unipc', 'dpm++', 'euler'] as const) {
      const r = causal({ steps: 1, solver, guidanceScale: 1 }, null);
      const s = makeSolver(solver, 1, 5);
      const cache = model.newCache(chunkCacheOptions(base));
      const x = noiseOf(7, 0, 3);
      const flow = model.forward(x, new Array<number>(3).fill(s.timesteps[0]!), 0, text, cache);
      const xs = x.toF32();
      const fs = flow.toF32();
      const want = xs.map((v, i) => v - s.sigmas[0]! * fs[i]!);
      let err = 0;
      r[0]!.x.forEach((v, i) => (err = Math.max(err, Math.abs(v - want[i]!))));
      expect(err, solver).toBeLessThan(1e-5);
      for (const t of [x, flow]) t.dispose();
      cache.dispose();
    }
  });

  it('causal: the solver changes the result; an independent first frame is its own chunk', () => {
    const u = causal({ solver: 'unipc' });
    const d = causal({ solver: 'dpm++' });
    const e = causal({ solver: 'euler' });
    expect(d[0]!.x).not.toEqual(u[0]!.x);
    expect(e[0]!.x).not.toEqual(u[0]!.x);
    expect(e[0]!.x).not.toEqual(d[0]!.x);
    const first = causal({ numFrames: 4, independentFirstFrame: true, steps: 2 });
    expect(first.map((c) => [c.start, c.x.length])).toEqual([
      [0, 16 * 24],
      [1, 16 * 3 * 24],
    ]);
  });

  it('bidirectional: end to end, reproducible, guidance 1 = a plain loop, chunks are slices of the video', () => {
    const a = bidir();
    expect(a).toHaveLength(1);
    expect(a[0]!.frames).toBe(6);
    expect(a[0]!.x.every(Number.isFinite)).toBe(true);
    expect(bidir()[0]!.x).toEqual(a[0]!.x);
    expect(bidir({ seed: 9 })[0]!.x).not.toEqual(a[0]!.x);
    expect(bidir({ solver: 'dpm++' })[0]!.x).not.toEqual(a[0]!.x);
    // the video in chunks of 2 frames: the same latents, frame by frame
    const parts = bidir({ framesPerChunk: 2 });
    expect(parts.map((p) => [p.start, p.frames])).toEqual([
      [0, 2],
      [2, 2],
      [4, 2],
    ]);
    const hw = 24;
    for (const p of parts)
      for (let c = 0; c < 16; c++)
        expect(p.x.slice(c * 2 * hw, (c + 1) * 2 * hw)).toEqual(
          a[0]!.x.slice((c * 6 + p.start) * hw, (c * 6 + p.start + 2) * hw),
        );
    // guidance 1: the prompt alone, one UniPC run over the video (shift 8)
    const g1 = bidir({ guidanceScale: 1 }, null);
    const x = noiseOf(7, 0, 6);
    const runner = new SolverRunner(makeSolver('unipc', 3, 8), tensorBackend(kernels));
    for (const t of runner.solver.timesteps) {
      const flow = wan.forward(x, t, text);
      runner.step(flow, x, x);
      flow.dispose();
    }
    runner.dispose();
    expect(g1[0]!.x).toEqual(x.toF32());
    x.dispose();
    expect(g1[0]!.x).not.toEqual(a[0]!.x);
    expect(() => bidir({}, null)).toThrow(/guidance scale 4 needs the negative prompt/);
  });

  it('bad options are SfcErrors', () => {
    const bad: [Partial<CausalMultistepOptions>, RegExp][] = [
      [{ solver: 'heun' as SolverName }, /unknown solver 'heun' \(known: unipc, dpm\+\+, euler\)/],
      [{ steps: 0 }, /sampling steps must be a whole number >= 1, got 0/],
      [{ steps: 2.5 }, /sampling steps must be a whole number >= 1, got 2.5/],
      [{ shift: 0 }, /the sampling shift must be positive/],
      [{ guidanceScale: NaN }, /the guidance scale must be a finite number/],
      [{ height: 5 }, /latent height must be an even whole number/],
      [{ numFrames: 5 }, /5 latent frames do not split into chunks of 3/],
      [{ seed: 0.5 }, /the seed must be a whole number/],
    ];
    for (const [o, msg] of bad) {
      expect(() => new CausalMultistepPipeline(model, kernels, { ...base, ...o }), msg.source).toThrow(SfcError);
      expect(() => new CausalMultistepPipeline(model, kernels, { ...base, ...o })).toThrow(msg);
    }
    expect(() => new BidirectionalPipeline(wan, kernels, { ...base, framesPerChunk: undefined, steps: -1 })).toThrow(
      SfcError,
    );
    expect(() => new BidirectionalPipeline(wan, kernels, { ...base, framesPerChunk: 4 })).toThrow(
      /6 latent frames do not split into chunks of 4/,
    );
  });
});
