// Model bundles: a model's layer source (models/<model>/layers.ts) and kernels compiled for one
// preset's sizes into plain data (dsl/artifact.ts ModelBundle) that the runtime executes.
import { join } from 'node:path';
import type { ModelBundle } from '../dsl/artifact.js';
import { SfcError } from '../dsl/errors.js';
import type { LaunchPlan } from '../dsl/plan.js';
import { packageRoot } from '../dsl/paths.js';
import { compileFiles } from './compile.js';
import { DslProgram } from './frontend.js';
import { lowerLayer } from './layer/frontend.js';
import { planLayer, type PlanOptions } from './layer/plan.js';
import { attentionSm90 } from './templates/attention.js';

/** The Wan DiT's sizes, as a model preset gives them. */
export interface WanDitDims {
  dim: number;
  ffn_dim: number;
  freq_dim: number;
  num_heads: number;
  in_dim: number;
  out_dim: number;
  text_dim: number;
  patch_size: readonly number[];
}

function compileLayers(
  file: string,
  specialize: Record<string, number>,
  options: PlanOptions,
): Record<string, LaunchPlan> {
  const program = new DslProgram([file]);
  program.specialize = new Map(Object.entries(specialize));
  const plans: Record<string, LaunchPlan> = {};
  for (const ref of program.layers(file)) plans[ref.name] = planLayer(lowerLayer(program, ref), options);
  return plans;
}

/** Compiles the Wan DiT (models/wan/layers.ts + models/kernels/patch.ts) for a preset's sizes. */
export function buildWanDitBundle(d: WanDitDims, options: PlanOptions = {}): ModelBundle {
  const headDim = d.dim / d.num_heads;
  if (!Number.isInteger(headDim) || (headDim !== 64 && headDim !== 128))
    throw new SfcError(`the Wan DiT needs a head dim of 64 or 128 (dim / num_heads), got ${d.dim} / ${d.num_heads}`);
  if (d.patch_size.join() !== '1,2,2')
    throw new SfcError(`the Wan DiT is built for patch size [1, 2, 2], got [${d.patch_size.join(', ')}]`);
  if (d.in_dim !== 16 || d.out_dim !== 16)
    throw new SfcError(`the Wan DiT is built for 16 latent channels, got in ${d.in_dim} / out ${d.out_dim}`);
  const root = packageRoot(import.meta.url);
  const dims = {
    DIM: d.dim,
    FFN: d.ffn_dim,
    HEADS: d.num_heads,
    HEAD_DIM: headDim,
    TEXT_DIM: d.text_dim,
    FREQ_DIM: d.freq_dim,
    PATCH: d.in_dim * 4,
  };
  const plans = compileLayers(join(root, 'models', 'wan', 'layers.ts'), dims, options);
  const k = Math.floor(headDim / 6);
  const consts = { PAIRS: headDim / 2, framePairs: (headDim - 4 * k) / 2, heightPairs: k, C: d.in_dim };
  const kernels = Object.fromEntries(
    compileFiles([join(root, 'models', 'kernels', 'patch.ts')], { consts }).map((a) => [a.name, a]),
  );
  const attention = attentionSm90(
    headDim === 128 ? { input: 'bf16', headDim, bc: 128, stages: 3 } : { input: 'bf16', headDim, bc: 64, stages: 4 },
  );
  return { model: 'wan-dit', dims, plans, kernels, attention };
}
