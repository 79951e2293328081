// The UMT5 tokenizer against ids from the Python tokenizers library (test/fixtures/tokenizer, made by
// test/reference/make_tokenizer_fixture.py), and prompt cleaning against ftfy / html / re semantics.
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanPrompt, fixText, htmlUnescape } from '../../models/text/clean.js';
import { UMT5Tokenizer } from '../../models/text/tokenizer.js';
import { errorOf } from '../helpers.js';

const dir = join(import.meta.dirname, '..', 'fixtures', 'tokenizer');
const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
interface Case {
  prompt: string;
  max_length: number;
  ids: number[];
  length: number;
}
const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as {
  pad_id: number;
  eos_id: number;
  cases: Case[];
};

describe('UMT5 tokenizer', () => {
  for (const textLen of [512, 16]) {
    it(`gives the Python ids, mask and lengths for every fixture prompt (text_len ${textLen})`, () => {
      const tok = new UMT5Tokenizer(json, textLen);
      expect(tok.padId).toBe(expected.pad_id);
      expect(tok.eosId).toBe(expected.eos_id);
      const cases = expected.cases.filter((c) => c.max_length === textLen);
      expect(cases.length).toBeGreaterThan(70);
      const batch = tok.encode(
        cases.map((c) => c.prompt),
        { clean: false },
      );
      expect(batch.batch).toBe(cases.length);
      cases.forEach((c, b) => {
        const row = Array.from(batch.ids.subarray(b * textLen, (b + 1) * textLen));
        expect(row, c.prompt).toEqual(c.ids);
        expect(batch.lengths[b]).toBe(c.length);
        const mask = Array.from(batch.mask.subarray(b * textLen, (b + 1) * textLen));
        expect(mask).toEqual(c.ids.map((_, i) => (i < c.length ? 1 : 0)));
        expect(row[c.length - 1]).toBe(tok.eosId);
      });
      // the fixture has prompts long enough that 16 tokens truncate them, and none that 512 do
      const cut = batch.dropped.filter((d) => d > 0).length;
      if (textLen === 16) expect(cut).toBeGreaterThan(20);
      else expect(cut).toBe(0);
    });
  }

  it('reports how many tokens truncation dropped', () => {
    const tok = new UMT5Tokenizer(json, 8);
    const full = tok.ids('A golden retriever runs along a foggy beach at sunrise', { clean: false });
    expect(full.length).toBeGreaterThan(8);
    const batch = tok.encode(['A golden retriever runs along a foggy beach at sunrise', 'a cat']);
    expect(batch.dropped).toEqual([full.length - 8, 0]);
    expect(Array.from(batch.ids.subarray(0, 8))).toEqual([...full.slice(0, 7), tok.eosId]);
  });

  it('cleans prompts before tokenizing by default', () => {
    const tok = new UMT5Tokenizer(json, 64);
    const messy = '  A \u201cfoggy\u201d   beach&amp;amp;\u00a0waves\r\n';
    const batch = tok.encode([messy]);
    expect(batch.cleaned[0]).toBe('A "foggy" beach& waves');
    expect(batch.lengths[0]).toBe(tok.ids('A "foggy" beach& waves', { clean: false }).length);
  });

  it('loads from the tokenizer folder or the file, and names the file in every error', () => {
    const d = mkdtempSync(join(tmpdir(), 'sfc-tok-'));
    copyFileSync(join(dir, 'tokenizer.json'), join(d, 'tokenizer.json'));
    writeFileSync(join(d, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 512 }));
    expect(UMT5Tokenizer.load(d, 512).encode(['a cat']).lengths[0]).toBeGreaterThan(1);
    expect(UMT5Tokenizer.load(join(d, 'tokenizer.json'), 512).vocabSize).toBe(800);

    expect(errorOf(() => UMT5Tokenizer.load(join(d, 'missing'), 512))).toMatch(/missing: no such tokenizer/);
    const cut = join(d, 'cut.json');
    writeFileSync(cut, readFileSync(join(dir, 'tokenizer.json'), 'utf8').slice(0, 5000));
    expect(errorOf(() => UMT5Tokenizer.load(cut, 512))).toMatch(/cut\.json: not valid JSON.*truncated/);
    const noPad = {
      ...json,
      added_tokens: json.added_tokens.filter((t: { content: string }) => t.content !== '<pad>'),
    };
    expect(errorOf(() => new UMT5Tokenizer(noPad, 512, 'x.json'))).toMatch(
      /x\.json: the special token <pad> is missing/,
    );
    expect(errorOf(() => new UMT5Tokenizer({ version: '1.0' }, 512, 'y.json'))).toMatch(/y\.json: not a Hugging Face/);
    expect(errorOf(() => new UMT5Tokenizer({ ...json, post_processor: null }, 512, 'z.json'))).toMatch(
      /does not append <\/s>/,
    );
    expect(errorOf(() => new UMT5Tokenizer(json, 0))).toMatch(/positive integer/);
  });
});

describe('prompt cleaning (ftfy.fix_text + html.unescape x2 + whitespace collapse)', () => {
  const cases: [string, string][] = [
    ['A \u201cquoted\u201d cat\u2019s toy', 'A "quoted" cat\'s toy'],
    ['\uff26\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48\u3000\uff54\uff45\uff58\uff54\uff01', 'Fullwidth text!'],
    ['\ufb01ne \ufb02owers in an \ufb00ort', 'fine flowers in an ffort'],
    ['&amp;amp; fish &lt;3', '& fish <3'],
    ['a <b> &amp;amp; c', 'a <b> & c'],
    ['  many   spaces\tand\nlines\r\n ', 'many spaces and lines'],
    ['\x1b[31mred\x1b[0m text', 'red text'],
    ['cafe\u0301 au lait', 'caf\u00e9 au lait'],
    ['price \x80 5 \x96 6', 'price \u20ac 5 \u2013 6'],
    ['zero\u200bwidth stays', 'zero\u200bwidth stays'],
    ['\ufeffBOM start\x00\x07', 'BOM start'],
    ['a\u00a0b\u3000c\u2028d\x85e', 'a b c d\u2026e'],
    ['\ud83d\udc31 cat \u732b', '\ud83d\udc31 cat \u732b'],
    ['lone x\ud800y', 'lone x\ufffdy'],
    ['&eacute &#x41; &#150;', '\u00e9 A \u2013'],
  ];
  for (const [input, want] of cases)
    it(JSON.stringify(input), () => {
      expect(cleanPrompt(input)).toBe(want);
    });

  it('is idempotent on clean text and on the fixture prompts', () => {
    for (const c of expected.cases.slice(0, 73)) {
      const once = cleanPrompt(c.prompt);
      expect(cleanPrompt(once)).toBe(once);
    }
  });

  it('leaves HTML-looking text to basic_clean, as ftfy does', () => {
    expect(fixText('<p>&amp;amp;</p>')).toBe('<p>&amp;amp;</p>');
    expect(htmlUnescape('&notit; &copy2')).toBe('\u00acit; \u00a92');
  });
});
