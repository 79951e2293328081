// The causal few-step pipeline (Self-Forcing's default inference): chunks of latent frames generated
// one after another on the KV cache. Per chunk: Gaussian noise; for each timestep of the (warped)
// denoising list, predict x0 with the DiT and, between steps, re-noise x0 to the next timestep with
// fresh noise; then one more pass over the clean x0 at t = context_noise writes the chunk's clean k/v
// into the cache. Chunks stream out as soon as they exist (to the VAE and the video file), so a
// video of any length runs in the memory of one chunk when the cache has a local window.
//
// Noise is counter-based (Philox: seed, element index), so a run is reproducible and the CPU and GPU
// draw the same numbers.
import type { KernelArtifact } from '../../dsl/artifact.js';
import { f32 } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import { launch } from '../../runtime/kernels.js';
import { Tensor } from '../../runtime/tensor.js';
import type { CausalWanModel, KvCache, KvCacheOptions, TextContext } from '../wan/model.js';
import { FlowMatchScheduler } from '../schedulers/flow-match.js';

export interface CausalPipelineOptions {
  /** latent frames to generate (any number; without a local window at most the cache's capacity) */
  numFrames: number;
  /** latent frames per chunk (Self-Forcing: 3) */
  framesPerChunk: number;
  /** latent height and width (pixels / 8) */
  height: number;
  width: number;
  /** the denoising timesteps as the config lists them, e.g. [1000, 750, 500, 250] */
  denoisingSteps: readonly number[];
  /** map them through the scheduler's shifted timesteps (`warp_denoising_step`), default true */
  warpDenoisingStep?: boolean;
  /** timestep of the cache pass (`context_noise`), default 0 */
  contextNoise?: number;
  /** `timestep_shift`, default 5 */
  shift?: number;
  seed: number;
  /** local attention window in latent frames (-1: none) and sink frames */
  localAttnSize?: number;
  sinkSize?: number;
  /** RoPE positions relative to the cache's slots: a rolling cache then runs past the RoPE tables */
  relativeRope?: boolean;
  /** generate the first latent frame as its own chunk (`independent_first_frame`) */
  independentFirstFrame?: boolean;
  /**
   * KV re-cache on prompt switches: keep every chunk's clean latents, and when `text(chunk)` returns
   * another context than the chunk before, recompute the cache (the clean passes of all earlier
   * chunks, in order, through the same window) under the new prompt before generating the chunk.
   * Default false (a switch then only changes the cross-attention of the following chunks).
   */
  recache?: boolean;
  /**
   * Clean latents the video starts from ([16, F0, h, w], f32): image-to-video (F0 = 1, an encoded
   * image) or video extension. They fill the cache through the model at t = 0 (the first frame alone
   * when `independentFirstFrame`, then chunks of `framesPerChunk`, as the reference does) and come out
   * as the video's first chunks; `numFrames` counts the generated frames after them.
   */
  initialLatent?: Tensor;
  /**
   * Video-to-video: the source video's clean latents at the generated frames ([16, >= numFrames, h, w]).
   * Each chunk starts from its source latents noised to the first denoising step whose sigma is at
   * most `strength` (in (0, 1]; 1 ignores the source), instead of pure noise, and is denoised from
   * there: a streaming restyle that keeps the source's layout and motion.
   */
  source?: { latents: Tensor; strength: number };
}

export interface ChunkOut {
  index: number;
  /** first latent frame of the chunk */
  startFrame: number;
  /** the chunk's clean latents [16, F, h, w] (f32); the caller disposes it */
  latents: Tensor;
  /** milliseconds spent in the DiT for this chunk (host wall time; device work is waited for) */
  ms: number;
}

/** The flow kernels (models/kernels/flow.ts) the pipeline launches. */
export interface FlowKernels {
  flowToX0: KernelArtifact;
  renoise: KernelArtifact;
  randnFill: KernelArtifact;
}

/** The timesteps the model sees for a denoising list (after `warp_denoising_step` when asked). */
export function denoisingTimesteps(steps: readonly number[], shift: number, warp = true): number[] {
  for (const t of steps)
    if (!Number.isInteger(t) || t < 0 || t > 1000)
      throw new SfcError(`denoising steps are whole timesteps in [0, 1000], got ${t}`);
  if (!warp) return [...steps];
  const table = [...FlowMatchScheduler.selfForcing(shift).timesteps, 0];
  return steps.map((t) => table[1000 - t]!);
}

/**
 * The Philox seed of a pipeline's noise draw number `step` (0: a chunk's initial noise, i: the
 * re-noise before denoising pass i); the element offset of the chunk's first element picks its part
 * of the stream.
 */
export function noiseSeed(seed: number, step: number): number {
  return (seed ^ Math.imul(step + 1, 0x9e3779b9)) | 0;
}

/** The KV cache of a chunked run: flat in the video's length when a window is set. */
export function chunkCacheOptions(o: {
  numFrames: number;
  height: number;
  width: number;
  localAttnSize?: number;
  sinkSize?: number;
  relativeRope?: boolean;
}): KvCacheOptions {
  return {
    frameTokens: (o.height / 2) * (o.width / 2),
    localAttnSize: o.localAttnSize ?? -1,
    sinkSize: o.sinkSize ?? 0,
    relativeRope: o.relativeRope ?? false,
    maxFrames: Math.max(21, o.numFrames),
  };
}

