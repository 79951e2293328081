// Replays goldens of the bidirectional DiT written by `test/reference/wan_dit.py --bidirectional`
// through sfc's WanModel: the same text context, each pass's noise latent and timestep; returns the
// relative error of every pass's flow against the reference's.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { f32 } from '../../dsl/dtypes.js';
import { openCheckpoint } from '../../runtime/checkpoint/state-dict.js';
import { Tensor } from '../../runtime/tensor.js';
import type { WanModel } from '../../models/wan/bidirectional.js';
import type { TextContext } from '../../models/wan/model.js';
import { relErr } from './wan-rollout.js';

export interface BidirMeta {
  preset: string;
  frames: number;
  latent_height: number;
  latent_width: number;
  passes: { timestep: number }[];
  /** PyTorch's time of one forward (ms) in float32 and bf16, with --time */
  torch_ms?: { f32: number; bf16: number };
  torch_device?: string;
}

export interface BidirPass {
  timestep: number;
  relErr: number;
}

export function readBidirMeta(dir: string, name: string): BidirMeta {
  return JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')) as BidirMeta;
}

/** Runs every pass of the golden `name` in `dir`; `onPass` sees each result with its input latent and text. */
export function replayBidirectional(
  dir: string,
  name: string,
  model: WanModel,
  onPass?: (r: BidirPass, x: Tensor, text: TextContext) => void,
): BidirPass[] {
  const meta = readBidirMeta(dir, name);
  const ck = openCheckpoint(join(dir, `${name}.safetensors`));
  const read = (n: string): Tensor => {
    const t = ck.tensors.get(n);
    if (!t) throw new Error(`${name}: no tensor ${n}`);
    const bytes = t.read().slice();
    const raw = t.dtype === f32 ? new Float32Array(bytes.buffer) : new Uint16Array(bytes.buffer);
    return Tensor.fromRaw(model.device, t.dtype!, t.shape, raw);
  };
  const ctx = read('context');
  const text = model.encodeContext(ctx);
  ctx.dispose();
  try {
    return meta.passes.map((p, i) => {
      const x = read(`pass${i}.x`);
      try {
        const flow = model.forward(x, p.timestep, text);
        const got = flow.toF32();
        flow.dispose();
        const ref = new Float32Array(ck.tensors.get(`pass${i}.flow`)!.read().slice().buffer);
        const r = { timestep: p.timestep, relErr: relErr(got, ref) };
        onPass?.(r, x, text);
        return r;
      } finally {
        x.dispose();
      }
    });
  } finally {
    text.dispose();
    ck.close();
  }
}
