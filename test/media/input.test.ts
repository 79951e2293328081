// Input media (media/input.ts, media/avi-read.ts): PNG of every colour type and JPEG read back; corrupt,
// truncated and wrong-format files refused with the path in the message; the Pillow-equivalent
// bilinear resize (golden values from Pillow 12.3, constant images, checkerboards, range, sizes, crop);
// the streaming Motion-JPEG AVI reader (round trip through the project's writer, frames without
// Huffman tables, hand-built files with 'rec ' lists, audio, JUNK and odd sizes, truncation, other
// codecs); frame directories; maxFrames; the [3, T, H, W] layout in [-1, 1]; and, when ffmpeg is
// installed, MP4s made by media/video.ts read back through ffmpeg. Files are made in a temp dir.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import { isUserError } from '../../dsl/errors.js';
import { MjpegAviWriter, encodeJpeg } from '../../media/avi.js';
import { withHuffmanTables } from '../../media/avi-read.js';
import { findFfmpeg } from '../../media/ffmpeg.js';
import {
  decodeImage,
  ffmpegOutputSize,
  fitBox,
  readImage,
  readMediaTensor,
  readVideo,
  resizeRgb,
  rgbToTensorData,
  sniffFormat,
  type RgbImage,
} from '../../media/input.js';
import { PngSequenceWriter, writePng } from '../../media/png.js';
import { openVideo } from '../../media/video.js';

const root = mkdtempSync(join(tmpdir(), 'sfc-input-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => {
  const d = join(root, `case-${dirs++}`);
  mkdirSync(d);
  return d;
};

/** a smooth picture that moves with t: gradients plus a bright square */
function picture(w: number, h: number, t = 0): Uint8Array {
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

function meanDiff(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

async function collect(it: AsyncIterable<RgbImage>): Promise<RgbImage[]> {
  const out: RgbImage[] = [];
  for await (const f of it) out.push(f);
  return out;
}

/** the SfcError `fn` throws (sync or async), checked to be a user error naming `path` */
async function userError(fn: () => unknown, path?: string): Promise<Error> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').toBeDefined();
  expect(isUserError(err), String(err)).toBe(true);
  if (path) expect((err as Error).message).toContain(path);
  return err as Error;
}

// --- PNG files of any colour type, written by hand (pngjs writes no palette or 16-bit files)

function pngChunk(type: string, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])) >>> 0, 0);
  return Buffer.concat([head, body, crc]);
}

/** a PNG from raw scanlines (filter type 0 prepended to each row) */
function handPng(
  w: number,
  h: number,
  colorType: number,
  depth: number,
  rows: Uint8Array[],
  extra: Buffer[] = [],
): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = depth;
  ihdr[9] = colorType;
  const raw = Buffer.concat(rows.flatMap((r) => [Buffer.from([0]), Buffer.from(r)]));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    ...extra,
    pngChunk('IDAT', deflateSync(raw)),
    pngChunk('IEND', new Uint8Array(0)),
  ]);
}

describe('sniffFormat', () => {
  it('tells formats by their first bytes', () => {
    const b = (s: string) => Buffer.from(s, 'latin1');
    expect(sniffFormat(b('\x89PNG\r\n\x1a\n....')).kind).toBe('png');
    expect(sniffFormat(b('\xff\xd8\xff\xe0')).kind).toBe('jpeg');
    expect(sniffFormat(b('RIFF\0\0\0\0AVI LIST')).kind).toBe('avi');
    expect(sniffFormat(b('\0\0\0\x20ftypisom\0\0\0\0')).what).toBe('an MP4 video');
    expect(sniffFormat(b('GIF89a')).what).toBe('a GIF image');
    expect(sniffFormat(b('RIFF\0\0\0\0WEBPVP8 ')).what).toBe('a WebP image');
    expect(sniffFormat(b('\x1a\x45\xdf\xa3\x01\0\0\0webm')).what).toBe('a WebM video');
    expect(sniffFormat(b('hello, world\n')).kind).toBe('text');
    expect(sniffFormat(new Uint8Array(0)).kind).toBe('empty');
    expect(sniffFormat(Uint8Array.from([1, 2, 3, 0, 255])).kind).toBe('other');
  });
});

