// `sfc infer`: text -> video with the causal few-step pipeline. Prompts are encoded (UMT5, cached on
// disk by prompt and weights), chunks of latent frames are generated on the KV cache and decoded by
// the streaming VAE as they come, straight into the video file, so a long video never sits in memory.
// With the tiny preset and no checkpoints, every model gets seeded random weights: the README's first
// command produces a (noise-like) video on any machine without downloads.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { buildTaehvKernels, buildUmt5Bundle, buildWanVaeKernels } from '../../compiler/bundle.js';
import { loadConfig, loadModelPreset, type ModelPreset } from '../../configs/index.js';
import { SfcError } from '../../dsl/errors.js';
import { packageRoot } from '../../dsl/paths.js';
import { MjpegAviWriter } from '../../media/avi.js';
import { JpegPool } from '../../media/jpeg-pool.js';
import { openVideo, type VideoFormat } from '../../media/video.js';
import { type CausalPipelineOptions, type FlowKernels } from '../../models/pipeline/causal.js';
import { SOLVER_NAMES, type MultistepKernels } from '../../models/pipeline/multistep.js';
import { combineKernelsFrom } from '../../models/schedulers/linear.js';
import { generationPlan, makeRunner, PIPELINES } from './generation.js';
import { randomCheckpoint } from '../../models/random.js';
import { PromptCache, PromptEncoder, weightsIdentity } from '../../models/text/prompts.js';
import { UMT5Tokenizer } from '../../models/text/tokenizer.js';
import { Umt5Encoder, umt5Params, type Umt5Bundle } from '../../models/text/umt5.js';
import { WanVaeDecoder, decoderParams, type VaeKernels } from '../../models/vae/decoder.js';
import { WanVaeEncoder, encoderParams, vaeKernelNeeds } from '../../models/vae/encoder.js';
import { TaehvDecoder, taehvParams, type TaehvKernels, type VideoDecoder } from '../../models/vae/taehv.js';
import { CausalWanModel, wanDitParams, type WanPrecision } from '../../models/wan/model.js';
import { canonicalize, openCheckpoint, type CheckpointTensor } from '../../runtime/checkpoint/state-dict.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { CudaDevice } from '../../runtime/cuda.js';
import type { Device } from '../../runtime/device.js';
import { KernelCache, defaultCacheDir } from '../../runtime/kernel-cache.js';
import { cudaUnavailableReason } from '../../runtime/native/load.js';
import { cachedBundle, cachedDitBundle } from '../bundles.js';
import type { Io } from '../main.js';

export interface InferOptions {
  config?: string;
  set: string[];
  model?: string;
  modelDir?: string;
  checkpoint?: string;
  key?: string;
  useEma?: boolean;
  vae?: string;
  textEncoder?: string;
  tokenizer?: string;
  prompt?: string;
  prompts?: string;
  promptSchedule?: string;
  out: string;
  seed?: string;
  numSamples: string;
  numFrames?: string;
  seconds?: string;
  height?: string;
  width?: string;
  fps: string;
  format: string;
  saveWithIndex?: boolean;
  device?: string;
  gpus?: string;
  shard?: string;
  profile?: boolean;
  progress: boolean;
  pipeline: string;
  decoder?: string;
  taehv?: string;
  steps?: string;
  solver?: string;
  guidance?: string;
  negativePrompt?: string;
  shift?: string;
  i2v?: string;
  extend?: string;
  v2v?: string;
  strength?: string;
  /** the DiT's precision: bf16 (default) or fp8 (e4m3 GEMMs on sm_90a) */
  precision?: string;
}

/** `--shard i/N`: this process takes the prompts whose index is i modulo N. */
export function parseShard(s: string | undefined): { index: number; count: number } | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(s);
  if (!m || Number(m[1]) >= Number(m[2]))
    throw new SfcError(`--shard takes i/N with i < N, got '${s}'`, { exitCode: 2 });
  return { index: Number(m[1]), count: Number(m[2]) };
}

/**
 * `--gpus N`: one `sfc infer` process per device (cuda:0..N-1, or N simulated CPU devices with
 * --device cpu), each taking every N-th prompt; prompts keep their indices and seeds, so the files
 * are the ones a single process writes. Returns the files written (grouped by process).
 */
