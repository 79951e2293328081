// `sfc infer` beyond text-to-video, end to end on the CPU with the tiny default (random weights):
// image-to-video, video extension and video-to-video through the VAE encoder (the input video is the
// i2v output, read back by the built-in AVI reader), the multi-step and bidirectional pipelines with
// CFG; every file reads back with the expected frame count. Bad combinations are one-line errors.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { parseAvi } from '../../media/avi.js';
import { sfcCli as sfc } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sfc-infer-pipelines-'));
const tiny = (out: string, ...more: string[]) =>
  sfc(
    'infer',
    '--model',
    'tiny',
    '--prompt',
    'a red fox',
    '--out',
    join(dir, out),
    '--format',
    'avi',
    '--device',
    'cpu',
    '--no-progress',
    ...more,
  );
const frames = (out: string) => parseAvi(readFileSync(join(dir, out, 'a red fox-0.avi'))).frames.length;

describe('sfc infer pipelines (tiny, CPU)', () => {
  process.env.SFC_CACHE_DIR = join(dir, 'cache');
  const image = join(dir, 'image.png');
  const png = new PNG({ width: 50, height: 40 });
  for (let i = 0; i < 50 * 40; i++) png.data.set([i % 256, (i * 7) % 256, 90, 255], 4 * i);
  writeFileSync(image, PNG.sync.write(png));

  it('--i2v, then --extend and --v2v of its video', async () => {
    const i2v = await tiny('i2v', '--i2v', image);
    expect(i2v.code, i2v.err).toBe(0);
    // the image's latent frame + 6 generated (5 rounded up to whole chunks of 3)
    expect(frames('i2v')).toBe(1 + 4 * 6);
    const video = join(dir, 'i2v', 'a red fox-0.avi');
    const ext = await tiny('ext', '--extend', video);
    expect(ext.code, ext.err).toBe(0);
    expect(frames('ext')).toBe(1 + 4 * 8); // 6 given latent frames (7 rounded down to chunks) + one chunk
    const v2v = await tiny('v2v', '--v2v', video, '--strength', '0.5');
    expect(v2v.code, v2v.err).toBe(0);
    expect(frames('v2v')).toBe(1 + 4 * 5); // 7 latent frames of source, in whole chunks: 6
  }, 600_000);

  it('--pipeline multi-step and bidirectional (CFG with the negative prompt)', async () => {
    const ms = await tiny('ms', '--pipeline', 'multi-step', '--steps', '2', '--guidance', '3');
    expect(ms.code, ms.err).toBe(0);
    expect(frames('ms')).toBe(21);
    // the same seed gives the same file; another seed another video
    const again = await tiny('ms2', '--pipeline', 'multi-step', '--steps', '2', '--guidance', '3');
    expect(again.code, again.err).toBe(0);
    const file = (out: string) => readFileSync(join(dir, out, 'a red fox-0.avi'));
    expect(file('ms2')).toEqual(file('ms'));
    const other = await tiny('ms3', '--pipeline', 'multi-step', '--steps', '2', '--guidance', '3', '--seed', '5');
    expect(other.code, other.err).toBe(0);
    expect(file('ms3')).not.toEqual(file('ms'));
    const bi = await tiny('bi', '--pipeline', 'bidirectional', '--steps', '2', '--solver', 'dpm++');
    expect(bi.code, bi.err).toBe(0);
    expect(frames('bi')).toBe(21);
  }, 600_000);

  it('--decoder taehv (random, and the tiny golden file)', async () => {
    const r = await tiny('taehv', '--decoder', 'taehv');
    expect(r.code, r.err).toBe(0);
    expect(frames('taehv')).toBe(21);
    const file = join(import.meta.dirname, '..', 'fixtures', 'taehv-tiny', 'taehv.safetensors');
    const f = await tiny('taehv-file', '--decoder', 'taehv', '--taehv', file);
    expect(f.code, f.err).toBe(0);
    expect(frames('taehv-file')).toBe(21);
    expect(readFileSync(join(dir, 'taehv-file', 'a red fox-0.avi'))).not.toEqual(
      readFileSync(join(dir, 'taehv', 'a red fox-0.avi')),
    );
    expect((await tiny('bad', '--decoder', 'taehv', '--taehv', join(dir, 'nope.pth'))).err).toMatch(
      /TAEHV checkpoint not found: .*nope\.pth/,
    );
  }, 120_000);

  it('bad combinations and inputs are one-line errors', async () => {
    const err = async (...a: string[]) => {
      const r = await tiny('bad', ...a);
      expect(r.code).toBe(2);
      return r.err;
    };
    expect(await err('--i2v', image, '--pipeline', 'multi-step')).toMatch(/--i2v runs with --pipeline few-step/);
    expect(await err('--strength', '0.5')).toMatch(/--strength goes with --v2v/);
    expect(await err('--i2v', image, '--v2v', image)).toMatch(/--i2v and --v2v do not combine/);
    expect(await err('--steps', '8')).toMatch(/--steps sets the multi-step samplers/);
    expect(await err('--pipeline', 'sideways')).toMatch(/--pipeline/);
    expect(await err('--pipeline', 'multi-step', '--solver', 'rk4')).toMatch(/--solver takes unipc, dpm\+\+, euler/);
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'not an image\n');
    const r = await tiny('bad', '--i2v', text);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/^sfc: error: .*notes\.txt.*text file/m);
    expect(r.err).not.toMatch(/\n\s+at /);
  }, 120_000);
});
