// The Wan VAE encoder at full size on the GPU against the project's float32 PyTorch reference
// (test/reference/wan_vae.py --encode, random bf16-representable weights, run here by the test):
// 17 frames at 480x832 (5 latent frames), relative error <= 2e-2; a streamed encode (1 + 4 frames,
// then 4, then 8) equals the whole encode; timing and peak memory of sfc and PyTorch go to
// $SFC_BENCH_OUT/vae-encode-<device>.json.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildWanVaeKernels } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/presets.js';
import { vaeKernelNeeds } from '../../models/vae/encoder.js';
import { relErr } from '../models/wan-rollout.js';
import { encodeStreamed, loadReferenceEncoder, readReferenceEncode } from '../models/vae-encoder-check.js';
import { maxAbsDiff, noGpuReason, openDevice, reportResult, timeSecondRun } from './gpu.js';

const dir = process.env.SFC_VAE_ENC_REF_DIR ?? join(tmpdir(), 'sfc-wan-vae-enc-ref');

describe.skipIf(noGpuReason)('Wan VAE encoder on the GPU against the PyTorch reference', () => {
  it('encodes 17 frames at 480x832 within 2e-2; streamed equals whole', () => {
    if (!existsSync(join(dir, 'encode.json'))) {
      mkdirSync(dir, { recursive: true });
      execFileSync(
        'python3',
        [
          'test/reference/wan_vae.py',
          '--preset',
          'wan2.1',
          '--encode',
          '--out',
          dir,
          '--frames',
          '17',
          '--height',
          '480',
          '--width',
          '832',
          '--time',
        ],
        { stdio: 'inherit' },
      );
    }
    const dev = openDevice(process.env.SFC_CACHE_DIR);
    const preset = loadModelPreset('Wan2.1-T2V-1.3B');
    const e = loadReferenceEncoder(dir, dev, preset.vae, buildWanVaeKernels(vaeKernelNeeds(preset.vae)));
    const ref = readReferenceEncode(dir, dev);
    const run = timeSecondRun(dev, () => e.encode(ref.video));
    const err = relErr(run.values, ref.latent);
    const maxDiff = maxAbsDiff(run.values, encodeStreamed(e, ref.video, [5, 4, 8]));
    reportResult('vae-encode', dev, {
      videoFrames: 17,
      latentFrames: 5,
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
    e.dispose();
  });
});
