// Input media for image-to-video and video-to-video: images (PNG, JPEG) and videos read as RGB bytes,
// resized as the reference does (torchvision Resize((H, W)) on a PIL image: Pillow's bilinear
// resample), and laid out as the float [3, T, H, W] tensor in [-1, 1] the VAE encoder takes.
//
// - Formats are told by their first bytes, never by the file name. Images: PNG (pngjs: palette, grey,
//   alpha and 16-bit are normalised to 8-bit RGBA, alpha is dropped as PIL's convert('RGB') does)
//   and JPEG (jpeg-js, grey and CMYK converted to RGB; EXIF orientation is ignored, as PIL's
//   Image.open is).
// - Videos stream frame by frame: through ffmpeg when it is on PATH (any container and codec), else
//   a Motion-JPEG AVI (avi-read.ts; what media/avi.ts writes) or a directory of PNG/JPEG frames.
// - Resizing is Pillow's ImagingResample with the bilinear (triangle) filter: separable, horizontal
//   pass then vertical, the filter's support widened by the downscale factor (so a downscale averages
//   every source pixel it covers: antialiasing), weights normalised and rounded to 22-bit fixed point,
//   8-bit intermediate rows. See resizeRgb.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, readdirSync, statSync, type Stats } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { SfcError } from '../dsl/errors.js';
import { MjpegAviReader, withHuffmanTables } from './avi-read.js';
import { findFfmpeg } from './ffmpeg.js';

/** An RGB image: width * height * 3 bytes, interleaved, row-major. */
export interface RgbImage {
  width: number;
  height: number;
  rgb: Uint8Array;
}

const FFMPEG_HINT = 'install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg)';
/** jpeg-js's guards against huge or hostile files: 100 megapixels, 1 GiB of decoder memory */
const JPEG_LIMITS = { maxResolutionInMP: 100, maxMemoryUsageInMB: 1024 };
const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);

// ---------------------------------------------------------------------------------------------------
// Format detection

/** What a file's first bytes say it is. */
export interface SniffedFormat {
  /** 'png' and 'jpeg' are decoded here, 'avi' may be; the rest need ffmpeg (or are not media) */
  kind: 'png' | 'jpeg' | 'avi' | 'image' | 'video' | 'empty' | 'text' | 'other';
  /** for messages, e.g. 'a PNG image', 'an MP4 video', 'a text file' */
  what: string;
}

const ascii = (b: Uint8Array, at: number, n: number) => String.fromCharCode(...b.subarray(at, at + n));

