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

/**
 * Runs `fn` over consecutive slices of x along dim 1 (sizes `chunks`) and concatenates its outputs,
 * [C, T_i, ...] each, along dim 1 on the host: a streamed run to compare with the whole one.
 */
export function alongTime(x: Tensor, chunks: number[], fn: (slice: Tensor) => Tensor): Float32Array {
  const parts: { values: Float32Array; C: number; T: number; plane: number }[] = [];
  let t0 = 0;
  for (const n of chunks) {
    const y = fn(x.narrow(1, t0, n).contiguous());
    const [C, T] = y.shape as [number, number];
    parts.push({ values: y.toF32(), C, T, plane: y.numel / (C * T) });
    y.dispose();
    t0 += n;
  }
  const { C, plane } = parts[0]!;
  const T = parts.reduce((a, p) => a + p.T, 0);
  const out = new Float32Array(C * T * plane);
  let f0 = 0;
  for (const p of parts) {
    for (let c = 0; c < C; c++)
      out.set(p.values.subarray(c * p.T * plane, (c + 1) * p.T * plane), (c * T + f0) * plane);
    f0 += p.T;
  }
  return out;
}

/** Decodes chunk by chunk (sizes in latent frames) and concatenates the frames on the host. */
export function decodeStreamed(d: WanVaeDecoder, z: Tensor, chunks: number[]): Float32Array {
  const s = d.stream();
  try {
    return alongTime(z, chunks, (x) => s.decode(x));
  } finally {
    s.dispose();
  }
}
