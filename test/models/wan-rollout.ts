// Replays a rollout written by test/reference/wan_dit.py through sfc's CausalWanModel: the same
// weights and text context, each pass's input latent and timesteps, sfc's own KV cache carried from
// pass to pass; returns the relative error of every pass's flow against the reference's.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelBundle } from '../../dsl/artifact.js';
import { relErr } from '../kernels/library.js';
import { f32 } from '../../dsl/dtypes.js';
import { canonicalize, openCheckpoint } from '../../runtime/checkpoint/state-dict.js';
import type { Device } from '../../runtime/device.js';
import { Tensor } from '../../runtime/tensor.js';
import { CausalWanModel, type WanDitShape } from '../../models/wan/model.js';

/** ||a - b|| / ||b||, NaN when a holds a NaN (the kernel library's check) */
export { relErr };

export interface RolloutMeta {
  preset: string;
  frames_per_chunk: number;
  latent_height: number;
  latent_width: number;
  local_attn_size: number;
  sink_size: number;
  passes: { chunk: number; start_frame: number; timestep: number }[];
}

export interface PassResult {
  chunk: number;
  timestep: number;
  relErr: number;
  ms: number;
}

/** Loads the reference weights into a model (the caller disposes it). */
export function loadReferenceModel(
  dir: string,
  device: Device,
  shape: WanDitShape,
  bundle: ModelBundle,
): CausalWanModel {
  const ck = openCheckpoint(join(dir, 'weights.safetensors'));
  try {
    return CausalWanModel.load(device, shape, bundle, canonicalize(ck));
  } finally {
    ck.close();
  }
}

export function replayRollout(
  dir: string,
  name: string,
  model: CausalWanModel,
  onPass?: (r: PassResult) => void,
): PassResult[] {
  const meta = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')) as RolloutMeta;
  const ck = openCheckpoint(join(dir, `${name}.safetensors`));
  const dev = model.device;
  const read = (n: string): Tensor => {
    const t = ck.tensors.get(n);
    if (!t) throw new Error(`${name}: no tensor ${n}`);
    const bytes = t.read().slice();
    return Tensor.fromRaw(dev, t.dtype!, t.shape, new (t.dtype === f32 ? Float32Array : Uint16Array)(bytes.buffer));
  };
  const text = model.encodeContext(read('context'));
  const cache = model.newCache({
    frameTokens: (meta.latent_height / 2) * (meta.latent_width / 2),
    localAttnSize: meta.local_attn_size,
    sinkSize: meta.sink_size,
    maxFrames: Math.max(21, Math.max(...meta.passes.map((p) => p.start_frame)) + meta.frames_per_chunk),
  });
  const out: PassResult[] = [];
  try {
    meta.passes.forEach((p, i) => {
      const x = read(`pass${i}.x`);
      const want = ck.tensors.get(`pass${i}.flow`)!;
      const t0 = performance.now();
      const flow = model.forward(x, new Array(meta.frames_per_chunk).fill(p.timestep), p.start_frame, text, cache);
      const got = flow.toF32();
      const ms = performance.now() - t0;
      const ref = new Float32Array(want.read().slice().buffer);
      const r = { chunk: p.chunk, timestep: p.timestep, relErr: relErr(got, ref), ms };
      out.push(r);
      onPass?.(r);
      x.dispose();
      flow.dispose();
    });
  } finally {
    text.dispose();
    cache.dispose();
    ck.close();
  }
  return out;
}