/** The format of a file from its first bytes (a few hundred are plenty; MPEG-TS needs 189). */
export function sniffFormat(head: Uint8Array): SniffedFormat {
  const b = head;
  const at = (i: number, ...bytes: number[]) => bytes.every((x, k) => b[i + k] === x);
  if (b.length === 0) return { kind: 'empty', what: 'an empty file' };
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return { kind: 'png', what: 'a PNG image' };
  if (at(0, 0xff, 0xd8, 0xff)) return { kind: 'jpeg', what: 'a JPEG image' };
  if (ascii(b, 0, 4) === 'RIFF') {
    const form = ascii(b, 8, 4);
    if (form === 'AVI ') return { kind: 'avi', what: 'an AVI video' };
    if (form === 'WEBP') return { kind: 'image', what: 'a WebP image' };
    if (form === 'WAVE') return { kind: 'other', what: 'a WAV audio file' };
  }
  if (ascii(b, 4, 4) === 'ftyp') {
    const brand = ascii(b, 8, 4);
    if (/^(avif|avis)$/.test(brand)) return { kind: 'image', what: 'an AVIF image' };
    if (/^(heic|heix|heim|heis|mif1|msf1)$/.test(brand)) return { kind: 'image', what: 'a HEIF/HEIC image' };
    if (brand === 'qt  ') return { kind: 'video', what: 'a QuickTime (MOV) video' };
    if (/^(M4A |M4B )$/.test(brand)) return { kind: 'other', what: 'an M4A audio file' };
    return { kind: 'video', what: 'an MP4 video' };
  }
  if (/^(moov|mdat|wide|free|skip)$/.test(ascii(b, 4, 4))) return { kind: 'video', what: 'a QuickTime (MOV) video' };
  if (at(0, 0x1a, 0x45, 0xdf, 0xa3))
    return { kind: 'video', what: ascii(b, 0, 64).includes('webm') ? 'a WebM video' : 'a Matroska (MKV) video' };
  if (ascii(b, 0, 4) === 'GIF8') return { kind: 'video', what: 'a GIF image' };
  if (ascii(b, 0, 3) === 'FLV') return { kind: 'video', what: 'an FLV video' };
  if (ascii(b, 0, 4) === 'OggS') return { kind: 'video', what: 'an Ogg file' };
  if (at(0, 0x00, 0x00, 0x01, 0xba) || at(0, 0x00, 0x00, 0x01, 0xb3)) return { kind: 'video', what: 'an MPEG video' };
  if (b[0] === 0x47 && b.length > 188 && b[188] === 0x47) return { kind: 'video', what: 'an MPEG-TS video' };
  if (at(0, 0x30, 0x26, 0xb2, 0x75)) return { kind: 'video', what: 'a Windows Media (ASF/WMV) video' };
  if (ascii(b, 0, 2) === 'BM' && at(6, 0, 0, 0, 0)) return { kind: 'image', what: 'a BMP image' };
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return { kind: 'image', what: 'a TIFF image' };
  if (at(0, 0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50)) return { kind: 'image', what: 'a JPEG 2000 image' };
  if (/^P[1-7]\s/.test(ascii(b, 0, 3))) return { kind: 'image', what: 'a PNM image' };
  if (ascii(b, 0, 4) === '%PDF') return { kind: 'other', what: 'a PDF document' };
  if (at(0, 0x50, 0x4b, 0x03, 0x04)) return { kind: 'other', what: 'a ZIP archive' };
  if (at(0, 0x1f, 0x8b)) return { kind: 'other', what: 'a gzip archive' };
  if (ascii(b, 0, 3) === 'ID3' || at(0, 0xff, 0xfb)) return { kind: 'other', what: 'an MP3 audio file' };
  if (ascii(b, 0, 4) === 'fLaC') return { kind: 'other', what: 'a FLAC audio file' };
  const t = ascii(b, 0, 5).toLowerCase();
  if (t.startsWith('<svg') || t.startsWith('<?xml')) return { kind: 'image', what: 'an SVG/XML file' };
  // text: no control bytes other than tab, newline, carriage return and form feed (UTF-8 is fine)
  if (b.every((x) => x >= 0x20 || x === 9 || x === 10 || x === 12 || x === 13))
    return { kind: 'text', what: 'a text file' };
  return { kind: 'other', what: 'a file of an unknown format' };
}

function statOf(path: string, what: string): Stats {
  try {
    return statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SfcError(
      code === 'ENOENT' ? `${what} ${path} does not exist` : `cannot read ${path}: ${(e as Error).message}`,
      {
        cause: e,
        ...(code === 'ENOENT' ? { hint: 'check the path (relative paths start at the current directory)' } : {}),
      },
    );
  }
}

