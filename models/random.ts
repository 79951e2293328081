// Seeded random weights in the shape of a model's checkpoint, for the tiny preset the README's first
// command runs (no downloads) and for tests. Values come from the same counter-based Philox stream the
// kernels use (dsl/random.ts), so they are the same on every machine. Scales keep activations O(1):
// matrices N(0, 1/fan_in), biases N(0, 0.02^2), norm gains 1 + N(0, 0.1^2), modulation N(0, 0.1^2).
import { f32 } from '../dsl/dtypes.js';
import { randn } from '../dsl/random.js';
import type { CheckpointTensor } from '../runtime/checkpoint/state-dict.js';

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
