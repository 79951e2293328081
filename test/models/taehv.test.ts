// The TAEHV decoder (tiny widths [32, 16, 8, 8]) on the CPU: against a golden decode of the project's
// PyTorch reference (test/reference/taehv.py, written on the GPU machine) within 2e-2; streaming
// (any chunking) gives exactly the frames of the whole decode; checkpoints that do not fit are one
// clear error.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildTaehvKernels } from '../../compiler/bundle.js';
import { f32 } from '../../dsl/dtypes.js';
import { canonicalize, openCheckpoint, type CheckpointTensor } from '../../runtime/checkpoint/state-dict.js';
import { CpuDevice } from '../../runtime/cpu.js';
import type { Device } from '../../runtime/device.js';
import { Tensor } from '../../runtime/tensor.js';
import { TaehvDecoder, taehvParams, type TaehvShape } from '../../models/vae/taehv.js';
import { relErr } from './wan-rollout.js';

const dir = join(import.meta.dirname, '..', 'fixtures', 'taehv-tiny');
const TINY: TaehvShape = { nf: [32, 16, 8, 8], latent: 16 };
const kernels = buildTaehvKernels(TINY.nf);

/** a deterministic N(0, 1)-ish sequence (bf16-representable values are not needed on the CPU) */
function noise(n: number, seed: number, std: number): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

function fakeTensor(name: string, shape: number[], values: Float32Array): CheckpointTensor {
  return { name, dtype: f32, fileDtype: 'F32', shape, read: () => new Uint8Array(values.buffer) };
}

/** random weights under the checkpoint's names (decoder.7 with extra output channels, as taew2_1 may have) */
function randomWeights(s: TaehvShape): Map<string, CheckpointTensor> {
  const m = new Map<string, CheckpointTensor>();
  taehvParams(s).forEach((p, i) => {
    const shape = p.name === 'decoder.7.conv.weight' ? [2 * p.shape[0]!, ...p.shape.slice(1)] : p.shape;
    const n = shape.reduce((a, b) => a * b, 1);
    const fan = shape.slice(1).reduce((a, b) => a * b, 1);
    m.set(p.name, fakeTensor(p.name, shape, noise(n, i + 1, shape.length > 1 ? Math.sqrt(2 / fan) : 0.05)));
  });
  m.set('encoder.0.weight', fakeTensor('encoder.0.weight', [64, 3, 3, 3], noise(64 * 27, 99, 0.1)));
  return m;
}

function decodeStreamed(d: TaehvDecoder, z: Tensor, chunks: number[], inner = 3): Float32Array {
  const s = d.stream(inner);
  const parts: { values: Float32Array; T: number; HW: number }[] = [];
  let f0 = 0;
  try {
    for (const n of chunks) {
      const v = s.decode(z.narrow(1, f0, n).contiguous());
      parts.push({ values: v.toF32(), T: v.shape[1]!, HW: v.shape[2]! * v.shape[3]! });
      v.dispose();
      f0 += n;
    }
    expect(s.frames).toBe(4 * f0 - 3);
  } finally {
    s.dispose();
  }
  const HW = parts[0]!.HW;
  const T = parts.reduce((a, p) => a + p.T, 0);
  const out = new Float32Array(3 * T * HW);
  let t0 = 0;
  for (const p of parts) {
    for (let c = 0; c < 3; c++) out.set(p.values.subarray(c * p.T * HW, (c + 1) * p.T * HW), (c * T + t0) * HW);
    t0 += p.T;
  }
  return out;
}

function loadFixture(dev: Device): { d: TaehvDecoder; latent: Tensor; video: Float32Array; shape: number[] } {
  const ck = openCheckpoint(join(dir, 'taehv.safetensors'));
  const d = (() => {
    try {
      return TaehvDecoder.load(dev, kernels, canonicalize(ck), TINY);
    } finally {
      ck.close();
    }
  })();
  const ref = openCheckpoint(join(dir, 'decode.safetensors'));
  try {
    const z = ref.tensors.get('latent')!;
    const v = ref.tensors.get('video')!;
    const meta = JSON.parse(readFileSync(join(dir, 'decode.json'), 'utf8')) as { video_shape: number[] };
    return {
      d,
      latent: Tensor.fromRaw(dev, f32, z.shape, new Float32Array(z.read().slice().buffer)),
      video: new Float32Array(v.read().slice().buffer),
      shape: meta.video_shape,
    };
  } finally {
    ref.close();
  }
}

