// The Wan VAE decoder at full size on the GPU against the project's float32 PyTorch reference
// (test/reference/wan_vae.py, random bf16-representable weights, run here by the test): 21 latent
// frames at 480x832 (81 video frames), relative error <= 2e-2; a streamed decode (chunks of 3 latent
// frames, as the causal pipeline produces them) equals the whole decode; timing and peak memory of
// both sfc and PyTorch go to $SFC_BENCH_OUT/vae-decode-<device>.json.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildWanVaeKernels } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/presets.js';
import { vaeChannelCounts, vaeConvOutputs } from '../../models/vae/decoder.js';
import { relErr } from '../models/wan-rollout.js';
import { decodeStreamed, loadReferenceVae, readReferenceDecode } from '../models/vae-check.js';
import { noGpuReason, openDevice } from './gpu.js';

const dir = process.env.SFC_VAE_REF_DIR ?? join(tmpdir(), 'sfc-wan-vae-ref');

describe.skipIf(noGpuReason)('Wan VAE decoder on the GPU against the PyTorch reference', () => {
  it('decodes 21 latent frames at 480x832 within 2e-2; streamed equals whole', () => {
    if (!existsSync(join(dir, 'decode.json'))) {
      mkdirSync(dir, { recursive: true });
      execFileSync(
        'python3',
        [
          'test/reference/wan_vae.py',
          '--preset',
          'wan2.1',
          '--out',
          dir,
          '--frames',
          '21',
          '--height',
          '60',
          '--width',
          '104',
          '--time',
        ],
        { stdio: 'inherit' },
      );
    }
    const dev = openDevice(process.env.SFC_CACHE_DIR);
    const preset = loadModelPreset('Wan2.1-T2V-1.3B');
    const d = loadReferenceVae(
      dir,
      dev,
      preset.vae,
      buildWanVaeKernels({ channels: vaeChannelCounts(preset.vae), convOutputs: vaeConvOutputs(preset.vae) }),
    );
    const ref = readReferenceDecode(dir, dev);
    const first = d.decode(ref.latent); // warm-up (kernel loads, cuBLASLt heuristics)
    first.dispose();
    dev.synchronize();
    const before = dev.memoryStats();
    const t0 = performance.now();
    const v = d.decode(ref.latent);
    dev.synchronize();
    const ms = performance.now() - t0;
    const peak = dev.memoryStats().peakInUse;
    const got = v.toF32();
    v.dispose();
    const err = relErr(got, ref.video);
    const streamed = decodeStreamed(d, ref.latent, [3, 3, 3, 3, 3, 3, 3]);
    let maxDiff = 0;
    for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i]! - streamed[i]!));
    const result = {
      device: dev.info.name,
      commit: process.env.SFC_COMMIT ?? null,
      latentFrames: 21,
      videoFrames: 81,
      height: 480,
      width: 832,
      relErr: err,
      streamedMaxAbsDiff: maxDiff,
      sfcMs: ms,
      sfcPeakBytes: peak,
      inUseBefore: before.inUse,
      torch: ref.meta,
    };
    console.log(JSON.stringify(result));
    if (process.env.SFC_BENCH_OUT)
      writeFileSync(
        join(process.env.SFC_BENCH_OUT, `vae-decode-${dev.info.name.replace(/\W+/g, '_')}.json`),
        JSON.stringify(result, null, 1),
      );
    expect(err).toBeLessThan(2e-2);
    expect(maxDiff).toBe(0);
    d.dispose();
  });
});
