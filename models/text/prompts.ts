// Prompts to text contexts, with encoded prompts cached on disk.
//
// PromptCache keeps one file per encoded prompt, named by a hash of everything the context depends
// on: the token ids the encoder sees (so the tokenizer and prompt cleaning are covered), the weights'
// identity (resolved path, size and modification time of the checkpoint file), the encoder's sizes
// and a format version. A file is a small safetensors holding the prompt's rows only ([L, dim] bf16;
// the zero padding is restored on load), written to a temp file and renamed into place, so readers
// never see a partial file and concurrent writers of one prompt cannot corrupt it.
//
// PromptEncoder tokenizes prompts, serves them from the cache when it can and otherwise loads the
// encoder (only then: a cached prompt costs no weights I/O) and encodes them; by default it releases
// the encoder's device memory when the call returns, so the DiT has it back.
import { createHash } from 'node:crypto';
import { mkdirSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { bf16 } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import { openSafetensors, writeSafetensors } from '../../runtime/checkpoint/safetensors.js';
import { CudaDevice } from '../../runtime/cuda.js';
import type { Device } from '../../runtime/device.js';
import { Tensor } from '../../runtime/tensor.js';
import type { UMT5Tokenizer } from './tokenizer.js';
import { promptLengths, type Umt5Encoder, type Umt5Shape } from './umt5.js';

/** Bumped whenever the encoder's numerics change, so old cache files stop matching. */
export const PROMPT_CACHE_FORMAT = 'sfc-umt5-context-1';

/** Identity of a weights file for cache keys: its resolved path, size and modification time. */
export function weightsIdentity(path: string): string {
  try {
    const st = statSync(path, { bigint: true });
    return `${realpathSync(path)}:${st.size}:${st.mtimeNs}`;
  } catch (e) {
    throw new SfcError(`${path}: cannot read the text encoder weights: ${(e as Error).message}`, { cause: e });
  }
}

export class PromptCache {
  /**
   * `dir` is created when the first entry is written. `weights` identifies the encoder's weights
   * (weightsIdentity of its checkpoint file, or any string that changes when they change).
   */
  constructor(
    readonly dir: string,
    readonly weights: string,
    readonly shape: Umt5Shape,
  ) {}

  /** The hash naming a prompt's entry. */
  key(ids: ArrayLike<number>): string {
    const h = createHash('sha256');
    h.update(JSON.stringify([PROMPT_CACHE_FORMAT, this.weights, this.shape]));
    h.update(new Uint8Array(Int32Array.from(ids).buffer));
    return h.digest('hex');
  }

  file(ids: ArrayLike<number>): string {
    return join(this.dir, `${this.key(ids)}.safetensors`);
  }

  /** The cached context of a prompt as [text_len, dim] bf16 on `device`, or undefined. */
  get(ids: ArrayLike<number>, device: Device): Tensor | undefined {
    const path = this.file(ids);
    let f;
    try {
      f = openSafetensors(path);
    } catch {
      return undefined; // absent, or not a file this cache wrote: encode again and overwrite it
    }
    try {
      const e = f.has('context') ? f.entry('context') : undefined;
      if (
        f.metadata.format !== PROMPT_CACHE_FORMAT ||
        f.metadata.key !== this.key(ids) ||
        !e ||
        e.dtype !== 'BF16' ||
        e.shape.join() !== `${ids.length},${this.shape.dim}`
      )
        return undefined;
      const out = Tensor.zeros(device, bf16, [this.shape.text_len, this.shape.dim]);
      device.write(out.storage, out.byteOffset, f.readBytes('context'));
      return out;
    } finally {
      f.close();
    }
  }

  /** Stores the prompt rows of `context` ([text_len, dim] bf16, the prompt's ids.length rows first). */
  put(ids: ArrayLike<number>, context: Tensor, prompt = ''): void {
    const { text_len, dim } = this.shape;
    if (context.dtype !== bf16 || context.shape.join() !== `${text_len},${dim}`)
      throw new SfcError(`a text context must be bf16 [${text_len}, ${dim}], got ${context.toString()}`);
    const rows = context.narrow(0, 0, ids.length).toRaw();
    mkdirSync(this.dir, { recursive: true });
    writeSafetensors(
      this.file(ids),
      [{ name: 'context', dtype: bf16, shape: [ids.length, dim], data: new Uint8Array(rows.buffer) }],
      { format: PROMPT_CACHE_FORMAT, key: this.key(ids), prompt },
    );
  }
}

export interface PromptEncoderOptions {
  tokenizer: UMT5Tokenizer;
  /** the device the contexts are returned on (the encoder must be loaded onto it) */
  device: Device;
  /** loads the encoder; called only when a prompt is not in the cache */
  load: () => Umt5Encoder;
  cache?: PromptCache;
  /** release the encoder and its device memory when each encode() returns (default true) */
  release?: boolean;
  /** told about every prompt cut to text_len (default: a console warning) */
  onTruncated?: (prompt: number, dropped: number) => void;
}

export class PromptEncoder {
  private encoder: Umt5Encoder | undefined;
  /** prompts served from the cache, prompts encoded, and times the encoder was loaded */
  readonly stats = { hits: 0, misses: 0, loads: 0 };

  constructor(private readonly opts: PromptEncoderOptions) {}

  /** Whether the encoder's weights are on the device now. */
  get loaded(): boolean {
    return this.encoder !== undefined;
  }

  /** Prompts -> contexts [text_len, dim] bf16 on the device, rows past each prompt zero. */
  encode(prompts: readonly string[]): Tensor[] {
    const { tokenizer, cache, device } = this.opts;
    const batch = tokenizer.encode(prompts);
    batch.dropped.forEach((n, i) => {
      if (n === 0) return;
      if (this.opts.onTruncated) this.opts.onTruncated(i, n);
      else console.warn(`prompt ${i} is longer than ${batch.textLen} tokens; its last ${n} tokens are dropped`);
    });
    const lengths = promptLengths(batch);
    const out: Tensor[] = [];
    try {
      lengths.forEach((n, b) => {
        const ids = batch.ids.subarray(b * batch.textLen, b * batch.textLen + n);
        const hit = cache?.get(ids, device);
        if (hit) {
          this.stats.hits++;
          out.push(hit);
          return;
        }
        this.stats.misses++;
        const ctx = this.load().encode(ids);
        out.push(ctx);
        cache?.put(ids, ctx, batch.cleaned[b]);
      });
      return out;
    } catch (e) {
      for (const t of out) t.dispose();
      throw e;
    } finally {
      if (this.opts.release ?? true) this.release();
    }
  }

  private load(): Umt5Encoder {
    if (this.encoder) return this.encoder;
    const enc = this.opts.load();
    this.stats.loads++;
    if (enc.device !== this.opts.device || enc.shape.text_len !== this.opts.tokenizer.textLen) {
      enc.dispose();
      throw new SfcError(
        `the text encoder was loaded on ${enc.device.name} with text_len ${enc.shape.text_len}; the prompts need ${this.opts.device.name} and text_len ${this.opts.tokenizer.textLen}`,
      );
    }
    this.encoder = enc;
    return enc;
  }

  /** Frees the encoder's weights; on CUDA also returns the cached free memory to the driver. */
  release(): void {
    if (!this.encoder) return;
    this.encoder.dispose();
    this.encoder = undefined;
    if (this.opts.device instanceof CudaDevice) this.opts.device.allocator.emptyCache();
  }
}
