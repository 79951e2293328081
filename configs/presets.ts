// Model shape presets (configs/models/*.yaml): the static dims the compiler specialises kernels for.
// Selected by name, case-insensitively (`Wan2.1-T2V-1.3B`, `wan2.1-t2v-14b`, `tiny`), or by a path.
import { existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { closest } from 'fastest-levenshtein';
import { z } from 'zod';
import { packageRoot } from '../dsl/paths.js';
import { ConfigError, readYamlLayer, validateWith, type Source } from './load.js';

const posInt = () => z.number().int().positive();

export const ditShapeSchema = z
  .object({
    dim: posInt(),
    ffn_dim: posInt(),
    freq_dim: posInt(),
    num_heads: posInt(),
    num_layers: posInt(),
    in_dim: posInt(),
    out_dim: posInt(),
    text_dim: posInt(),
    text_len: posInt(),
    patch_size: z.tuple([posInt(), posInt(), posInt()]),
    eps: z.number().positive(),
    qk_norm: z.boolean(),
    cross_attn_norm: z.boolean(),
  })
  .strict()
  .refine((d) => d.dim % d.num_heads === 0, { message: 'dim must be a multiple of num_heads', path: ['dim'] })
  .refine((d) => (d.dim / d.num_heads) % 2 === 0, {
    message: 'head dim must be even (RoPE pairs)',
    path: ['num_heads'],
  });

export const vaeShapeSchema = z
  .object({
    z_dim: posInt(),
    base_dim: posInt(),
    dim_mult: z.array(posInt()).min(1),
    num_res_blocks: posInt(),
    temporal_downsample: z.array(z.boolean()),
  })
  .strict()
  .refine((v) => v.temporal_downsample.length === v.dim_mult.length - 1, {
    message: 'temporal_downsample needs one entry per down-sampling stage (len(dim_mult) - 1)',
    path: ['temporal_downsample'],
  });

export const textEncoderShapeSchema = z
  .object({
    vocab_size: posInt(),
    dim: posInt(),
    dim_attn: posInt(),
    ffn_dim: posInt(),
    num_heads: posInt(),
    num_layers: posInt(),
    num_buckets: posInt(),
    text_len: posInt(),
  })
  .strict();

export const modelPresetSchema = z
  .object({
    name: z.string(),
    dit: ditShapeSchema,
    vae: vaeShapeSchema,
    text_encoder: textEncoderShapeSchema,
    /** the TAEHV fast decoder's stage widths (default taew2_1's: [256, 128, 64, 64], 16 latent channels) */
    taehv: z
      .object({ nf: z.array(posInt()).length(4), latent: posInt() })
      .strict()
      .default({ nf: [256, 128, 64, 64], latent: 16 }),
    files: z
      .object({
        dit: z.string(),
        vae: z.string(),
        text_encoder: z.string(),
        tokenizer: z.string(),
        taehv: z.string().default('taew2_1.pth'),
      })
      .strict(),
    /** what `sfc infer` uses when the command line and config do not say (the tiny preset runs small) */
    inference: z
      .object({ height: posInt(), width: posInt(), num_frames: posInt(), random_weights_seed: z.number().int() })
      .partial()
      .strict()
      .optional(),
  })
  .strict();

export type ModelPreset = z.infer<typeof modelPresetSchema>;
export type DitShape = z.infer<typeof ditShapeSchema>;

export function presetDir(): string {
  return join(packageRoot(import.meta.url), 'configs', 'models');
}

export function presetNames(): string[] {
  return readdirSync(presetDir())
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => basename(f, '.yaml'))
    .sort();
}

/** Loads a preset by name (case-insensitive) or by the path of a YAML file. */
export function loadModelPreset(nameOrPath: string): ModelPreset {
  let path: string;
  if (nameOrPath.endsWith('.yaml') || nameOrPath.endsWith('.yml')) path = nameOrPath;
  else {
    const names = presetNames();
    const want = nameOrPath.toLowerCase();
    if (!names.includes(want)) {
      throw new ConfigError(
        `unknown model preset '${nameOrPath}' (did you mean '${closest(want, names)}'? presets: ${names.join(', ')})`,
      );
    }
    path = join(presetDir(), `${want}.yaml`);
  }
  if (!existsSync(path)) throw new ConfigError(`model preset file not found: ${path}`);
  const sources = new Map<string, Source>();
  const raw = readYamlLayer(path, sources);
  return validateWith(modelPresetSchema, raw, sources);
}
