// What `sfc infer` runs per video: the few-step causal pipeline (Self-Forcing's default, optionally
// from an image, a video to extend, or a video to restyle), the multi-step causal pipeline with CFG,
// or the bidirectional Wan sampler with CFG. One runner per run: it owns the KV caches and the
// conditioning latents, and makes a fresh pipeline per sample seed.
import { SfcError } from '../../dsl/errors.js';
import { CausalPipeline, chunkPlan, type ChunkOut } from '../../models/pipeline/causal.js';
import {
  BidirectionalPipeline,
  CausalMultistepPipeline,
  SOLVER_NAMES,
  type SolverName,
} from '../../models/pipeline/multistep.js';
import { WanModel } from '../../models/wan/bidirectional.js';
import type { TextContext } from '../../models/wan/model.js';
import type { Tensor } from '../../runtime/tensor.js';
import { imageLatent, videoLatents } from './condition.js';
import type { InferOptions, Models, Setup } from './infer.js';

export const PIPELINES = ['few-step', 'multi-step', 'bidirectional'] as const;
export type PipelineKind = (typeof PIPELINES)[number];

/** The generation flags of `sfc infer` (strings as commander gives them). */
export type GenerationFlags = Pick<
  InferOptions,
  'pipeline' | 'steps' | 'solver' | 'guidance' | 'negativePrompt' | 'shift' | 'i2v' | 'extend' | 'v2v' | 'strength'
>;

export interface GenerationPlan {
  kind: PipelineKind;
  /** the conditioning flag in use */
  conditioning?: { flag: '--i2v' | '--extend' | '--v2v'; path: string };
  strength: number;
  solver: SolverName;
  steps: number;
  guidance: number;
  negativePrompt: string;
  shift?: number;
}

const num = (v: string | undefined, flag: string): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new SfcError(`${flag} takes a number, got '${v}'`, { exitCode: 2 });
  return n;
};

/** Checks the flags before anything loads (bad combinations are usage errors). */
export function generationPlan(o: GenerationFlags, config: Setup['config']): GenerationPlan {
  const kind = o.pipeline as PipelineKind;
  if (!PIPELINES.includes(kind))
    throw new SfcError(`--pipeline takes ${PIPELINES.join(', ')}, got '${o.pipeline}'`, { exitCode: 2 });
  const conds = (
    [
      ['--i2v', o.i2v],
      ['--extend', o.extend],
      ['--v2v', o.v2v],
    ] as const
  ).filter(([, p]) => p !== undefined);
  if (conds.length > 1)
    throw new SfcError(`${conds.map(([f]) => f).join(' and ')} do not combine: give one`, { exitCode: 2 });
  if (conds.length && kind !== 'few-step')
    throw new SfcError(`${conds[0]![0]} runs with --pipeline few-step`, { exitCode: 2 });
  if (o.strength !== undefined && !o.v2v) throw new SfcError('--strength goes with --v2v', { exitCode: 2 });
  const strength = num(o.strength, '--strength') ?? 0.7;
  if (!(strength > 0 && strength <= 1)) throw new SfcError(`--strength is in (0, 1], got ${strength}`, { exitCode: 2 });
  if (kind === 'few-step')
    for (const [f, v] of [
      ['--steps', o.steps],
      ['--solver', o.solver],
      ['--guidance', o.guidance],
      ['--shift', o.shift],
    ] as const)
      if (v !== undefined)
        throw new SfcError(`${f} sets the multi-step samplers; --pipeline few-step runs the config's denoising steps`, {
          exitCode: 2,
        });
  const solver = (o.solver ?? 'unipc') as SolverName;
  if (!SOLVER_NAMES.includes(solver))
    throw new SfcError(`--solver takes ${SOLVER_NAMES.join(', ')}, got '${o.solver}'`, { exitCode: 2 });
  const steps = num(o.steps, '--steps') ?? 50;
  if (!Number.isInteger(steps) || steps < 1)
    throw new SfcError(`--steps takes a whole number >= 1, got ${o.steps}`, { exitCode: 2 });
  const c = conds[0];
  return {
    kind,
    conditioning: c ? { flag: c[0], path: c[1]! } : undefined,
    strength,
    solver,
    steps,
    guidance: num(o.guidance, '--guidance') ?? config.guidance_scale,
    negativePrompt: o.negativePrompt ?? config.negative_prompt,
    shift: num(o.shift, '--shift'),
  };
}

/** A run's pipeline: `generate(seed, text, negative)` yields one video's chunks. */
export interface Runner {
  /** latent frames of each video (conditioning frames included) */
  numFrames: number;
  /** chunks per video (for progress) */
  chunks: number;
  /** whether the run needs the negative prompt's context */
  guided: boolean;
  /** milliseconds spent reading and encoding the conditioning media (0 without) */
  encodeMs: number;
  generate(seed: number, text: (chunk: number) => TextContext, negative?: TextContext): Iterable<ChunkOut>;
  dispose(): void;
}