/** The command line of an `sfc infer` child for the same options (paths made absolute). */
function childArgs(o: InferOptions): string[] {
  const abs = (p: string | undefined) => (p === undefined ? undefined : resolve(p));
  const flags: [string, string | undefined][] = [
    ['--config', abs(o.config)],
    ['--model', o.model],
    ['--model-dir', abs(o.modelDir)],
    ['--checkpoint', abs(o.checkpoint)],
    ['--key', o.key],
    ['--vae', abs(o.vae)],
    ['--text-encoder', abs(o.textEncoder)],
    ['--tokenizer', abs(o.tokenizer)],
    ['--prompt', o.prompt],
    ['--prompts', abs(o.prompts)],
    ['--prompt-schedule', abs(o.promptSchedule)],
    ['--out', abs(o.out)],
    ['--seed', o.seed],
    ['--num-samples', o.numSamples],
    ['--num-frames', o.numFrames],
    ['--seconds', o.seconds],
    ['--height', o.height],
    ['--width', o.width],
    ['--fps', o.fps],
    ['--format', o.format],
    ['--pipeline', o.pipeline],
    ['--decoder', o.decoder],
    ['--taehv', abs(o.taehv)],
    ['--steps', o.steps],
    ['--solver', o.solver],
    ['--guidance', o.guidance],
    ['--negative-prompt', o.negativePrompt],
    ['--shift', o.shift],
    ['--i2v', abs(o.i2v)],
    ['--extend', abs(o.extend)],
    ['--v2v', abs(o.v2v)],
    ['--strength', o.strength],
    ['--precision', o.precision],
  ];
  const args = ['infer', ...flags.flatMap(([f, v]) => (v === undefined ? [] : [f, v]))];
  for (const s of o.set) args.push('--set', s);
  if (o.useEma) args.push('--use-ema');
  if (o.saveWithIndex) args.push('--save-with-index');
  if (o.profile) args.push('--profile');
  return args;
}

async function inferSharded(o: InferOptions, n: number, io: Io): Promise<string[]> {
  const { spawn } = await import('node:child_process');
  const entry = join(packageRoot(import.meta.url), 'cli', 'sfc.js');
  const base = childArgs(o);
  const cpu = o.device === 'cpu';
  const runs = Array.from(
    { length: n },
    (_, g) =>
      new Promise<string[]>((resolveRun, reject) => {
        const args = [entry, ...base, '--device', cpu ? 'cpu' : `cuda:${g}`, '--shard', `${g}/${n}`, '--no-progress'];
        const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        const tag = cpu ? `[cpu ${g}] ` : `[gpu ${g}] `;
        const lines = (chunk: Buffer, to: (s: string) => void) =>
          chunk
            .toString()
            .split(/\n/)
            .filter(Boolean)
            .forEach((l) => to(`${tag}${l}\n`));
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (o.profile) lines(c, io.stdout);
        });
        child.stderr.on('data', (c: Buffer) => lines(c, io.stderr));
        child.on('error', reject);
        child.on('close', (code) =>
          code === 0
            ? resolveRun(out.split('\n').filter((l) => l.startsWith('/') || /^[A-Za-z]:\\/.test(l)))
            : reject(new SfcError(`${tag.trim()} failed (exit code ${code})`)),
        );
      }),
  );
  const files = (await Promise.all(runs)).flat();
  for (const f of files) if (!o.profile) io.stdout(`${f}\n`);
  return files;
}

export const int = (v: string | undefined, flag: string, min = 0): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new SfcError(`${flag} takes a whole number >= ${min}, got '${v}'`, { exitCode: 2 });
  return n;
};

export function openDevice(spec: string | undefined): Device {
  if (spec === 'cpu') return new CpuDevice();
  const m = /^cuda(?::(\d+))?$/.exec(spec ?? 'cuda');
  if (!m) throw new SfcError(`--device takes cpu, cuda or cuda:N, got '${spec}'`, { exitCode: 2 });
  const why = cudaUnavailableReason();
  if (why) {
    if (spec === undefined) return new CpuDevice();
    throw new SfcError(`no CUDA device: ${why}`, { hint: 'run `sfc doctor`, or pass --device cpu' });
  }
  return CudaDevice.open(Number(m[1] ?? 0), new KernelCache());
}

