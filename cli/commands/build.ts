// `sfc build`: compiles every DSL kernel of the project (models/kernels/*.ts, plus --file sources)
// for sm_80, sm_89 and sm_90a into the kernel cache, with nvcc when present (else NVRTC), and prints
// registers, shared memory, stack and spills per kernel. `--dump ir,js,cuda` prints the stages.
import { readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { compileFiles } from '../../compiler/compile.js';
import { DslProgram } from '../../compiler/frontend.js';
import { lowerLayer } from '../../compiler/layer/frontend.js';
import { fuse } from '../../compiler/layer/fuse.js';
import { graphToDot } from '../../compiler/layer/graph.js';
import {
  BUILD_ARCHS,
  compileCudaAsync,
  findNvcc,
  formatReportTable,
  type Arch,
  type KernelReport,
} from '../../compiler/nvcc.js';
import type { KernelArtifact, ModelBundle } from '../../dsl/artifact.js';
import type { PlanStep } from '../../dsl/plan.js';
import { buildTaehvKernels, buildUmt5Bundle, buildWanDitBundle, buildWanVaeKernels } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/index.js';
import { type VaeKernels } from '../../models/vae/decoder.js';
import { vaeKernelNeeds } from '../../models/vae/encoder.js';
import type { TaehvKernels } from '../../models/vae/taehv.js';
import type { Umt5Bundle } from '../../models/text/umt5.js';
import { cachedBundle } from '../bundles.js';
import { SfcError } from '../../dsl/errors.js';
import { packageRoot } from '../../dsl/paths.js';
import { kernelCompileOptions } from '../../runtime/cuda.js';
import { KernelCache, keyOf } from '../../runtime/kernel-cache.js';
import { loadNative } from '../../runtime/native/load.js';
import { collect } from './config.js';
import type { Io } from '../main.js';

export function projectKernelFiles(): string[] {
  const dir = join(packageRoot(import.meta.url), 'models', 'kernels');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .sort()
    .map((f) => join(dir, f));
}

interface BuildOptions {
  model?: string;
  graph?: string;
  arch: string;
  file: string[];
  kernel: string[];
  dump?: string;
  jobs: string;
  progress: boolean;
}

/** One CUDA source to compile: a kernel variant or a template instantiation (for its own architecture). */
interface Unit {
  name: string;
  source: string;
  entry: string;
  sharedBytes: number;
  archs?: Arch[];
}

/** Every CUDA source a model preset runs: its bundles' plans, kernels and template instantiations. */
export function modelUnits(presetName: string): Unit[] {
  const preset = loadModelPreset(presetName);
  const dit = cachedBundle<ModelBundle>('wan-dit', preset.dit, () => buildWanDitBundle(preset.dit));
  const vae = cachedBundle<VaeKernels>('wan-vae', preset.vae, () => buildWanVaeKernels(vaeKernelNeeds(preset.vae)));
  const t5 = cachedBundle<Umt5Bundle>('umt5', preset.text_encoder, () => buildUmt5Bundle(preset.text_encoder));
  const units = new Map<string, Unit>();
  const kernel = (a: KernelArtifact) => {
    for (const v of a.cuda)
      units.set(v.source, { name: a.name, source: v.source, entry: v.entry, sharedBytes: v.sharedBytes });
  };
  const template = (a: { name: string; source: string; entry: string; sharedBytes: number; arch: Arch }) =>
    units.set(a.source, {
      name: a.name,
      source: a.source,
      entry: a.entry,
      sharedBytes: a.sharedBytes,
      archs: [a.arch],
    });
  const step = (s: PlanStep): void => {
    if (s.kind === 'kernel') kernel(s.artifact);
    else if (s.kind === 'conv') {
      [s.padKernel, s.cropKernel].forEach(kernel);
      s.candidates.forEach(template);
      [s.prologue, s.epilogue].forEach((p) => p && step(p));
    } else if (s.kind === 'gemm' || s.kind === 'attention') {
      s.candidates.forEach(template);
      s.fallback.forEach(step);
    }
  };
  for (const b of [dit, t5]) {
    for (const p of Object.values(b.plans)) p.steps.forEach(step);
    Object.values(b.kernels).forEach(kernel);
  }
  template(dit.attention);
  if (dit.attentionMma) {
    // the mma.sync attention has no sm_89 instantiation of its own: sm_89 runs the sm_80 code,
    // compiled for sm_89 (runtime/cuda.ts compileTarget)
    template(dit.attentionMma);
    units.get(dit.attentionMma.source)!.archs = ['sm_80', 'sm_89'];
  }
  Object.values(vae.kernels).forEach(kernel);
  Object.values(vae.convGemms).forEach(template);
  // the TAEHV fast decoder (--decoder taehv)
  const taehv = cachedBundle<TaehvKernels>('taehv', preset.taehv, () =>
    buildTaehvKernels(preset.taehv.nf, preset.taehv.latent),
  );
  Object.values(taehv.kernels).forEach(kernel);
  Object.values(taehv.convGemms).forEach(template);
  return [...units.values()];
}

async function pool<T>(items: (() => Promise<T>)[], jobs: number, onDone: () => void): Promise<T[]> {
  const out: T[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await items[i]!();
      onDone();
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, worker));
  return out;
}

