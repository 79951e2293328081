// The causal Wan DiT on the CPU against golden rollouts of the project's PyTorch reference
// (test/reference/wan_dit.py, tiny preset, written on the GPU machine): a 2-chunk rollout with the
// full cache and a 4-chunk one with a 6-frame local window and a 1-frame sink (the cache rolls from
// the third chunk on). Every pass's flow within 2e-2 relative error.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildWanDitBundle } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/presets.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { KvCache } from '../../models/wan/model.js';
import { loadReferenceModel, replayRollout } from './wan-rollout.js';

const dir = join(import.meta.dirname, '..', 'fixtures', 'wan-tiny');
const preset = loadModelPreset('tiny');

describe('causal Wan DiT (tiny) against the PyTorch reference', () => {
  const bundle = buildWanDitBundle(preset.dit);
  const model = loadReferenceModel(dir, new CpuDevice(), preset.dit, bundle);

  it('full KV cache, 2 chunks x (4 denoising passes + cache pass)', () => {
    const r = replayRollout(dir, 'global', model);
    expect(r).toHaveLength(10);
    for (const p of r) expect(p.relErr, `chunk ${p.chunk} t=${p.timestep}`).toBeLessThan(2e-2);
  });

  it('local window 6 + sink 1, 4 chunks: the cache rolls', () => {
    const r = replayRollout(dir, 'rolling', model);
    expect(r).toHaveLength(20);
    for (const p of r) expect(p.relErr, `chunk ${p.chunk} t=${p.timestep}`).toBeLessThan(2e-2);
  });
});

describe('KV cache placement (the reference index arithmetic)', () => {
  const dev = new CpuDevice();
  it('writes chunks at their positions, re-writes a chunk in place, rolls after the sink', () => {
    const c = new KvCache(dev, 1, 1, 64, { frameTokens: 10, localAttnSize: 6, sinkSize: 1 });
    const step = (start: number) => {
      const p = c.place(start, 30);
      c.globalEnd = start + 30;
      c.localEnd = p.localEnd;
      return p;
    };
    expect(step(0)).toEqual({ localStart: 0, localEnd: 30, evict: 0, roll: 0 });
    expect(step(0)).toEqual({ localStart: 0, localEnd: 30, evict: 0, roll: 0 }); // the next denoising pass
    expect(step(30)).toEqual({ localStart: 30, localEnd: 60, evict: 0, roll: 0 });
    expect(step(60)).toEqual({ localStart: 30, localEnd: 60, evict: 30, roll: 20 });
    expect(step(60)).toEqual({ localStart: 30, localEnd: 60, evict: 0, roll: 0 });
  });

  it('without a window, a chunk past the capacity is a clear error', () => {
    const c = new KvCache(dev, 1, 1, 64, { frameTokens: 10, maxFrames: 3 });
    expect(() => c.place(30, 30)).toThrow(/holds 3 frames; frame 5 does not fit \(set local_attn_size/);
  });
});
