// The causal few-step pipeline on the CPU with the tiny model (golden-checked weights from
// test/fixtures/wan-tiny): the schedule it runs, chunking, reproducibility, and a rolling cache whose
// memory does not grow with the video's length.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildWanDitBundle } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/presets.js';
import { bf16, f32 } from '../../dsl/dtypes.js';
import { CausalPipeline, chunkPlan, denoisingTimesteps, type FlowKernels } from '../../models/pipeline/causal.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { Tensor } from '../../runtime/tensor.js';
import { loadReferenceModel } from './wan-rollout.js';

const preset = loadModelPreset('tiny');

describe('causal pipeline: schedule and chunks', () => {
  it("warps Self-Forcing's [1000, 750, 500, 250] through the shift-5 timesteps", () => {
    expect(denoisingTimesteps([1000, 750, 500, 250], 5)).toEqual([1000, 937.5, Math.fround(833.3333333), 625]);
    expect(denoisingTimesteps([1000, 500], 5, false)).toEqual([1000, 500]);
    expect(() => denoisingTimesteps([1001], 5)).toThrow(/whole timesteps in \[0, 1000\], got 1001/);
  });

  it('splits frames into chunks (an independent first frame alone)', () => {
    expect(chunkPlan(9, 3)).toEqual([3, 3, 3]);
    expect(chunkPlan(7, 3, true)).toEqual([1, 3, 3]);
    expect(() => chunkPlan(8, 3)).toThrow(/8 latent frames do not split into chunks of 3/);
  });
});