describe('readImage', () => {
  const [w, h] = [13, 9];
  /** a deterministic RGBA image */
  const rgba = Buffer.from(Uint8Array.from({ length: w * h * 4 }, (_, i) => (i % 4 === 3 ? 80 : (i * 29 + 7) % 256)));
  const rgbOf = (data: Uint8Array) =>
    Uint8Array.from({ length: w * h * 3 }, (_, i) => data[Math.floor(i / 3) * 4 + (i % 3)]!);

  it('reads PNG RGB, RGBA (alpha dropped), grey and grey+alpha written by pngjs, exactly', () => {
    const dir = freshDir();
    // pngjs composites alpha over a background when it writes a type without alpha: give those opaque data
    const opaque = Buffer.from(rgba);
    for (let i = 3; i < opaque.length; i += 4) opaque[i] = 255;
    const grey = (data: Buffer) => {
      const g = Buffer.from(data); // r = g = b, so pngjs's conversion to grey is unambiguous
      for (let i = 0; i < w * h; i++) g[i * 4 + 1] = g[i * 4 + 2] = g[i * 4]!;
      return g;
    };
    for (const [colorType, data] of [
      [2, opaque],
      [6, rgba],
      [0, grey(opaque)],
      [4, grey(rgba)],
    ] as const) {
      const p = join(dir, `c${colorType}.png`);
      writeFileSync(p, PNG.sync.write({ width: w, height: h, data } as unknown as PNG, { colorType }));
      expect(readFileSync(p)[25]).toBe(colorType); // the IHDR colour type really is that
      const img = readImage(p);
      expect([img.width, img.height]).toEqual([w, h]);
      expect(Buffer.from(img.rgb).equals(Buffer.from(rgbOf(data)))).toBe(true);
    }
  });

  it('reads palette (with transparency), 16-bit and 1-bit PNGs', () => {
    const dir = freshDir();
    const palette = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]);
    const rows = [Uint8Array.from([0, 1, 2, 3]), Uint8Array.from([3, 2, 1, 0])];
    const pal = join(dir, 'palette.png');
    writeFileSync(pal, handPng(4, 2, 3, 8, rows, [pngChunk('PLTE', palette), pngChunk('tRNS', Uint8Array.from([0]))]));
    const p = readImage(pal);
    expect([p.width, p.height]).toEqual([4, 2]);
    expect(Array.from(p.rgb.subarray(0, 12))).toEqual(Array.from(palette));
    expect(Array.from(p.rgb.subarray(12, 15))).toEqual([10, 20, 30]);

    // 16-bit RGB: pngjs scales to 8 bits (0xffff -> 255, 0x8080 -> 128, 0 -> 0)
    const row16 = Uint8Array.from([0xff, 0xff, 0x80, 0x80, 0, 0, 0, 0, 0xff, 0xff, 0x80, 0x80]);
    const deep = join(dir, 'deep.png');
    writeFileSync(deep, handPng(2, 1, 2, 16, [row16]));
    expect(Array.from(readImage(deep).rgb)).toEqual([255, 128, 0, 0, 255, 128]);

    // 1-bit grey: 0b10100000 -> white, black, white
    const bits = join(dir, 'bits.png');
    writeFileSync(bits, handPng(3, 1, 0, 1, [Uint8Array.from([0b10100000])]));
    expect(Array.from(readImage(bits).rgb)).toEqual([255, 255, 255, 0, 0, 0, 255, 255, 255]);
  });

  it('reads a JPEG written by jpeg-js within JPEG tolerance, whatever the file is called', () => {
    const dir = freshDir();
    const [jw, jh] = [40, 24];
    const rgb = picture(jw, jh);
    const p = join(dir, 'photo.png'); // a JPEG with a misleading name
    writeFileSync(p, encodeJpeg(rgb, jw, jh, 95));
    const img = readImage(p);
    expect([img.width, img.height]).toEqual([jw, jh]);
    expect(meanDiff(img.rgb, rgb)).toBeLessThan(3);
  });

  it('refuses missing, empty, text, other-format, corrupt and truncated files, naming them', async () => {
    const dir = freshDir();
    const missing = join(dir, 'nope.png');
    expect((await userError(() => readImage(missing), missing)).message).toMatch(/does not exist/);
    expect((await userError(() => readImage(dir), dir)).message).toMatch(/is a directory/);

    const text = join(dir, 'notes.png');
    writeFileSync(text, 'this is not an image\n');
    expect((await userError(() => readImage(text), text)).message).toMatch(/is a text file, not a PNG or JPEG/);
    const empty = join(dir, 'empty.jpg');
    writeFileSync(empty, '');
    expect((await userError(() => readImage(empty), empty)).message).toMatch(/empty file/);
    const gif = join(dir, 'anim.gif');
    writeFileSync(gif, Buffer.from('GIF89a\x01\0\x01\0\0\0\0;', 'latin1'));
    const gifErr = await userError(() => readImage(gif), gif);
    expect(gifErr.message).toMatch(/is a GIF image, not a PNG or JPEG image/);
    expect((gifErr as { hint?: string }).hint).toMatch(/ffmpeg -i/);
    const mp4 = join(dir, 'clip.jpg');
    writeFileSync(mp4, Buffer.from('\0\0\0\x20ftypisom\0\0\x02\0isomiso2', 'latin1'));
    expect((await userError(() => readImage(mp4), mp4)).message).toMatch(/is an MP4 video/);

    const png = PNG.sync.write({ width: w, height: h, data: rgba } as unknown as PNG, { colorType: 6 });
    const cut = join(dir, 'cut.png');
    writeFileSync(cut, png.subarray(0, Math.floor(png.length / 2)));
    expect((await userError(() => readImage(cut), cut)).message).toMatch(/corrupt or truncated PNG.*ends early/);
    const flipped = Buffer.from(png);
    flipped[60] ^= 0xff;
    const bad = join(dir, 'bad.png');
    writeFileSync(bad, flipped);
    expect((await userError(() => readImage(bad), bad)).message).toMatch(/corrupt or truncated PNG/);

    const jpg = encodeJpeg(picture(40, 24), 40, 24, 90);
    for (const [name, bytes] of [
      ['cut.jpg', jpg.subarray(0, Math.floor(jpg.length * 0.8))],
      ['cut-header.jpg', jpg.subarray(0, 30)],
      ['garbage.jpg', Buffer.concat([jpg.subarray(0, 300), Buffer.alloc(jpg.length - 302, 0x41), jpg.subarray(-2)])],
    ] as const) {
      const p = join(dir, name);
      writeFileSync(p, bytes);
      expect((await userError(() => readImage(p), p)).message).toMatch(
        /truncated or corrupt JPEG|corrupt or unsupported JPEG/,
      );
    }
    // decodeImage names what it is given
    await userError(() => decodeImage(Buffer.from('plain text'), 'upload #3'), 'upload #3');
  });
});