/** Prompts from --prompt or --prompts FILE (one per line, blank lines skipped). */
export function readPrompts(o: Pick<InferOptions, 'prompt' | 'prompts'>): string[] {
  if ((o.prompt === undefined) === (o.prompts === undefined))
    throw new SfcError('give exactly one of --prompt TEXT and --prompts FILE', { exitCode: 2 });
  if (o.prompt !== undefined) {
    if (!o.prompt.trim()) throw new SfcError('the prompt is empty', { exitCode: 2 });
    return [o.prompt];
  }
  if (!existsSync(o.prompts!)) throw new SfcError(`prompt file not found: ${o.prompts}`);
  const lines = readFileSync(o.prompts!, 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
  if (!lines.length) throw new SfcError(`${o.prompts} holds no prompts`);
  return lines;
}

/**
 * `--prompt-schedule FILE`: lines `CHUNK: prompt` (from that chunk on, this prompt; `#` comments and
 * blank lines skipped), starting at chunk 0, chunks increasing.
 */
export function readPromptSchedule(file: string): { chunk: number; prompt: string }[] {
  if (!existsSync(file)) throw new SfcError(`prompt schedule not found: ${file}`);
  const out: { chunk: number; prompt: string }[] = [];
  readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const line = raw.trim();
      if (!line || line.startsWith('#')) return;
      const m = /^(\d+)\s*:\s*(.+)$/.exec(line);
      if (!m)
        throw new SfcError(`${file}:${i + 1}: expected 'CHUNK: prompt', got '${line.slice(0, 60)}'`, { exitCode: 2 });
      const chunk = Number(m[1]);
      const last = out[out.length - 1];
      if (last && chunk <= last.chunk)
        throw new SfcError(`${file}:${i + 1}: chunk ${chunk} must come after chunk ${last.chunk}`, { exitCode: 2 });
      out.push({ chunk, prompt: m[2]!.trim() });
    });
  if (!out.length) throw new SfcError(`${file} holds no prompts`, { exitCode: 2 });
  if (out[0]!.chunk !== 0) throw new SfcError(`${file}: the schedule must start at chunk 0`, { exitCode: 2 });
  return out;
}

/** The reference's output name: the prompt's first 100 characters (made safe for file names) or the index. */
export function outputName(prompt: string, index: number, sample: number, withIndex: boolean, ema: boolean): string {
  if (withIndex) return `${index}-${sample}_${ema ? 'ema' : 'regular'}`;
  const safe = [...prompt]
    .slice(0, 100)
    .join('')
    // eslint-disable-next-line no-control-regex
    .replace(/[/\\\u0000-\u001f]/g, '_')
    .replace(/^\.+/, '_');
  return `${safe}-${sample}`;
}

interface Weights {
  dit: Map<string, CheckpointTensor>;
  vae: Map<string, CheckpointTensor>;
  /** the TAEHV decoder's (with --decoder taehv) */
  taehv?: Map<string, CheckpointTensor>;
  text: Map<string, CheckpointTensor>;
  textId: string;
  tokenizer: UMT5Tokenizer;
  random: boolean;
  close: () => void;
}

function openExisting(path: string, what: string): ReturnType<typeof openCheckpoint> {
  if (!existsSync(path)) throw new SfcError(`${what} not found: ${path}`, { exitCode: 2 });
  return openCheckpoint(path);
}

