// The TAEHV decoder (taew2_1 widths) at full size on the GPU against the project's float32 PyTorch
// reference (test/reference/taehv.py, random bf16-representable weights, run here by the test): 21
// latent frames at 60x104 -> 81 video frames at 480x832, relative error <= 2e-2; a streamed decode
// (chunks of 3 latent frames, as the causal pipeline produces them) equals the whole decode; timing
// and peak memory of sfc and of PyTorch (float16 and bfloat16) go to
// $SFC_BENCH_OUT/taehv-decode-<device>.json. The cuBLASLt per-tap path (GPUs other than sm_90a) is
// checked on the first 3 latent frames.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildTaehvKernels } from '../../compiler/bundle.js';
import { f32 } from '../../dsl/dtypes.js';
import { canonicalize, openCheckpoint } from '../../runtime/checkpoint/state-dict.js';
import { Tensor } from '../../runtime/tensor.js';
import { TaehvDecoder } from '../../models/vae/taehv.js';
import { relErr } from '../models/wan-rollout.js';
import { noGpuReason, openDevice } from './gpu.js';

const dir = process.env.SFC_TAEHV_REF_DIR ?? join(tmpdir(), 'sfc-taehv-ref');

describe.skipIf(noGpuReason)('TAEHV decoder on the GPU against the PyTorch reference', () => {
  it('decodes 21 latent frames at 480x832 within 2e-2; streamed equals whole', () => {
    if (!existsSync(join(dir, 'decode.json'))) {
      mkdirSync(dir, { recursive: true });
      execFileSync(
        'python3',
        [
          'test/reference/taehv.py',
          '--preset',
          'taew2_1',
          '--out',
          dir,
          '--frames',
          '21',
          '--height',
          '60',
          '--width',
          '104',
          '--time',
        ],
        { stdio: 'inherit' },
      );
    }
    const dev = openDevice(process.env.SFC_CACHE_DIR);
    const ck = openCheckpoint(join(dir, 'taehv.safetensors'));
    let d: TaehvDecoder;
    try {
      d = TaehvDecoder.load(dev, buildTaehvKernels(), canonicalize(ck));
    } finally {
      ck.close();
    }
    const ref = openCheckpoint(join(dir, 'decode.safetensors'));
    const zt = ref.tensors.get('latent')!;
    const want = new Float32Array(ref.tensors.get('video')!.read().slice().buffer);
    const latent = Tensor.fromRaw(dev, f32, zt.shape, new Float32Array(zt.read().slice().buffer));
    ref.close();
    const meta = JSON.parse(readFileSync(join(dir, 'decode.json'), 'utf8')) as Record<string, unknown>;

    const first = d.decode(latent); // warm-up (kernel loads, cuBLASLt heuristics)
    first.dispose();
    dev.synchronize();
    const before = dev.memoryStats();
    dev.allocator.resetPeak();
    const ms: number[] = [];
    let v = d.decode(latent);
    for (let i = 0; i < 3; i++) {
      v.dispose();
      dev.synchronize();
      const t0 = performance.now();
      v = d.decode(latent);
      dev.synchronize();
      ms.push(performance.now() - t0);
    }
    const peak = dev.memoryStats().peakInUse - before.inUse;
    expect(v.shape).toEqual([3, 81, 480, 832]);
    const got = v.toF32();
    v.dispose();
    const err = relErr(got, want);

    // streamed: chunks of 3 latent frames, as the pipeline decodes them (timed per video)
    const s = d.stream();
    const parts: Float32Array[] = [];
    const counts: number[] = [];
    let streamMs = 0;
    for (let f0 = 0; f0 < 21; f0 += 3) {
      const zc = latent.narrow(1, f0, 3).contiguous();
      dev.synchronize();
      const t0 = performance.now();
      const c = s.decode(zc);
      dev.synchronize();
      streamMs += performance.now() - t0;
      parts.push(c.toF32());
      counts.push(c.shape[1]!);
      c.dispose();
      zc.dispose();
    }
    s.dispose();
    const HW = 480 * 832;
    let maxDiff = 0;
    let t = 0;
    parts.forEach((p, i) => {
      const T = counts[i]!;
      for (let ch = 0; ch < 3; ch++)
        for (let j = 0; j < T * HW; j++)
          maxDiff = Math.max(maxDiff, Math.abs(p[ch * T * HW + j]! - got[(ch * 81 + t) * HW + j]!));
      t += T;
    });
    ms.sort((a, b) => a - b);
    const result = {
      device: dev.info.name,
      commit: process.env.SFC_COMMIT ?? null,
      latentFrames: 21,
      videoFrames: 81,
      height: 480,
      width: 832,
      implicitGemm: d.implicit(64),
      relErr: err,
      streamedMaxAbsDiff: maxDiff,
      streamedFrames: t,
      sfcMs: ms[1],
      sfcMsAll: ms,
      sfcStreamMs: streamMs,
      sfcPeakBytes: peak,
      inUseBefore: before.inUse,
      torch: meta,
    };
    // the path of GPUs without the sm_90a convolution GEMM (cuBLASLt per tap): the first 3 latent
    // frames give the first 9 frames of the video (the decoder is causal)
    const ck2 = openCheckpoint(join(dir, 'taehv.safetensors'));
    const fallback = TaehvDecoder.load(dev, { ...buildTaehvKernels(), convGemms: {} }, canonicalize(ck2));
    ck2.close();
    const z3 = latent.narrow(1, 0, 3).contiguous();
    const v9 = fallback.decode(z3);
    const got9 = v9.toF32();
    const want9 = new Float32Array(3 * 9 * HW);
    for (let ch = 0; ch < 3; ch++) want9.set(want.subarray(ch * 81 * HW, (ch * 81 + 9) * HW), ch * 9 * HW);
    const fallbackErr = relErr(got9, want9);
    console.log(JSON.stringify({ ...result, fallbackRelErr: fallbackErr }));
    if (process.env.SFC_BENCH_OUT)
      writeFileSync(
        join(process.env.SFC_BENCH_OUT, `taehv-decode-${dev.info.name.replace(/\W+/g, '_')}.json`),
        JSON.stringify({ ...result, fallbackRelErr: fallbackErr }, null, 1),
      );
    for (const t of [v9, z3, latent]) t.dispose();
    fallback.dispose();
    d.dispose();
    expect(fallbackErr).toBeLessThan(2e-2);
    expect(err).toBeLessThan(2e-2);
    expect(t).toBe(81);
    expect(maxDiff).toBe(0);
  });
});
