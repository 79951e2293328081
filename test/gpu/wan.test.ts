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
import type { CudaDevice } from '../../runtime/cuda.js';
import { loadReferenceModel, replayRollout, type PassResult } from '../models/wan-rollout.js';
import { noGpuReason, openDevice } from './gpu.js';

const dir = process.env.SFC_WAN_REF_DIR ?? join(tmpdir(), 'sfc-wan-1.3b-ref');

function reference(name: string, args: string[], preset = '1.3b', out = dir): void {
  if (existsSync(join(out, `${name}.json`))) return;
  mkdirSync(out, { recursive: true });
  execFileSync('python3', ['test/reference/wan_dit.py', '--preset', preset, '--out', out, '--name', name, ...args], {
    stdio: 'inherit',
  });
}

describe.skipIf(noGpuReason)('causal Wan DiT 1.3B on the GPU against the PyTorch reference', () => {
  const results: Record<string, PassResult[]> = {};
  let model: CausalWanModel | undefined;
  let deviceName = '';
  let cuda: CudaDevice | undefined;
  const device = (): CudaDevice => {
    cuda ??= openDevice(process.env.SFC_CACHE_DIR);
    deviceName = cuda.info.name;
    return cuda;
  };
  const get = (): CausalWanModel => {
    if (model) return model;
    const dev = device();
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

  it('the 14B preset builds, and one 14B block (dim 5120, 40 heads, FFN 13824) matches over 2 chunks', () => {
    model?.dispose();
    model = undefined;
    const dir14 = `${dir}-14b-1`;
    reference('one-block', ['--chunks', '2'], '14b-1', dir14);
    const preset = loadModelPreset('Wan2.1-T2V-14B');
    const whole = buildWanDitBundle(preset.dit);
    expect(Object.keys(whole.plans)).toContain('crossOutFfn');
    const shape = { ...preset.dit, num_layers: 1 };
    const m = loadReferenceModel(dir14, device(), shape, whole);
    try {
      const r = replayRollout(dir14, 'one-block', m, (p) =>
        console.log(
          `14B block chunk ${p.chunk} t=${p.timestep.toFixed(1)}: rel err ${p.relErr.toExponential(2)}, ${p.ms.toFixed(1)} ms`,
        ),
      );
      results.block14b = r;
      expect(r).toHaveLength(10);
      for (const p of r) expect(p.relErr, `chunk ${p.chunk} t=${p.timestep}`).toBeLessThan(2e-2);
    } finally {
      m.dispose();
    }
  });
});
