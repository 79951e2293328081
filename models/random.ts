// Seeded random weights in the shape of a model's checkpoint, for the tiny preset the README's first
// command runs (no downloads) and for tests. Values come from the same counter-based Philox stream the
// kernels use (dsl/random.ts), so they are the same on every machine. Scales keep activations O(1):
// matrices N(0, 1/fan_in), biases N(0, 0.02^2), norm gains 1 + N(0, 0.1^2), modulation N(0, 0.1^2).
import type { KernelArtifact } from '../dsl/artifact.js';
import { bf16, f32, type DType } from '../dsl/dtypes.js';
import { SfcError } from '../dsl/errors.js';
import { randn } from '../dsl/random.js';
import type { CheckpointTensor } from '../runtime/checkpoint/state-dict.js';
import type { Device } from '../runtime/device.js';
import { launch } from '../runtime/kernels.js';
import { Tensor } from '../runtime/tensor.js';

function scaleOf(name: string, shape: readonly number[]): { std: number; mean: number } {
  if (/(gamma|norm[^.]*\.weight|norm\.weight)$/.test(name)) return { std: 0.1, mean: 1 };
  if (/modulation$/.test(name)) return { std: 0.1, mean: 0 };
  if (shape.length >= 2) {
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    return { std: 1 / Math.sqrt(fanIn), mean: 0 };
  }
  return { std: 0.02, mean: 0 };
}

/** A checkpoint (name -> lazily generated f32 tensor) for the given parameters. */
export function randomCheckpoint(
  params: readonly { name: string; shape: readonly number[] }[],
  seed: number,
): Map<string, CheckpointTensor> {
  const out = new Map<string, CheckpointTensor>();
  let offset = 0;
  for (const p of params) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const start = offset;
    offset += n;
    const { std, mean } = scaleOf(p.name, p.shape);
    out.set(p.name, {
      name: p.name,
      dtype: f32,
      fileDtype: 'F32',
      shape: [...p.shape],
      read: () => {
        const v = new Float32Array(n);
        for (let i = 0; i < n; i++) v[i] = mean + std * randn(seed, start + i);
        return new Uint8Array(v.buffer);
      },
    });
  }
  return out;
}

/** The kernels (models/kernels/flow.ts, in the DiT bundle) that fill random weights on the device. */
export interface RandomKernels {
  randnAffineBf16: KernelArtifact;
  randnAffineF32: KernelArtifact;
}

/**
 * Seeded random weights made on the device (a 1.3B model in seconds; host-side generation would take
 * minutes): each parameter from its own Philox stream, at the scales of `randomCheckpoint`.
 */
export function randomDeviceWeights(
  device: Device,
  params: readonly { name: string; shape: readonly number[]; dtype: DType }[],
  kernels: RandomKernels,
  seed: number,
): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  try {
    params.forEach((p, i) => {
      const { std, mean } = scaleOf(p.name, p.shape);
      const t = Tensor.empty(device, p.dtype, p.shape);
      out.set(p.name, t);
      const n = t.numel;
      const k = p.dtype === f32 ? kernels.randnAffineF32 : kernels.randnAffineBf16;
      if (p.dtype !== f32 && p.dtype !== bf16)
        throw new SfcError(`random weights of ${p.dtype.name} are not supported`);
      launch(k, [Math.ceil(n / 1024)], [t, n, (seed ^ Math.imul(i + 1, 0x9e3779b9)) | 0, 0, std, mean]);
    });
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}
