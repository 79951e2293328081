// Multi-step samplers with classifier-free guidance (Self-Forcing's causal_diffusion_inference.py and
// bidirectional_diffusion_inference.py): a full solver run (UniPC by default, DPM++ or flow-matching
// Euler; e.g. 50 steps) instead of the few-step list, with two model passes per step, one under the
// prompt and one under the negative prompt:
//   flow = uncond + g * (cond - uncond)      (computed as g * cond + (1 - g) * uncond)
// and the solver steps from the guided flow. A guidance scale of 1 is the prompt alone: the negative
// passes are skipped (and need no negative prompt or cache).
//
// CausalMultistepPipeline: per chunk of latent frames, Gaussian noise (the same Philox draw as the
// few-step pipeline's initial noise of that chunk), a fresh solver run over the chunk on the KV caches,
// where the prompt's and the negative prompt's passes each have their own cache (the reference's
// kv_cache_pos / kv_cache_neg); after the last step, a clean pass at t = context_noise writes the
// chunk's clean k/v into both caches. With one step a chunk is the solver's single update from its
// noise at the first timestep to sigma 0, which for every solver here is the x0 prediction
// x - sigma_0 * flow (sigma_0: 1 for DPM++ and Euler, UniPC's shifted 0.999).
//
// BidirectionalPipeline: Wan's text-to-video sampler over the whole video at once with the
// bidirectional model (one timestep for the video, full attention), then the video handed out in
// chunks of frames like the causal pipelines, so a caller streams it to the VAE the same way.
import type { KernelArtifact } from '../../dsl/artifact.js';
import { f32 } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import type { Device } from '../../runtime/device.js';
import { launch } from '../../runtime/kernels.js';
import { Tensor } from '../../runtime/tensor.js';
import { DpmSolver } from '../schedulers/dpm.js';
import { FlowMatchScheduler } from '../schedulers/flow-match.js';
import {
  OUTPUT,
  RESULT,
  SAMPLE,
  SolverRunner,
  combineInto,
  tensorBackend,
  term,
  type CombineKernels,
  type LinearBackend,
  type MultistepSolver,
  type StepPlan,
} from '../schedulers/linear.js';
import { wanSchedule, type SamplingSchedule } from '../schedulers/schedule.js';
import { UniPCSolver, checkSchedule } from '../schedulers/unipc.js';
import type { WanModel } from '../wan/bidirectional.js';
import type { CausalWanModel, KvCache, TextContext } from '../wan/model.js';
import { chunkCacheOptions, chunkPlan, noiseSeed, type ChunkOut, type FlowKernels } from './causal.js';

export type SolverName = 'unipc' | 'dpm++' | 'euler';
export const SOLVER_NAMES: readonly SolverName[] = ['unipc', 'dpm++', 'euler'];

/** The kernels the multi-step pipelines launch: the initial noise and the solvers' combinations. */
export type MultistepKernels = Pick<FlowKernels, 'randnFill'> & CombineKernels;

export interface SamplerOptions {
  /** 'unipc' (default, as the reference), 'dpm++', or 'euler' (Self-Forcing's flow-matching step) */
  solver?: SolverName;
  /** model evaluations per sampler run (the reference: 50) */
  steps?: number;
  /** the sampling shift; default 5 (`timestep_shift`) causal, 8 bidirectional (as the reference) */
  shift?: number;
  /** classifier-free guidance scale (`guidance_scale`); default 3; 1 runs the prompt alone */
  guidanceScale?: number;
  /** `num_train_timestep`, default 1000 */
  numTrainTimesteps?: number;
  seed: number;
}

interface Sampler {
  solver: SolverName;
  steps: number;
  shift: number;
  guidance: number;
  numTrainTimesteps: number;
}

