// The bidirectional Wan DiT (WanModel) at full 1.3B size on the GPU against the project's float32
// PyTorch reference (test/reference/wan_dit.py --bidirectional: full attention with no cache, one
// timestep for the video, random bf16-representable weights, run here by the test): one forward over
// 21 latent frames at 480x832 (32760 tokens), flow within 2e-2 relative error. sfc's time of one
// forward (median of 3 after a warm-up) and PyTorch's (float32 and bf16 eager, CUDA events) go to
// $SFC_BENCH_OUT/wan-bidirectional-<device>.json. Then a smoke run of the multi-step pipelines with
// CFG on the CUDA combine kernels.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildWanDitBundle } from '../../compiler/bundle.js';
import { compileFiles } from '../../compiler/compile.js';
import { loadModelPreset } from '../../configs/presets.js';
import { bf16 } from '../../dsl/dtypes.js';
import { packageRoot } from '../../dsl/paths.js';
import { canonicalize, openCheckpoint } from '../../runtime/checkpoint/state-dict.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { Tensor } from '../../runtime/tensor.js';
import type { FlowKernels } from '../../models/pipeline/causal.js';
import {
  BidirectionalPipeline,
  CausalMultistepPipeline,
  type MultistepKernels,
} from '../../models/pipeline/multistep.js';
import { combineKernelsFrom } from '../../models/schedulers/linear.js';
import { WanModel } from '../../models/wan/bidirectional.js';
import { readBidirMeta, replayBidirectional, type BidirPass } from '../models/bidirectional-replay.js';
import { noGpuReason, openDevice } from './gpu.js';

const dir = process.env.SFC_WAN_REF_DIR ?? join(tmpdir(), 'sfc-wan-1.3b-ref');

describe.skipIf(noGpuReason)('bidirectional Wan DiT 1.3B on the GPU against the PyTorch reference', () => {
  let dev: CudaDevice | undefined;
  let model: WanModel | undefined;
  const preset = loadModelPreset('Wan2.1-T2V-1.3B');
  const bundle = buildWanDitBundle(preset.dit);
  const get = (): WanModel => {
    if (model) return model;
    dev ??= openDevice(process.env.SFC_CACHE_DIR);
    const ck = openCheckpoint(join(dir, 'weights.safetensors'));
    try {
      model = WanModel.load(dev, preset.dit, bundle, canonicalize(ck));
    } finally {
      ck.close();
    }
    return model;
  };
  afterAll(() => model?.dispose());

  it('21 latent frames (32760 tokens) in one forward: flow within 2e-2; sfc and PyTorch times', () => {
    if (!existsSync(join(dir, 'bidir.json'))) {
      mkdirSync(dir, { recursive: true });
      const weights = join(dir, 'weights.safetensors');
      execFileSync(
        'python3',
        [
          'test/reference/wan_dit.py',
          ...['--preset', '1.3b', '--out', dir, '--name', 'bidir', '--bidirectional'],
          ...['--frames', '21', '--timesteps', '937.5', '--time', '3'],
          ...(existsSync(weights) ? ['--weights', weights] : []),
        ],
        { stdio: 'inherit' },
      );
    }
    const meta = readBidirMeta(dir, 'bidir');
    const m = get();
    const sfcMs: number[] = [];
    const r: BidirPass[] = replayBidirectional(dir, 'bidir', m, (p, x, text) => {
      // the replay's forward compiled and warmed the kernels; now time a few more
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const f = m.forward(x, p.timestep, text);
        m.device.synchronize();
        sfcMs.push(performance.now() - t0);
        f.dispose();
      }
    });
    const sfc = [...sfcMs].sort((a, b) => a - b)[1]!;
    const tokens = meta.frames * (meta.latent_height / 2) * (meta.latent_width / 2);
    console.log(
      `bidirectional 1.3B, ${meta.frames} frames (${tokens} tokens): rel err ${r.map((p) => p.relErr.toExponential(2)).join(', ')}; ` +
        `sfc ${sfc.toFixed(1)} ms, PyTorch f32 ${meta.torch_ms?.f32.toFixed(1)} ms, bf16 ${meta.torch_ms?.bf16.toFixed(1)} ms`,
    );
    const out = process.env.SFC_BENCH_OUT;
    if (out) {
      const name = dev!.info.name;
      writeFileSync(
        join(out, `wan-bidirectional-${name.replace(/\W+/g, '_')}.json`),
        JSON.stringify(
          {
            device: name,
            commit: process.env.SFC_COMMIT ?? null,
            frames: meta.frames,
            tokens,
            passes: r,
            sfc_ms: sfc,
            sfc_ms_all: sfcMs,
            torch_ms: meta.torch_ms ?? null,
            torch_device: meta.torch_device ?? null,
          },
          null,
          1,
        ),
      );
    }
    expect(tokens).toBe(32760);
    expect(r).toHaveLength(1);
    for (const p of r) expect(p.relErr, `t=${p.timestep}`).toBeLessThan(2e-2);
  });

  it('multi-step pipelines with CFG run on the CUDA combine kernels (smoke: finite, reproducible)', () => {
    const m = get();
    const d = m.device;
    const root = packageRoot(import.meta.url);
    const kernels: MultistepKernels = {
      ...(bundle.kernels as unknown as FlowKernels),
      ...combineKernelsFrom(
        Object.fromEntries(compileFiles([join(root, 'models', 'kernels', 'combine.ts')]).map((a) => [a.name, a])),
      ),
    };
    const ctx = (f: (i: number) => number) => {
      const c = Tensor.from(
        d,
        bf16,
        [512, 4096],
        Array.from({ length: 512 * 4096 }, (_, i) => (i < 64 * 4096 ? f(i) : 0)),
      );
      const t = m.encodeContext(c);
      c.dispose();
      return t;
    };
    const text = ctx((i) => Math.sin(i * 0.37) * 0.5);
    const neg = ctx((i) => Math.cos(i * 0.11) * 0.5);
    try {
      const bidir = (seed: number) => {
        const p = new BidirectionalPipeline(m, kernels, {
          ...{ numFrames: 21, height: 60, width: 104, steps: 2, guidanceScale: 5, seed, framesPerChunk: 3 },
        });
        const t0 = performance.now();
        const chunks = [...p.generate(text, neg)].map((c) => {
          const x = c.latents.toF32();
          c.latents.dispose();
          return x;
        });
        console.log(`bidirectional pipeline, 21 frames, 2 steps x 2 passes: ${(performance.now() - t0).toFixed(0)} ms`);
        return chunks;
      };
      const a = bidir(1);
      expect(a).toHaveLength(7);
      for (const c of a) expect(c.every(Number.isFinite)).toBe(true);
      expect(bidir(1)).toEqual(a);
      const causal = new CausalMultistepPipeline(m.net, kernels, {
        ...{ numFrames: 6, framesPerChunk: 3, height: 60, width: 104, steps: 3, guidanceScale: 5, seed: 1 },
      });
      const caches = causal.newCaches();
      try {
        const t0 = performance.now();
        const chunks = [...causal.generate(() => text, neg, caches)].map((c) => {
          const x = c.latents.toF32();
          c.latents.dispose();
          return x;
        });
        console.log(
          `causal multi-step pipeline, 2 chunks x 3 steps x 2 passes: ${(performance.now() - t0).toFixed(0)} ms`,
        );
        expect(chunks).toHaveLength(2);
        for (const c of chunks) expect(c.every(Number.isFinite)).toBe(true);
      } finally {
        caches.dispose();
      }
    } finally {
      text.dispose();
      neg.dispose();
    }
  });
});
