// Shared by the CPU and GPU VAE tests: loads a decode written by test/reference/wan_vae.py (weights,
// latents, the reference's video) and decodes the latents with sfc, whole and streamed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { f32 } from '../../dsl/dtypes.js';
import { canonicalize, openCheckpoint } from '../../runtime/checkpoint/state-dict.js';
import type { Device } from '../../runtime/device.js';
import { Tensor } from '../../runtime/tensor.js';
import { WanVaeDecoder, type VaeKernels, type WanVaeShape } from '../../models/vae/decoder.js';

export function loadReferenceVae(dir: string, device: Device, shape: WanVaeShape, kernels: VaeKernels): WanVaeDecoder {
  const ck = openCheckpoint(join(dir, 'vae.safetensors'));
  try {
    return WanVaeDecoder.load(device, shape, kernels, canonicalize(ck));
  } finally {
    ck.close();
  }
}

export interface ReferenceDecode {
  latent: Tensor;
  video: Float32Array;
  meta: Record<string, unknown>;
}

export function readReferenceDecode(dir: string, device: Device): ReferenceDecode {
  const ck = openCheckpoint(join(dir, 'decode.safetensors'));
  try {
    const z = ck.tensors.get('latent')!;
    const v = ck.tensors.get('video')!;
    return {
      latent: Tensor.fromRaw(device, f32, z.shape, new Float32Array(z.read().slice().buffer)),
      video: new Float32Array(v.read().slice().buffer),
      meta: JSON.parse(readFileSync(join(dir, 'decode.json'), 'utf8')) as Record<string, unknown>,
    };
  } finally {
    ck.close();
  }
}

/** Decodes chunk by chunk (sizes in latent frames) and concatenates the frames on the host. */
export function decodeStreamed(d: WanVaeDecoder, z: Tensor, chunks: number[]): Float32Array {
  const s = d.stream();
  const parts: { values: Float32Array; T: number; HW: number }[] = [];
  let f0 = 0;
  try {
    for (const n of chunks) {
      const v = s.decode(z.narrow(1, f0, n).contiguous());
      parts.push({ values: v.toF32(), T: v.shape[1]!, HW: v.shape[2]! * v.shape[3]! });
      v.dispose();
      f0 += n;
    }
  } finally {
    s.dispose();
  }
  // [3, T, H, W] per chunk: concatenate along T within each channel
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
