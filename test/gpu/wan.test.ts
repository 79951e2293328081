// The causal Wan DiT at full 1.3B size on the GPU against the project's float32 PyTorch reference
// (test/reference/wan_dit.py, random bf16-representable weights, run here by the test): 7 chunks x
// (4 denoising passes + cache pass) with the full KV cache, and 12 chunks with a 6-frame local
// window + 1 sink frame (rolling cache). Every pass's flow within 2e-2 relative error. Per-pass
// errors and wall times go to $SFC_BENCH_OUT/wan-dit-check-<device>.json.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildWanDitBundle } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/presets.js';
import type { CausalWanModel } from '../../models/wan/model.js';
import { loadReferenceModel, replayRollout, type PassResult } from '../models/wan-rollout.js';
import { noGpuReason, openDevice } from './gpu.js';

const dir = process.env.SFC_WAN_REF_DIR ?? join(tmpdir(), 'sfc-wan-1.3b-ref');

function reference(name: string, args: string[]): void {
  if (existsSync(join(dir, `${name}.json`))) return;
  mkdirSync(dir, { recursive: true });
  execFileSync('python3', ['test/reference/wan_dit.py', '--preset', '1.3b', '--out', dir, '--name', name, ...args], {
    stdio: 'inherit',
  });
}

describe.skipIf(noGpuReason)('causal Wan DiT 1.3B on the GPU against the PyTorch reference', () => {
  const results: Record<string, PassResult[]> = {};
  let model: CausalWanModel | undefined;
  let deviceName = '';
  const get = (): CausalWanModel => {
    if (model) return model;
    const dev = openDevice(process.env.SFC_CACHE_DIR);
    deviceName = dev.info.name;
    const preset = loadModelPreset('Wan2.1-T2V-1.3B');
    model = loadReferenceModel(dir, dev, preset.dit, buildWanDitBundle(preset.dit));
    return model;
  };
  afterAll(() => {
    model?.dispose();
    const out = process.env.SFC_BENCH_OUT;
    if (out && Object.keys(results).length) {
      const file = join(out, `wan-dit-check-${deviceName.replace(/\W+/g, '_')}.json`);
      writeFileSync(
        file,
        JSON.stringify({ device: deviceName, commit: process.env.SFC_COMMIT ?? null, results }, null, 1),
      );
    }
  });

  it('full KV cache: 7 chunks x (4 denoising passes + cache pass)', () => {
    reference('global', ['--chunks', '7']);
    const r = replayRollout(dir, 'global', get(), (p) =>
      console.log(
        `global chunk ${p.chunk} t=${p.timestep.toFixed(1)}: rel err ${p.relErr.toExponential(2)}, ${p.ms.toFixed(1)} ms`,
      ),
    );
    results.global = r;
    expect(r).toHaveLength(35);
    for (const p of r) expect(p.relErr, `chunk ${p.chunk} t=${p.timestep}`).toBeLessThan(2e-2);
  });

  it('local window 6 + sink 1: 12 chunks on a rolling cache', () => {
    reference('rolling', ['--chunks', '12', '--local-attn-size', '6', '--sink-size', '1']);
    const r = replayRollout(dir, 'rolling', get(), (p) =>
      console.log(
        `rolling chunk ${p.chunk} t=${p.timestep.toFixed(1)}: rel err ${p.relErr.toExponential(2)}, ${p.ms.toFixed(1)} ms`,
      ),
    );
    results.rolling = r;
    expect(r).toHaveLength(60);
    for (const p of r) expect(p.relErr, `chunk ${p.chunk} t=${p.timestep}`).toBeLessThan(2e-2);
  });
});
