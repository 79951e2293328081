// Video and image writers (media/): the Motion-JPEG AVI read back and decoded, PNG round trips,
// atomic writes (nothing at the target after a failure or abort), the float video -> RGB conversion,
// the ffmpeg pipe with stand-in ffmpeg scripts (success, failure, missing), and real MP4 files when
// ffmpeg is installed.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jpeg from 'jpeg-js';
import { afterAll, describe, expect, it } from 'vitest';
import { MjpegAviWriter, fpsRational, parseAvi } from '../../media/avi.js';
import { FfmpegMp4Writer, ffmpegArgs, findFfmpeg } from '../../media/ffmpeg.js';
import { pixelOf, rgbFrame } from '../../media/frames.js';
import { PngSequenceWriter, decodePng, encodePng, frameName, readPng, writePng } from '../../media/png.js';
import { openVideo, resolveFormat } from '../../media/video.js';

const root = mkdtempSync(join(tmpdir(), 'sfc-media-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => {
  const d = join(root, `case-${dirs++}`);
  mkdirSync(d);
  return d;
};

/** a smooth test picture that moves with t: gradients plus a bright square */
function picture(w: number, h: number, t: number): Uint8Array {
  const rgb = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const inSquare = x >= 4 + 3 * t && x < 16 + 3 * t && y >= 8 && y < 20;
      rgb[i] = inSquare ? 250 : Math.round((255 * x) / (w - 1));
      rgb[i + 1] = inSquare ? 250 : Math.round((255 * y) / (h - 1));
      rgb[i + 2] = inSquare ? 250 : 128;
    }
  return rgb;
}

function diffStats(a: Uint8Array, b: Uint8Array): { mean: number; max: number } {
  expect(a.length).toBe(b.length);
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    sum += d;
    max = Math.max(max, d);
  }
  return { mean: sum / a.length, max };
}

function decodeJpegRgb(bytes: Uint8Array): { width: number; height: number; data: Uint8Array } {
  return jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false });
}

/** files and directories in `dir`, hidden temporaries included */
const listing = (dir: string) => readdirSync(dir).sort();

describe('float video -> RGB bytes', () => {
  it('trunc(255 * clamp(x * 0.5 + 0.5, 0, 1)) as the reference casts to uint8', () => {
    expect([-1, -2, 1, 3, 0, 0.5, -0.5, NaN].map(pixelOf)).toEqual([0, 0, 255, 255, 127, 191, 63, 0]);
    // 254.9 / 255 of full scale: truncated to 254, not rounded
    expect(pixelOf(2 * (254.9 / 255) - 1)).toBe(254);
  });

  it('frame t of a [3, T, H, W] video, interleaved', () => {
    const [T, H, W] = [2, 2, 3];
    const video = new Float32Array(3 * T * H * W);
    // channel c, frame t, pixel p -> value chosen so every byte is distinct
    for (let c = 0; c < 3; c++)
      for (let t = 0; t < T; t++)
        for (let p = 0; p < H * W; p++) video[(c * T + t) * H * W + p] = -1 + (2 * (c * 20 + t * 7 + p + 1)) / 255;
    const f1 = rgbFrame(video, 1, T, H, W);
    for (let p = 0; p < H * W; p++)
      for (let c = 0; c < 3; c++) expect(Math.abs(f1[p * 3 + c]! - (c * 20 + 7 + p + 1))).toBeLessThanOrEqual(1);
    expect(() => rgbFrame(video, 2, T, H, W)).toThrow(/frame 2 is outside 0..1/);
    expect(() => rgbFrame(video.subarray(1), 0, T, H, W)).toThrow(/has 36 values, got 35/);
  });
});

