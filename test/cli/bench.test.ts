// `sfc bench e2e` as a smoke run on the CPU (tiny preset): the three outputs are written and hold
// the numbers; PyTorch is reported as not measured on the CPU; mistakes are one-line errors.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { modelUnits } from '../../cli/commands/build.js';
import { sfcCli as sfc } from '../helpers.js';

describe('sfc bench', () => {
  it('e2e on the CPU with the tiny model writes JSON, Markdown and SVG', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfc-bench-'));
    process.env.SFC_CACHE_DIR = join(dir, 'cache');
    const r = await sfc('bench', 'e2e', '--model', 'tiny', '--device', 'cpu', '--num-frames', '3', '--out', dir);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/PyTorch side not measured: the device is the CPU/);
    const j = JSON.parse(readFileSync(join(dir, 'e2e-cpu.json'), 'utf8')) as {
      command: string;
      commit: string;
      sfc: { frames: number; chunks: unknown[]; fps: number; firstFrameMs: number };
      torch: unknown;
    };
    expect(j.command).toMatch(/^sfc bench e2e --model tiny --num-frames 3/);
    expect(j.sfc.frames).toBe(9);
    expect(j.sfc.chunks).toHaveLength(1);
    expect(j.sfc.fps).toBeGreaterThan(0);
    expect(j.torch).toBeNull();
    expect(readFileSync(join(dir, 'e2e-cpu.md'), 'utf8')).toMatch(/\| frames per second \| [\d.]+ \| not measured \|/);
    expect(readFileSync(join(dir, 'e2e-cpu.svg'), 'utf8')).toMatch(/^<svg/);
  }, 120_000);

  it('rejects bad sizes and a missing GPU for kernels with one-line errors', async () => {
    expect((await sfc('bench', 'e2e', '--model', 'tiny', '--device', 'cpu', '--num-frames', '4')).err).toMatch(
      /--num-frames must be a multiple of 3, got 4/,
    );
    expect((await sfc('bench', 'kernels', '--only', 'fft')).err).toMatch(/--only takes gemm, attention, memory/);
  });
});

describe('sfc build --model', () => {
  it('lists every CUDA source a preset runs; templates only for their own architecture', () => {
    const units = modelUnits('tiny');
    const templates = units.filter((u) => u.archs);
    expect(units.length).toBeGreaterThan(100);
    expect(new Set(units.map((u) => u.source)).size).toBe(units.length);
    // sfc_gemm_sm90_* for sm_90a, sfc_gemm_sm80_* / sfc_gemm_sm89_* (mma.sync) for sm_80 / sm_89
    const archOf = (name: string) => ({ '80': 'sm_80', '89': 'sm_89', '90': 'sm_90a' })[/_sm(\d\d)_/.exec(name)![1]!];
    // the sm_80 attention serves sm_89 too (there is no sm_89 instantiation of it)
    const archsOf = (name: string) => (name.startsWith('sfc_attn_fwd_sm80') ? ['sm_80', 'sm_89'] : [archOf(name)]);
    expect(templates.map((u) => u.archs)).toEqual(templates.map((u) => archsOf(u.name)));
    expect(templates.some((u) => u.name.startsWith('sfc_attn_fwd_sm80'))).toBe(true);
    expect(templates.some((u) => u.name.startsWith('sfc_gemm_sm80_'))).toBe(true);
    expect(templates.some((u) => u.name.startsWith('sfc_gemm_sm89_'))).toBe(true);
    expect(templates.some((u) => u.name.startsWith('sfc_attn_fwd_sm90'))).toBe(true);
    expect(templates.some((u) => u.name.includes('_conv'))).toBe(true);
    expect(units.some((u) => u.name.startsWith('normActPad'))).toBe(true);
  }, 120_000);
});