describe('resizeRgb (Pillow bilinear)', () => {
  // a 7x5 test image and Pillow 12.3's Image.resize(..., BILINEAR) of it
  const src = Uint8Array.from({ length: 7 * 5 * 3 }, (_, i) => ((i * 37 + 11) * ((i % 5) + 1)) % 256);

  it('matches Pillow exactly: downscale, upscale, and a crop box', () => {
    expect(Array.from(resizeRgb(src, 7, 5, 3, 2))).toEqual([
      132, 101, 140, 146, 117, 87, 117, 170, 124, 127, 72, 120, 143, 89, 143, 145, 133, 109,
    ]);
    expect(Array.from(resizeRgb(src, 7, 5, 11, 4))).toEqual([
      18, 115, 221, 105, 91, 205, 210, 61, 184, 211, 57, 170, 194, 70, 123, 162, 97, 51, 110, 151, 64, 78, 173, 80, 73,
      150, 102, 107, 195, 179, 137, 234, 239, 60, 103, 71, 97, 120, 104, 149, 137, 136, 201, 126, 79, 194, 106, 66, 145,
      79, 87, 93, 171, 60, 90, 190, 63, 154, 112, 106, 148, 155, 128, 136, 200, 141, 125, 73, 67, 106, 71, 94, 85, 70,
      126, 103, 84, 122, 121, 104, 146, 140, 128, 190, 151, 119, 136, 150, 116, 126, 132, 120, 175, 141, 152, 96, 151,
      179, 25, 214, 93, 210, 196, 60, 175, 159, 27, 125, 58, 68, 68, 83, 73, 97, 202, 52, 193, 211, 44, 192, 203, 60,
      165, 168, 108, 102, 129, 151, 87, 100, 182, 81,
    ]);
    // fitMode 'crop' to 4x4 is Pillow's resize((4, 4), box=(1, 0, 6, 5))
    expect(fitBox(7, 5, 4, 4, 'crop')).toEqual([1, 0, 6, 5]);
    expect(Array.from(resizeRgb(src, 7, 5, 4, 4, { fitMode: 'crop' }))).toEqual([
      195, 65, 183, 191, 73, 117, 114, 147, 63, 79, 162, 108, 154, 132, 118, 190, 103, 68, 97, 163, 63, 138, 136, 98,
      92, 73, 120, 123, 106, 149, 150, 120, 141, 138, 124, 152, 140, 41, 118, 93, 72, 105, 211, 44, 192, 171, 103, 115,
    ]);
  });

  it('gives exactly W x H, keeps a constant image constant, and returns a copy at the same size', () => {
    for (const [w, h, W, H] of [
      [37, 23, 13, 7],
      [64, 36, 832, 480],
      [1, 1, 5, 3],
      [50, 50, 1, 1],
      [20, 10, 20, 10],
    ]) {
      const rgb = new Uint8Array(w! * h! * 3);
      for (let i = 0; i < rgb.length; i += 3) rgb.set([200, 17, 93], i);
      for (const fitMode of ['stretch', 'crop'] as const) {
        const out = resizeRgb(rgb, w!, h!, W!, H!, { fitMode });
        expect(out.length).toBe(W! * H! * 3);
        for (let i = 0; i < out.length; i += 3) expect([out[i], out[i + 1], out[i + 2]]).toEqual([200, 17, 93]);
        if (w === W && h === H) expect(out).not.toBe(rgb);
      }
    }
  });

  it('averages a checkerboard when downscaling (antialiasing), stays in range when upscaling', () => {
    const n = 32;
    const board = new Uint8Array(n * n * 3);
    for (let y = 0; y < n; y++)
      for (let x = 0; x < n; x++) board.fill((x + y) % 2 ? 255 : 0, (y * n + x) * 3, (y * n + x + 1) * 3);
    for (const m of [16, 8, 5]) {
      const out = resizeRgb(board, n, n, m, m);
      for (let y = 1; y < m - 1; y++)
        for (let x = 1; x < m - 1; x++) expect(Math.abs(out[(y * m + x) * 3]! - 127.5)).toBeLessThan(4);
      // even at the edges (fewer taps) it is a blend, never a sample of one pixel
      for (const v of out) expect(v > 90 && v < 165).toBe(true);
    }
    // upscaling noise: a convex blend, so within the source's range
    const noise = Uint8Array.from({ length: 6 * 4 * 3 }, (_, i) => 50 + ((i * 97) % 151));
    const up = resizeRgb(noise, 6, 4, 53, 31);
    expect(Math.min(...up)).toBeGreaterThanOrEqual(Math.min(...noise));
    expect(Math.max(...up)).toBeLessThanOrEqual(Math.max(...noise));
  });

  it("'crop' keeps the aspect ratio and takes the centre; 'stretch' takes everything", () => {
    // 40x10: columns 15..24 are 200, the rest 0; a square crop of a 4:1 image is columns 15..25
    const [w, h] = [40, 10];
    const rgb = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) rgb.fill(200, (y * w + 15) * 3, (y * w + 25) * 3);
    // the box is columns 15..25; like Pillow's resize(box=...), the filter reaches a little past it
    const crop = resizeRgb(rgb, w, h, 8, 8, { fitMode: 'crop' });
    for (let y = 0; y < 8; y++)
      for (let x = 0; x < 8; x++) {
        const v = crop[(y * 8 + x) * 3]!;
        if (x > 0 && x < 7) expect(v).toBe(200);
        else expect(v).toBeGreaterThan(150);
      }
    const stretch = resizeRgb(rgb, w, h, 8, 8);
    expect(stretch[0]).toBe(0);
    // a tall image crops rows instead
    expect(fitBox(10, 40, 8, 8, 'crop')).toEqual([0, 15, 10, 25]);
  });

  it('refuses wrong sizes and modes', async () => {
    await userError(() => resizeRgb(new Uint8Array(10), 2, 2, 1, 1));
    await userError(() => resizeRgb(new Uint8Array(12), 2, 2, 0, 1));
    await userError(() => resizeRgb(new Uint8Array(12), 2, 2, 1.5, 1));
    const e = await userError(() => resizeRgb(new Uint8Array(12), 2, 2, 1, 1, { fitMode: 'pad' as 'crop' }));
    expect(e.message).toMatch(/unknown fit mode 'pad'/);
  });
});