function loadWeights(o: ModelFlags, preset: ModelPreset, io: Io): Weights {
  const dir = o.modelDir;
  const file = (flag: string | undefined, name: string): string | undefined =>
    flag ?? (dir ? join(dir, name) : undefined);
  const ditPath = file(o.checkpoint, preset.files.dit);
  const vaePath = file(o.vae, preset.files.vae);
  const textPath = file(o.textEncoder, preset.files.text_encoder);
  const tokPath = file(o.tokenizer, preset.files.tokenizer);
  const seed = preset.inference?.random_weights_seed;
  const textLen = preset.text_encoder.text_len;
  if (!ditPath && !vaePath && !textPath && seed !== undefined) {
    io.stderr(
      `sfc: no checkpoints given: ${preset.name} with random weights (seed ${seed}); the video will be noise\n`,
    );
    const tok = tokPath ?? join(packageRoot(import.meta.url), 'configs', 'models', 'tiny-tokenizer', 'tokenizer.json');
    // an explicit --taehv file is used even with random model weights (a real fast decoder to try)
    const taehvFile = o.decoder === 'taehv' && o.taehv ? openExisting(o.taehv, 'TAEHV checkpoint') : undefined;
    return {
      dit: randomCheckpoint(wanDitParams(preset.dit), seed),
      vae: randomCheckpoint([...decoderParams(preset.vae), ...encoderParams(preset.vae)], seed + 1),
      text: randomCheckpoint(umt5Params(preset.text_encoder), seed + 2),
      taehv:
        o.decoder !== 'taehv'
          ? undefined
          : taehvFile
            ? canonicalize(taehvFile)
            : randomCheckpoint(taehvParams(preset.taehv), seed + 3),
      textId: `random:${preset.name}:${seed}`,
      tokenizer: UMT5Tokenizer.load(tok, textLen),
      random: true,
      close: () => taehvFile?.close(),
    };
  }
  const missing = [
    [ditPath, '--checkpoint'],
    [vaePath, '--vae'],
    [textPath, '--text-encoder'],
    [tokPath, '--tokenizer'],
  ].filter(([p]) => !p);
  if (missing.length)
    throw new SfcError(
      `${preset.name} needs its weights: give --model-dir DIR or ${missing.map(([, f]) => f).join(', ')}`,
      {
        exitCode: 2,
      },
    );
  for (const [p, what] of [
    [ditPath!, 'DiT checkpoint'],
    [vaePath!, 'VAE checkpoint'],
    [textPath!, 'text encoder checkpoint'],
  ])
    if (!existsSync(p)) throw new SfcError(`${what} not found: ${p}`);
  const taehvPath = o.decoder === 'taehv' ? file(o.taehv, preset.files.taehv) : undefined;
  if (o.decoder === 'taehv') {
    if (!taehvPath)
      throw new SfcError('--decoder taehv needs its weights: give --taehv FILE (taew2_1.pth) or --model-dir DIR', {
        exitCode: 2,
      });
  }
  const key = o.useEma ? 'generator_ema' : o.key;
  const opened = [openCheckpoint(ditPath!, key ? { key } : {}), openCheckpoint(vaePath!), openCheckpoint(textPath!)];
  if (taehvPath) opened.push(openExisting(taehvPath, 'TAEHV checkpoint'));
  return {
    dit: canonicalize(opened[0]!),
    vae: canonicalize(opened[1]!),
    text: canonicalize(opened[2]!),
    taehv: taehvPath ? canonicalize(opened[3]!) : undefined,
    textId: weightsIdentity(textPath!),
    tokenizer: UMT5Tokenizer.load(tokPath!, textLen),
    random: false,
    close: () => opened.forEach((c) => c.close()),
  };
}

/** The flags that choose the models, their weights and the video size (shared by `sfc infer` and `sfc demo`). */
export type ModelFlags = Pick<
  InferOptions,
  | 'config'
  | 'set'
  | 'model'
  | 'modelDir'
  | 'checkpoint'
  | 'key'
  | 'useEma'
  | 'vae'
  | 'textEncoder'
  | 'tokenizer'
  | 'height'
  | 'width'
  | 'device'
  | 'decoder'
  | 'taehv'
  | 'precision'
>;

/** The config, preset and video size the flags ask for (validated; nothing is loaded yet). */
export interface Setup {
  config: ReturnType<typeof loadConfig>['config'];
  preset: ModelPreset;
  height: number;
  width: number;
  /** the DiT's precision (--precision) */
  precision: WanPrecision;
}

