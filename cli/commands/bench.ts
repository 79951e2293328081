// `sfc bench e2e` and `sfc bench kernels`: where sfc stands, with PyTorch measured in the same run on
// the same GPU when python3 with torch is present (bench/reference/*.py). Each writes JSON (device,
// driver, commit, command, every number), a Markdown table and an SVG chart under --out
// (default bench/results/).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { barChartSvg } from '../../bench/chart.js';
import { stamp } from '../../bench/harness.js';
import { benchE2e, type E2eResult } from '../../bench/e2e/bench.js';
import { benchAttention } from '../../bench/kernels/attention.js';
import { benchGemm } from '../../bench/kernels/gemm.js';
import { benchMemory } from '../../bench/kernels/memory.js';
import { attentionCharts, gemmCharts } from '../../bench/report.js';
import { buildWanVaeKernels, type WanPrecision } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/index.js';
import { SfcError } from '../../dsl/errors.js';
import { packageRoot } from '../../dsl/paths.js';
import { type VaeKernels } from '../../models/vae/decoder.js';
import { vaeKernelNeeds } from '../../models/vae/encoder.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { CudaDevice } from '../../runtime/cuda.js';
import type { Device } from '../../runtime/device.js';
import { KernelCache, atomicWrite } from '../../runtime/kernel-cache.js';
import { cudaUnavailableReason } from '../../runtime/native/load.js';
import { cachedBundle, cachedDitBundle } from '../bundles.js';
import type { Io } from '../main.js';
import { version } from '../version.js';

interface E2eCliOptions {
  model: string;
  numFrames: string;
  height?: string;
  width?: string;
  window: string;
  sink: string;
  out?: string;
  torch: string;
  device?: string;
  precision?: string;
}

const root = () => packageRoot(import.meta.url);

/** The harness's stamp plus the sfc version. */
function stampOf(dev: Device, command: string): Record<string, unknown> {
  return { ...stamp(dev, command), sfc: version() };
}

const slug = (s: string) => s.replace(/\W+/g, '_');

/** python3 with torch and a CUDA device, or why not */
function torchUnavailable(): string | undefined {
  const r = spawnSync('python3', ['-c', 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 3)'], {
    encoding: 'utf8',
  });
  if (r.error) return `python3 not found (${r.error.message})`;
  if (r.status === 3) return 'PyTorch has no CUDA device here';
  if (r.status !== 0) return 'python3 cannot import torch';
  return undefined;
}