// --- AVI files built by hand

function riffChunk(id: string, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.write(id, 0, 'latin1');
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body, body.length & 1 ? Buffer.alloc(1) : Buffer.alloc(0)]);
}
const riffList = (type: string, ...children: Buffer[]) =>
  riffChunk('LIST', Buffer.concat([Buffer.from(type, 'latin1'), ...children]));

function strh(type: string, handler: string, fps = 16): Buffer {
  const b = Buffer.alloc(56);
  b.write(type, 0, 'latin1');
  b.write(handler, 4, 'latin1');
  b.writeUInt32LE(1, 20); // scale
  b.writeUInt32LE(fps, 24); // rate
  return riffChunk('strh', b);
}
function strfVideo(w: number, h: number, compression: string): Buffer {
  const b = Buffer.alloc(40);
  b.writeUInt32LE(40, 0);
  b.writeInt32LE(w, 4);
  b.writeInt32LE(h, 8);
  b.write(compression, 16, 'latin1');
  return riffChunk('strf', b);
}

/** an AVI with an audio stream first (so video is stream 01), JUNK, a 'rec ' list and audio chunks */
function handAvi(w: number, h: number, jpegs: Uint8Array[], codec = 'MJPG'): Buffer {
  const avih = riffChunk('avih', Buffer.alloc(56));
  const audio = riffList('strl', strh('auds', '\0\0\0\0'), riffChunk('strf', Buffer.alloc(18)));
  const video = riffList('strl', strh('vids', codec), strfVideo(w, h, codec));
  const movi = riffList(
    'movi',
    riffChunk('01wb', Buffer.alloc(7, 1)), // odd size: padded
    riffChunk('JUNK', Buffer.alloc(3)),
    ...jpegs.map((j, i) =>
      i === 1 ? riffList('rec ', riffChunk('01dc', j), riffChunk('00wb', Buffer.alloc(5))) : riffChunk('01dc', j),
    ),
  );
  const body = Buffer.concat([
    Buffer.from('AVI ', 'latin1'),
    riffList('hdrl', avih, audio, video),
    riffChunk('JUNK', Buffer.alloc(13)),
    movi,
  ]);
  return riffChunk('RIFF', body);
}