function checkSampler(o: SamplerOptions, defaultShift: number): Sampler {
  const solver = o.solver ?? 'unipc';
  if (!SOLVER_NAMES.includes(solver))
    throw new SfcError(`unknown solver '${String(solver)}' (known: ${SOLVER_NAMES.join(', ')})`);
  const steps = o.steps ?? 50;
  if (!Number.isInteger(steps) || steps < 1)
    throw new SfcError(`sampling steps must be a whole number >= 1, got ${steps}`);
  const shift = o.shift ?? defaultShift;
  if (!(shift > 0) || !Number.isFinite(shift)) throw new SfcError(`the sampling shift must be positive, got ${shift}`);
  const guidance = o.guidanceScale ?? 3;
  if (!Number.isFinite(guidance)) throw new SfcError(`the guidance scale must be a finite number, got ${guidance}`);
  const numTrainTimesteps = o.numTrainTimesteps ?? 1000;
  if (!Number.isInteger(numTrainTimesteps) || numTrainTimesteps < 1)
    throw new SfcError(`numTrainTimesteps must be a whole number >= 1, got ${numTrainTimesteps}`);
  if (!Number.isInteger(o.seed)) throw new SfcError(`the seed must be a whole number, got ${o.seed}`);
  return { solver, steps, shift, guidance, numTrainTimesteps };
}

/**
 * Flow-matching Euler as Self-Forcing's FlowMatchScheduler steps (sigma_min 0, extra_one_step):
 * sigmas linspace(1, 0, steps + 1)[:steps] shifted, in float32, timesteps 1000 * sigma, and
 * x_{i+1} = x_i + (sigma_{i+1} - sigma_i) * flow, the last step to sigma 0.
 */
export class EulerSolver implements MultistepSolver {
  readonly sigmas: readonly number[];
  readonly timesteps: readonly number[];
  private index = 0;

  constructor(schedule: SamplingSchedule) {
    checkSchedule(schedule, 'Euler');
    this.sigmas = schedule.sigmas;
    this.timesteps = schedule.timesteps;
  }

  /** Self-Forcing's flow-matching schedule for `steps` steps. */
  static schedule(steps: number, shift: number, numTrainTimesteps = 1000): SamplingSchedule {
    const s = new FlowMatchScheduler({
      shift,
      sigmaMin: 0,
      extraOneStep: true,
      numTrainTimesteps,
      numInferenceSteps: steps,
    });
    return { sigmas: [...s.sigmas, 0], timesteps: [...s.timesteps] };
  }

  get stepIndex(): number {
    return this.index;
  }

  next(): StepPlan {
    const i = this.index;
    if (i >= this.timesteps.length) throw new SfcError(`Euler: all ${this.timesteps.length} steps are done`);
    this.index++;
    const dt = Math.fround(this.sigmas[i + 1]! - this.sigmas[i]!);
    return { index: i, ops: [{ out: RESULT, terms: [term(1, SAMPLE), term(dt, OUTPUT)] }], release: [] };
  }
}

/** A fresh solver (its own history) for one sampler run. */
export function makeSolver(name: SolverName, steps: number, shift: number, numTrainTimesteps = 1000): MultistepSolver {
  if (name === 'euler') return new EulerSolver(EulerSolver.schedule(steps, shift, numTrainTimesteps));
  if (name === 'unipc') return new UniPCSolver(wanSchedule('unipc', steps, shift, numTrainTimesteps));
  if (name === 'dpm++') return new DpmSolver(wanSchedule('dpm++', steps, shift, numTrainTimesteps));
  throw new SfcError(`unknown solver '${String(name)}' (known: ${SOLVER_NAMES.join(', ')})`);
}

function checkLatentSize(height: number, width: number): void {
  for (const [v, what] of [
    [height, 'height'],
    [width, 'width'],
  ] as const)
    if (!Number.isInteger(v) || v < 2 || v % 2)
      throw new SfcError(`the latent ${what} must be an even whole number >= 2, got ${v}`);
}

/** What both multi-step pipelines share: the checked sampler options, the solver run, and CFG. */
abstract class GuidedSampler {
  readonly sampler: Readonly<Sampler>;
  /** the timesteps of each sampler run */
  readonly timesteps: readonly number[];
  private readonly backend: LinearBackend<Tensor>;
  private readonly randnFill: KernelArtifact;

  constructor(kernels: MultistepKernels, o: SamplerOptions & { height: number; width: number }, defaultShift: number) {
    this.randnFill = kernels.randnFill;
    this.sampler = checkSampler(o, defaultShift);
    this.timesteps = this.newSolver().timesteps;
    checkLatentSize(o.height, o.width);
    this.backend = tensorBackend(kernels);
  }

