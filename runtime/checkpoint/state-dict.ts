// One view over the checkpoint files users have: safetensors (single or sharded) and PyTorch .pt/.pth
// (zip). A checkpoint is a flat map of tensor names to lazily read tensors. For the Self-Forcing
// checkpoints (`{generator, generator_ema, ...}`) a sub-dict is chosen with `key`; names are
// canonicalised (FSDP's `_fsdp_wrapped_module.`, torch.compile's `_orig_mod.`, the wrapper's leading
// `model.` removed) so they match the model's own parameter names; `checkStateDict` reports missing,
// unexpected and mis-shaped names before any weight is used.
import { closest } from 'fastest-levenshtein';
import type { DType } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import { loadPytorchCheckpoint, flattenStateDict, tensorBytes, type TensorRef } from './pytorch.js';
import { openSafetensors } from './safetensors.js';

export interface CheckpointTensor {
  /** the name in the file */
  name: string;
  /** undefined for dtypes sfc does not compute in (f64, i16, i8) */
  dtype: DType | undefined;
  /** the file's own dtype name (BF16, torch.bfloat16, ...) */
  fileDtype: string;
  shape: number[];
  /** the elements, row-major, little-endian */
  read(): Uint8Array;
}

export interface Checkpoint {
  path: string;
  format: 'safetensors' | 'pytorch';
  tensors: Map<string, CheckpointTensor>;
  /** top-level non-tensor entries (e.g. `step`), for reports */
  extras: string[];
  close(): void;
}

export interface OpenOptions {
  /** the sub-dict of a .pt checkpoint to use, e.g. `generator` or `generator_ema` */
  key?: string;
}

function isMapLike(v: unknown): v is Map<unknown, unknown> {
  return v instanceof Map;
}

function isTensor(v: unknown): v is TensorRef {
  return typeof v === 'object' && v !== null && (v as { kind?: unknown }).kind === 'tensor';
}

/** Opens any supported checkpoint file. */
export function openCheckpoint(path: string, opts: OpenOptions = {}): Checkpoint {
  if (/\.safetensors(\.index\.json)?$/.test(path)) {
    if (opts.key)
      throw new SfcError(`${path}: --key selects a sub-dict of a PyTorch checkpoint; safetensors files are flat`);
    const f = openSafetensors(path);
    const tensors = new Map<string, CheckpointTensor>();
    for (const name of f.names()) {
      const e = f.entry(name);
      tensors.set(name, { name, dtype: e.sfcDtype, fileDtype: e.dtype, shape: e.shape, read: () => f.readBytes(name) });
    }
    return { path, format: 'safetensors', tensors, extras: [], close: () => f.close() };
  }
  const ck = loadPytorchCheckpoint(path);
  try {
    let root = ck.root;
    if (opts.key !== undefined) {
      if (!isMapLike(root) || !root.has(opts.key)) {
        const keys = isMapLike(root) ? [...root.keys()].map(String) : [];
        throw new SfcError(`${path}: no top-level entry '${opts.key}' (entries: ${keys.join(', ') || 'none'})`);
      }
      root = root.get(opts.key);
    } else if (isMapLike(root)) {
      // a checkpoint of several state dicts must say which one
      const dicts = [...root.entries()].filter(([, v]) => isMapLike(v) && [...v.values()].some(isTensor));
      if (dicts.length > 1 && ![...root.values()].some(isTensor)) {
        throw new SfcError(
          `${path} holds several state dicts (${dicts.map(([k]) => String(k)).join(', ')}); choose one with --key`,
          { exitCode: 2 },
        );
      }
      if (dicts.length === 1 && ![...root.values()].some(isTensor)) root = dicts[0]![1];
    }
    const { tensors: refs, skipped } = flattenStateDict(root);
    const tensors = new Map<string, CheckpointTensor>();
    for (const [name, ref] of refs) {
      tensors.set(name, {
        name,
        dtype: ref.dtype,
        fileDtype: ref.torchDtype,
        shape: ref.shape,
        read: () => tensorBytes(ref),
      });
    }
    return { path, format: 'pytorch', tensors, extras: skipped, close: () => ck.close() };
  } catch (e) {
    ck.close();
    throw e;
  }
}

const WRAPPER_SEGMENTS = ['_fsdp_wrapped_module.', '_orig_mod.', '_checkpoint_wrapped_module.'];

/** The model's own name for a checkpoint key: wrapper segments and the leading `model.` removed. */
export function canonicalName(name: string): string {
  let n = name;
  for (const seg of WRAPPER_SEGMENTS) n = n.split(seg).join('');
  return n.startsWith('model.') ? n.slice('model.'.length) : n;
}

/** Renames every tensor to its canonical name; two file names mapping to one is an error. */
export function canonicalize(ck: Checkpoint): Map<string, CheckpointTensor> {
  const out = new Map<string, CheckpointTensor>();
  for (const [name, t] of ck.tensors) {
    const c = canonicalName(name);
    const prior = out.get(c);
    if (prior) throw new SfcError(`${ck.path}: '${prior.name}' and '${name}' both map to the parameter '${c}'`);
    out.set(c, t);
  }
  return out;
}

export interface ExpectedParam {
  shape: readonly number[];
}

export interface StateDictReport {
  missing: string[];
  unexpected: string[];
  mismatched: { name: string; expected: readonly number[]; got: readonly number[] }[];
}

export function compareStateDict(
  expected: ReadonlyMap<string, ExpectedParam>,
  got: ReadonlyMap<string, CheckpointTensor>,
): StateDictReport {
  const r: StateDictReport = { missing: [], unexpected: [], mismatched: [] };
  for (const [name, e] of expected) {
    const t = got.get(name);
    if (!t) r.missing.push(name);
    else if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
      r.mismatched.push({ name, expected: e.shape, got: t.shape });
    }
  }
  for (const name of got.keys()) if (!expected.has(name)) r.unexpected.push(name);
  return r;
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/** Throws one clear error naming what is wrong (the first few of each kind) unless the dicts match. */
export function checkStateDict(
  path: string,
  expected: ReadonlyMap<string, ExpectedParam>,
  got: ReadonlyMap<string, CheckpointTensor>,
): void {
  const r = compareStateDict(expected, got);
  if (!r.missing.length && !r.unexpected.length && !r.mismatched.length) return;
  const few = (xs: string[]) => xs.slice(0, 5).join(', ') + (xs.length > 5 ? ` (+${xs.length - 5} more)` : '');
  const parts: string[] = [];
  if (r.missing.length) {
    const hint = r.unexpected.length ? ` (closest in the file: '${closest(r.missing[0]!, r.unexpected)}')` : '';
    parts.push(`${r.missing.length} missing: ${few(r.missing)}${hint}`);
  }
  if (r.unexpected.length) parts.push(`${r.unexpected.length} unexpected: ${few(r.unexpected)}`);
  if (r.mismatched.length) {
    parts.push(
      `${r.mismatched.length} with the wrong shape: ${r.mismatched
        .slice(0, 5)
        .map((m) => `${m.name} is ${fmt(m.got)}, the model needs ${fmt(m.expected)}`)
        .join('; ')}`,
    );
  }
  throw new SfcError(`${path} does not match the model: ${parts.join('; ')}`, {
    hint: 'check the model preset (model_kwargs.model_name) and, for Self-Forcing checkpoints, --use-ema / the key',
  });
}