/** a JPEG without its Huffman tables (as many Motion-JPEG cameras write them) */
function stripDht(jpg: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [jpg.subarray(0, 2)];
  let p = 2;
  while (jpg[p] === 0xff && jpg[p + 1] !== 0xda) {
    const len = (jpg[p + 2]! << 8) | jpg[p + 3]!;
    if (jpg[p + 1] !== 0xc4) parts.push(jpg.subarray(p, p + 2 + len));
    p += 2 + len;
  }
  parts.push(jpg.subarray(p));
  return Buffer.concat(parts);
}

describe('readVideo: Motion-JPEG AVI without ffmpeg', () => {
  it("round-trips the project's AVI writer: frames in order, size, JPEG-level error", async () => {
    const dir = freshDir();
    for (const [w, h] of [
      [48, 32],
      [33, 17], // odd sizes: odd chunk lengths get a pad byte
    ]) {
      const path = join(dir, `clip-${w}.avi`);
      const writer = new MjpegAviWriter(path, { width: w!, height: h!, fps: 16, quality: 90 });
      for (let t = 0; t < 3; t++) await writer.append(picture(w!, h!, t));
      await writer.close();
      const frames = await collect(readVideo(path, { ffmpeg: false }));
      expect(frames.length).toBe(3);
      frames.forEach((f, t) => {
        expect([f.width, f.height]).toEqual([w, h]);
        expect(meanDiff(f.rgb, picture(w!, h!, t))).toBeLessThan(4);
      });
      // maxFrames
      expect((await collect(readVideo(path, { ffmpeg: false, maxFrames: 2 }))).length).toBe(2);
    }
  });

  it('reads frames without Huffman tables, with the standard ones', async () => {
    const dir = freshDir();
    const [w, h] = [32, 24];
    const jpg = encodeJpeg(picture(w, h), w, h, 85);
    const bare = stripDht(jpg);
    expect(bare.length).toBeLessThan(jpg.length);
    expect(() => jpeg.decode(bare, { useTArray: true })).toThrow();
    const fixed = jpeg.decode(withHuffmanTables(bare), { useTArray: true, formatAsRGBA: false });
    expect(
      Buffer.from(fixed.data).equals(Buffer.from(jpeg.decode(jpg, { useTArray: true, formatAsRGBA: false }).data)),
    ).toBe(true);
    const path = join(dir, 'camera.avi');
    const writer = new MjpegAviWriter(path, { width: w, height: h, fps: 16 });
    await writer.appendJpeg(bare);
    await writer.close();
    const [frame] = await collect(readVideo(path, { ffmpeg: false }));
    expect(meanDiff(frame!.rgb, picture(w, h))).toBeLessThan(4);
  });

  it("walks 'rec ' lists, audio, JUNK and pad bytes; repeats a zero-sized (dropped) frame", async () => {
    const dir = freshDir();
    const [w, h] = [24, 16];
    const jpegs = [0, 1, 2].map((t) => encodeJpeg(picture(w, h, t), w, h, 90));
    const path = join(dir, 'hand.avi');
    writeFileSync(path, handAvi(w, h, [...jpegs, new Uint8Array(0)]));
    const frames = await collect(readVideo(path, { ffmpeg: false }));
    expect(frames.length).toBe(4);
    frames.slice(0, 3).forEach((f, t) => expect(meanDiff(f.rgb, picture(w, h, t))).toBeLessThan(4));
    expect(Buffer.from(frames[3]!.rgb).equals(Buffer.from(frames[2]!.rgb))).toBe(true);
  });

  it('refuses truncated AVIs, other codecs and formats that need ffmpeg', async () => {
    const dir = freshDir();
    const [w, h] = [24, 16];
    const path = join(dir, 'full.avi');
    const writer = new MjpegAviWriter(path, { width: w, height: h, fps: 16 });
    for (let t = 0; t < 3; t++) await writer.append(picture(w, h, t));
    await writer.close();
    const bytes = readFileSync(path);
    // cut inside the last frame: the first frames come, then the error
    const cut = join(dir, 'cut.avi');
    const lastFrame = bytes.lastIndexOf(Buffer.from('00dc'), bytes.indexOf(Buffer.from('idx1')));
    writeFileSync(cut, bytes.subarray(0, lastFrame + 30));
    const got: RgbImage[] = [];
    const err = await userError(async () => {
      for await (const f of readVideo(cut, { ffmpeg: false })) got.push(f);
    }, cut);
    expect(err.message).toMatch(/truncated: frame 2/);
    expect(got.length).toBe(2);
    // a file cut inside its header
    const stub = join(dir, 'stub.avi');
    writeFileSync(stub, bytes.subarray(0, 100));
    await userError(() => collect(readVideo(stub, { ffmpeg: false })), stub);

    const h264 = join(dir, 'h264.avi');
    writeFileSync(h264, handAvi(w, h, [new Uint8Array(10)], 'H264'));
    const e = await userError(() => collect(readVideo(h264, { ffmpeg: false })), h264);
    expect(e.message).toMatch(/'H264' video; without ffmpeg only Motion-JPEG/);

    const mp4 = join(dir, 'clip.mp4');
    writeFileSync(mp4, Buffer.from('\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41', 'latin1'));
    const me = await userError(() => readVideo(mp4, { ffmpeg: false }), mp4);
    expect(me.message).toMatch(/is an MP4 video; reading MP4 and other video formats needs ffmpeg/);
    expect((me as { hint?: string }).hint).toMatch(/apt-get install ffmpeg/);

    const text = join(dir, 'list.avi');
    writeFileSync(text, 'frame1\nframe2\n');
    expect((await userError(() => readVideo(text), text)).message).toMatch(/is a text file, not a video/);
    const missing = join(dir, 'missing.avi');
    expect((await userError(() => readVideo(missing), missing)).message).toMatch(/does not exist/);
    await userError(() => readVideo(path, { maxFrames: 0 }));
  });
});