export function resolveSetup(o: ModelFlags): Setup {
  // without --config: Self-Forcing's own setup (4 steps, chunks of 3, shift 5)
  const configPath = o.config ?? join(packageRoot(import.meta.url), 'configs', 'self_forcing_dmd.yaml');
  const { config } = loadConfig({ configPath, overrides: o.set });
  const preset = loadModelPreset(o.model ?? config.model_kwargs.model_name ?? 'Wan2.1-T2V-1.3B');
  const inf = preset.inference ?? {};
  const height = int(o.height, '--height', 16) ?? inf.height ?? config.height;
  const width = int(o.width, '--width', 16) ?? inf.width ?? config.width;
  if (height % 16 || width % 16)
    throw new SfcError(`height and width must be multiples of 16, got ${height} x ${width}`, { exitCode: 2 });
  const precision = (o.precision ?? 'bf16') as WanPrecision;
  if (precision !== 'bf16' && precision !== 'fp8')
    throw new SfcError(`--precision takes bf16 or fp8, got '${o.precision}'`, { exitCode: 2 });
  return { config, preset, height, width, precision };
}

/** The loaded models: prompt encoder, causal DiT, VAE decoder, and the options of their pipeline. */
export interface Models {
  device: Device;
  promptEncoder: PromptEncoder;
  model: CausalWanModel;
  /** the video decoder: the Wan VAE's, or TAEHV with --decoder taehv */
  vae: VideoDecoder;
  /** the VAE encoder (i2v, extension, v2v), loaded on first use */
  encoder: () => WanVaeEncoder;
  kernels: FlowKernels;
  /** the multi-step solvers' kernels */
  multistepKernels: MultistepKernels;
  /** the pipeline's options for `numFrames` latent frames from `seed` (window and sink from the config) */
  pipelineOptions: (numFrames: number, seed: number) => CausalPipelineOptions;
  dispose: () => void;
}

/** Opens the device, loads (or makes random) weights and compiles/loads the bundles. */
/**
 * Loads the models for `s`. `keepTextEncoder`: keep UMT5 on the device after a prompt (the demo, where
 * prompts change while it runs) instead of releasing its memory after each encode.
 */
export function loadModels(o: ModelFlags, s: Setup, io: Io, opts: { keepTextEncoder?: boolean } = {}): Models {
  const { config, preset } = s;
  const device = openDevice(o.device);
  const w = loadWeights(o, preset, io);
  try {
    const dit = cachedDitBundle(preset.dit, s.precision);
    const vaeKernels = cachedBundle<VaeKernels>('wan-vae', preset.vae, () =>
      buildWanVaeKernels(vaeKernelNeeds(preset.vae)),
    );
    const t5 = cachedBundle<Umt5Bundle>('umt5', preset.text_encoder, () => buildUmt5Bundle(preset.text_encoder));
    const cacheDir = join(defaultCacheDir(), 'prompts');
    const promptEncoder = new PromptEncoder({
      tokenizer: w.tokenizer,
      device,
      load: () => Umt5Encoder.load(device, preset.text_encoder, t5, w.text),
      cache: new PromptCache(cacheDir, w.textId, preset.text_encoder),
      release: !opts.keepTextEncoder,
      onTruncated: (_, n) =>
        io.stderr(`sfc: a prompt is longer than ${preset.text_encoder.text_len} tokens; its last ${n} are dropped\n`),
    });
    const model = CausalWanModel.load(device, preset.dit, dit, w.dit, { precision: s.precision });
    const vae: VideoDecoder =
      o.decoder === 'taehv'
        ? TaehvDecoder.load(
            device,
            cachedBundle<TaehvKernels>('taehv', preset.taehv, () =>
              buildTaehvKernels(preset.taehv.nf, preset.taehv.latent),
            ),
            w.taehv!,
            preset.taehv,
          )
        : WanVaeDecoder.load(device, preset.vae, vaeKernels, w.vae);
    let encoder: WanVaeEncoder | undefined;
    const flow = dit.kernels as unknown as FlowKernels;
    return {
      device,
      promptEncoder,
      model,
      vae,
      encoder: () => (encoder ??= WanVaeEncoder.load(device, preset.vae, vaeKernels, w.vae)),
      kernels: flow,
      multistepKernels: { randnFill: flow.randnFill, ...combineKernelsFrom(dit.kernels) },
      pipelineOptions: (numFrames, seed) => ({
        numFrames,
        framesPerChunk: config.num_frame_per_block,
        height: s.height / 8,
        width: s.width / 8,
        denoisingSteps: config.denoising_step_list ?? [1000, 750, 500, 250],
        warpDenoisingStep: config.warp_denoising_step,
        contextNoise: config.context_noise,
        shift: config.model_kwargs.timestep_shift ?? config.timestep_shift,
        seed,
        localAttnSize: config.model_kwargs.local_attn_size ?? -1,
        sinkSize: config.model_kwargs.sink_size ?? 0,
        relativeRope: config.model_kwargs.relative_rope,
        independentFirstFrame: config.independent_first_frame,
      }),
      dispose: () => {
        encoder?.dispose();
        vae.dispose();
        model.dispose();
        promptEncoder.release();
        w.close();
      },
    };
  } catch (e) {
    w.close();
    throw e;
  }
}

