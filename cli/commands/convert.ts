// `sfc convert IN OUT.safetensors`: a PyTorch .pt/.pth (or safetensors) checkpoint to safetensors,
// optionally one sub-dict (`--key generator_ema`), a dtype for floating-point tensors, and the
// model's canonical parameter names. One tensor is in memory at a time; the output appears only
// when complete (temp file + rename), so an interrupted conversion leaves nothing half-written.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { dtypes, type DType } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import { decode, encodeInto, rawArray } from '../../runtime/convert.js';
import { canonicalName, openCheckpoint, type CheckpointTensor } from '../../runtime/checkpoint/state-dict.js';
import { writeSafetensors } from '../../runtime/checkpoint/safetensors.js';
import { fmtBytes } from '../../runtime/allocator.js';
import type { Io } from '../main.js';

interface ConvertOptions {
  key?: string;
  dtype: string;
  canonicalNames?: boolean;
  force?: boolean;
  progress: boolean;
}

/** The bytes of `t` converted to `to` (floating-point tensors only; others are copied). */
export function convertBytes(
  t: CheckpointTensor,
  to: DType | undefined,
): { dtype: DType | string; data: () => Uint8Array } {
  const from = t.dtype;
  if (!to || !from || !from.isFloat || from === to) return { dtype: from ?? t.fileDtype, data: () => t.read() };
  return {
    dtype: to,
    data: () => {
      const bytes = t.read();
      const n = bytes.byteLength / from.bytes;
      const aligned = new Uint8Array(bytes); // a fresh, aligned copy for the typed-array view
      const values = decode(from, rawArray(from, aligned.buffer, 0, n));
      const out = rawArray(to, new ArrayBuffer(n * to.bytes), 0, n);
      encodeInto(to, values as Float32Array, out);
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    },
  };
}

export function convert(input: string, output: string, opts: ConvertOptions, io: Io): void {
  if (!output.endsWith('.safetensors'))
    throw new SfcError(`the output must be a .safetensors file, got ${output}`, { exitCode: 2 });
  if (resolve(input) === resolve(output)) throw new SfcError('the output would overwrite the input', { exitCode: 2 });
  if (!existsSync(input)) throw new SfcError(`checkpoint not found: ${input}`);
  if (existsSync(output) && !opts.force) throw new SfcError(`${output} exists (use --force to replace it)`);
  const to = opts.dtype === 'keep' ? undefined : (dtypes as Record<string, DType>)[opts.dtype];
  if (opts.dtype !== 'keep' && (!to || !to.isFloat)) {
    throw new SfcError(`--dtype must be keep, f32, f16, bf16, e4m3 or e5m2, got '${opts.dtype}'`, { exitCode: 2 });
  }
  const ck = openCheckpoint(input, { key: opts.key });
  try {
    const names = [...ck.tensors.keys()];
    const outNames = names.map((n) => (opts.canonicalNames ? canonicalName(n) : n));
    const dup = outNames.find((n, i) => outNames.indexOf(n) !== i);
    if (dup) throw new SfcError(`${input}: two tensors map to the name '${dup}'`);
    const total = names.reduce((s, n) => s + bytesOf(ck.tensors.get(n)!), 0);
    const bar = opts.progress
      ? new cliProgress.SingleBar(
          {
            format: 'converting [{bar}] {percentage}% {value}/{total} MB',
            stream: process.stderr,
            clearOnComplete: true,
          },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
    bar?.start(Math.ceil(total / 1e6), 0);
    let done = 0;
    try {
      writeSafetensors(
        output,
        names.map((n, i) => {
          const t = ck.tensors.get(n)!;
          const c = convertBytes(t, to);
          return { name: outNames[i]!, dtype: c.dtype as DType, shape: t.shape, data: c.data };
        }),
        {
          format: 'pt',
          converted_by: 'sfc',
          source: input.split('/').pop() ?? input,
          ...(opts.key ? { key: opts.key } : {}),
        },
        {
          onTensor: (_name, bytes) => {
            done += bytes;
            bar?.update(Math.round(done / 1e6));
          },
        },
      );
    } finally {
      bar?.stop();
    }
    const extras = ck.extras.length ? ` (skipped non-tensor entries: ${ck.extras.join(', ')})` : '';
    io.stdout(`wrote ${output}: ${names.length} tensors, ${fmtBytes(done)}${extras}\n`);
  } finally {
    ck.close();
  }
}

function bytesOf(t: CheckpointTensor): number {
  return t.shape.reduce((a, b) => a * b, 1) * (t.dtype?.bytes ?? 1);
}

export function registerConvert(program: Command, io: Io): void {
  program
    .command('convert')
    .description('convert a PyTorch .pt/.pth (or safetensors) checkpoint to safetensors')
    .argument('<input>', 'checkpoint to read (.pt, .pth, .safetensors, .safetensors.index.json)')
    .argument('<output>', 'safetensors file to write')
    .option('--key <name>', 'the sub-dict of a PyTorch checkpoint to convert, e.g. generator or generator_ema')
    .option('--dtype <dtype>', 'dtype for floating-point tensors: keep, f32, f16, bf16, e4m3, e5m2', 'keep')
    .option('--canonical-names', "store the model's parameter names (without model., _fsdp_wrapped_module. prefixes)")
    .option('--force', 'replace the output if it exists')
    .option('--no-progress', 'no progress bar')
    .action((input: string, output: string, opts: ConvertOptions) => convert(input, output, opts, io));
}