describe('readVideo: frame directories and single images', () => {
  it('reads a PNG sequence in order, skipping other files, honouring maxFrames', async () => {
    const dir = freshDir();
    const [w, h] = [20, 12];
    const seq = new PngSequenceWriter(join(dir, 'seq'), w, h);
    for (let t = 0; t < 4; t++) await seq.append(picture(w, h, t));
    await seq.close();
    writeFileSync(join(dir, 'seq', 'notes.txt'), 'not a frame');
    const frames = await collect(readVideo(join(dir, 'seq')));
    expect(frames.length).toBe(4);
    frames.forEach((f, t) => expect(Buffer.from(f.rgb).equals(Buffer.from(picture(w, h, t)))).toBe(true));
    expect((await collect(readVideo(join(dir, 'seq'), { maxFrames: 3 }))).length).toBe(3);
  });

  it('sorts names naturally, mixes PNG and JPEG, and refuses mixed sizes and empty directories', async () => {
    const dir = freshDir();
    const [w, h] = [16, 8];
    const solid = (v: number) => new Uint8Array(w * h * 3).fill(v);
    writePng(join(dir, 'f10.png'), solid(100), w, h);
    writePng(join(dir, 'f2.png'), solid(20), w, h);
    writeFileSync(join(dir, 'f1.JPG'), encodeJpeg(solid(10), w, h, 95));
    const frames = await collect(readVideo(dir));
    expect(frames.map((f) => Math.round(f.rgb[0]! / 10))).toEqual([1, 2, 10]);

    writePng(join(dir, 'f11.png'), new Uint8Array(8 * 8 * 3), 8, 8);
    const e = await userError(() => collect(readVideo(dir)), join(dir, 'f11.png'));
    expect(e.message).toMatch(/is 8x8, but the frames before it .* are 16x8/);

    const empty = freshDir();
    expect((await userError(() => readVideo(empty), empty)).message).toMatch(/holds no PNG or JPEG frames/);
  });

  it('reads an image as a one-frame video', async () => {
    const dir = freshDir();
    const p = join(dir, 'still.png');
    writePng(p, picture(20, 12), 20, 12);
    const frames = await collect(readVideo(p));
    expect(frames.length).toBe(1);
    expect([frames[0]!.width, frames[0]!.height]).toEqual([20, 12]);
  });
});