/** `--graph NAME`: the layer's graph as Graphviz DOT, fused kernels drawn as clusters. */
export function layerGraphDot(files: string[], name: string): string {
  const program = new DslProgram(files);
  const refs = files.flatMap((f) => program.layers(f));
  const ref = refs.find((r) => r.name === name);
  if (!ref) throw new SfcError(`no layer named '${name}' (layers: ${refs.map((r) => r.name).join(', ') || 'none'})`);
  const g = lowerLayer(program, ref);
  const groups = new Map<number, string>();
  let k = 0;
  for (const item of fuse(g)) {
    if (item.kind !== 'group') continue;
    const label = `kernel ${k++}`;
    for (const n of item.group.nodes) groups.set(n.id, label);
  }
  return graphToDot(g, groups);
}

export async function build(opts: BuildOptions, io: Io): Promise<KernelReport[]> {
  if (opts.graph) {
    io.stdout(layerGraphDot([...projectKernelFiles(), ...opts.file.map((f) => resolve(f))], opts.graph));
    return [];
  }
  const archs = opts.arch.split(',').map((a) => a.trim()) as Arch[];
  for (const a of archs) {
    if (!BUILD_ARCHS.includes(a))
      throw new SfcError(`unknown architecture '${a}' (known: ${BUILD_ARCHS.join(', ')})`, { exitCode: 2 });
  }
  const files = [...projectKernelFiles(), ...opts.file.map((f) => resolve(f))];
  let artifacts: KernelArtifact[] = compileFiles(files);
  if (opts.kernel.length) {
    const unknown = opts.kernel.filter((k) => !artifacts.some((a) => a.name === k));
    if (unknown.length)
      throw new SfcError(`no kernel named ${unknown.join(', ')} (kernels: ${artifacts.map((a) => a.name).join(', ')})`);
    artifacts = artifacts.filter((a) => opts.kernel.includes(a.name));
  }
  const dump = new Set((opts.dump ?? '').split(',').filter(Boolean));
  for (const d of dump)
    if (!['ir', 'js', 'cuda'].includes(d))
      throw new SfcError(`--dump takes ir, js or cuda, got '${d}'`, { exitCode: 2 });
  for (const a of artifacts) {
    if (dump.has('ir')) io.stdout(`// ---- ${a.name}: IR\n${a.ir}\n`);
    if (dump.has('js')) io.stdout(`// ---- ${a.name}: JS\n${a.js}\n`);
    if (dump.has('cuda')) for (const v of a.cuda) io.stdout(`// ---- ${v.entry}: CUDA\n${v.source}\n`);
  }

  const cache = new KernelCache();
  const nvcc = findNvcc();
  const native = nvcc ? undefined : loadNative();
  const nvrtcOk = native?.status().nvrtc.loaded;
  if (!nvcc && !nvrtcOk) {
    throw new SfcError('neither nvcc nor NVRTC was found, so no CUDA kernels can be built', {
      hint: 'install the CUDA toolkit (nvcc), set SFC_NVCC or CUDA_HOME, or run `sfc doctor`',
    });
  }
  const variants: Unit[] = opts.model
    ? modelUnits(opts.model)
    : artifacts.flatMap((a) =>
        a.cuda.map((v) => ({ name: a.name, source: v.source, entry: v.entry, sharedBytes: v.sharedBytes })),
      );
  const tasks = archs.flatMap((arch) =>
    variants
      .filter((u) => !u.archs || u.archs.includes(arch))
      .map((v) => ({ a: { name: v.name }, v }))
      .map(({ a, v }) => async (): Promise<KernelReport[]> => {
        const options = kernelCompileOptions(arch);
        const key = keyOf({ source: v.source, options, arch });
        if (nvcc) {
          const r = await compileCudaAsync({ source: v.source, arch, name: `${a.name}.cu`, nvcc });
          cache.put(key, arch, r.toolchain, r.cubin, r.reports);
          return r.reports
            .filter((k) => k.name === v.entry)
            .map((k) => ({ ...k, sharedBytes: k.sharedBytes + v.sharedBytes }));
        }
        const r = native!.nvrtcCompile(v.source, `${a.name}.cu`, [...options, '-Xptxas', '-v'], true);
        if (!r.ok || !r.binary) throw new SfcError(`NVRTC failed to compile ${a.name} for ${arch}:\n${r.log.trim()}`);
        const nv = native!.status().nvrtc.version as number[];
        cache.put(key, arch, `nvrtc-${nv.join('.')}`, r.binary);
        return [
          {
            name: v.entry,
            arch,
            registers: NaN,
            sharedBytes: v.sharedBytes,
            stackBytes: NaN,
            spillStoreBytes: NaN,
            spillLoadBytes: NaN,
          },
        ];
      }),
  );
  const bar = opts.progress
    ? new cliProgress.SingleBar(
        { format: 'building kernels [{bar}] {value}/{total}', stream: process.stderr, clearOnComplete: true },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  bar?.start(tasks.length, 0);
  const jobs = Math.max(1, Number(opts.jobs) || availableParallelism());
  let reports: KernelReport[];
  try {
    reports = (await pool(tasks, jobs, () => bar?.increment())).flat();
  } finally {
    bar?.stop();
  }
  io.stdout(`${formatReportTable(reports)}\n`);
  io.stdout(
    opts.model
      ? `${opts.model}: ${variants.length} kernels (layer plans, GEMM and attention templates, VAE and UMT5 kernels) for ${archs.join(', ')} with ${nvcc ? 'nvcc' : 'NVRTC'} -> ${cache.dir}\n`
      : `${artifacts.length} kernels (${variants.length} variants) x ${archs.length} architectures with ${nvcc ? 'nvcc' : 'NVRTC'} -> ${cache.dir}\n`,
  );
  return reports;
}

export function registerBuild(program: Command, io: Io): void {
  program
    .command('build')
    .description(
      'compile every DSL kernel for sm_80, sm_89 and sm_90a into the kernel cache; print registers, smem and spills',
    )
    .option('--arch <list>', 'comma-separated architectures', BUILD_ARCHS.join(','))
    .option(
      '--model <preset>',
      'compile everything a model preset runs (plans, templates) instead of the kernel library; warms the cache so the first generation does not compile',
    )
    .option('--file <path>', 'also compile the kernels of this DSL source file (repeatable)', collect, [])
    .option('--kernel <name>', 'only this kernel (repeatable)', collect, [])
    .option('--dump <stages>', 'print compiler stages: ir, js, cuda (comma-separated)')
    .option('--graph <layer>', 'print the graph of a layer as Graphviz DOT (fused kernels as clusters) and stop')
    .option('-j, --jobs <n>', 'parallel compiler processes', String(availableParallelism()))
    .option('--no-progress', 'no progress bar')
    .action(async (opts: BuildOptions) => {
      await build(opts, io);
    });
}
