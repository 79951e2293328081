// Replays the cases written by test/reference/umt5.py through sfc's Umt5Encoder: the same weights
// (weights.safetensors, checkpoint names), each case's padded ids and mask as the tokenizer gives
// them; returns the relative error of every case's [text_len, dim] context against the reference's.
// Also: random bf16 encoder weights in memory for the CPU tests.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bf16 } from '../../dsl/dtypes.js';
import { canonicalize, openCheckpoint, type CheckpointTensor } from '../../runtime/checkpoint/state-dict.js';
import { encodeInto } from '../../runtime/convert.js';
import type { Device } from '../../runtime/device.js';
import { umt5Params, Umt5Encoder, type Umt5Bundle, type Umt5Shape } from '../../models/text/umt5.js';
import type { TokenBatch } from '../../models/text/tokenizer.js';
import { relErr } from './wan-rollout.js';

export interface Umt5CasesMeta {
  preset: string;
  /** the sizes the reference ran with, as a preset's text_encoder section */
  shape: Umt5Shape;
  text_len: number;
  dim: number;
  lengths: number[];
}

export interface CaseResult {
  length: number;
  relErr: number;
  /** largest |value| sfc wrote past the prompt (must be 0) */
  padMax: number;
  /** wall time of the encode call, synchronized (not reading the context back) */
  ms: number;
}

export function readCasesMeta(dir: string): Umt5CasesMeta {
  return JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8')) as Umt5CasesMeta;
}

export function loadReferenceEncoder(dir: string, device: Device, shape: Umt5Shape, bundle: Umt5Bundle): Umt5Encoder {
  const ck = openCheckpoint(join(dir, 'weights.safetensors'));
  try {
    return Umt5Encoder.load(device, shape, bundle, canonicalize(ck));
  } finally {
    ck.close();
  }
}

/** Runs every case of `dir`/cases.* (twice when `repeat` is 2: the second run is warm) and compares. */
export function replayCases(
  dir: string,
  enc: Umt5Encoder,
  onCase?: (r: CaseResult, run: number) => void,
  repeat = 1,
): CaseResult[] {
  const meta = readCasesMeta(dir);
  const ck = openCheckpoint(join(dir, 'cases.safetensors'));
  const tensor = (name: string): Uint8Array => {
    const t = ck.tensors.get(name);
    if (!t) throw new Error(`${dir}/cases.safetensors has no tensor ${name}`);
    return t.read().slice();
  };
  const T = meta.text_len;
  const out: CaseResult[] = [];
  try {
    meta.lengths.forEach((length, i) => {
      const batch: TokenBatch = {
        batch: 1,
        textLen: T,
        ids: new Int32Array(tensor(`case${i}.ids`).buffer),
        mask: Uint8Array.from(new Int32Array(tensor(`case${i}.mask`).buffer)),
        lengths: [length],
        dropped: [0],
        cleaned: [''],
      };
      const want = new Float32Array(tensor(`case${i}.out`).buffer);
      let r: CaseResult | undefined;
      for (let run = 0; run < repeat; run++) {
        const t0 = performance.now();
        const [ctx] = enc.encodeBatch(batch);
        enc.device.synchronize();
        const ms = performance.now() - t0;
        const got = ctx!.toF32();
        ctx!.dispose();
        let padMax = 0;
        for (let j = length * meta.dim; j < got.length; j++) padMax = Math.max(padMax, Math.abs(got[j]!));
        r = { length, relErr: relErr(got, want), padMax, ms };
        onCase?.(r, run);
      }
      out.push(r!);
    });
  } finally {
    ck.close();
  }
  return out;
}

/** Seeded normal samples (xorshift + Box-Muller). */
export function normals(n: number, seed: number): Float64Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 2 ** 32;
  };
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

export interface RandomWeights {
  /** bf16 bytes under the checkpoint names */
  tensors: Map<string, CheckpointTensor>;
  /** the same values, exactly, as float64 */
  values: Map<string, Float64Array>;
}

/** Random bf16 weights at scales that keep the attention neither flat nor one-hot. */
export function randomWeights(s: Umt5Shape, seed: number): RandomWeights {
  const hd = s.dim_attn / s.num_heads;
  // [pattern, std, mean]; the first match wins
  const scales: [RegExp, number, number][] = [
    [/^token_embedding\./, 1, 0],
    [/norm\d?\.weight$/, 0.1, 1],
    [/\.attn\.q\./, 2 / Math.sqrt(hd * s.dim), 0],
    [/\.attn\.[kv]\./, 1 / Math.sqrt(s.dim), 0],
    [/\.attn\.o\./, 1 / Math.sqrt(s.dim_attn), 0],
    [/\.ffn\.(gate\.0|fc1)\./, 1 / Math.sqrt(s.dim), 0],
    [/\.ffn\.fc2\./, 1 / Math.sqrt(s.ffn_dim), 0],
    [/\.pos_embedding\./, 1, 0],
  ];
  const tensors = new Map<string, CheckpointTensor>();
  const values = new Map<string, Float64Array>();
  umt5Params(s).forEach((p, i) => {
    const [, std, mean] = scales.find(([re]) => re.test(p.name))!;
    const n = p.shape.reduce((a, b) => a * b, 1);
    const bits = new Uint16Array(n);
    encodeInto(
      bf16,
      normals(n, seed * 1000 + i).map((z) => z * std + mean),
      bits,
    );
    const exact = new Float64Array(n);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    bits.forEach((b, j) => {
      u[0] = b << 16;
      exact[j] = f[0]!;
    });
    values.set(p.name, exact);
    const bytes = new Uint8Array(bits.buffer);
    tensors.set(p.name, { name: p.name, dtype: bf16, fileDtype: 'BF16', shape: p.shape, read: () => bytes });
  });
  return { tensors, values };
}
