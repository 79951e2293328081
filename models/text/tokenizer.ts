// The UMT5 tokenizer of Wan2.1's text encoder, driven the way the reference drives it
// (wan/modules/tokenizers.py HuggingfaceTokenizer with seq_len = text_len and clean='whitespace'):
// clean the prompt, encode it with the checkpoint's own tokenizer.json (google/umt5-xxl: a
// Precompiled NFKC normalizer, Metaspace pre-tokenizer, a Unigram model and an appended </s>), cut
// the ids to text_len keeping </s> last, pad with <pad> to text_len and return the attention mask.
//
// tokenizer.json is interpreted by @huggingface/tokenizers (the pure-JS port of the Rust library
// that produced the file), so normalization and Unigram segmentation are the library's, not ours;
// test/fixtures/tokenizer holds a small vocabulary of the same layout and the ids Python gives.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { SfcError } from '../../dsl/errors.js';
import { cleanPrompt } from './clean.js';

/** The parts of tokenizer.json this file reads itself (the library reads the rest). */
interface TokenizerJSON {
  model?: unknown;
  added_tokens?: { id: number; content: string }[];
}
/** tokenizer_config.json: special-token names and flags, passed to the library as they are. */
type TokenizerConfig = Record<string, unknown>;

/** A tokenizer file that is missing, unreadable or not a tokenizer the encoder can use. */
export class TokenizerError extends SfcError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options);
    this.name = 'TokenizerError';
  }
}

/** A batch of prompts as the text encoder takes it: row-major [batch, textLen] ids and mask. */
export interface TokenBatch {
  readonly batch: number;
  readonly textLen: number;
  /** Token ids, [batch, textLen], padded with the pad id. */
  readonly ids: Int32Array;
  /** 1 for real tokens (including </s>), 0 for padding; [batch, textLen]. */
  readonly mask: Uint8Array;
  /** Real tokens per prompt (the reference's seq_lens); the encoder output is zeroed past them. */
  readonly lengths: readonly number[];
  /** Tokens cut from each prompt by truncation (0 = it fit); callers warn when any is non-zero. */
  readonly dropped: readonly number[];
  /** The prompts after cleaning, as tokenized. */
  readonly cleaned: readonly string[];
}

export interface EncodeOptions {
  /** Apply the reference's prompt cleaning first (default true). */
  readonly clean?: boolean;
}

export class UMT5Tokenizer {
  readonly padId: number;
  readonly eosId: number;
  readonly vocabSize: number;
  private readonly tok: Tokenizer;

  /**
   * `source` names the file in errors. `textLen` is the fixed sequence length of the encoder (the
   * preset's text_len, 512 for Wan2.1).
   */
  constructor(
    json: unknown,
    readonly textLen: number,
    readonly source = 'tokenizer.json',
    config: TokenizerConfig = {},
  ) {
    if (!Number.isInteger(textLen) || textLen < 1)
      throw new TokenizerError(`text length must be a positive integer, got ${textLen}`);
    const j = json as TokenizerJSON | null;
    if (typeof j !== 'object' || j === null || typeof j.model !== 'object' || j.model === null)
      throw new TokenizerError(`${source}: not a Hugging Face tokenizer.json (no "model" object)`);
    const added = Array.isArray(j.added_tokens) ? j.added_tokens : [];
    const special = (content: string): number => {
      const t = added.find((a) => a.content === content);
      if (t === undefined)
        throw new TokenizerError(`${source}: the special token ${content} is missing; is this the UMT5 tokenizer?`);
      return t.id;
    };
    this.padId = special('<pad>');
    this.eosId = special('</s>');
    try {
      this.tok = new Tokenizer(j, { pad_token: '<pad>', eos_token: '</s>', ...config });
    } catch (e) {
      throw new TokenizerError(`${source}: cannot build the tokenizer: ${(e as Error).message}`, { cause: e });
    }
    const vocab = (j.model as { vocab?: unknown }).vocab;
    this.vocabSize = Array.isArray(vocab)
      ? vocab.length
      : vocab && typeof vocab === 'object'
        ? Object.keys(vocab).length
        : 0;
    // The encoder appends </s>; check on a probe so a tokenizer without that post-processor fails here.
    const probe = this.tok.encode('a').ids;
    if (probe[probe.length - 1] !== this.eosId)
      throw new TokenizerError(`${source}: the tokenizer does not append </s> (no T5 post-processor)`);
  }

  /**
   * Loads `tokenizer.json` (and `tokenizer_config.json` beside it when present) from a file or from
   * the tokenizer directory of a checkpoint (e.g. Wan2.1-T2V-1.3B/google/umt5-xxl).
   */
  static load(path: string, textLen: number): UMT5Tokenizer {
    let file = path;
    let stat;
    try {
      stat = statSync(path);
    } catch {
      throw new TokenizerError(`${path}: no such tokenizer file or directory`, {
        hint: 'point files.tokenizer at the google/umt5-xxl folder of the Wan2.1 checkpoint',
      });
    }
    if (stat.isDirectory()) file = join(path, 'tokenizer.json');
    const json = readJson(file, true);
    const config = readJson(join(file, '..', 'tokenizer_config.json'), false) as TokenizerConfig | undefined;
    return new UMT5Tokenizer(json, textLen, file, config ?? {});
  }

  /** Ids of one prompt without padding or truncation (</s> appended), after cleaning unless told not to. */
  ids(prompt: string, options: EncodeOptions = {}): number[] {
    return this.tok.encode(options.clean === false ? prompt : cleanPrompt(prompt)).ids;
  }

  /** Tokenizes a batch the way the reference's text encoder does. */
  encode(prompts: readonly string[], options: EncodeOptions = {}): TokenBatch {
    const L = this.textLen;
    const ids = new Int32Array(prompts.length * L).fill(this.padId);
    const mask = new Uint8Array(prompts.length * L);
    const lengths: number[] = [];
    const dropped: number[] = [];
    const cleaned: string[] = [];
    prompts.forEach((p, b) => {
      if (typeof p !== 'string') throw new TokenizerError(`prompt ${b} is not a string`);
      const text = options.clean === false ? p : cleanPrompt(p);
      cleaned.push(text);
      let t = this.tok.encode(text).ids;
      dropped.push(Math.max(0, t.length - L));
      // Truncation keeps the first L-1 content tokens and the closing </s>, as the Python tokenizer does.
      if (t.length > L) t = [...t.slice(0, L - 1), this.eosId];
      ids.set(t, b * L);
      mask.fill(1, b * L, b * L + t.length);
      lengths.push(t.length);
    });
    return { batch: prompts.length, textLen: L, ids, mask, lengths, dropped, cleaned };
  }
}

function readJson(file: string, required: boolean): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TokenizerError(`${file}: cannot read: ${(e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${file}: not valid JSON (${(e as Error).message}); the file may be truncated`, {
      cause: e,
    });
  }
}