function readHead(path: string, n = 512): Uint8Array {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const head = new Uint8Array(n);
    const got = readSync(fd, head, 0, n, 0);
    return head.subarray(0, got);
  } catch (e) {
    throw new SfcError(`cannot read ${path}: ${(e as Error).message}`, { cause: e });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------------
// Images

/**
 * Decodes PNG or JPEG bytes (told apart by their magic bytes) to RGB. `name` (the file) is named in
 * errors: an unsupported format (saying what it looks like), corrupt or truncated data.
 */
export function decodeImage(bytes: Uint8Array, name: string): RgbImage {
  const f = sniffFormat(bytes.subarray(0, 512));
  if (f.kind === 'png') return decodePngRgb(bytes, name);
  if (f.kind === 'jpeg') return decodeJpegRgb(bytes, name);
  const convert = f.kind === 'image' || f.kind === 'video';
  throw new SfcError(`${name} is ${f.what}, not a PNG or JPEG image`, {
    hint: convert
      ? `convert it first, e.g. ffmpeg -i ${name} -frames:v 1 image.png`
      : 'give a PNG or JPEG image (the format is told by the file contents, not its name)',
  });
}

/** Reads a PNG or JPEG file to RGB bytes. */
export function readImage(path: string): RgbImage {
  if (statOf(path, 'the image').isDirectory())
    throw new SfcError(`${path} is a directory, not an image`, { hint: 'give a PNG or JPEG file' });
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new SfcError(`cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  return decodeImage(bytes, path);
}

function decodePngRgb(bytes: Uint8Array, name: string): RgbImage {
  let png: PNG;
  try {
    // pngjs unpacks every colour type and depth to 8-bit RGBA (16-bit scaled, grey replicated,
    // palette looked up, tRNS made alpha)
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
  } catch (e) {
    const msg = (e as Error).message;
    // pngjs's words for data that stops early
    const why = /waitng on finished stream|waiting on finished stream/.test(msg) ? 'the file ends early' : msg;
    throw new SfcError(`${name} is a corrupt or truncated PNG image (${why})`, { cause: e });
  }
  const { width, height, data } = png;
  if (!width || !height || data.length < width * height * 4)
    throw new SfcError(`${name} is a corrupt or truncated PNG image (no pixel data)`);
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgb[i] = data[j]!;
    rgb[i + 1] = data[j + 1]!;
    rgb[i + 2] = data[j + 2]!;
  }
  return { width, height, rgb };
}

/** True when the JPEG's last start of scan is followed by an end-of-image marker (it is whole). */
function jpegComplete(b: Uint8Array): boolean {
  let sos = -1;
  for (let i = b.length - 2; i >= 0; i--)
    if (b[i] === 0xff && b[i + 1] === 0xda) {
      sos = i;
      break;
    }
  if (sos < 0) return false;
  // in entropy-coded data 0xff is followed by 0x00 or a restart marker: ff d9 can only be the end
  for (let i = b.length - 2; i > sos; i--) if (b[i] === 0xff && b[i + 1] === 0xd9) return true;
  return false;
}

function decodeJpegRgb(bytes: Uint8Array, name: string): RgbImage {
  // jpeg-js fills a truncated scan with grey without complaint: check for the end marker first
  if (!jpegComplete(bytes))
    throw new SfcError(`${name} is a truncated or corrupt JPEG image (no end-of-image marker after the image data)`);
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, ...JPEG_LIMITS });
  } catch (e) {
    const msg = (e as Error).message;
    if (/maxResolutionInMP|maxMemoryUsageInMB|allocate enough memory/.test(msg))
      throw new SfcError(`${name} is too large to decode (${msg})`, {
        cause: e,
        hint: 'downscale it first (under 100 megapixels)',
      });
    throw new SfcError(`${name} is a corrupt or unsupported JPEG image (${msg})`, {
      cause: e,
      hint: 'baseline and progressive JPEGs are read; re-save it as PNG or baseline JPEG if it is unusual',
    });
  }
  if (!img.width || !img.height || img.data.length !== img.width * img.height * 3)
    throw new SfcError(`${name} is a corrupt JPEG image (no pixel data)`);
  return { width: img.width, height: img.height, rgb: img.data };
}

// ---------------------------------------------------------------------------------------------------
// Resizing

/** 'stretch' (default, as the reference): the whole image to W x H; 'crop': scale to cover, centre-crop. */
export type FitMode = 'stretch' | 'crop';

const PRECISION_BITS = 32 - 8 - 2; // Pillow's, for 8-bit images

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle) filter. */
function coefficients(
  inSize: number,
  in0: number,
  in1: number,
  outSize: number,
): { ksize: number; bounds: Int32Array; k: Int32Array } {
  const scale = Math.fround(in1 - in0) / outSize; // float32 box coordinates, as Pillow's C code
  const filterscale = Math.max(scale, 1);
  const support = 1 * filterscale; // the triangle's support is 1, widened when downscaling
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const k = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      w[x] = t < 1 ? 1 - t : 0;
      total += w[x]!;
    }
    for (let x = 0; x < xmax; x++) {
      const c = total !== 0 ? w[x]! / total : w[x]!;
      k[xx * ksize + x] = Math.trunc(c < 0 ? -0.5 + c * (1 << PRECISION_BITS) : 0.5 + c * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, k };
}

const clip8 = (ss: number) => {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
};

function checkDims(what: string, width: number, height: number): void {
  for (const [n, v] of [
    ['width', width],
    ['height', height],
  ] as const)
    if (!Number.isInteger(v) || v < 1 || v > 65535)
      throw new SfcError(`${what} ${n} must be a whole number from 1 to 65535, got ${v}`);
}

/** The source box [x0, y0, x1, y1] that `fitMode` maps onto the W x H output. */
export function fitBox(w: number, h: number, W: number, H: number, fitMode: FitMode = 'stretch'): number[] {
  if (fitMode === 'stretch') return [0, 0, w, h];
  if (fitMode !== 'crop') throw new SfcError(`unknown fit mode '${String(fitMode)}' (known: stretch, crop)`);
  if (w * H > W * h) {
    const bw = (h * W) / H; // the source is wider: full height, the middle bw columns
    return [(w - bw) / 2, 0, (w + bw) / 2, h];
  }
  const bh = (w * H) / W;
  return [0, (h - bh) / 2, w, (h + bh) / 2];
}

/**
 * Resizes an RGB image (w x h) to exactly W x H as torchvision's `Resize((H, W))` does to a PIL image,
 * i.e. Pillow's `resize((W, H), BILINEAR)`: a separable triangle-filter resample whose support grows
 * with the downscale factor (antialiasing; an upscale is plain bilinear interpolation at pixel
 * centres), with Pillow's coefficient rounding (22-bit fixed point), horizontal pass first and 8-bit
 * intermediate rows. It follows Pillow's C code (Resample.c) step for step and matched Pillow 12.3
 * byte for byte on every case tried, stretch and crop (the tests keep a few of its outputs).
 * `fitMode: 'crop'` scales to cover W x H and takes the centre (a fractional source box, as Pillow's
 * `resize(box=...)`), keeping the aspect ratio; 'stretch' (the default, as the reference) does not.
 */
export function resizeRgb(
  rgb: Uint8Array,
  w: number,
  h: number,
  W: number,
  H: number,
  opts: { fitMode?: FitMode } = {},
): Uint8Array {
  checkDims('the image', w, h);
  checkDims('the resize target', W, H);
  if (!(rgb instanceof Uint8Array) || rgb.length !== w * h * 3)
    throw new SfcError(`a ${w}x${h} RGB image has ${w * h * 3} bytes, got ${rgb?.length}`);
  // Pillow passes the box to its C code as float32
  const [x0, y0, x1, y1] = fitBox(w, h, W, H, opts.fitMode ?? 'stretch').map(Math.fround);
  if (W === w && H === h && x0 === 0 && y0 === 0 && x1 === w && y1 === h) return rgb.slice();
  const hc = coefficients(w, x0!, x1!, W);
  const vc = coefficients(h, y0!, y1!, H);
  // the source rows the vertical pass reads
  const yFirst = vc.bounds[0]!;
  const yLast = vc.bounds[(H - 1) * 2]! + vc.bounds[(H - 1) * 2 + 1]!;
  const rows = yLast - yFirst;
  // horizontal pass: rows yFirst..yLast-1 -> W columns (8-bit, as Pillow's intermediate image)
  const mid = new Uint8Array(rows * W * 3);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < rows; y++) {
    const src = (y + yFirst) * w * 3;
    const dst = y * W * 3;
    for (let xx = 0; xx < W; xx++) {
      const xmin = hc.bounds[xx * 2]!;
      const n = hc.bounds[xx * 2 + 1]!;
      const kb = xx * hc.ksize;
      let r = half;
      let g = half;
      let b = half;
      for (let x = 0; x < n; x++) {
        const c = hc.k[kb + x]!;
        const s = src + (xmin + x) * 3;
        r += rgb[s]! * c;
        g += rgb[s + 1]! * c;
        b += rgb[s + 2]! * c;
      }
      mid[dst + xx * 3] = clip8(r);
      mid[dst + xx * 3 + 1] = clip8(g);
      mid[dst + xx * 3 + 2] = clip8(b);
    }
  }
  // vertical pass
  const out = new Uint8Array(W * H * 3);
  const stride = W * 3;
  for (let yy = 0; yy < H; yy++) {
    const ymin = vc.bounds[yy * 2]! - yFirst;
    const n = vc.bounds[yy * 2 + 1]!;
    const kb = yy * vc.ksize;
    const dst = yy * stride;
    for (let i = 0; i < stride; i++) {
      let s = half;
      for (let y = 0; y < n; y++) s += mid[(ymin + y) * stride + i]! * vc.k[kb + y]!;
      out[dst + i] = clip8(s);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Videos

export interface ReadVideoOptions {
  /** stop after this many frames (default: all) */
  maxFrames?: number;
  /** the ffmpeg program (default: the one on PATH), or false to use only the built-in readers */
  ffmpeg?: string | false;
}

/**
 * The frames of a video, in order, one at a time (never all in memory; each frame is a fresh buffer).
 * `path` may be a video file (through ffmpeg when it is on PATH; without it only Motion-JPEG AVI), a
 * directory of PNG/JPEG frames (files ending in .png/.jpg/.jpeg, in natural name order: frame_2
 * before frame_10; all of one size), or a single PNG/JPEG image (one frame). Missing files and
 * unreadable formats are reported when called; decoding errors while iterating. Stopping early
 * (break) ends the ffmpeg process and closes the file. Through ffmpeg, frames come at the stream's
 * constant frame rate (ffmpeg's default for raw output: a variable-rate file gets frames repeated or
 * dropped), rotation metadata applied; the AVI reader likewise repeats AVI's zero-sized dropped frames.
 */
export function readVideo(path: string, opts: ReadVideoOptions = {}): AsyncIterable<RgbImage> {
  const maxFrames = opts.maxFrames ?? Infinity;
  if (maxFrames !== Infinity && (!Number.isInteger(maxFrames) || maxFrames < 1))
    throw new SfcError(`maxFrames must be a whole number of at least 1, got ${maxFrames}`);
  const st = statOf(path, 'the video');
  if (st.isDirectory()) return frameDirectory(path, frameFiles(path), maxFrames);
  const f = sniffFormat(readHead(path));
  if (f.kind === 'png' || f.kind === 'jpeg') return oneImage(path);
  if (f.kind === 'empty' || f.kind === 'text')
    throw new SfcError(`${path} is ${f.what}, not a video`, { hint: 'give a video file or a directory of frames' });
  const program = opts.ffmpeg === false ? undefined : (opts.ffmpeg ?? findFfmpeg());
  if (program) return ffmpegFrames(program, path, maxFrames);
  if (f.kind === 'avi') return aviFrames(path, maxFrames);
  throw new SfcError(
    f.kind === 'other' || f.kind === 'image'
      ? `${path} is ${f.what}, not a video sfc can read without ffmpeg (it reads Motion-JPEG AVI, PNG/JPEG images and directories of them)`
      : `${path} is ${f.what}; reading MP4 and other video formats needs ffmpeg, which is not on PATH`,
    { hint: `${FFMPEG_HINT}, or give a Motion-JPEG AVI or a directory of PNG/JPEG frames` },
  );
}

async function* oneImage(path: string): AsyncGenerator<RgbImage> {
  yield readImage(path);
}

/** natural order: digit runs compare as numbers (frame_2 < frame_10), then by the plain name */
function naturalCompare(a: string, b: string): number {
  const pa = a.match(/\d+|\D+/g) ?? [];
  const pb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i]!;
    const y = pb[i]!;
    if (x === y) continue;
    const dx = /^\d/.test(x);
    const dy = /^\d/.test(y);
    if (dx && dy) {
      const d = Number(x) - Number(y);
      if (d !== 0) return d;
      return x.length - y.length; // '007' after '7'
    }
    return x < y ? -1 : 1;
  }
  return pa.length - pb.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** The frame files of a directory, in order. */
export function frameFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new SfcError(`cannot read the directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
  const frames = names.filter((n) => !n.startsWith('.') && IMAGE_EXTENSIONS.has(extname(n).toLowerCase()));
  if (!frames.length)
    throw new SfcError(`${dir} holds no PNG or JPEG frames`, {
      hint: 'a frame directory holds images named so that they sort in order (frame_00000.png, ...)',
    });
  return frames.sort(naturalCompare).map((n) => join(dir, n));
}

async function* frameDirectory(dir: string, files: string[], maxFrames: number): AsyncGenerator<RgbImage> {
  let first: RgbImage | undefined;
  for (let i = 0; i < files.length && i < maxFrames; i++) {
    const img = readImage(files[i]!);
    first ??= img;
    if (img.width !== first.width || img.height !== first.height)
      throw new SfcError(
        `${files[i]} is ${img.width}x${img.height}, but the frames before it in ${dir} are ${first.width}x${first.height}`,
      );
    yield img;
  }
}

async function* aviFrames(path: string, maxFrames: number): AsyncGenerator<RgbImage> {
  const reader = await MjpegAviReader.open(path);
  let i = 0;
  let size: { width: number; height: number } | undefined;
  for await (const jpg of reader.jpegs()) {
    if (i >= maxFrames) break;
    const img = decodeJpegRgb(withHuffmanTables(jpg), `frame ${i} of ${path}`);
    size ??= img;
    if (img.width !== size.width || img.height !== size.height)
      throw new SfcError(
        `frame ${i} of ${path} is ${img.width}x${img.height}, frame 0 is ${size.width}x${size.height}`,
      );
    yield img;
    i++;
  }
  if (i === 0) throw new SfcError(`${path} holds no video frames`);
}

/** The size of ffmpeg's raw output stream, from the 'Output #0' part of what it prints. */
export function ffmpegOutputSize(stderr: string): { width: number; height: number } | undefined {
  const out = stderr.indexOf('Output #0');
  if (out < 0) return undefined;
  const m = /Video: rawvideo[^\n]*?\s(\d+)x(\d+)[\s,[]/.exec(stderr.slice(out));
  return m ? { width: Number(m[1]), height: Number(m[2]) } : undefined;
}

async function* ffmpegFrames(program: string, path: string, maxFrames: number): AsyncGenerator<RgbImage> {
  const args = [
    ...['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info'],
    ...['-i', `file:${resolve(path)}`, '-map', '0:v:0', '-an', '-sn', '-dn'],
    ...(maxFrames !== Infinity ? ['-frames:v', String(maxFrames)] : []),
    ...['-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'],
  ];
  const proc = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let size: { width: number; height: number } | undefined;
  let sized: () => void = () => {};
  const sizeKnown = new Promise<void>((r) => (sized = r));
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (s: string) => {
    // keep the head (the stream lines) and the tail (the errors)
    stderr = stderr.length < 16000 ? stderr + s : stderr.slice(0, 8000) + stderr.slice(-8000) + s;
    size ??= ffmpegOutputSize(stderr);
    if (size) sized();
  });
  proc.stderr.on('end', () => sized());
  const exited = new Promise<{ code: number | null; signal: string | null; error?: Error }>((res) => {
    proc.once('error', (error) => res({ code: null, signal: null, error }));
    proc.once('close', (code, signal) => res({ code, signal }));
  });
  const failure = async (what: string) => {
    const r = await exited;
    if (r.error)
      return new SfcError(`cannot run ffmpeg (${program}) to read ${path}: ${r.error.message}`, { hint: FFMPEG_HINT });
    if (/matches no streams/.test(stderr))
      return new SfcError(`${path} has no video stream`, { hint: 'give a video file, an image or a frame directory' });
    const lines = stderr
      .trim()
      .split('\n')
      .filter((l) => !/^\s/.test(l) && !/^(Input|Output|Stream mapping|frame=|video:)/.test(l));
    const why = r.signal
      ? `killed by ${r.signal}`
      : `exit code ${r.code}${lines.length ? `: ${lines.slice(-3).join(' | ')}` : ''}`;
    return new SfcError(`ffmpeg could not ${what} ${path} (${why})`, {
      hint: 'check that the file is a video ffmpeg can play (ffmpeg -i FILE)',
    });
  };
  let count = 0;
  let finished = false;
  try {
    let frame: Uint8Array | undefined;
    let filled = 0;
    for await (const chunk of proc.stdout as AsyncIterable<Buffer>) {
      if (!size) await sizeKnown;
      if (!size) throw await failure('tell the frame size of');
      const bytes = size.width * size.height * 3;
      let p = 0;
      while (p < chunk.length) {
        frame ??= new Uint8Array(bytes);
        const n = Math.min(bytes - filled, chunk.length - p);
        frame.set(chunk.subarray(p, p + n), filled);
        filled += n;
        p += n;
        if (filled === bytes) {
          yield { width: size.width, height: size.height, rgb: frame };
          frame = undefined;
          filled = 0;
          if (++count >= maxFrames) return;
        }
      }
    }
    const r = await exited;
    if (r.error || r.code !== 0) throw await failure('read');
    if (filled > 0) throw new SfcError(`ffmpeg stopped in the middle of frame ${count} of ${path}`);
    if (count === 0) throw new SfcError(`${path} holds no video frames`);
    finished = true;
  } finally {
    if (!finished && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    proc.stdout.destroy();
    await exited;
  }
}

// ---------------------------------------------------------------------------------------------------
// Tensor layout

/** value of byte p as the reference makes it: ToTensor (p / 255) then Normalize(0.5, 0.5), in float32 */
const TO_UNIT = Float32Array.from({ length: 256 }, (_, p) => Math.fround(p / 255) * 2 - 1);

/**
 * Frames of W x H RGB bytes as float32 [3, T, H, W] (channel planes first, then frames) in [-1, 1]:
 * x / 255 * 2 - 1, the same float32 values as torchvision's ToTensor + Normalize([0.5], [0.5]).
 * This is the layout of the VAE encoder's input (and of the decoder's output, see rgbFrame).
 */
export function rgbToTensorData(frames: readonly { rgb: Uint8Array }[], W: number, H: number): Float32Array {
  checkDims('the frame', W, H);
  const T = frames.length;
  if (T === 0) throw new SfcError('no frames to convert');
  const hw = W * H;
  const out = new Float32Array(3 * T * hw);
  frames.forEach(({ rgb }, t) => {
    if (!(rgb instanceof Uint8Array) || rgb.length !== hw * 3)
      throw new SfcError(`frame ${t} has ${rgb?.length} bytes; a ${W}x${H} RGB frame has ${hw * 3}`, {
        hint: 'resize frames to the target size first (resizeRgb)',
      });
    const r = (0 * T + t) * hw;
    const g = (1 * T + t) * hw;
    const b = (2 * T + t) * hw;
    for (let i = 0; i < hw; i++) {
      out[r + i] = TO_UNIT[rgb[i * 3]!]!;
      out[g + i] = TO_UNIT[rgb[i * 3 + 1]!]!;
      out[b + i] = TO_UNIT[rgb[i * 3 + 2]!]!;
    }
  });
  return out;
}

export interface MediaTensorOptions {
  /** target size (the reference's is 832 x 480) */
  width: number;
  height: number;
  /** default 'stretch' */
  fitMode?: FitMode;
  /** at most this many frames of a video (default: all) */
  maxFrames?: number;
  /** as in readVideo */
  ffmpeg?: string | false;
}

/** An image or video as the VAE encoder's input. */
export interface MediaTensor {
  /** float32 [3, frames, height, width] in [-1, 1] */
  data: Float32Array;
  frames: number;
  height: number;
  width: number;
  /** the size of the file's frames before resizing */
  sourceWidth: number;
  sourceHeight: number;
}

/**
 * Reads an image (one frame) or a video / frame directory (streamed; only resized frames are kept),
 * resizes every frame to width x height (resizeRgb) and returns the [3, T, H, W] tensor data.
 */
export async function readMediaTensor(path: string, o: MediaTensorOptions): Promise<MediaTensor> {
  checkDims('the target', o.width, o.height);
  fitBox(1, 1, 1, 1, o.fitMode ?? 'stretch'); // an unknown mode fails before any decoding
  const frames: { rgb: Uint8Array }[] = [];
  let source: RgbImage | undefined;
  for await (const f of readVideo(path, { maxFrames: o.maxFrames, ffmpeg: o.ffmpeg })) {
    source ??= f;
    frames.push({ rgb: resizeRgb(f.rgb, f.width, f.height, o.width, o.height, { fitMode: o.fitMode }) });
  }
  return {
    data: rgbToTensorData(frames, o.width, o.height),
    frames: frames.length,
    height: o.height,
    width: o.width,
    sourceWidth: source!.width,
    sourceHeight: source!.height,
  };
}