/**
 * Builds the runner for `numFrames` latent frames (the output's length; with --i2v / --extend the
 * generated part after the given frames is rounded up to whole chunks, with --v2v the length is the
 * source's, at most numFrames when given). Encodes the conditioning media first.
 */
export async function makeRunner(
  plan: GenerationPlan,
  models: Models,
  setup: Setup,
  numFrames: number,
  opts: { recache: boolean; numFramesGiven: boolean; onFrames?: (n: number) => void },
): Promise<Runner> {
  const { model } = models;
  const { config, height, width } = setup;
  const perChunk = config.num_frame_per_block;
  const base = models.pipelineOptions(numFrames, 0);
  const first = base.independentFirstFrame ? 1 : 0;
  const wholeChunks = (n: number) => Math.ceil(Math.max(n, 1) / perChunk) * perChunk;
  if (plan.kind === 'few-step') {
    let initialLatent: Tensor | undefined;
    let source: { latents: Tensor; strength: number } | undefined;
    let generated = numFrames;
    let independentFirstFrame = base.independentFirstFrame;
    const c = plan.conditioning;
    const te = performance.now();
    if (c?.flag === '--i2v') {
      // the image is its own first chunk, whatever the config says (the reference's i2v setup)
      initialLatent = await imageLatent(models.encoder(), c.path, width, height);
      independentFirstFrame = true;
      generated = wholeChunks(numFrames - 1);
    } else if (c?.flag === '--extend') {
      const all = await videoLatents(models.encoder(), c.path, width, height, 100_000, opts.onFrames);
      const F = all.shape[1]!;
      const F0 = first + Math.floor((F - first) / perChunk) * perChunk;
      if (F0 < 1) {
        all.dispose();
        throw new SfcError(
          `${c.path} is too short to extend: it makes ${F} latent frames, the model's chunks take ${first ? '1 + ' : ''}${perChunk}`,
        );
      }
      initialLatent = F0 === F ? all : all.narrow(1, 0, F0).contiguous();
      if (initialLatent !== all) all.dispose();
      generated = wholeChunks(numFrames - F0);
    } else if (c?.flag === '--v2v') {
      const max = opts.numFramesGiven ? numFrames : 100_000;
      const latents = await videoLatents(models.encoder(), c.path, width, height, max, opts.onFrames);
      const F = latents.shape[1]!;
      generated = first + Math.floor((F - first) / perChunk) * perChunk;
      if (generated < 1) {
        latents.dispose();
        throw new SfcError(`${c.path} is too short: it makes ${F} latent frames, a chunk takes ${perChunk}`);
      }
      source = { latents, strength: plan.strength };
    }
    models.device.synchronize();
    const encodeMs = c ? performance.now() - te : 0;
    const o = { ...base, numFrames: generated, independentFirstFrame, initialLatent, source, recache: opts.recache };
    const probe = new CausalPipeline(model, models.kernels, o);
    const cache = probe.newCache();
    return {
      numFrames: (initialLatent?.shape[1] ?? 0) + generated,
      chunks: probe.chunkCount,
      guided: false,
      encodeMs,
      generate: (seed, text) => new CausalPipeline(model, models.kernels, { ...o, seed }).generate(text, cache),
      dispose: () => {
        cache.dispose();
        initialLatent?.dispose();
        source?.latents.dispose();
      },
    };
  }
  const sampler = {
    solver: plan.solver,
    steps: plan.steps,
    guidanceScale: plan.guidance,
    shift: plan.shift,
  };
  if (plan.kind === 'multi-step') {
    const o = {
      numFrames,
      framesPerChunk: perChunk,
      height: base.height,
      width: base.width,
      contextNoise: base.contextNoise,
      localAttnSize: base.localAttnSize,
      sinkSize: base.sinkSize,
      relativeRope: base.relativeRope,
      independentFirstFrame: base.independentFirstFrame,
      ...sampler,
      shift: plan.shift ?? base.shift,
    };
    const probe = new CausalMultistepPipeline(model, models.multistepKernels, { ...o, seed: 0 });
    const caches = probe.newCaches();
    return {
      numFrames,
      chunks: chunkPlan(numFrames, perChunk, base.independentFirstFrame).length,
      guided: probe.guided,
      encodeMs: 0,
      generate: (seed, text, negative) =>
        new CausalMultistepPipeline(model, models.multistepKernels, { ...o, seed }).generate(text, negative, caches),
      dispose: () => caches.dispose(),
    };
  }
  const wan = WanModel.sharing(model);
  const o = { numFrames, height: base.height, width: base.width, framesPerChunk: 1, ...sampler };
  const probe = new BidirectionalPipeline(wan, models.multistepKernels, { ...o, seed: 0 });
  return {
    numFrames,
    chunks: numFrames,
    guided: probe.guided,
    encodeMs: 0,
    generate: (seed, text, negative) =>
      new BidirectionalPipeline(wan, models.multistepKernels, { ...o, seed }).generate(text(0), negative),
    dispose: () => wan.dispose(),
  };
}
