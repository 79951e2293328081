// The Wan VAE encoder (tiny preset) on the CPU against a golden encode of the project's PyTorch
// reference (test/reference/wan_vae.py --encode, written on the GPU machine): relative error
// <= 2e-2; streaming (1 + 4 frames, then 4) gives exactly the whole-video encode; bad input is a
// clear error.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildWanVaeKernels } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/presets.js';
import { SfcError } from '../../dsl/errors.js';
import { f32 } from '../../dsl/dtypes.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { Tensor } from '../../runtime/tensor.js';
import { encoderLayout, vaeKernelNeeds } from '../../models/vae/encoder.js';
import { relErr } from './wan-rollout.js';
import { encodeStreamed, loadReferenceEncoder, readReferenceEncode } from './vae-encoder-check.js';

const dir = join(import.meta.dirname, '..', 'fixtures', 'vae-enc-tiny');
const preset = loadModelPreset('tiny');

describe('Wan VAE encoder (tiny) against the PyTorch reference', () => {
  const dev = new CpuDevice();
  const kernels = buildWanVaeKernels(vaeKernelNeeds(preset.vae));
  const e = loadReferenceEncoder(dir, dev, preset.vae, kernels);
  const ref = readReferenceEncode(dir, dev);

  it('encodes 9 frames into 3 latent frames within 2e-2 of the reference', () => {
    const z = e.encode(ref.video);
    expect(z.shape).toEqual(ref.meta.latent_shape);
    expect(relErr(z.toF32(), ref.latent)).toBeLessThan(2e-2);
  });

  it('streamed encode (1 + 4 frames, then 4) equals the whole-video encode exactly', () => {
    const whole = e.encode(ref.video).toF32();
    const streamed = encodeStreamed(e, ref.video, [5, 4]);
    expect(streamed).toEqual(whole);
    const single = encodeStreamed(e, ref.video, [1, 4, 4]);
    expect(single).toEqual(whole);
  });

  it('rejects frame counts the grouping cannot take, and odd sizes', () => {
    const v = Tensor.zeros(dev, f32, [3, 4, 16, 24]);
    expect(() => e.encode(v)).toThrow(SfcError);
    expect(() => e.encode(v)).toThrow(/1 \+ 4k frames first, got 4/);
    const odd = Tensor.zeros(dev, f32, [3, 1, 12, 24]);
    expect(() => e.encode(odd)).toThrow(/divisible by 8, got 12 x 24/);
  });

  it('a checkpoint without the encoder is one clear error', () => {
    expect(() => loadReferenceEncoder(join(dir, '..', 'vae-tiny'), dev, preset.vae, kernels)).toThrow(
      /the VAE checkpoint does not fit the encoder \(\d+ problems\): missing 'conv1.weight'/,
    );
  });

  it('lays the encoder out as the reference does (module names and widths)', () => {
    const l = encoderLayout({
      z_dim: 16,
      base_dim: 96,
      dim_mult: [1, 2, 4, 4],
      num_res_blocks: 2,
      temporal_downsample: [false, true, true],
    });
    expect(l.map((m) => `${m.name}:${m.kind}:${m.cin}->${m.cout}`)).toEqual([
      'encoder.conv1:conv:3->96',
      'encoder.downsamples.0:res:96->96',
      'encoder.downsamples.1:res:96->96',
      'encoder.downsamples.2:down2d:96->96',
      'encoder.downsamples.3:res:96->192',
      'encoder.downsamples.4:res:192->192',
      'encoder.downsamples.5:down3d:192->192',
      'encoder.downsamples.6:res:192->384',
      'encoder.downsamples.7:res:384->384',
      'encoder.downsamples.8:down3d:384->384',
      'encoder.downsamples.9:res:384->384',
      'encoder.downsamples.10:res:384->384',
      'encoder.middle.0:res:384->384',
      'encoder.middle.1:attn:384->384',
      'encoder.middle.2:res:384->384',
      'encoder.head:head:384->32',
    ]);
  });
});