describe('causal pipeline on the tiny model (CPU)', () => {
  const dev = new CpuDevice();
  const bundle = buildWanDitBundle(preset.dit);
  const model = loadReferenceModel(join(import.meta.dirname, '..', 'fixtures', 'wan-tiny'), dev, preset.dit, bundle);
  const ctx = Tensor.from(
    dev,
    bf16,
    [16, 32],
    Array.from({ length: 512 }, (_, i) => Math.sin(i * 0.37)),
  );
  const text = model.encodeContext(ctx);
  const text2 = model.encodeContext(
    Tensor.from(
      dev,
      bf16,
      [16, 32],
      Array.from({ length: 512 }, (_, i) => Math.cos(i * 0.11)),
    ),
  );
  const run = (
    o: {
      numFrames: number;
      seed: number;
      localAttnSize?: number;
      sinkSize?: number;
      relativeRope?: boolean;
      recache?: boolean;
      independentFirstFrame?: boolean;
      initialLatent?: Tensor;
      source?: { latents: Tensor; strength: number };
    },
    textOf: (chunk: number) => typeof text = () => text,
  ) => {
    const p = new CausalPipeline(model, bundle.kernels as unknown as FlowKernels, {
      framesPerChunk: 3,
      height: 4,
      width: 6,
      denoisingSteps: [1000, 750, 500, 250],
      ...o,
    });
    const cache = p.newCache();
    const out: { start: number; x: Float32Array; capacity: number }[] = [];
    for (const c of p.generate(textOf, cache)) {
      out.push({ start: c.startFrame, x: c.latents.toF32(), capacity: cache.capacity });
      c.latents.dispose();
    }
    cache.dispose();
    return out;
  };

  it('generates every chunk, finite and reproducible from the seed; another seed differs', () => {
    const a = run({ numFrames: 6, seed: 7 });
    const b = run({ numFrames: 6, seed: 7 });
    const c = run({ numFrames: 6, seed: 8 });
    expect(a.map((x) => x.start)).toEqual([0, 3]);
    for (const ch of a) expect(ch.x.every(Number.isFinite)).toBe(true);
    expect(a[1]!.x).toEqual(b[1]!.x);
    expect(a[0]!.x).not.toEqual(c[0]!.x);
  });

  it('with a window + sink, 8 chunks run in the cache of the window (memory flat in length)', () => {
    const r = run({ numFrames: 24, seed: 1, localAttnSize: 6, sinkSize: 1 });
    expect(r).toHaveLength(8);
    expect(new Set(r.map((x) => x.capacity))).toEqual(new Set([6 * 6]));
    for (const ch of r) expect(ch.x.every(Number.isFinite)).toBe(true);
  });

  it('KV re-cache on a prompt switch: no switch changes nothing; a switch re-encodes the cache', () => {
    const plain = run({ numFrames: 9, seed: 3 });
    const same = run({ numFrames: 9, seed: 3, recache: true });
    expect(same.map((c) => c.x)).toEqual(plain.map((c) => c.x));
    const sw = (chunk: number) => (chunk >= 1 ? text2 : text);
    const withRecache = run({ numFrames: 9, seed: 3, recache: true }, sw);
    const without = run({ numFrames: 9, seed: 3 }, sw);
    expect(withRecache[0]!.x).toEqual(plain[0]!.x); // chunk 0 is generated before the switch
    expect(without[0]!.x).toEqual(plain[0]!.x);
    expect(withRecache[1]!.x).not.toEqual(without[1]!.x); // the cache it attends to was re-encoded
    for (const c of [...withRecache, ...without]) expect(c.x.every(Number.isFinite)).toBe(true);
  });

  const latents = (F: number, seed: number) =>
    Tensor.from(
      dev,
      f32,
      [16, F, 4, 6],
      Array.from({ length: 16 * F * 24 }, (_, i) => Math.sin(i * 0.7 + seed)),
    );

  it('i2v: the initial latent fills the cache at t = 0 and starts the video; the rest is generated', () => {
    const image = latents(1, 0);
    const r = run({ numFrames: 6, seed: 5, independentFirstFrame: true, initialLatent: image });
    expect(r.map((c) => c.start)).toEqual([0, 1, 4]);
    expect(r[0]!.x).toEqual(image.toF32());
    const again = run({ numFrames: 6, seed: 5, independentFirstFrame: true, initialLatent: image });
    expect(again.map((c) => c.x)).toEqual(r.map((c) => c.x));
    const other = run({ numFrames: 6, seed: 5, independentFirstFrame: true, initialLatent: latents(1, 1) });
    expect(other[1]!.x).not.toEqual(r[1]!.x); // the generated frames attend to the image
    for (const c of r) expect(c.x.every(Number.isFinite)).toBe(true);
    // video extension: whole chunks of given frames
    const ext = run({ numFrames: 3, seed: 5, initialLatent: latents(6, 2) });
    expect(ext.map((c) => c.start)).toEqual([0, 3, 6]);
    expect(() => run({ numFrames: 3, seed: 5, initialLatent: latents(4, 2) })).toThrow(
      /4 initial latent frames do not split into chunks of 3/,
    );
  });

  it('v2v: strength 1 is text-to-video; a low strength stays near the source', () => {
    const src = latents(6, 3);
    const t2v = run({ numFrames: 6, seed: 9 });
    const full = run({ numFrames: 6, seed: 9, source: { latents: src, strength: 1 } });
    expect(full.map((c) => c.x)).toEqual(t2v.map((c) => c.x));
    const low = run({ numFrames: 6, seed: 9, source: { latents: src, strength: 0.3 } });
    const s = src.toF32();
    const dist = (x: Float32Array[]) => {
      let d = 0;
      x.forEach((c, k) => c.forEach((v, i) => (d += (v - s[(Math.floor(i / 72) * 6 + k * 3) * 24 + (i % 72)]!) ** 2)));
      return d;
    };
    expect(dist(low.map((c) => c.x))).toBeLessThan(dist(t2v.map((c) => c.x)));
    expect(() => run({ numFrames: 6, seed: 9, source: { latents: src, strength: 0 } })).toThrow(
      /the strength is in \(0, 1\], got 0/,
    );
    expect(() => run({ numFrames: 9, seed: 9, source: { latents: src, strength: 0.5 } })).toThrow(
      /the source latents must be f32 \[16, >= 9, 4, 6\]/,
    );
  });

  it('relative RoPE: the same video while nothing rolls, close to absolute on a rolling window, and past frame 1024', () => {
    const abs = run({ numFrames: 6, seed: 4 });
    const rel = run({ numFrames: 6, seed: 4, relativeRope: true });
    expect(rel.map((c) => c.x)).toEqual(abs.map((c) => c.x));
    // a window of 6 frames without a sink: attention sees the same position differences, only the
    // rolled keys' bf16 rounding differs
    const absW = run({ numFrames: 15, seed: 4, localAttnSize: 6 });
    const relW = run({ numFrames: 15, seed: 4, localAttnSize: 6, relativeRope: true });
    expect(relW[1]!.x).toEqual(absW[1]!.x); // nothing rolled yet
    for (let i = 2; i < 5; i++) {
      let num = 0;
      let den = 0;
      relW[i]!.x.forEach((v, j) => ((num += (v - absW[i]!.x[j]!) ** 2), (den += absW[i]!.x[j]! ** 2)));
      // measured 3.2e-3; without the keys' turn back it is 2.1e-2
      expect(Math.sqrt(num / den), `chunk ${i}`).toBeLessThan(1e-2);
    }
    // a chunk far past the RoPE tables on a full rolling cache
    const far = (relativeRope: boolean) => {
      const cache = model.newCache({ frameTokens: 6, localAttnSize: 6, sinkSize: 1, relativeRope });
      cache.globalEnd = 1200 * 6;
      cache.localEnd = cache.capacity;
      const x = Tensor.from(
        dev,
        f32,
        [16, 3, 4, 6],
        Array.from({ length: 16 * 72 }, (_, i) => Math.sin(i)),
      );
      try {
        return model.forward(x, [500, 500, 500], 1200, text, cache).toF32();
      } finally {
        x.dispose();
        cache.dispose();
      }
    };
    expect(() => far(false)).toThrow(/frame 1202 is past the RoPE tables/);
    expect(far(true).every(Number.isFinite)).toBe(true);
  });
});
