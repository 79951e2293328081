// The Wan VAE decoder at full size on the GPU against the project's float32 PyTorch reference
// (test/reference/wan_vae.py, random bf16-representable weights, run here by the test): 21 latent
// frames at 480x832 (81 video frames), relative error <= 2e-2; a streamed decode (chunks of 3 latent
// frames, as the causal pipeline produces them) equals the whole decode; timing and peak memory of
// both sfc and PyTorch go to $SFC_BENCH_OUT/vae-decode-<device>.json.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildWanVaeKernels } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/presets.js';
import { vaeKernelNeeds } from '../../models/vae/encoder.js';
import { relErr } from '../models/wan-rollout.js';
import { decodeStreamed, loadReferenceVae, readReferenceDecode } from '../models/vae-check.js';
import { maxAbsDiff, noGpuReason, openDevice, reportResult, timeSecondRun } from './gpu.js';

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
    const d = loadReferenceVae(dir, dev, preset.vae, buildWanVaeKernels(vaeKernelNeeds(preset.vae)));
    const ref = readReferenceDecode(dir, dev);
    const run = timeSecondRun(dev, () => d.decode(ref.latent));
    const err = relErr(run.values, ref.video);
    const maxDiff = maxAbsDiff(run.values, decodeStreamed(d, ref.latent, [3, 3, 3, 3, 3, 3, 3]));
    reportResult('vae-decode', dev, {
      latentFrames: 21,
      videoFrames: 81,
      height: 480,
      width: 832,
      relErr: err,
      streamedMaxAbsDiff: maxDiff,
      sfcMs: run.ms,
      sfcPeakBytes: run.peakBytes,
      inUseBefore: run.inUseBefore,
      torch: ref.meta,
    });
    expect(err).toBeLessThan(2e-2);
    expect(maxDiff).toBe(0);
    d.dispose();
  });
});