  /** Whether the run makes negative-prompt passes (guidance scale != 1). */
  get guided(): boolean {
    return this.sampler.guidance !== 1;
  }

  private newSolver(): MultistepSolver {
    const s = this.sampler;
    return makeSolver(s.solver, s.steps, s.shift, s.numTrainTimesteps);
  }

  /** Gaussian noise [C, F, H, W]: the Philox draw of `seed` from element `offset` on (noiseSeed step 0). */
  protected noise(device: Device, shape: readonly number[], seed: number, offset: number): Tensor {
    const x = Tensor.empty(device, f32, shape);
    launch(this.randnFill, [Math.ceil(x.numel / 1024)], [x, x.numel, noiseSeed(seed, 0), offset]);
    return x;
  }

  protected checkNegative(ok: boolean, what: string): void {
    if (this.guided && !ok)
      throw new SfcError(`guidance scale ${this.sampler.guidance} needs ${what}`, {
        hint: 'a guidance scale of 1 runs the prompt alone',
      });
  }

  /**
   * One sampler run (a fresh solver) on `x` in place: at each timestep the prompt's flow `cond(t)`,
   * under guidance g * cond + (1 - g) * uncond(t) written into it, then the solver's update.
   */
  protected sample(x: Tensor, cond: (t: number) => Tensor, uncond: (t: number) => Tensor): void {
    const g = this.sampler.guidance;
    const runner = new SolverRunner(this.newSolver(), this.backend);
    try {
      for (const t of runner.solver.timesteps) {
        const flow = cond(t);
        try {
          if (this.guided) {
            const u = uncond(t);
            try {
              combineInto(this.backend, flow, [
                [g, flow],
                [1 - g, u],
              ]);
            } finally {
              u.dispose();
            }
          }
          runner.step(flow, x, x);
        } finally {
          flow.dispose();
        }
      }
    } finally {
      runner.dispose();
    }
  }
}

/** The prompt's and the negative prompt's KV caches of a guided causal run. */
export interface CfgCaches {
  cond: KvCache;
  /** absent when the guidance scale is 1 (no negative passes) */
  uncond: KvCache | undefined;
  dispose(): void;
}

export interface CausalMultistepOptions extends SamplerOptions {
  /** latent frames to generate */
  numFrames: number;
  /** latent frames per chunk (`num_frame_per_block`, Self-Forcing: 3) */
  framesPerChunk: number;
  /** latent height and width (pixels / 8) */
  height: number;
  width: number;
  /** timestep of the clean cache passes (`context_noise`), default 0 */
  contextNoise?: number;
  /** local attention window in latent frames (-1: none) and sink frames */
  localAttnSize?: number;
  sinkSize?: number;
  /** RoPE positions relative to the cache's slots (see KvCacheOptions.relativeRope) */
  relativeRope?: boolean;
  /** generate the first latent frame as its own chunk (`independent_first_frame`) */
  independentFirstFrame?: boolean;
}

export class CausalMultistepPipeline extends GuidedSampler {
  constructor(
    readonly model: CausalWanModel,
    readonly kernels: MultistepKernels,
    readonly o: CausalMultistepOptions,
  ) {
    super(kernels, o, 5);
    chunkPlan(o.numFrames, o.framesPerChunk, o.independentFirstFrame);
  }

  /** The caches for this run: the negative prompt's only under guidance. */
  newCaches(): CfgCaches {
    const opts = chunkCacheOptions(this.o);
    const cond = this.model.newCache(opts);
    const uncond = this.guided ? this.model.newCache(opts) : undefined;
    return { cond, uncond, dispose: () => [cond, uncond].forEach((c) => c?.dispose()) };
  }

