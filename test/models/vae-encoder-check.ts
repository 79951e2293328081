// Shared by the CPU and GPU VAE encoder tests: loads an encode written by test/reference/wan_vae.py
// --encode (weights, the video, the reference's latents) and encodes the video with sfc, whole and
// streamed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { f32 } from '../../dsl/dtypes.js';
import { canonicalize, openCheckpoint } from '../../runtime/checkpoint/state-dict.js';
import type { Device } from '../../runtime/device.js';
import { Tensor } from '../../runtime/tensor.js';
import type { VaeKernels, WanVaeShape } from '../../models/vae/decoder.js';
import { WanVaeEncoder } from '../../models/vae/encoder.js';
import { alongTime } from './vae-check.js';

export function loadReferenceEncoder(
  dir: string,
  device: Device,
  shape: WanVaeShape,
  kernels: VaeKernels,
): WanVaeEncoder {
  const ck = openCheckpoint(join(dir, 'vae.safetensors'));
  try {
    return WanVaeEncoder.load(device, shape, kernels, canonicalize(ck));
  } finally {
    ck.close();
  }
}

export interface ReferenceEncode {
  video: Tensor;
  latent: Float32Array;
  meta: Record<string, unknown>;
}

export function readReferenceEncode(dir: string, device: Device): ReferenceEncode {
  const ck = openCheckpoint(join(dir, 'encode.safetensors'));
  try {
    const v = ck.tensors.get('video')!;
    const z = ck.tensors.get('latent')!;
    return {
      video: Tensor.fromRaw(device, f32, v.shape, new Float32Array(v.read().slice().buffer)),
      latent: new Float32Array(z.read().slice().buffer),
      meta: JSON.parse(readFileSync(join(dir, 'encode.json'), 'utf8')) as Record<string, unknown>,
    };
  } finally {
    ck.close();
  }
}

/** Encodes chunk by chunk (sizes in video frames) and concatenates the latent frames on the host. */
export function encodeStreamed(e: WanVaeEncoder, video: Tensor, chunks: number[]): Float32Array {
  const s = e.stream();
  try {
    return alongTime(video, chunks, (x) => s.encode(x));
  } finally {
    s.dispose();
  }
}
