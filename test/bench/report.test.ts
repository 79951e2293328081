// The report's charts from result files: GEMM (sfc, cuBLASLt, PyTorch joined by shape), bf16 and FP8
// attention (SDPA of the same session), and result files without rows of their kind left alone.
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { attentionCharts, fp8AttentionCharts, gemmCharts } from '../../bench/report.js';

describe('bench report', () => {
  it('draws GEMM, attention and FP8 attention charts, skipping files of other shapes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfc-report-'));
    const put = (name: string, v: unknown) => writeFileSync(join(dir, name), JSON.stringify(v));
    put('kernels-gemm-GPU_X.json', {
      commit: 'abc1234',
      results: [
        { input: 'bf16', M: 4680, N: 1536, K: 1536, sfcTflops: 600, cublasLtTflops: 650 },
        { input: 'e4m3', M: 4680, N: 1536, K: 1536, sfcTflops: 900, cublasLtTflops: 950 },
      ],
    });
    put('gemm-torch-GPU_X.json', { results: [{ input: 'bf16', M: 4680, N: 1536, K: 1536, tflops: 640 }] });
    put('kernels-gemm-mma-GPU_X.json', { commit: 'abc1234', rows: [] }); // no `results`: not a chart here
    put('kernels-attention-GPU_X.json', { commit: 'abc1234', results: [{ Lq: 4680, Lkv: 4680, tflops: 530 }] });
    put('attention-torch-GPU_X.json', { results: [{ backend: 'default', Lkv: 4680, tflops: 507 }] });
    put('attention-fp8-GPU_X.json', {
      commit: 'abc1234',
      results: [{ Lkv: 32760, bf16: { tflops: 534 }, e4m3: { tflops: 797 } }],
      sdpa: { results: [{ backend: 'default', Lkv: 32760, tflops: 507 }] },
    });
    const written = [...gemmCharts(dir), ...attentionCharts(dir), ...fp8AttentionCharts(dir)].map((p) =>
      p.slice(dir.length + 1),
    );
    expect(written.sort()).toEqual([
      'attention-GPU_X.svg',
      'attention-fp8-GPU_X.svg',
      'gemm-bf16-GPU_X.svg',
      'gemm-e4m3-GPU_X.svg',
    ]);
    const fp8 = readFileSync(join(dir, 'attention-fp8-GPU_X.svg'), 'utf8');
    expect(fp8).toContain('FP8 attention, 4680 queries');
    expect(fp8).toContain('sfc FP8 e4m3');
    expect(fp8).toContain('SDPA default');
    expect(readFileSync(join(dir, 'gemm-bf16-GPU_X.svg'), 'utf8')).toContain('PyTorch F.linear');
    expect(readdirSync(dir).filter((n) => n.startsWith('gemm-') && n.includes('mma'))).toEqual([]);
  });
});