  /**
   * Generates the video chunk by chunk. `text(chunk)` gives the prompt's context of each chunk (a
   * prompt schedule may switch it), `negative` the negative prompt's (needed under guidance). The
   * caches are reset first. Each chunk's latents are the caller's to dispose.
   */
  *generate(
    text: (chunk: number) => TextContext,
    negative: TextContext | undefined,
    caches: CfgCaches,
  ): Generator<ChunkOut> {
    const o = this.o;
    const dev = this.model.device;
    this.checkNegative(
      !!negative && !!caches.uncond,
      "the negative prompt's context and its own KV cache (newCaches())",
    );
    const C = this.model.shape.in_dim;
    const hw = o.height * o.width;
    const ctxNoise = o.contextNoise ?? 0;
    caches.cond.reset();
    caches.uncond?.reset();
    let start = 0;
    for (const [index, F] of chunkPlan(o.numFrames, o.framesPerChunk, o.independentFirstFrame).entries()) {
      const t0 = performance.now();
      const ctx = text(index);
      const x = this.noise(dev, [C, F, o.height, o.width], o.seed, start * C * hw);
      const cond = (t: number) => this.model.forward(x, new Array<number>(F).fill(t), start, ctx, caches.cond);
      const uncond = (t: number) =>
        this.model.forward(x, new Array<number>(F).fill(t), start, negative!, caches.uncond!);
      try {
        this.sample(x, cond, uncond);
        // the clean passes write the chunk's k/v into both caches
        cond(ctxNoise).dispose();
        if (this.guided) uncond(ctxNoise).dispose();
        dev.synchronize();
      } catch (e) {
        x.dispose();
        throw e;
      }
      yield { index, startFrame: start, latents: x, ms: performance.now() - t0 };
      start += F;
    }
  }
}

export interface BidirectionalOptions extends SamplerOptions {
  /** latent frames of the video (Wan2.1: 21 for 81 frames) */
  numFrames: number;
  /** latent height and width (pixels / 8) */
  height: number;
  width: number;
  /**
   * frames per chunk handed out after sampling (for a streaming VAE); default the whole video as one
   * chunk. The first chunk's `ms` carries the whole sampling time, the others 0.
   */
  framesPerChunk?: number;
}

export class BidirectionalPipeline extends GuidedSampler {
  constructor(
    readonly model: WanModel,
    readonly kernels: MultistepKernels,
    readonly o: BidirectionalOptions,
  ) {
    super(kernels, o, 8);
    chunkPlan(o.numFrames, o.framesPerChunk ?? o.numFrames);
  }

  /**
   * Samples the whole video under `text` (and `negative`, needed under guidance), then yields it in
   * chunks of `framesPerChunk` frames, which the caller disposes.
   */
  *generate(text: TextContext, negative?: TextContext): Generator<ChunkOut> {
    const o = this.o;
    const dev = this.model.device;
    this.checkNegative(!!negative, "the negative prompt's context");
    const F = o.numFrames;
    const chunks = chunkPlan(F, o.framesPerChunk ?? F);
    const t0 = performance.now();
    const x = this.noise(dev, [this.model.shape.in_dim, F, o.height, o.width], o.seed, 0);
    try {
      this.sample(
        x,
        (t) => this.model.forward(x, t, text),
        (t) => this.model.forward(x, t, negative!),
      );
      dev.synchronize();
    } catch (e) {
      x.dispose();
      throw e;
    }
    const ms = performance.now() - t0;
    if (chunks.length === 1) {
      yield { index: 0, startFrame: 0, latents: x, ms };
      return;
    }
    try {
      let start = 0;
      for (const [index, Fc] of chunks.entries()) {
        yield { index, startFrame: start, latents: sliceFrames(x, start, Fc), ms: index === 0 ? ms : 0 };
        start += Fc;
      }
    } finally {
      x.dispose();
    }
  }
}

/** A contiguous copy of frames [start, start + count) of a contiguous [C, F, H, W] tensor. */
function sliceFrames(x: Tensor, start: number, count: number): Tensor {
  const [C, F, H, W] = x.shape as [number, number, number, number];
  const out = Tensor.empty(x.device, x.dtype, [C, count, H, W]);
  const frame = H * W * x.dtype.bytes;
  for (let c = 0; c < C; c++)
    x.device.copy(
      out.storage,
      out.byteOffset + c * count * frame,
      x.storage,
      x.byteOffset + (c * F + start) * frame,
      count * frame,
    );
  return out;
}