describe.skipIf(!existsSync(join(dir, 'decode.json')))('TAEHV decoder (tiny) against the PyTorch reference', () => {
  it('decodes 5 latent frames into 17 video frames within 2e-2 of the reference', () => {
    const dev = new CpuDevice();
    const { d, latent, video, shape } = loadFixture(dev);
    const v = d.decode(latent);
    expect(v.shape).toEqual(shape);
    expect(v.shape).toEqual([3, 17, 32, 48]);
    expect(relErr(v.toF32(), video)).toBeLessThan(2e-2);
    expect(decodeStreamed(d, latent, [2, 3])).toEqual(v.toF32());
    d.dispose();
  });
});

describe('TAEHV decoder (tiny, random weights) on the CPU', () => {
  const dev = new CpuDevice();
  const d = TaehvDecoder.load(dev, kernels, randomWeights(TINY), TINY);
  const z = Tensor.from(dev, f32, [16, 4, 3, 4], noise(16 * 4 * 12, 7, 1.5));

  it('decodes F latent frames into 1 + 4 (F - 1) frames of 8x the size, in [-1, 1], not constant', () => {
    const v = d.decode(z);
    expect(v.shape).toEqual([3, 13, 24, 32]);
    const x = v.toF32();
    expect(x.every((e) => e >= -1 && e <= 1)).toBe(true);
    const distinct = new Set(Array.from(x.subarray(0, 2000), (e) => e.toFixed(3)));
    expect(distinct.size).toBeGreaterThan(20);
    const rgb = d.toRgb(v);
    expect(rgb.length).toBe(13);
    expect(rgb[0]!.length).toBe(24 * 32 * 3);
  });

  it('streamed decode (any chunking, inside and outside) equals the whole-video decode exactly', () => {
    const whole = d.decode(z).toF32();
    expect(decodeStreamed(d, z, [1, 3], 3)).toEqual(whole);
    expect(decodeStreamed(d, z, [2, 2], 1)).toEqual(whole);
    expect(decodeStreamed(d, z, [1, 1, 1, 1], 2)).toEqual(whole);
  });

  it('a checkpoint that does not fit is one clear error listing the problems', () => {
    const w = randomWeights(TINY);
    w.delete('decoder.4.conv.2.bias');
    w.set('decoder.22.weight', fakeTensor('decoder.22.weight', [3, 16, 3, 3], noise(3 * 16 * 9, 1, 0.1)));
    w.set('decoder.13.conv.weight', fakeTensor('decoder.13.conv.weight', [16, 16, 1, 1], noise(256, 1, 0.1)));
    expect(() => TaehvDecoder.load(dev, kernels, w, TINY)).toThrow(
      "the TAEHV checkpoint does not fit the decoder (3 problems): missing 'decoder.4.conv.2.bias'; " +
        "'decoder.13.conv.weight' is [16, 16, 1, 1], the decoder needs [32, 16, 1, 1] (or more output channels); " +
        "'decoder.22.weight' is [3, 16, 3, 3], the decoder needs [3, 8, 3, 3]",
    );
    expect(() => TaehvDecoder.load(dev, kernels, randomWeights(TINY))).toThrow(
      /the TAEHV checkpoint does not fit the decoder \(\d+ problems\): 'decoder.1.weight' is \[32, 16, 3, 3\], the decoder needs \[256, 16, 3, 3\]/,
    );
  });

  it('rejects latents of the wrong shape', () => {
    expect(() => d.decode(Tensor.zeros(dev, f32, [8, 1, 2, 2]))).toThrow(/latents must be f32 \[16, F, h, w\]/);
  });
});
