// Prompts to contexts through the tokenizer fixture and a tiny random encoder: the on-disk cache
// (hits skip loading the encoder and give the same bits, the key follows the weights' identity,
// files are complete or absent, a damaged file is a miss), releasing the encoder after encoding,
// and the truncation warning.
import { mkdtempSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildUmt5Bundle } from '../../compiler/bundle.js';
import { loadModelPreset } from '../../configs/presets.js';
import { CpuDevice } from '../../runtime/cpu.js';
import type { Tensor } from '../../runtime/tensor.js';
import { PromptCache, PromptEncoder, weightsIdentity } from '../../models/text/prompts.js';
import { UMT5Tokenizer } from '../../models/text/tokenizer.js';
import { Umt5Encoder, type Umt5Shape } from '../../models/text/umt5.js';
import { randomWeights } from './umt5-cases.js';

// the tokenizer fixture's vocabulary has 800 pieces; the tiny encoder's other sizes
const shape: Umt5Shape = { ...loadModelPreset('tiny').text_encoder, vocab_size: 800 };
const dev = new CpuDevice();
const bundle = buildUmt5Bundle(shape);
const weights = randomWeights(shape, 5);
const tokenizer = new UMT5Tokenizer(
  JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'tokenizer', 'tokenizer.json'), 'utf8')),
  shape.text_len,
);
const prompts = ['A red fox runs through fresh snow.', 'Waves at sunset, slow motion.'];

function encoder(opts: { cache?: PromptCache; release?: boolean; onTruncated?: (p: number, n: number) => void } = {}) {
  const loads: Umt5Encoder[] = [];
  const pe = new PromptEncoder({
    tokenizer,
    device: dev,
    load: () => {
      const e = Umt5Encoder.load(dev, shape, bundle, weights.tensors);
      loads.push(e);
      return e;
    },
    ...opts,
  });
  return { pe, loads };
}

const bits = (ts: Tensor[]) => ts.map((t) => Array.from(t.toRaw() as Uint16Array));

describe('PromptEncoder and PromptCache', () => {
  it('encodes once, then serves the same bits from the cache without loading the encoder', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'sfc-prompts-')), 'cache');
    const cache = new PromptCache(dir, 'weights-a', shape);
    const first = encoder({ cache });
    const a = first.pe.encode(prompts);
    expect(first.pe.stats).toEqual({ hits: 0, misses: 2, loads: 1 });
    expect(first.pe.loaded).toBe(false); // released after encoding
    expect(() => first.loads[0]!.encode([1])).toThrow(/released/);
    const files = readdirSync(dir);
    expect(files.sort()).toEqual(
      prompts.map((p) => `${cache.key(tokenizer.ids(p))}.safetensors`).sort(), // no temp files left behind
    );

    const second = encoder({ cache });
    const b = second.pe.encode(prompts);
    expect(second.pe.stats).toEqual({ hits: 2, misses: 0, loads: 0 });
    expect(bits(b)).toEqual(bits(a));
    expect(b[0]!.shape).toEqual([shape.text_len, shape.dim]);

    // other weights: other keys, so the prompt is encoded again
    const other = encoder({ cache: new PromptCache(dir, 'weights-b', shape) });
    other.pe.encode(prompts.slice(0, 1));
    expect(other.pe.stats).toEqual({ hits: 0, misses: 1, loads: 1 });
    for (const t of [...a, ...b]) t.dispose();
  });

  it('treats a damaged file as a miss and rewrites it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfc-prompts-'));
    const cache = new PromptCache(dir, 'w', shape);
    const ids = tokenizer.ids(prompts[0]!);
    const ref = encoder({ cache });
    const [good] = ref.pe.encode(prompts.slice(0, 1));
    writeFileSync(cache.file(ids), 'not a safetensors file');
    expect(cache.get(ids, dev)).toBeUndefined();
    const again = encoder({ cache });
    const [re] = again.pe.encode(prompts.slice(0, 1));
    expect(again.pe.stats.misses).toBe(1);
    expect(bits([re!])).toEqual(bits([good!]));
    const hit = cache.get(ids, dev);
    expect(hit && bits([hit])).toEqual(bits([good!]));
  });

  it('keeps the encoder loaded across calls when release is off', () => {
    const { pe, loads } = encoder({ release: false });
    pe.encode(prompts.slice(0, 1));
    pe.encode(prompts.slice(1));
    expect(pe.loaded).toBe(true);
    expect(loads).toHaveLength(1);
    pe.release();
    expect(pe.loaded).toBe(false);
  });

  it('reports prompts cut to text_len', () => {
    const cut: [number, number][] = [];
    const { pe } = encoder({ onTruncated: (p, n) => cut.push([p, n]) });
    const long = 'one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen';
    const n = tokenizer.ids(long).length;
    expect(n).toBeGreaterThan(shape.text_len);
    pe.encode(['short', long]);
    expect(cut).toEqual([[1, n - shape.text_len]]);
  });

  it('weights identity follows the file (size, modification time) and names a missing one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfc-prompts-'));
    const f = join(dir, 'enc.pth');
    writeFileSync(f, 'abc');
    const a = weightsIdentity(f);
    expect(weightsIdentity(f)).toBe(a);
    utimesSync(f, new Date(2020, 1, 1), new Date(2020, 1, 1));
    expect(weightsIdentity(f)).not.toBe(a);
    expect(() => weightsIdentity(join(dir, 'none.pth'))).toThrow(/none\.pth: cannot read the text encoder weights/);
  });
});
