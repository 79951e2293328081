// The bidirectional Wan DiT (WanModel) on the CPU with the tiny preset: by definition its forward of
// F frames is the causal model's forward of the same F frames as one chunk at frame 0 on an empty
// cache; one timestep for the video equals the same value per frame; the shared scratch cache; and,
// where the golden exists, against test/reference/wan_dit.py --bidirectional (full attention with no
// cache, written on the GPU machine; the command is in test/fixtures/wan-tiny-bidir/README.md).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildWanDitBundle } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/presets.js';
import { bf16, f32 } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import { canonicalize, openCheckpoint } from '../../runtime/checkpoint/state-dict.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { Tensor } from '../../runtime/tensor.js';
import { WanModel } from '../../models/wan/bidirectional.js';
import { KvCache } from '../../models/wan/model.js';
import { replayBidirectional } from './bidirectional-replay.js';
import { loadReferenceModel } from './wan-rollout.js';

const preset = loadModelPreset('tiny');
const tinyDir = join(import.meta.dirname, '..', 'fixtures', 'wan-tiny');
const bidirDir = join(import.meta.dirname, '..', 'fixtures', 'wan-tiny-bidir');

const noise = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 0.7311 + seed) * 1.3);

describe('bidirectional Wan DiT (tiny, CPU)', () => {
  const dev = new CpuDevice();
  const bundle = buildWanDitBundle(preset.dit);
  const causal = loadReferenceModel(tinyDir, dev, preset.dit, bundle);
  const wan = WanModel.sharing(causal);
  const text = causal.encodeContext(
    Tensor.from(
      dev,
      bf16,
      [16, 32],
      Array.from({ length: 512 }, (_, i) => Math.sin(i * 0.37)),
    ),
  );
  const latent = (F: number, seed = 0, h = 6, w = 8) =>
    Tensor.from(dev, f32, [16, F, h, w], noise(16 * F * h * w, seed));
  const causalOneChunk = (x: Tensor, ts: number[]) => {
    const cache = causal.newCache({ frameTokens: (x.shape[2]! / 2) * (x.shape[3]! / 2) });
    try {
      const flow = causal.forward(x, ts, 0, text, cache);
      const out = flow.toF32();
      flow.dispose();
      return out;
    } finally {
      cache.dispose();
    }
  };
  const bidir = (x: Tensor, t: number | number[]) => {
    const flow = wan.forward(x, t, text);
    const out = flow.toF32();
    flow.dispose();
    return out;
  };
  afterAll(() => {
    wan.dispose();
    text.dispose();
    causal.dispose();
  });

  it('is the causal forward of the whole video as one chunk at frame 0 on an empty cache', () => {
    for (const [F, t] of [
      [6, 937.5],
      [3, 0],
      [1, 500],
    ] as const) {
      const x = latent(F, F);
      const want = causalOneChunk(x, new Array<number>(F).fill(t));
      expect(bidir(x, t), `${F} frames at t=${t}`).toEqual(want);
      expect(want.every(Number.isFinite)).toBe(true);
      x.dispose();
    }
  });

  it('one timestep for the video equals it per frame; per-frame timesteps are the causal ones', () => {
    const x = latent(4, 1);
    expect(bidir(x, 625)).toEqual(bidir(x, [625, 625, 625, 625]));
    const mixed = [1000, 750, 500, 250];
    const got = bidir(x, mixed);
    expect(got).toEqual(causalOneChunk(x, mixed));
    expect(got).not.toEqual(bidir(x, 625));
    x.dispose();
  });

  it('attention is full: an early frame sees later frames (unlike chunk-by-chunk causal)', () => {
    const a = latent(6, 2);
    const b = a.toF32();
    for (let c = 0; c < 16; c++) b.fill(0.25, c * 288 + 3 * 48, (c + 1) * 288); // frames 3..5 of every channel
    const a2 = Tensor.from(dev, f32, [16, 6, 6, 8], b);
    const fa = bidir(a, 700);
    const fb = bidir(a2, 700);
    // the flow of frame 0 (channel 0: elements 0..47) changes though only frames 3..5 did
    expect(fa.slice(0, 48)).not.toEqual(fb.slice(0, 48));
    // while frames 0..2 as their own first chunk do not see frames 3..5
    const head = (t: Tensor) => causalOneChunk(t.narrow(1, 0, 3).contiguous(), [700, 700, 700]);
    expect(head(a)).toEqual(head(a2));
    a.dispose();
    a2.dispose();
  });

  it('the scratch cache is reused and resized: results do not depend on earlier forwards', () => {
    const big = latent(6, 3);
    const small = latent(2, 4);
    const other = latent(2, 5, 4, 6);
    const fresh = WanModel.sharing(causal);
    const wantSmall = bidir(small, 300);
    const wantOther = bidir(other, 300);
    fresh.forward(big, 800, text).dispose();
    const s = fresh.forward(small, 300, text);
    expect(s.toF32()).toEqual(wantSmall);
    s.dispose();
    const o = fresh.forward(other, 300, text); // another frame size: a new scratch
    expect(o.toF32()).toEqual(wantOther);
    o.dispose();
    fresh.dispose(); // shares causal's weights: they stay
    expect(bidir(small, 300)).toEqual(wantSmall);
    for (const t of [big, small, other]) t.dispose();
  });

  it('a KV cache with shareLayers holds one k/v buffer for every block', () => {
    const c = new KvCache(dev, 5, 2, 64, { frameTokens: 12, maxFrames: 3, shareLayers: true });
    expect(c.k).toHaveLength(5);
    expect(new Set(c.k).size).toBe(1);
    expect(new Set(c.v).size).toBe(1);
    expect(c.k[0]).not.toBe(c.v[0]);
    c.dispose();
    const d = new KvCache(dev, 3, 2, 64, { frameTokens: 12, maxFrames: 3 });
    expect(new Set(d.k).size).toBe(3);
    d.dispose();
  });

  it('loads from a checkpoint like the causal model; clear errors for bad input', () => {
    const ck = openCheckpoint(join(tinyDir, 'weights.safetensors'));
    const own = WanModel.load(dev, preset.dit, bundle, canonicalize(ck));
    ck.close();
    const x = latent(3, 6);
    const f = own.forward(x, 420, text);
    expect(f.toF32()).toEqual(bidir(x, 420));
    f.dispose();
    expect(() => own.forward(x, NaN, text)).toThrow(SfcError);
    expect(() => own.forward(x, [1, 2], text)).toThrow(/one timestep per latent frame: 3 frames, 2 timesteps/);
    const odd = Tensor.zeros(dev, f32, [16, 2, 5, 8]);
    expect(() => own.forward(odd, 1, text)).toThrow(/height and width must be even/);
    const wrongC = Tensor.zeros(dev, f32, [8, 2, 6, 8]);
    expect(() => own.forward(wrongC, 1, text)).toThrow(/the latent must be f32 \[16, F, H, W\]/);
    for (const t of [x, odd, wrongC]) t.dispose();
    own.dispose();
  });

  it.skipIf(!existsSync(join(bidirDir, 'bidir.json')))('matches the PyTorch bidirectional reference', () => {
    const r = replayBidirectional(bidirDir, 'bidir', wan);
    expect(r.length).toBeGreaterThanOrEqual(3);
    for (const p of r) expect(p.relErr, `t=${p.timestep}`).toBeLessThan(2e-2);
  });
});
