// The end-to-end workload of record (DESIGN section 7): text context -> causal few-step DiT chunk by
// chunk -> streaming VAE decode -> RGB frames on the host, at a preset's full size with seeded random
// weights made on the device (no checkpoints needed). Reports per-chunk DiT and decode times, the DiT
// total, the first-frame latency (start to the first chunk's frames on the host), end-to-end frames
// per second and peak device memory; a warm-up chunk first (kernel compiles and GEMM tuning are
// reported apart). Text encoding is excluded (once per prompt; see the UMT5 numbers).
import type { ModelBundle } from '../../dsl/artifact.js';
import { bf16 } from '../../dsl/dtypes.js';
import { CausalPipeline, type FlowKernels } from '../../models/pipeline/causal.js';
import { randomCheckpoint, randomDeviceWeights, type RandomKernels } from '../../models/random.js';
import { WanVaeDecoder, decoderParams, type VaeKernels } from '../../models/vae/decoder.js';
import { CausalWanModel, wanDitParams, type WanDitShape, type WanPrecision } from '../../models/wan/model.js';
import type { WanVaeShape } from '../../models/vae/decoder.js';
import type { Device } from '../../runtime/device.js';
import { Tensor } from '../../runtime/tensor.js';

export interface E2eOptions {
  dit: WanDitShape;
  vae: WanVaeShape;
  ditBundle: ModelBundle;
  vaeKernels: VaeKernels;
  /** latent frames of the timed run (21 = 81 video frames) */
  numFrames: number;
  /** pixels */
  height: number;
  width: number;
  denoisingSteps?: number[];
  shift?: number;
  localAttnSize?: number;
  sinkSize?: number;
  seed?: number;
  /** the DiT's precision; must be the bundle's (default: the bundle's) */
  precision?: WanPrecision;
}

export interface E2eResult {
  frames: number;
  latentFrames: number;
  height: number;
  width: number;
  setupMs: number;
  warmupMs: number;
  chunks: { index: number; startFrame: number; ditMs: number; decodeMs: number; frames: number }[];
  ditMs: number;
  decodeMs: number;
  totalMs: number;
  firstFrameMs: number;
  fps: number;
  peakBytes: number;
}

export function benchE2e(dev: Device, o: E2eOptions): E2eResult {
  const seed = o.seed ?? 0;
  const t0 = performance.now();
  const k = o.ditBundle.kernels as unknown as FlowKernels & RandomKernels;
  const model = CausalWanModel.fromWeights(
    dev,
    o.dit,
    o.ditBundle,
    randomDeviceWeights(dev, wanDitParams(o.dit), k, seed),
    { precision: o.precision },
  );
  const vae = WanVaeDecoder.load(dev, o.vae, o.vaeKernels, randomCheckpoint(decoderParams(o.vae), seed + 1));
  const ctxValues = Float32Array.from({ length: o.dit.text_len * o.dit.text_dim }, (_, i) => Math.sin(i * 0.618) * 0.5);
  const ctx = Tensor.from(dev, bf16, [o.dit.text_len, o.dit.text_dim], ctxValues);
  const text = model.encodeContext(ctx);
  ctx.dispose();
  dev.synchronize();
  const setupMs = performance.now() - t0;
  const pipeline = (numFrames: number) =>
    new CausalPipeline(model, k, {
      numFrames,
      framesPerChunk: 3,
      height: o.height / 8,
      width: o.width / 8,
      denoisingSteps: o.denoisingSteps ?? [1000, 750, 500, 250],
      shift: o.shift ?? 5,
      seed,
      localAttnSize: o.localAttnSize ?? -1,
      sinkSize: o.sinkSize ?? 0,
    });
  const run = (numFrames: number) => {
    const p = pipeline(numFrames);
    const cache = p.newCache();
    const stream = vae.stream();
    const chunks: E2eResult['chunks'] = [];
    const start = performance.now();
    let firstFrameMs = 0;
    try {
      for (const c of p.generate(() => text, cache)) {
        const td = performance.now();
        const v = stream.decode(c.latents);
        c.latents.dispose();
        const frames = vae.toRgb(v);
        v.dispose();
        const decodeMs = performance.now() - td;
        if (!chunks.length) firstFrameMs = performance.now() - start;
        chunks.push({ index: c.index, startFrame: c.startFrame, ditMs: c.ms, decodeMs, frames: frames.length });
      }
    } finally {
      stream.dispose();
      cache.dispose();
    }
    return { chunks, totalMs: performance.now() - start, firstFrameMs };
  };
  try {
    const tw = performance.now();
    run(3); // compiles, tunes, fills the allocator
    const warmupMs = performance.now() - tw;
    const r = run(o.numFrames);
    const frames = r.chunks.reduce((a, c) => a + c.frames, 0);
    return {
      frames,
      latentFrames: o.numFrames,
      height: o.height,
      width: o.width,
      setupMs,
      warmupMs,
      chunks: r.chunks,
      ditMs: r.chunks.reduce((a, c) => a + c.ditMs, 0),
      decodeMs: r.chunks.reduce((a, c) => a + c.decodeMs, 0),
      totalMs: r.totalMs,
      firstFrameMs: r.firstFrameMs,
      fps: (frames * 1000) / r.totalMs,
      peakBytes: dev.memoryStats().peakInUse,
    };
  } finally {
    text.dispose();
    vae.dispose();
    model.dispose();
  }
}