describe('the VAE input layout', () => {
  it('rgbToTensorData: [3, T, H, W] planes, x / 255 * 2 - 1 in float32', () => {
    const [W, H, T] = [3, 2, 2];
    const frames = [0, 1].map((t) => ({
      rgb: Uint8Array.from({ length: W * H * 3 }, (_, i) => (i * 11 + t * 101) % 256),
    }));
    frames[0]!.rgb.set([0, 255, 128], 0);
    const data = rgbToTensorData(frames, W, H);
    expect(data.length).toBe(3 * T * H * W);
    for (let c = 0; c < 3; c++)
      for (let t = 0; t < T; t++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            const v = data[((c * T + t) * H + y) * W + x]!;
            const p = frames[t]!.rgb[(y * W + x) * 3 + c]!;
            expect(v).toBe(Math.fround(Math.fround(p / 255) * 2 - 1));
          }
    expect([data[0], data[T * H * W], data[2 * T * H * W]]).toEqual([
      -1,
      1,
      Math.fround(Math.fround(128 / 255) * 2 - 1),
    ]);
    for (const v of data) expect(v >= -1 && v <= 1).toBe(true);
    const e = syncError(() => rgbToTensorData([{ rgb: new Uint8Array(5) }], W, H));
    expect(e.message).toMatch(/frame 0 has 5 bytes; a 3x2 RGB frame has 18/);
    expect(() => rgbToTensorData([], W, H)).toThrow(/no frames/);
  });

  it('readMediaTensor: an image as T = 1, a video as T frames, resized', async () => {
    const dir = freshDir();
    const img = join(dir, 'in.png');
    writePng(img, picture(40, 30), 40, 30);
    const a = await readMediaTensor(img, { width: 16, height: 8 });
    expect([a.frames, a.height, a.width, a.sourceWidth, a.sourceHeight]).toEqual([1, 8, 16, 40, 30]);
    expect(a.data.length).toBe(3 * 1 * 8 * 16);
    const resized = resizeRgb(picture(40, 30), 40, 30, 16, 8);
    expect(a.data[5]).toBe(Math.fround(Math.fround(resized[15]! / 255) * 2 - 1)); // red of pixel 5

    const avi = join(dir, 'in.avi');
    const writer = new MjpegAviWriter(avi, { width: 32, height: 24, fps: 16 });
    for (let t = 0; t < 3; t++) await writer.append(picture(32, 24, t));
    await writer.close();
    const v = await readMediaTensor(avi, { width: 8, height: 8, fitMode: 'crop', maxFrames: 2, ffmpeg: false });
    expect([v.frames, v.data.length, v.sourceWidth]).toEqual([2, 3 * 2 * 8 * 8, 32]);
  });
});

/** the error `fn` throws, synchronously */
function syncError(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    expect(isUserError(e)).toBe(true);
    return e as Error;
  }
  throw new Error('expected an error');
}

