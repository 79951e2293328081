// Joins benchmark JSON under bench/results/ into charts (SVG, same folder), on any machine:
//   node dist/bench/report.js
// GEMM: kernels-gemm-<device>.json (sfc, cuBLASLt) with gemm-torch-<device>.json (PyTorch, same session).
// Attention: kernels-attention-<device>.json with attention-torch-<device>.json (SDPA, same session).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../dsl/paths.js';
import { atomicWrite } from '../runtime/kernel-cache.js';
import { barChartSvg } from './chart.js';

interface GemmRow {
  input: string;
  M: number;
  N: number;
  K: number;
  sfcTflops: number;
  cublasLtTflops: number;
}
interface TorchRow {
  input: string;
  M: number;
  N: number;
  K: number;
  tflops?: number;
}

/** The result files `<prefix>-<device>.json` in dir with rows (`results`), parsed, with their device. */
function resultFiles<T extends { results?: unknown }>(dir: string, prefix: string): { device: string; data: T }[] {
  return readdirSync(dir)
    .filter((n) => n.startsWith(`${prefix}-`) && n.endsWith('.json'))
    .map((n) => ({
      device: n.slice(prefix.length + 1, -'.json'.length),
      data: JSON.parse(readFileSync(join(dir, n), 'utf8')) as T,
    }))
    .filter((f) => Array.isArray(f.data.results)); // e.g. kernels-gemm-mma-*.json: its own rows, no chart here
}

export function gemmCharts(dir: string): string[] {
  const written: string[] = [];
  for (const { device, data: ours } of resultFiles<{ commit: string; results: GemmRow[] }>(dir, 'kernels-gemm')) {
    const torchFile = join(dir, `gemm-torch-${device}.json`);
    const torch = existsSync(torchFile)
      ? (JSON.parse(readFileSync(torchFile, 'utf8')) as { results: TorchRow[] }).results
      : [];
    for (const input of ['bf16', 'e4m3']) {
      const rows = ours.results.filter((r) => r.input === input);
      if (rows.length === 0) continue;
      const torchOf = (r: GemmRow) =>
        torch.find((t) => t.input === input && t.M === r.M && t.N === r.N && t.K === r.K)?.tflops ?? NaN;
      const svg = barChartSvg({
        title: `${input} GEMM, M = ${rows[0]!.M} (${device.replace(/_/g, ' ')}, commit ${ours.commit})`,
        unit: 'TFLOP/s',
        groups: rows.map((r) => `N ${r.N}, K ${r.K}`),
        series: [
          { name: 'sfc (generated)', color: '#2b6cb0', values: rows.map((r) => r.sfcTflops) },
          { name: 'cuBLASLt', color: '#a0aec0', values: rows.map((r) => r.cublasLtTflops) },
          {
            name: input === 'bf16' ? 'PyTorch F.linear' : 'torch._scaled_mm',
            color: '#ed8936',
            values: rows.map(torchOf),
          },
        ],
      });
      const path = join(dir, `gemm-${input}-${device}.svg`);
      atomicWrite(path, svg);
      written.push(path);
    }
  }
  return written;
}

interface AttentionRow {
  Lq: number;
  Lkv: number;
  tflops: number;
}
interface SdpaRow {
  backend: string;
  Lkv: number;
  tflops?: number;
}

export function attentionCharts(dir: string): string[] {
  const written: string[] = [];
  for (const { device, data: ours } of resultFiles<{ commit: string; results: AttentionRow[] }>(
    dir,
    'kernels-attention',
  )) {
    const torchFile = join(dir, `attention-torch-${device}.json`);
    const torch = existsSync(torchFile)
      ? (JSON.parse(readFileSync(torchFile, 'utf8')) as { results: SdpaRow[] }).results
      : [];
    const sdpa = (backend: string) =>
      ours.results.map((r) => torch.find((t) => t.backend === backend && t.Lkv === r.Lkv)?.tflops ?? NaN);
    const svg = barChartSvg({
      title: `bf16 attention, 4680 queries, 12 x 128 (${device.replace(/_/g, ' ')}, commit ${ours.commit})`,
      unit: 'TFLOP/s',
      groups: ours.results.map((r) => `Lkv ${r.Lkv}`),
      series: [
        { name: 'sfc (generated)', color: '#2b6cb0', values: ours.results.map((r) => r.tflops) },
        { name: 'SDPA default', color: '#ed8936', values: sdpa('default') },
        { name: 'SDPA flash (FA2)', color: '#a0aec0', values: sdpa('flash') },
      ],
    });
    const path = join(dir, `attention-${device}.svg`);
    atomicWrite(path, svg);
    written.push(path);
  }
  return written;
}

interface Fp8AttentionRow {
  Lkv: number;
  bf16: { tflops: number };
  e4m3: { tflops: number };
}

/** attention-fp8-<device>.json (FP8 and bf16 sfc, SDPA bf16 of the same session) as a bar chart. */
export function fp8AttentionCharts(dir: string): string[] {
  const written: string[] = [];
  for (const { device, data: r } of resultFiles<{
    commit: string;
    results: Fp8AttentionRow[];
    sdpa?: { results: SdpaRow[] };
  }>(dir, 'attention-fp8')) {
    const sdpa = r.results.map(
      (x) => r.sdpa?.results.find((t) => t.backend === 'default' && t.Lkv === x.Lkv)?.tflops ?? NaN,
    );
    const svg = barChartSvg({
      title: `FP8 attention, 4680 queries, 12 x 128 (${device.replace(/_/g, ' ')}, commit ${r.commit})`,
      unit: 'TFLOP/s',
      groups: r.results.map((x) => `Lkv ${x.Lkv}`),
      series: [
        { name: 'sfc FP8 e4m3', color: '#2b6cb0', values: r.results.map((x) => x.e4m3.tflops) },
        { name: 'sfc bf16', color: '#90cdf4', values: r.results.map((x) => x.bf16.tflops) },
        { name: 'SDPA default (bf16; no FP8 SDPA)', color: '#ed8936', values: sdpa },
      ],
    });
    const path = join(dir, `attention-fp8-${device}.svg`);
    atomicWrite(path, svg);
    written.push(path);
  }
  return written;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = process.env.SFC_BENCH_OUT ?? join(packageRoot(import.meta.url), 'bench', 'results');
  for (const p of [...gemmCharts(dir), ...attentionCharts(dir), ...fp8AttentionCharts(dir)]) console.log(`wrote ${p}`);
}