function runTorch(script: string, args: string[], io: Io): Record<string, unknown> | undefined {
  const r = spawnSync('python3', [join(root(), 'bench', 'reference', script), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.status !== 0) {
    io.stderr(
      `sfc: the PyTorch reference ${script} failed:\n${(r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n')}\n`,
    );
    return undefined;
  }
  return JSON.parse(readFileSync(args[0]!, 'utf8')) as Record<string, unknown>;
}

function openBenchDevice(spec: string | undefined): Device {
  if (spec === 'cpu') return new CpuDevice();
  const why = cudaUnavailableReason();
  if (why)
    throw new SfcError(`no CUDA device: ${why}`, { hint: 'benchmarks need a GPU (or --device cpu for a smoke run)' });
  const m = /^cuda(?::(\d+))?$/.exec(spec ?? 'cuda');
  if (!m) throw new SfcError(`--device takes cpu, cuda or cuda:N, got '${spec}'`, { exitCode: 2 });
  return CudaDevice.open(Number(m[1] ?? 0), new KernelCache());
}

const ms = (x: number) => x.toFixed(0);

/** The Markdown table of an e2e run (sfc and, when measured, PyTorch side by side). */
export function e2eMarkdown(
  sfc: E2eResult,
  torch: Record<string, unknown> | undefined,
  stamp: Record<string, unknown>,
): string {
  const t = torch as (Partial<E2eResult> & { implementation?: string }) | undefined;
  const row = (name: string, f: (r: Partial<E2eResult>) => string) =>
    `| ${name} | ${f(sfc)} | ${t ? f(t) : 'not measured'} |`;
  return [
    `# sfc bench e2e: ${sfc.frames} frames (${sfc.latentFrames} latent) at ${sfc.width}x${sfc.height}`,
    '',
    `${String(stamp.device)}, sfc ${String(stamp.commit)}, ${String(stamp.date)}. Command: \`${String(stamp.command)}\`.`,
    t ? `PyTorch: ${t.implementation ?? 'reference'}.` : 'PyTorch: not measured (no python3 with torch and CUDA here).',
    '',
    '| | sfc | PyTorch |',
    '| --- | --- | --- |',
    row('DiT, all chunks (ms)', (r) => ms(r.ditMs ?? NaN)),
    row('VAE decode + RGB (ms)', (r) => ms(r.decodeMs ?? NaN)),
    row('first frames on the host (ms)', (r) => ms(r.firstFrameMs ?? NaN)),
    row('total (ms)', (r) => ms(r.totalMs ?? NaN)),
    row('frames per second', (r) => (r.fps ?? NaN).toFixed(1)),
    row('peak device memory (GiB)', (r) => ((r.peakBytes ?? NaN) / 2 ** 30).toFixed(2)),
    '',
    `Per chunk (DiT ms / decode ms), sfc: ${sfc.chunks.map((c) => `${ms(c.ditMs)}/${ms(c.decodeMs)}`).join(', ')}`,
    t?.chunks ? `PyTorch: ${t.chunks.map((c) => `${ms(c.ditMs)}/${ms(c.decodeMs)}`).join(', ')}` : '',
    `sfc setup ${ms(sfc.setupMs)} ms (random weights on the device), warm-up chunk ${ms(sfc.warmupMs)} ms (compiles, tuning).`,
    '',
  ].join('\n');
}

export function benchE2eCommand(o: E2eCliOptions, io: Io): string[] {
  const preset = loadModelPreset(o.model);
  const num = (v: string | undefined, flag: string, def: number) => {
    const n = v === undefined ? def : Number(v);
    if (!Number.isInteger(n) || n < -1) throw new SfcError(`${flag} takes a whole number, got '${v}'`, { exitCode: 2 });
    return n;
  };
  const numFrames = num(o.numFrames, '--num-frames', 21);
  if (numFrames < 3 || numFrames % 3)
    throw new SfcError(`--num-frames must be a multiple of 3, got ${numFrames}`, { exitCode: 2 });
  const height = num(o.height, '--height', preset.inference?.height ?? 480);
  const width = num(o.width, '--width', preset.inference?.width ?? 832);
  if (height % 16 || width % 16)
    throw new SfcError(`height and width must be multiples of 16, got ${height} x ${width}`, { exitCode: 2 });
  const dev = openBenchDevice(o.device);
  const out = resolve(o.out ?? join(root(), 'bench', 'results'));
  mkdirSync(out, { recursive: true });
  const precision = (o.precision ?? 'bf16') as WanPrecision;
  if (precision !== 'bf16' && precision !== 'fp8')
    throw new SfcError(`--precision takes bf16 or fp8, got '${o.precision}'`, { exitCode: 2 });
  const command = `sfc bench e2e --model ${o.model} --num-frames ${numFrames} --height ${height} --width ${width} --window ${o.window} --sink ${o.sink}${precision === 'bf16' ? '' : ` --precision ${precision}`}`;
  const dit = cachedDitBundle(preset.dit, precision);
  const vaeKernels = cachedBundle<VaeKernels>('wan-vae', preset.vae, () =>
    buildWanVaeKernels(vaeKernelNeeds(preset.vae)),
  );
  io.stderr(`sfc: e2e benchmark, ${preset.name}, ${numFrames} latent frames at ${width}x${height} on ${dev.name}\n`);
  const sfc = benchE2e(dev, {
    dit: preset.dit,
    vae: preset.vae,
    ditBundle: dit,
    vaeKernels,
    numFrames,
    height,
    width,
    localAttnSize: num(o.window, '--window', -1),
    sinkSize: num(o.sink, '--sink', 0),
    precision,
  });
  const stamp = stampOf(dev, command);
  const name = `e2e-${precision === 'bf16' ? '' : `${precision}-`}${slug(String(stamp.device))}`;
  let torch: Record<string, unknown> | undefined;
  const why =
    o.torch === 'off' ? 'turned off' : dev instanceof CudaDevice ? torchUnavailable() : 'the device is the CPU';
  if (why && o.torch === 'on') throw new SfcError(`--torch on, but PyTorch cannot run: ${why}`);
  if (why) io.stderr(`sfc: PyTorch side not measured: ${why}\n`);
  else if (preset.name !== 'Wan2.1-T2V-1.3B')
    io.stderr('sfc: PyTorch side is only written for Wan2.1-T2V-1.3B; not measured\n');
  else {
    io.stderr('sfc: measuring the PyTorch reference (bench/reference/e2e.py)...\n');
    torch = runTorch(
      'e2e.py',
      [
        join(out, `${name}-torch.json`),
        '--num-frames',
        String(numFrames),
        '--height',
        String(height),
        '--width',
        String(width),
        '--window',
        o.window,
        '--sink',
        o.sink,
      ],
      io,
    );
  }
  const json = join(out, `${name}.json`);
  atomicWrite(json, `${JSON.stringify({ ...stamp, sfc, torch: torch ?? null }, null, 1)}\n`);
  const md = join(out, `${name}.md`);
  atomicWrite(md, e2eMarkdown(sfc, torch, stamp));
  const svg = join(out, `${name}.svg`);
  const tc = (torch as Partial<E2eResult> | undefined)?.chunks;
  atomicWrite(
    svg,
    barChartSvg({
      title: `End to end, ${sfc.frames} frames at ${width}x${height}, ${String(stamp.device)}: DiT + decode per chunk`,
      unit: 'ms',
      groups: sfc.chunks.map((c) => `chunk ${c.index}`),
      series: [
        { name: 'sfc', color: '#2b7bb9', values: sfc.chunks.map((c) => c.ditMs + c.decodeMs) },
        ...(tc
          ? [
              {
                name: 'PyTorch',
                color: '#e07b39',
                values: sfc.chunks.map((_, i) => (tc[i] ? tc[i]!.ditMs + tc[i]!.decodeMs : NaN)),
              },
            ]
          : []),
      ],
    }),
  );
  io.stdout(readFileSync(md, 'utf8'));
  for (const f of [json, md, svg]) io.stdout(`${f}\n`);
  return [json, md, svg];
}

interface KernelCliOptions {
  only: string;
  out?: string;
  torch: string;
}

/** `sfc bench kernels`: the GEMM, attention and memory-bound kernel benchmarks on the model's shapes. */
export function benchKernelsCommand(o: KernelCliOptions, io: Io): string[] {
  const which = o.only.split(',').map((s) => s.trim());
  for (const w of which)
    if (!['gemm', 'attention', 'memory'].includes(w))
      throw new SfcError(`--only takes gemm, attention, memory (comma-separated), got '${w}'`, { exitCode: 2 });
  const dev = openBenchDevice('cuda') as CudaDevice;
  const out = resolve(o.out ?? join(root(), 'bench', 'results'));
  mkdirSync(out, { recursive: true });
  process.env.SFC_BENCH_OUT = out;
  const stamp = stampOf(dev, `sfc bench kernels --only ${which.join(',')}`);
  const why = o.torch === 'off' ? 'turned off' : torchUnavailable();
  if (why && o.torch === 'on') throw new SfcError(`--torch on, but PyTorch cannot run: ${why}`);
  const written: string[] = [];
  const fns = { gemm: benchGemm, attention: benchAttention, memory: benchMemory } as const;
  for (const w of which as (keyof typeof fns)[]) {
    io.stderr(`sfc: ${w} benchmark on ${dev.info.name}\n`);
    const r = fns[w](dev);
    const file = join(out, `kernels-${w}-${slug(dev.info.name)}.json`);
    atomicWrite(file, `${JSON.stringify({ ...stamp, ...r }, null, 2)}\n`);
    written.push(file);
    if (!why) {
      const t = join(out, `${w}-torch-${slug(dev.info.name)}.json`);
      if (runTorch(`${w}.py`, [t], io)) written.push(t);
    }
  }
  if (why) io.stderr(`sfc: PyTorch side not measured: ${why}\n`);
  written.push(...gemmCharts(out), ...attentionCharts(out));
  for (const f of written) io.stdout(`${f}\n`);
  return written;
}

export function registerBench(program: Command, io: Io): void {
  const bench = program.command('bench').description('kernel and end-to-end benchmarks, side by side with PyTorch');
  bench
    .command('e2e')
    .description(
      'the workload of record: text context -> DiT chunks -> VAE -> RGB frames, per-chunk times, fps, memory',
    )
    .option('--model <preset>', 'model preset', 'Wan2.1-T2V-1.3B')
    .option('--num-frames <n>', 'latent frames (a multiple of 3)', '21')
    .option('--height <px>', "video height (default 480, or the preset's inference size)")
    .option('--width <px>', 'video width (default 832)')
    .option('--window <n>', 'local attention window in latent frames (-1: none)', '-1')
    .option('--sink <n>', 'sink frames of the rolling cache', '0')
    .option('--torch <mode>', 'PyTorch side: auto (when python3 + torch + CUDA are present), on, off', 'auto')
    .option('--device <d>', 'cuda, cuda:N, or cpu (a smoke run)')
    .option('--precision <p>', "the DiT's precision: bf16 or fp8 (PyTorch's side stays bf16)", 'bf16')
    .option('-o, --out <dir>', 'output directory (default bench/results)')
    .action((opts: E2eCliOptions) => {
      benchE2eCommand(opts, io);
    });
  bench
    .command('kernels')
    .description("GEMM (cuBLASLt side by side), flash attention and memory-bound kernels on the model's shapes")
    .option('--only <list>', 'gemm, attention, memory (comma-separated)', 'gemm,attention,memory')
    .option('--torch <mode>', 'PyTorch side: auto, on, off', 'auto')
    .option('-o, --out <dir>', 'output directory (default bench/results)')
    .action((opts: KernelCliOptions) => {
      benchKernelsCommand(opts, io);
    });
}