describe('ffmpeg output parsing', () => {
  it("reads the frame size from the 'Output #0' stream line, not the input's or a hex tag", () => {
    const stderr = [
      "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/t.mp4':",
      '  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 1920x1080 [SAR 1:1 DAR 16:9], 16 fps',
      "Output #0, rawvideo, to 'pipe:1':",
      '  Stream #0:0(und): Video: rawvideo (RGB[24] / 0x18424752), rgb24(pc, gbr/unknown/unknown, progressive), 1080x1920 [SAR 1:1 DAR 9:16], q=2-31',
    ].join('\n');
    expect(ffmpegOutputSize(stderr)).toEqual({ width: 1080, height: 1920 });
    expect(ffmpegOutputSize(stderr.split('Output')[0]!)).toBeUndefined();
  });

  it('reports a failing ffmpeg program with its message', async () => {
    const dir = freshDir();
    const fake = join(dir, 'fake-ffmpeg');
    writeFileSync(fake, '#!/bin/sh\necho "moov atom not found" >&2\nexit 1\n');
    chmodSync(fake, 0o755);
    const mp4 = join(dir, 'broken.mp4');
    writeFileSync(mp4, Buffer.from('\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41', 'latin1'));
    const e = await userError(() => collect(readVideo(mp4, { ffmpeg: fake })), mp4);
    expect(e.message).toMatch(/ffmpeg could not read .*exit code 1: moov atom not found/);
  });
});

describe.skipIf(!findFfmpeg())('readVideo through the installed ffmpeg', () => {
  it('reads an MP4 written by media/video.ts: frames, size, maxFrames, stopping early', async () => {
    const dir = freshDir();
    const [w, h, n] = [64, 48, 5];
    const writer = await openVideo(join(dir, 'real.mp4'), { width: w, height: h, fps: 16 });
    for (let t = 0; t < n; t++) await writer.append(picture(w, h, t));
    await writer.close();
    const frames = await collect(readVideo(writer.path));
    expect(frames.length).toBe(n);
    frames.forEach((f, t) => {
      expect([f.width, f.height]).toEqual([w, h]);
      expect(meanDiff(f.rgb, picture(w, h, t))).toBeLessThan(6); // H.264 yuv420p
    });
    expect((await collect(readVideo(writer.path, { maxFrames: 2 }))).length).toBe(2);
    // leaving the loop early ends ffmpeg (the test would hang on an open pipe otherwise)
    for await (const f of readVideo(writer.path)) {
      expect(f.width).toBe(w);
      break;
    }
    const t = await readMediaTensor(writer.path, { width: 32, height: 16 });
    expect([t.frames, t.sourceWidth, t.sourceHeight]).toEqual([n, w, h]);
  });

  it('reads the AVI through ffmpeg too, and reports files ffmpeg cannot read', async () => {
    const dir = freshDir();
    const avi = join(dir, 'clip.avi');
    const writer = new MjpegAviWriter(avi, { width: 40, height: 24, fps: 16 });
    for (let t = 0; t < 3; t++) await writer.append(picture(40, 24, t));
    await writer.close();
    const frames = await collect(readVideo(avi));
    expect(frames.length).toBe(3);
    expect(meanDiff(frames[2]!.rgb, picture(40, 24, 2))).toBeLessThan(5);

    const broken = join(dir, 'broken.mp4');
    writeFileSync(
      broken,
      Buffer.concat([Buffer.from('\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41', 'latin1'), Buffer.alloc(500, 7)]),
    );
    const e = await userError(() => collect(readVideo(broken)), broken);
    expect(e.message).toMatch(/ffmpeg could not/);

    // a WAV file: ffmpeg opens it, but there is no picture
    const fmt = Buffer.alloc(16);
    fmt.writeUInt16LE(1, 0); // PCM
    fmt.writeUInt16LE(1, 2); // mono
    fmt.writeUInt32LE(8000, 4);
    fmt.writeUInt32LE(16000, 8);
    fmt.writeUInt16LE(2, 12);
    fmt.writeUInt16LE(16, 14);
    const wav = join(dir, 'sound.wav');
    writeFileSync(
      wav,
      riffChunk(
        'RIFF',
        Buffer.concat([Buffer.from('WAVE'), riffChunk('fmt ', fmt), riffChunk('data', Buffer.alloc(1600))]),
      ),
    );
    expect((await userError(() => collect(readVideo(wav)), wav)).message).toMatch(/has no video stream/);
  });
});