/** Chunk sizes in latent frames: all `framesPerChunk`, the first one alone if asked. */
export function chunkPlan(numFrames: number, framesPerChunk: number, independentFirstFrame = false): number[] {
  if (!Number.isInteger(numFrames) || numFrames < 1)
    throw new SfcError(`the number of latent frames must be >= 1, got ${numFrames}`);
  if (!Number.isInteger(framesPerChunk) || framesPerChunk < 1)
    throw new SfcError(`frames per chunk must be >= 1, got ${framesPerChunk}`);
  const out: number[] = [];
  let left = numFrames;
  if (independentFirstFrame) {
    out.push(1);
    left--;
  }
  if (left % framesPerChunk !== 0)
    throw new SfcError(
      `${numFrames} latent frames do not split into chunks of ${framesPerChunk}${independentFirstFrame ? ' after the first frame' : ''}`,
      { hint: `use a multiple of ${framesPerChunk}${independentFirstFrame ? ' plus one' : ''}` },
    );
  for (; left > 0; left -= framesPerChunk) out.push(framesPerChunk);
  return out;
}

export class CausalPipeline {
  readonly timesteps: number[];
  private readonly sched: FlowMatchScheduler;

  constructor(
    readonly model: CausalWanModel,
    readonly kernels: FlowKernels,
    readonly o: CausalPipelineOptions,
  ) {
    const shift = o.shift ?? 5;
    this.sched = FlowMatchScheduler.selfForcing(shift);
    this.timesteps = denoisingTimesteps(o.denoisingSteps, shift, o.warpDenoisingStep ?? true);
    // a trailing 0 (a clean "step") is not a denoising pass
    if (this.timesteps.length > 1 && this.timesteps[this.timesteps.length - 1] === 0) this.timesteps.pop();
    if (this.timesteps.length === 0) throw new SfcError('the denoising step list is empty');
    if (o.height % 2 || o.width % 2)
      throw new SfcError(`latent height and width must be even, got ${o.height} x ${o.width}`);
    const C = model.shape.in_dim;
    const fits = (t: Tensor, what: string, frames: number) => {
      if (t.rank !== 4 || t.shape[0] !== C || t.shape[2] !== o.height || t.shape[3] !== o.width || t.shape[1]! < frames)
        throw new SfcError(
          `${what} must be f32 [${C}, ${frames === 1 ? 'F' : `>= ${frames}`}, ${o.height}, ${o.width}], got ${t.toString()}`,
        );
    };
    if (o.initialLatent) fits(o.initialLatent, 'the initial latents', 1);
    if (o.source) {
      if (o.initialLatent) throw new SfcError('video-to-video and initial latents do not combine');
      if (!(o.source.strength > 0 && o.source.strength <= 1))
        throw new SfcError(`the strength is in (0, 1], got ${o.source.strength}`);
      fits(o.source.latents, 'the source latents', o.numFrames);
    }
  }

  /** The initial latents' chunks (t = 0 cache passes): the first frame alone if asked, then whole chunks. */
  private initialChunks(): number[] {
    const o = this.o;
    if (!o.initialLatent) return [];
    const F0 = o.initialLatent.shape[1]!;
    const first = o.independentFirstFrame ? 1 : 0;
    if ((F0 - first) % o.framesPerChunk !== 0)
      throw new SfcError(
        `${F0} initial latent frames do not split into ${first ? 'the first frame and ' : ''}chunks of ${o.framesPerChunk}`,
        {
          hint: `give ${first ? '1 + ' : ''}a multiple of ${o.framesPerChunk} latent frames (${first ? '1 + ' : ''}4 per latent frame of video)`,
        },
      );
    const out = first ? [1] : [];
    for (let f = first; f < F0; f += o.framesPerChunk) out.push(o.framesPerChunk);
    return out;
  }

  /** The generated chunks' sizes (after the initial latents' chunks). */
  private generatedChunks(): number[] {
    const o = this.o;
    return chunkPlan(o.numFrames, o.framesPerChunk, o.independentFirstFrame && !o.initialLatent);
  }

  /** How many chunks `generate` yields: the initial latents' and the generated ones. */
  get chunkCount(): number {
    return this.initialChunks().length + this.generatedChunks().length;
  }

  /** The first denoising step of a video-to-video chunk: the first whose sigma is at most the strength. */
  private firstStep(): number {
    const s = this.o.source?.strength;
    if (s === undefined) return 0;
    const i = this.timesteps.findIndex((t) => this.sched.sigmasFor([t])[0]! <= s + 1e-9);
    return i === -1 ? this.timesteps.length - 1 : i;
  }

  /** A KV cache sized for this run (flat in the video's length when a window is set). */
  newCache(): KvCache {
    const o = this.o;
    // the initial latents take cache room before the generated frames
    return this.model.newCache(chunkCacheOptions({ ...o, numFrames: o.numFrames + (o.initialLatent?.shape[1] ?? 0) }));
  }

