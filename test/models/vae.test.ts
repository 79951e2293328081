// The Wan VAE decoder (tiny preset) on the CPU against a golden decode of the project's PyTorch
// reference (test/reference/wan_vae.py, written on the GPU machine): relative error <= 2e-2, and
// streaming (chunks of 1 and 2 latent frames) gives exactly the whole-video decode.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildWanVaeKernels } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/presets.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { decoderLayout } from '../../models/vae/decoder.js';
import { vaeKernelNeeds } from '../../models/vae/encoder.js';
import { relErr } from './wan-rollout.js';
import { decodeStreamed, loadReferenceVae, readReferenceDecode } from './vae-check.js';

const dir = join(import.meta.dirname, '..', 'fixtures', 'vae-tiny');
const preset = loadModelPreset('tiny');

describe('Wan VAE decoder (tiny) against the PyTorch reference', () => {
  const dev = new CpuDevice();
  const d = loadReferenceVae(dir, dev, preset.vae, buildWanVaeKernels(vaeKernelNeeds(preset.vae)));
  const ref = readReferenceDecode(dir, dev);

  it('decodes 3 latent frames into 9 video frames within 2e-2 of the reference', () => {
    const v = d.decode(ref.latent);
    expect(v.shape).toEqual(ref.meta.video_shape);
    expect(relErr(v.toF32(), ref.video)).toBeLessThan(2e-2);
  });

  it('streamed decode (1 + 2 latent frames) equals the whole-video decode exactly', () => {
    const whole = d.decode(ref.latent).toF32();
    const streamed = decodeStreamed(d, ref.latent, [1, 2]);
    expect(streamed.length).toBe(whole.length);
    expect(streamed).toEqual(whole);
  });

  it('a checkpoint that does not fit is one clear error listing the problems', () => {
    expect(() => loadReferenceVae(dir, dev, { ...preset.vae, base_dim: 16 }, { kernels: {}, convGemms: {} })).toThrow(
      /the VAE checkpoint does not fit the decoder \(\d+ problems\): 'decoder.conv1.weight' is \[32, 16, 3, 3, 3\], the decoder needs \[64, 16, 3, 3, 3\]/,
    );
  });

  it('lays the decoder out as the reference does (module names and widths)', () => {
    const l = decoderLayout({
      z_dim: 16,
      base_dim: 96,
      dim_mult: [1, 2, 4, 4],
      num_res_blocks: 2,
      temporal_downsample: [false, true, true],
    });
    expect(l.map((m) => `${m.name}:${m.kind}:${m.cin}->${m.cout}`)).toEqual([
      'decoder.conv1:conv:16->384',
      'decoder.middle.0:res:384->384',
      'decoder.middle.1:attn:384->384',
      'decoder.middle.2:res:384->384',
      'decoder.upsamples.0:res:384->384',
      'decoder.upsamples.1:res:384->384',
      'decoder.upsamples.2:res:384->384',
      'decoder.upsamples.3:up3d:384->192',
      'decoder.upsamples.4:res:192->384',
      'decoder.upsamples.5:res:384->384',
      'decoder.upsamples.6:res:384->384',
      'decoder.upsamples.7:up3d:384->192',
      'decoder.upsamples.8:res:192->192',
      'decoder.upsamples.9:res:192->192',
      'decoder.upsamples.10:res:192->192',
      'decoder.upsamples.11:up2d:192->96',
      'decoder.upsamples.12:res:96->96',
      'decoder.upsamples.13:res:96->96',
      'decoder.upsamples.14:res:96->96',
      'decoder.head:head:96->3',
    ]);
  });
});