export async function infer(o: InferOptions, io: Io): Promise<string[]> {
  const gpus = int(o.gpus, '--gpus', 1) ?? 1;
  if (gpus > 1) {
    if (o.shard) throw new SfcError('--gpus and --shard do not combine', { exitCode: 2 });
    if (o.promptSchedule)
      throw new SfcError('--gpus shares prompts out; a --prompt-schedule is one video', { exitCode: 2 });
    readPrompts(o); // errors here, not N times in the children
    return inferSharded(o, gpus, io);
  }
  const shard = parseShard(o.shard);
  if (o.promptSchedule && (o.prompt !== undefined || o.prompts !== undefined))
    throw new SfcError('--prompt-schedule replaces --prompt and --prompts', { exitCode: 2 });
  const schedule = o.promptSchedule ? readPromptSchedule(o.promptSchedule) : undefined;
  const prompts = (schedule ? [schedule[0]!.prompt] : readPrompts(o))
    .map((p, i) => ({ p, i }))
    .filter(({ i }) => !shard || i % shard.count === shard.index);
  const setup = resolveSetup(o);
  const { config, preset, height, width } = setup;
  const inf = preset.inference ?? {};
  const fps = int(o.fps, '--fps', 1)!;
  const perChunk = config.num_frame_per_block;
  const first = config.independent_first_frame ? 1 : 0;
  let numFrames = int(o.numFrames, '--num-frames', 1) ?? inf.num_frames ?? config.image_or_video_shape?.[1] ?? 21;
  if (o.seconds !== undefined) {
    const s = Number(o.seconds);
    if (!(s > 0)) throw new SfcError(`--seconds takes a positive number, got '${o.seconds}'`, { exitCode: 2 });
    // 1 + 4 (F - 1) video frames from F latent frames, rounded up to whole chunks
    const latent = Math.ceil((s * fps - 1) / 4) + 1;
    numFrames = first + Math.ceil(Math.max(latent - first, 1) / perChunk) * perChunk;
  }
  const plan = generationPlan(o, config);
  if (schedule && plan.kind === 'bidirectional')
    throw new SfcError(
      '--prompt-schedule needs a causal pipeline (the bidirectional one samples the whole video at once)',
      {
        exitCode: 2,
      },
    );
  const seed = int(o.seed, '--seed') ?? config.seed;
  const samples = int(o.numSamples, '--num-samples', 1)!;
  const format = o.format as VideoFormat;
  const t0 = performance.now();
  const models = loadModels(o, setup, io);
  const { device, promptEncoder, model, vae } = models;
  const written: string[] = [];
  let jpegs: JpegPool | undefined;
  try {
    const runner = await makeRunner(plan, models, setup, numFrames, {
      recache: schedule !== undefined,
      numFramesGiven: o.numFrames !== undefined || o.seconds !== undefined,
      onFrames: o.progress ? (n) => io.stderr(`\rsfc: encoding ${plan.conditioning?.path}: ${n} frames`) : undefined,
    });
    if (plan.conditioning && o.progress) io.stderr('\n');
    const negative = runner.guided
      ? (() => {
          const [c] = promptEncoder.encode([plan.negativePrompt]);
          const t = model.encodeContext(c!);
          c!.dispose();
          return t;
        })()
      : undefined;
    const initMs = performance.now() - t0;
    const videoFrames = 1 + 4 * (runner.numFrames - 1);
    const chunks = runner.chunks;
    const bar =
      o.progress && !o.profile
        ? new cliProgress.SingleBar(
            {
              format: '{prompt} [{bar}] chunk {value}/{total} | {frames} frames',
              stream: process.stderr,
              clearOnComplete: true,
              hideCursor: true,
            },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
    try {
      for (const { p: prompt, i: pi } of prompts) {
        // one context per scheduled prompt (or the one prompt); chunk -> context
        const entries = schedule ?? [{ chunk: 0, prompt }];
        const contexts = promptEncoder.encode(entries.map((e) => e.prompt)).map((c) => {
          const t = model.encodeContext(c);
          c.dispose();
          return t;
        });
        const textOf = (chunk: number) => contexts[entries.findLastIndex((e) => e.chunk <= chunk)]!;
        try {
          for (let sample = 0; sample < samples; sample++) {
            const name = outputName(prompt, pi, sample, o.saveWithIndex ?? false, o.useEma ?? false);
            const writer = await openVideo(resolve(o.out, name), { width, height, fps, format });
            bar?.start(chunks, 0, { prompt: name.slice(0, 32), frames: 0 });
            const stream = vae.stream();
            const prof = { diffusion: [] as number[], decode: 0 };
            // the generation's own peak, apart from the text encoder's (released by now, or never
            // loaded when the prompt cache has the prompt)
            const peakBefore = device.memoryStats().peakInUse;
            device.resetPeakMemory();
            try {
              for (const c of runner.generate(seed + sample, textOf, negative)) {
                prof.diffusion.push(c.ms);
                const td = performance.now();
                const v = stream.decode(c.latents);
                c.latents.dispose();
                const frames = vae.toRgb(v);
                v.dispose();
                prof.decode += performance.now() - td;
                if (writer instanceof MjpegAviWriter) {
                  // JPEG on worker threads: the pure-JS encoder would otherwise bound the frame rate
                  jpegs ??= new JpegPool();
                  const jpgs = await Promise.all(frames.map((f) => jpegs!.encode(f, width, height)));
                  for (const j of jpgs) await writer.appendJpeg(j);
                } else for (const f of frames) await writer.append(f);
                bar?.increment(1, { frames: writer.frames });
              }
              written.push(await writer.close());
            } catch (e) {
              await writer.abort();
              throw e;
            } finally {
              stream.dispose();
              bar?.stop();
            }
            if (o.profile) {
              const genPeak = device.memoryStats().peakInUse;
              const diff = prof.diffusion.reduce((a, b) => a + b, 0);
              io.stdout(
                [
                  `profile ${name}: ${videoFrames} frames (${runner.numFrames} latent) at ${width}x${height} on ${device.name}`,
                  `  initialization ${initMs.toFixed(0)} ms`,
                  ...(plan.conditioning
                    ? [`  VAE encode (${plan.conditioning.flag}) ${runner.encodeMs.toFixed(0)} ms, in initialization`]
                    : []),
                  ...prof.diffusion.map((ms, i) => `  diffusion block ${i}: ${ms.toFixed(1)} ms`),
                  `  diffusion total ${diff.toFixed(0)} ms`,
                  `  VAE decode ${prof.decode.toFixed(0)} ms`,
                  `  total ${(diff + prof.decode).toFixed(0)} ms (${((videoFrames * 1000) / (diff + prof.decode)).toFixed(1)} frames/s)`,
                  `  peak device memory ${(genPeak / 2 ** 30).toFixed(2)} GiB generating (${(Math.max(genPeak, peakBefore) / 2 ** 30).toFixed(2)} GiB with loading and the text encoder)`,
                  '',
                ].join('\n'),
              );
            }
          }
        } finally {
          for (const t of contexts) t.dispose();
        }
      }
    } finally {
      negative?.dispose();
      runner.dispose();
    }
  } finally {
    await jpegs?.close();
    models.dispose();
  }
  for (const p of written) io.stdout(`${p}\n`);
  return written;
}

/** The options of ModelFlags but --height, --width and --device (their place in the help differs). */
export function modelOptions(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'task config merged over the defaults (default: configs/self_forcing_dmd.yaml)')
    .option('--set <key=value>', 'override a config key (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('--model <preset>', 'model preset (tiny, Wan2.1-T2V-1.3B, ...) or a preset YAML file')
    .option('--model-dir <dir>', "a folder with the preset's files (DiT, VAE, text encoder, tokenizer)")
    .option('--checkpoint <file>', 'generator checkpoint (.pt/.safetensors)')
    .option('--key <name>', 'sub-dict of a .pt checkpoint (generator, generator_ema)')
    .option('--use-ema', 'use the EMA generator weights (generator_ema)')
    .option('--vae <file>', 'VAE checkpoint (Wan2.1_VAE.pth)')
    .addOption(
      new Option('--decoder <which>', 'video decoder: the Wan VAE, or the TAEHV fast decoder')
        .choices(['wan', 'taehv'])
        .default('wan'),
    )
    .option('--taehv <file>', 'TAEHV checkpoint for --decoder taehv (taew2_1.pth)')
    .addOption(
      new Option('--precision <p>', "the DiT's precision: bf16, or fp8 (e4m3 GEMMs; H100/H200)")
        .choices(['bf16', 'fp8'])
        .default('bf16'),
    )
    .option('--text-encoder <file>', 'UMT5 checkpoint (models_t5_umt5-xxl-enc-bf16.pth)')
    .option('--tokenizer <path>', 'tokenizer.json or its folder (google/umt5-xxl)');
}

export function registerInfer(program: Command, io: Io): void {
  const cmd = program
    .command('infer')
    .description('generate videos from text with the causal few-step pipeline')
    .option('--prompt <text>', 'the prompt')
    .option('--prompts <file>', 'a file of prompts, one per line')
    .option(
      '--prompt-schedule <file>',
      "one video whose prompt changes by chunk: lines 'CHUNK: prompt' (KV re-cache at each switch)",
    )
    .option('-o, --out <dir>', 'output directory', 'outputs');
  modelOptions(cmd)
    .option('--seed <n>', 'random seed (default: the config seed)')
    .option('--num-samples <n>', 'videos per prompt (seeds seed, seed + 1, ...)', '1')
    .option('--num-frames <n>', 'latent frames (video frames = 1 + 4 (n - 1))')
    .option('--seconds <s>', 'video length in seconds (rounded up to whole chunks)')
    .option('--height <px>', 'video height (multiple of 16)')
    .option('--width <px>', 'video width (multiple of 16)')
    .option('--fps <n>', 'frames per second of the file', '16')
    .option('--format <f>', 'auto (MP4 with ffmpeg, else AVI), mp4, avi or png', 'auto')
    .option('--save-with-index', 'name files by prompt index instead of prompt text')
    .option('--device <d>', 'cpu, cuda or cuda:N (default: cuda when present)')
    .option('--gpus <n>', 'one process per GPU, prompts shared out round-robin (with --device cpu: simulated)')
    .addOption(new Option('--shard <i/N>', 'take every N-th prompt from the i-th (what --gpus runs)').hideHelp())
    .addOption(
      new Option('--pipeline <kind>', 'few-step (Self-Forcing), multi-step (causal, CFG) or bidirectional (Wan, CFG)')
        .choices([...PIPELINES])
        .default('few-step'),
    )
    .option('--steps <n>', 'multi-step/bidirectional: sampling steps (default 50)')
    .option('--solver <name>', `multi-step/bidirectional: ${SOLVER_NAMES.join(', ')} (default unipc)`)
    .option('--guidance <g>', 'multi-step/bidirectional: CFG scale (default: the config guidance_scale)')
    .option('--negative-prompt <text>', 'the CFG negative prompt (default: the config negative_prompt)')
    .option('--shift <s>', 'multi-step/bidirectional: sampling shift (default: timestep_shift; bidirectional 8)')
    .option('--i2v <image>', 'image-to-video: the image (PNG/JPEG, stretched to the size) is the first frame')
    .option('--extend <video>', 'continue a video: its frames fill the cache and start the output')
    .option('--v2v <video>', 'video-to-video: restyle a video chunk by chunk (see --strength)')
    .option('--strength <s>', 'v2v: how far to noise the source, in (0, 1]; 1 ignores it (default 0.7)')
    .option('--profile', 'print a time breakdown (initialization, diffusion per block, decode, total)')
    .option('--no-progress', 'no progress bar')
    .action(async (opts: InferOptions) => {
      await infer(opts, io);
    });
}