describe('Motion-JPEG AVI', () => {
  const [W, H, N] = [64, 48, 5];

  it('writes a video that parses back with the right header and decodes within JPEG tolerance', async () => {
    const dir = freshDir();
    const w = await openVideo(join(dir, 'clip.avi'), { width: W, height: H, fps: 16 });
    expect(w).toBeInstanceOf(MjpegAviWriter);
    for (let t = 0; t < N; t++) await w.append(picture(W, H, t));
    expect(existsSync(w.path)).toBe(false); // nothing at the target until close
    expect(await w.close()).toBe(join(dir, 'clip.avi'));
    expect(listing(dir)).toEqual(['clip.avi']); // no temporary left

    const avi = parseAvi(readFileSync(w.path));
    expect(avi).toMatchObject({ width: W, height: H, fps: 16, codec: 'MJPG', declaredFrames: N });
    expect(avi.frames.length).toBe(N);
    for (const t of [0, N - 1]) {
      const img = decodeJpegRgb(avi.frames[t]!);
      expect([img.width, img.height]).toEqual([W, H]);
      const d = diffStats(img.data, picture(W, H, t));
      expect(d.mean).toBeLessThan(3);
      expect(d.max).toBeLessThan(64);
    }
    // frames differ where the square moved: the decoded first frame is not the last picture
    expect(diffStats(decodeJpegRgb(avi.frames[0]!).data, picture(W, H, N - 1)).mean).toBeGreaterThan(5);
  });

  it('fractional frame rates and odd sizes', async () => {
    expect(fpsRational(16)).toEqual({ rate: 16, scale: 1 });
    expect(fpsRational(29.97)).toEqual({ rate: 2997, scale: 100 });
    const dir = freshDir();
    const w = new MjpegAviWriter(join(dir, 'odd.avi'), { width: 33, height: 17, fps: 29.97, quality: 75 });
    for (let t = 0; t < 3; t++) await w.append(picture(33, 17, t));
    await w.close();
    const avi = parseAvi(readFileSync(join(dir, 'odd.avi')));
    expect([avi.width, avi.height, avi.frames.length]).toEqual([33, 17, 3]);
    expect(avi.fps).toBeCloseTo(29.97, 10);
    expect(diffStats(decodeJpegRgb(avi.frames[2]!).data, picture(33, 17, 2)).mean).toBeLessThan(6);
  });

  it('abort, an empty video and a bad frame leave nothing at the target', async () => {
    const dir = freshDir();
    const a = new MjpegAviWriter(join(dir, 'a.avi'), { width: W, height: H, fps: 16 });
    await a.append(picture(W, H, 0));
    await a.abort();
    await expect(a.append(picture(W, H, 1))).rejects.toThrow(/the writer is failed/);
    const b = new MjpegAviWriter(join(dir, 'b.avi'), { width: W, height: H, fps: 16 });
    await expect(b.close()).rejects.toThrow(/no frames were written/);
    const c = new MjpegAviWriter(join(dir, 'c.avi'), { width: W, height: H, fps: 16 });
    await expect(c.append(new Uint8Array(W * H * 4))).rejects.toThrow(/has 9216 bytes, got 12288 \(RGBA\?/);
    await c.abort();
    expect(listing(dir)).toEqual([]);
  });

  it('an existing file is replaced only on a successful close', async () => {
    const dir = freshDir();
    const path = join(dir, 'v.avi');
    writeFileSync(path, 'old');
    const w = new MjpegAviWriter(path, { width: W, height: H, fps: 16 });
    await w.append(picture(W, H, 0));
    expect(readFileSync(path, 'utf8')).toBe('old');
    await w.abort();
    expect(readFileSync(path, 'utf8')).toBe('old');
    const v = new MjpegAviWriter(path, { width: W, height: H, fps: 16 });
    await v.append(picture(W, H, 0));
    await v.close();
    expect(parseAvi(readFileSync(path)).frames.length).toBe(1);
  });

  it('rejects malformed files and bad options with clear errors', () => {
    expect(() => parseAvi(new TextEncoder().encode('RIFF....WAVE'))).toThrow(/no RIFF AVI header/);
    expect(() => new MjpegAviWriter(join(freshDir(), 'x.avi'), { width: 0, height: 4, fps: 16 })).toThrow(
      /width must be a whole number/,
    );
    expect(() => new MjpegAviWriter(join(freshDir(), 'x.avi'), { width: 4, height: 4, fps: 0 })).toThrow(/fps must be/);
    expect(() => new MjpegAviWriter(join(freshDir(), 'x.avi'), { width: 4, height: 4, fps: 8, quality: 101 })).toThrow(
      /JPEG quality/,
    );
  });
});

describe('PNG', () => {
  it('encode / decode round trip is exact', () => {
    const rgb = picture(31, 9, 1);
    const png = encodePng(rgb, 31, 9);
    expect([...png.subarray(1, 4)].map((c) => String.fromCharCode(c)).join('')).toBe('PNG');
    const back = decodePng(png);
    expect([back.width, back.height]).toEqual([31, 9]);
    expect(Buffer.from(back.rgb).equals(Buffer.from(rgb))).toBe(true);
    expect(() => decodePng(new Uint8Array([1, 2, 3]))).toThrow(/not a readable PNG/);
  });

  it('single images are written atomically', () => {
    const dir = freshDir();
    const rgb = picture(20, 10, 0);
    writePng(join(dir, 'sub', 'img.png'), rgb, 20, 10);
    expect(Buffer.from(readPng(join(dir, 'sub', 'img.png')).rgb).equals(Buffer.from(rgb))).toBe(true);
    expect(listing(join(dir, 'sub'))).toEqual(['img.png']);
    expect(() => writePng(join(dir, 'bad.png'), rgb, 21, 10)).toThrow(/a 21x10 RGB frame has 630 bytes, got 600/);
    expect(listing(dir)).toEqual(['sub']);
  });

  it('a frame sequence appears on close, replaces an earlier sequence, and never touches other files', async () => {
    const dir = freshDir();
    const out = join(dir, 'frames');
    const w = await openVideo(out, { width: 16, height: 12, fps: 16, format: 'png' });
    expect(w).toBeInstanceOf(PngSequenceWriter);
    for (let t = 0; t < 3; t++) await w.append(picture(16, 12, t));
    expect(existsSync(out)).toBe(false);
    await w.close();
    expect(listing(out)).toEqual([0, 1, 2].map(frameName));
    for (let t = 0; t < 3; t++)
      expect(Buffer.from(readPng(join(out, frameName(t))).rgb).equals(Buffer.from(picture(16, 12, t)))).toBe(true);
    // again, with 2 frames: the earlier sequence is replaced whole
    const again = new PngSequenceWriter(out, 16, 12);
    for (let t = 0; t < 2; t++) await again.append(picture(16, 12, t + 5));
    await again.close();
    expect(listing(out)).toEqual([0, 1].map(frameName));
    expect(listing(dir)).toEqual(['frames']);
    // aborted: nothing changes
    const aborted = new PngSequenceWriter(out, 16, 12);
    await aborted.append(picture(16, 12, 9));
    await aborted.abort();
    expect(listing(out)).toEqual([0, 1].map(frameName));
    expect(listing(dir)).toEqual(['frames']);
    // a directory with other files is not ours to replace
    writeFileSync(join(out, 'notes.txt'), 'keep me');
    expect(() => new PngSequenceWriter(out, 16, 12)).toThrow(/is not an earlier frame sequence \(it holds notes.txt\)/);
    expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('keep me');
  });
});

describe('format resolution', () => {
  it('by extension, or by whether ffmpeg is there', () => {
    expect(resolveFormat('out/a.mp4', 'auto', false)).toEqual({ format: 'mp4', path: 'out/a.mp4' });
    expect(resolveFormat('out/a.avi')).toEqual({ format: 'avi', path: 'out/a.avi' });
    expect(resolveFormat('out/a', 'auto', true)).toEqual({ format: 'mp4', path: 'out/a.mp4' });
    expect(resolveFormat('out/a', 'auto', false)).toEqual({ format: 'avi', path: 'out/a.avi' });
    expect(resolveFormat('out/a', 'avi')).toEqual({ format: 'avi', path: 'out/a.avi' });
    expect(resolveFormat('out/frames', 'png')).toEqual({ format: 'png', path: 'out/frames' });
    expect(() => resolveFormat('out/a.mkv')).toThrow(/cannot tell the video format from '.mkv'/);
    expect(() => resolveFormat('out/a.avi', 'mp4')).toThrow(/should end in .mp4, not .avi/);
    expect(() => resolveFormat('out/a', 'gif' as 'mp4')).toThrow(/unknown video format 'gif'/);
  });
});

describe('MP4 through ffmpeg (stand-in programs)', () => {
  const bin = freshDir();
  /** a shell script standing in for ffmpeg */
  const fake = (name: string, body: string) => {
    const p = join(bin, name);
    writeFileSync(p, `#!/bin/sh\n${body}\n`);
    chmodSync(p, 0o755);
    return p;
  };
  // copies the piped frames to its last argument (the output path), as ffmpeg would write a file
  const copier = fake('ffmpeg-copy', 'for a in "$@"; do last="$a"; done\ncat > "$last"');
  const failing = fake('ffmpeg-fail', 'cat > /dev/null\necho "Unknown encoder \'libx264\'" >&2\nexit 1');
  const quitter = fake('ffmpeg-quit', 'echo "Invalid argument" >&2\nexit 1');

  it('the command line: raw RGB in, H.264 yuv420p MP4 out, odd sizes padded', () => {
    const args = ffmpegArgs({ width: 832, height: 480, fps: 16, crf: 18 }, 'out.mp4');
    expect(args.join(' ')).toContain('-f rawvideo -pix_fmt rgb24 -s:v 832x480 -framerate 16 -i pipe:0');
    expect(args.join(' ')).toContain('-c:v libx264 -preset medium -crf 18 -pix_fmt yuv420p');
    expect(args.slice(-3)).toEqual(['-f', 'mp4', 'out.mp4']);
    expect(args).not.toContain('-vf');
    expect(ffmpegArgs({ width: 33, height: 17, fps: 8, crf: 23 }, 'o.mp4')).toContain('pad=ceil(iw/2)*2:ceil(ih/2)*2');
  });

  it('streams every frame through the pipe (with back-pressure) and renames on success', async () => {
    const dir = freshDir();
    const [w, h, n] = [256, 192, 12]; // 147 KB a frame: more than a pipe buffer
    const writer = await openVideo(join(dir, 'v'), { width: w, height: h, fps: 16, format: 'mp4', ffmpeg: copier });
    expect(writer).toBeInstanceOf(FfmpegMp4Writer);
    expect(writer.path).toBe(join(dir, 'v.mp4'));
    for (let t = 0; t < n; t++) await writer.append(picture(w, h, t));
    expect(existsSync(writer.path)).toBe(false);
    await writer.close();
    const bytes = readFileSync(writer.path);
    expect(bytes.length).toBe(n * w * h * 3);
    for (const t of [0, n - 1])
      expect(bytes.subarray(t * w * h * 3, (t + 1) * w * h * 3).equals(Buffer.from(picture(w, h, t)))).toBe(true);
    expect(listing(dir)).toEqual(['v.mp4']);
  });

  it('a failing ffmpeg: the error carries its message and what to install; no file is left', async () => {
    const dir = freshDir();
    const w = new FfmpegMp4Writer(join(dir, 'v.mp4'), { width: 8, height: 8, fps: 16, ffmpeg: failing });
    await w.append(picture(8, 8, 0));
    const err = await w.close().catch((e: unknown) => e);
    expect(String(err)).toMatch(/ffmpeg failed to finish .*v\.mp4 \(exit code 1: Unknown encoder 'libx264'\)/);
    expect((err as { hint: string }).hint).toMatch(/install ffmpeg with libx264.*format avi/);
    expect(listing(dir)).toEqual([]);
  });

  it('an ffmpeg that exits at once fails the append, not later', async () => {
    const dir = freshDir();
    const w = new FfmpegMp4Writer(join(dir, 'v.mp4'), { width: 512, height: 512, fps: 16, ffmpeg: quitter });
    let err: unknown;
    for (let t = 0; t < 20 && !err; t++) err = await w.append(new Uint8Array(512 * 512 * 3)).catch((e: unknown) => e);
    expect(String(err)).toMatch(/ffmpeg failed while writing .*exit code 1: Invalid argument/);
    await w.abort();
    expect(listing(dir)).toEqual([]);
  });

  it('abort kills ffmpeg and removes its output; a missing ffmpeg says what to install', async () => {
    const dir = freshDir();
    const w = new FfmpegMp4Writer(join(dir, 'v.mp4'), { width: 8, height: 8, fps: 16, ffmpeg: copier });
    await w.append(picture(8, 8, 0));
    await w.abort();
    expect(listing(dir)).toEqual([]);
    const missing = join(bin, 'no-such-ffmpeg');
    expect(() => new FfmpegMp4Writer(join(dir, 'v.mp4'), { width: 8, height: 8, fps: 16, ffmpeg: missing })).toThrow(
      /ffmpeg was not found at .*no-such-ffmpeg, so no MP4 can be written/,
    );
    expect(findFfmpeg(bin)).toBeUndefined(); // the stand-ins are not named ffmpeg
    expect(findFfmpeg(`${bin}:${join(bin, 'nowhere')}`)).toBeUndefined();
  });
});

describe.skipIf(!findFfmpeg())('MP4 through the installed ffmpeg', () => {
  it('writes an H.264 MP4 that decodes back to the frames within lossy tolerance', async () => {
    const dir = freshDir();
    const [w, h, n] = [64, 48, 6];
    const writer = await openVideo(join(dir, 'real.mp4'), { width: w, height: h, fps: 16 });
    for (let t = 0; t < n; t++) await writer.append(picture(w, h, t));
    await writer.close();
    const bytes = readFileSync(writer.path);
    expect(bytes.subarray(4, 8).toString('latin1')).toBe('ftyp');
    const raw = execFileSync(findFfmpeg()!, [
      '-v',
      'error',
      '-i',
      writer.path,
      '-f',
      'rawvideo',
      '-pix_fmt',
      'rgb24',
      '-',
    ]);
    expect(raw.length).toBe(n * w * h * 3);
    const d = diffStats(raw.subarray(0, w * h * 3), picture(w, h, 0));
    expect(d.mean).toBeLessThan(6); // yuv420p halves the chroma resolution
  });

  it('ffmpeg reads the Motion-JPEG AVI: stream info and decoded frames', async () => {
    const dir = freshDir();
    const [w, h, n] = [64, 48, 4];
    const writer = await openVideo(join(dir, 'clip.avi'), { width: w, height: h, fps: 16 });
    for (let t = 0; t < n; t++) await writer.append(picture(w, h, t));
    await writer.close();
    const ffmpeg = findFfmpeg()!;
    // ffmpeg -i prints the stream line on stderr and exits 1 without an output; capture it
    let info = '';
    try {
      execFileSync(ffmpeg, ['-hide_banner', '-i', writer.path], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      info = String((e as { stderr: Buffer }).stderr);
    }
    expect(info).toMatch(/Video: mjpeg.*64x48.*16 fps/);
    const raw = execFileSync(ffmpeg, ['-v', 'error', '-i', writer.path, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-']);
    expect(raw.length).toBe(n * w * h * 3);
    expect(diffStats(raw.subarray((n - 1) * w * h * 3), picture(w, h, n - 1)).mean).toBeLessThan(4);
  });
});
