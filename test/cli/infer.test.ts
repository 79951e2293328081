// `sfc infer` end to end on the CPU with the embedded tiny default (seeded random weights, the
// embedded tokenizer): the video file is written and reads back with the right size and frame count;
// user mistakes are one-line errors with exit code 2.
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAvi } from '../../media/avi.js';
import { outputName } from '../../cli/commands/infer.js';
import { sfcCli } from '../helpers.js';

const sfc = sfcCli;

describe('sfc infer', () => {
  it('writes a playable video with the tiny model on the CPU', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfc-infer-'));
    process.env.SFC_CACHE_DIR = join(dir, 'cache');
    const tiny = (out: string, ...more: string[]) =>
      sfc(
        'infer',
        '--model',
        'tiny',
        '--prompt',
        'a red fox running through snow',
        '--out',
        out,
        '--format',
        'avi',
        '--device',
        'cpu',
        '--no-progress',
        ...more,
      );
    const r = await tiny(dir, '--profile');
    expect(r.err).toMatch(/random weights \(seed 0\)/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/diffusion block 1: [\d.]+ ms/);
    const file = readdirSync(dir).find((f) => f.endsWith('.avi'))!;
    expect(file).toBe('a red fox running through snow-0.avi');
    const avi = parseAvi(readFileSync(join(dir, file)));
    expect([avi.width, avi.height, avi.frames.length]).toEqual([96, 64, 21]);
    // a second run of the same prompt is served from the prompt cache and gives the same file
    const again = await tiny(join(dir, 'b'));
    expect(again.code).toBe(0);
    expect(readFileSync(join(dir, 'b', file))).toEqual(readFileSync(join(dir, file)));
  }, 180_000);

  it('user mistakes are one-line errors', async () => {
    expect((await sfc('infer', '--model', 'tiny', '--out', 'x')).err).toMatch(
      /^sfc: error: give exactly one of --prompt TEXT and --prompts FILE/,
    );
    const big = await sfc('infer', '--prompt', 'p', '--out', 'x', '--device', 'cpu');
    expect(big.code).toBe(2);
    expect(big.err).toMatch(
      /Wan2.1-T2V-1.3B needs its weights: give --model-dir DIR or --checkpoint, --vae, --text-encoder, --tokenizer/,
    );
    expect((await sfc('infer', '--model', 'tiny', '--prompt', 'p', '--device', 'tpu')).err).toMatch(
      /--device takes cpu, cuda or cuda:N, got 'tpu'/,
    );
    expect((await sfc('infer', '--model', 'tiny', '--prompt', 'p', '--height', '100', '--device', 'cpu')).err).toMatch(
      /multiples of 16, got 100 x 96/,
    );
  });

  it('--gpus 2 with --device cpu: two processes share the prompts and write the same files as one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfc-infer-shard-'));
    process.env.SFC_CACHE_DIR = join(dir, 'cache');
    const prompts = join(dir, 'prompts.txt');
    writeFileSync(prompts, 'a red fox in snow\n\na blue boat on a lake\nsunrise over hills\n');
    const common = [
      'infer',
      '--model',
      'tiny',
      '--prompts',
      prompts,
      '--format',
      'avi',
      '--device',
      'cpu',
      '--no-progress',
      '--save-with-index',
    ];
    const two = await sfc(...common, '--out', join(dir, 'two'), '--gpus', '2');
    expect(two.code, two.err).toBe(0);
    expect(two.err).toMatch(/^\[cpu 1\] /m);
    const one = await sfc(...common, '--out', join(dir, 'one'));
    expect(one.code).toBe(0);
    const names = readdirSync(join(dir, 'one')).sort();
    expect(names).toEqual(['0-0_regular.avi', '1-0_regular.avi', '2-0_regular.avi']);
    expect(readdirSync(join(dir, 'two')).sort()).toEqual(names);
    for (const n of names) expect(readFileSync(join(dir, 'two', n))).toEqual(readFileSync(join(dir, 'one', n)));
  }, 300_000);

  it('--prompt-schedule: one video whose prompt switches by chunk; malformed schedules are clear errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfc-infer-schedule-'));
    process.env.SFC_CACHE_DIR = join(dir, 'cache');
    const file = join(dir, 'story.txt');
    writeFileSync(file, '# a short story\n0: a red fox in snow\n1: the fox jumps into a river\n');
    const r = await sfc(
      'infer',
      '--model',
      'tiny',
      '--prompt-schedule',
      file,
      '--out',
      dir,
      '--format',
      'avi',
      '--device',
      'cpu',
      '--no-progress',
    );
    expect(r.code, r.err).toBe(0);
    expect(parseAvi(readFileSync(join(dir, 'a red fox in snow-0.avi'))).frames).toHaveLength(21);
    writeFileSync(file, '1: starts late\n');
    expect((await sfc('infer', '--model', 'tiny', '--prompt-schedule', file, '--device', 'cpu')).err).toMatch(
      /the schedule must start at chunk 0/,
    );
    writeFileSync(file, '0: a\nthen b\n');
    expect((await sfc('infer', '--model', 'tiny', '--prompt-schedule', file, '--device', 'cpu')).err).toMatch(
      /story\.txt:2: expected 'CHUNK: prompt', got 'then b'/,
    );
    expect(
      (await sfc('infer', '--model', 'tiny', '--prompt-schedule', file, '--prompt', 'x', '--device', 'cpu')).err,
    ).toMatch(/--prompt-schedule replaces --prompt and --prompts/);
  }, 180_000);

  it('names files like the reference', () => {
    expect(outputName('a cat/dog', 3, 1, false, false)).toBe('a cat_dog-1');
    expect(outputName('x'.repeat(150), 0, 0, false, false)).toBe(`${'x'.repeat(100)}-0`);
    expect(outputName('p', 4, 0, true, true)).toBe('4-0_ema');
  });
});