  /**
   * Generates the video chunk by chunk. `text(chunk)` gives the prompt's context for each chunk (a
   * prompt schedule may switch it). The cache is reset first.
   */
  *generate(text: (chunk: number) => TextContext, cache: KvCache): Generator<ChunkOut> {
    const o = this.o;
    const dev = this.model.device;
    const C = this.model.shape.in_dim;
    const hw = o.height * o.width;
    cache.reset();
    // per-element sigma tables (the flow kernels index them by element / hw = channel * F + frame)
    const sigmaOf = (t: number, F: number) =>
      Tensor.from(dev, f32, [C * F], this.sched.sigmasFor(new Array<number>(C * F).fill(t)));
    // the noise of a chunk: Philox stream (seed of the step, offset of the chunk's first element)
    const seedOf = (step: number) => noiseSeed(o.seed, step);
    let start = 0;
    const initial = this.initialChunks();
    const chunks = this.generatedChunks();
    const kept: { start: number; x0: Tensor }[] = [];
    let prev: TextContext | undefined;
    const i0 = this.firstStep();
    try {
      for (const [index, F] of initial.entries()) {
        // the given latents fill the cache as clean context and start the video
        const t0 = performance.now();
        const ctx = text(index);
        prev = ctx;
        const view = o.initialLatent!.narrow(1, start, F);
        // the chunk's own tensor (the caller disposes what comes out; a view would free the input)
        let copy = view.contiguous();
        if (copy === view) {
          copy = Tensor.empty(dev, f32, view.shape);
          dev.copy(copy.storage, copy.byteOffset, view.storage, view.byteOffset, view.nbytes);
        }
        this.model.forward(copy, new Array<number>(F).fill(0), start, ctx, cache).dispose();
        if (o.recache) {
          const k = Tensor.empty(dev, f32, copy.shape);
          dev.copy(k.storage, k.byteOffset, copy.storage, copy.byteOffset, copy.nbytes);
          kept.push({ start, x0: k });
        }
        dev.synchronize();
        yield { index, startFrame: start, latents: copy, ms: performance.now() - t0 };
        start += F;
      }
      for (const [g, F] of chunks.entries()) {
        const index = initial.length + g;
        const t0 = performance.now();
        const n = C * F * hw;
        const shape = [C, F, o.height, o.width];
        const offset = start * C * hw;
        const ctx = text(index);
        if (o.recache && prev && ctx !== prev) {
          // the cache as if the new prompt had been used for every clean pass so far
          cache.reset();
          for (const k of kept) {
            const Fk = k.x0.shape[1]!;
            this.model.forward(k.x0, new Array<number>(Fk).fill(o.contextNoise ?? 0), k.start, ctx, cache).dispose();
          }
        }
        prev = ctx;
        let x = Tensor.empty(dev, f32, shape);
        if (o.source) {
          // the source's latents noised to the first step's sigma
          const view = o.source.latents.narrow(1, start, F);
          const src = view.contiguous();
          const sig = sigmaOf(this.timesteps[i0]!, F);
          launch(this.kernels.renoise, [Math.ceil(n / 1024)], [src, sig, x, n, hw, seedOf(0), offset]);
          sig.dispose();
          if (src !== view) src.dispose();
        } else launch(this.kernels.randnFill, [Math.ceil(n / 1024)], [x, n, seedOf(0), offset]);
        let x0: Tensor | undefined;
        for (const [i, t] of this.timesteps.entries()) {
          if (i < i0) continue;
          const flow = this.model.forward(x, new Array<number>(F).fill(t), start, ctx, cache);
          const sig = sigmaOf(t, F);
          x0?.dispose();
          x0 = Tensor.empty(dev, f32, shape);
          launch(this.kernels.flowToX0, [Math.ceil(n / 1024)], [x, flow, sig, x0, n, hw]);
          flow.dispose();
          sig.dispose();
          if (i + 1 < this.timesteps.length) {
            // x_t = (1 - sigma) x0 + sigma noise at the next timestep, fresh noise for every step
            const next = sigmaOf(this.timesteps[i + 1]!, F);
            const xt = Tensor.empty(dev, f32, shape);
            launch(this.kernels.renoise, [Math.ceil(n / 1024)], [x0, next, xt, n, hw, seedOf(i + 1), offset]);
            next.dispose();
            x.dispose();
            x = xt;
          }
        }
        x.dispose();
        // the clean cache pass writes the chunk's k/v at t = context_noise
        this.model.forward(x0!, new Array<number>(F).fill(o.contextNoise ?? 0), start, ctx, cache).dispose();
        if (o.recache) {
          const copy = Tensor.empty(dev, f32, shape);
          dev.copy(copy.storage, copy.byteOffset, x0!.storage, x0!.byteOffset, x0!.nbytes);
          kept.push({ start, x0: copy });
        }
        dev.synchronize();
        yield { index, startFrame: start, latents: x0!, ms: performance.now() - t0 };
        start += F;
      }
    } finally {
      for (const k of kept) k.x0.dispose();
    }
  }
}
