// Motion-JPEG in an AVI (RIFF) container: the dependency-free video format. Each frame is a baseline
// JPEG (jpeg-js, pure JS) in a '00dc' chunk; the header's frame counts and the 'idx1' index (16
// bytes per frame, the only thing kept in memory) are written on close. VLC, mpv, ffmpeg/ffplay and
// Windows' players open it. AVI 1.0 keeps every offset in 32 bits and many players stop at 1 GiB, so
// a file is limited to 1 GiB (about 8,000 frames of 832x480 at quality 90); longer videos want MP4.
import jpeg from 'jpeg-js';
import { SfcError } from '../dsl/errors.js';
import { TempFile, ensureParentDir } from './atomic.js';
import { checkFps, checkFrame, checkSize, type VideoWriter } from './frames.js';

/** AVI 1.0's practical size limit */
export const AVI_MAX_BYTES = 2 ** 30;

const HEADER_BYTES = 224; // RIFF + hdrl list + 'LIST' size 'movi'
const AVIF_HASINDEX = 0x10;
const AVIIF_KEYFRAME = 0x10;

function fourcc(b: DataView, at: number, s: string): void {
  for (let i = 0; i < 4; i++) b.setUint8(at + i, s.charCodeAt(i));
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** fps as the rate / scale pair AVI stores (e.g. 16 -> 16/1, 29.97 -> 2997/100) */
export function fpsRational(fps: number): { rate: number; scale: number } {
  const scale = 1000;
  const rate = Math.round(fps * scale);
  const g = gcd(rate, scale);
  return { rate: rate / g, scale: scale / g };
}

export interface AviOptions {
  width: number;
  height: number;
  fps: number;
  /** JPEG quality 1..100, default 90 */
  quality?: number;
}

/**
 * One RGB8 frame (width x height x 3) as a baseline JPEG; `rgba` is an optional scratch buffer of
 * width x height x 4 bytes reused between frames.
 */
export function encodeJpeg(
  rgb: Uint8Array,
  width: number,
  height: number,
  quality = 90,
  rgba: Uint8Array<ArrayBuffer> = new Uint8Array(width * height * 4),
): Uint8Array {
  const px = width * height;
  for (let i = 0; i < px; i++) {
    rgba[i * 4] = rgb[i * 3]!;
    rgba[i * 4 + 1] = rgb[i * 3 + 1]!;
    rgba[i * 4 + 2] = rgb[i * 3 + 2]!;
    rgba[i * 4 + 3] = 255;
  }
  return jpeg.encode({ width, height, data: rgba }, quality).data;
}

export class MjpegAviWriter implements VideoWriter {
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  readonly quality: number;
  private readonly file: TempFile;
  private readonly index: number[] = []; // offset, size per frame
  private readonly rgba: Uint8Array<ArrayBuffer>;
  private maxChunk = 0;
  private state: 'open' | 'closed' | 'failed' = 'open';

  constructor(
    readonly path: string,
    o: AviOptions,
  ) {
    checkSize(o.width, o.height);
    checkFps(o.fps);
    this.quality = o.quality ?? 90;
    if (!Number.isInteger(this.quality) || this.quality < 1 || this.quality > 100)
      throw new SfcError(`JPEG quality must be a whole number from 1 to 100, got ${this.quality}`);
    this.width = o.width;
    this.height = o.height;
    this.fps = o.fps;
    this.rgba = new Uint8Array(o.width * o.height * 4);
    ensureParentDir(path);
    this.file = new TempFile(path);
    this.file.write(new Uint8Array(HEADER_BYTES)); // filled in on close
  }

  get frames(): number {
    return this.index.length / 2;
  }

  private live(): void {
    if (this.state !== 'open') throw new SfcError(`${this.path}: the writer is ${this.state}`);
  }

  async append(rgb: Uint8Array): Promise<void> {
    this.live();
    checkFrame(rgb, this.width, this.height);
    await this.appendJpeg(encodeJpeg(rgb, this.width, this.height, this.quality, this.rgba));
  }

  /** Appends a frame already encoded as a baseline JPEG of the writer's size (`encodeJpeg`). */
  async appendJpeg(jpg: Uint8Array): Promise<void> {
    this.live();
    const padded = jpg.length + (jpg.length & 1);
    // the chunk, the index entry and the closing bytes must stay under the limit
    if (this.file.size + 8 + padded + 16 * (this.frames + 1) + 8 > AVI_MAX_BYTES) {
      await this.abort();
      throw new SfcError(`${this.path}: an AVI file is limited to 1 GiB; this video needs more`, {
        hint: 'install ffmpeg to write MP4, write PNG frames, or make the video shorter',
      });
    }
    const head = new DataView(new ArrayBuffer(8));
    fourcc(head, 0, '00dc');
    head.setUint32(4, jpg.length, true);
    // offsets in idx1 count from the 'movi' fourcc (4 bytes before the first chunk)
    this.index.push(this.file.size - (HEADER_BYTES - 4), jpg.length);
    this.file.write(new Uint8Array(head.buffer));
    this.file.write(jpg);
    if (jpg.length & 1) this.file.write(new Uint8Array(1));
    this.maxChunk = Math.max(this.maxChunk, jpg.length);
  }

  async close(): Promise<string> {
    this.live();
    if (this.frames === 0) {
      await this.abort();
      throw new SfcError(`${this.path}: no frames were written`);
    }
    const n = this.frames;
    const moviBytes = this.file.size - (HEADER_BYTES - 4); // from the 'movi' fourcc on
    const idx = new DataView(new ArrayBuffer(8 + 16 * n));
    fourcc(idx, 0, 'idx1');
    idx.setUint32(4, 16 * n, true);
    for (let i = 0; i < n; i++) {
      fourcc(idx, 8 + 16 * i, '00dc');
      idx.setUint32(12 + 16 * i, AVIIF_KEYFRAME, true);
      idx.setUint32(16 + 16 * i, this.index[2 * i]!, true);
      idx.setUint32(20 + 16 * i, this.index[2 * i + 1]!, true);
    }
    this.file.write(new Uint8Array(idx.buffer));
    this.file.writeAt(this.header(n, moviBytes), 0);
    this.file.commit();
    this.state = 'closed';
    return this.path;
  }

  async abort(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'failed';
    this.file.discard();
  }

  private header(frames: number, moviBytes: number): Uint8Array {
    const b = new DataView(new ArrayBuffer(HEADER_BYTES));
    const { width: w, height: h } = this;
    const { rate, scale } = fpsRational(this.fps);
    const buffer = this.maxChunk + 8;
    fourcc(b, 0, 'RIFF');
    b.setUint32(4, this.file.size - 8, true);
    fourcc(b, 8, 'AVI ');
    fourcc(b, 12, 'LIST');
    b.setUint32(16, 192, true);
    fourcc(b, 20, 'hdrl');
    fourcc(b, 24, 'avih');
    b.setUint32(28, 56, true);
    b.setUint32(32, Math.round(1e6 / this.fps), true); // microseconds per frame
    b.setUint32(36, Math.min(2 ** 32 - 1, Math.ceil(buffer * this.fps)), true); // max bytes per second
    b.setUint32(44, AVIF_HASINDEX, true);
    b.setUint32(48, frames, true);
    b.setUint32(56, 1, true); // streams
    b.setUint32(60, buffer, true);
    b.setUint32(64, w, true);
    b.setUint32(68, h, true);
    fourcc(b, 88, 'LIST');
    b.setUint32(92, 116, true);
    fourcc(b, 96, 'strl');
    fourcc(b, 100, 'strh');
    b.setUint32(104, 56, true);
    fourcc(b, 108, 'vids');
    fourcc(b, 112, 'MJPG');
    b.setUint32(128, scale, true);
    b.setUint32(132, rate, true);
    b.setUint32(140, frames, true); // length
    b.setUint32(144, buffer, true);
    b.setInt32(148, -1, true); // quality: default
    b.setUint16(160, w, true); // rcFrame right, bottom
    b.setUint16(162, h, true);
    fourcc(b, 164, 'strf');
    b.setUint32(168, 40, true);
    b.setUint32(172, 40, true); // BITMAPINFOHEADER
    b.setInt32(176, w, true);
    b.setInt32(180, h, true);
    b.setUint16(184, 1, true); // planes
    b.setUint16(186, 24, true); // bits per pixel
    fourcc(b, 188, 'MJPG');
    b.setUint32(192, w * h * 3, true);
    fourcc(b, 212, 'LIST');
    b.setUint32(216, moviBytes, true);
    fourcc(b, 220, 'movi');
    return new Uint8Array(b.buffer);
  }
}

/** What `parseAvi` finds in a Motion-JPEG AVI. */
export interface AviContents {
  width: number;
  height: number;
  fps: number;
  /** the stream's codec fourcc, e.g. 'MJPG' */
  codec: string;
  /** frame count from the header */
  declaredFrames: number;
  /** the compressed frames, in order (views into the file's bytes) */
  frames: Uint8Array[];
}

/**
 * Reads an AVI 1.0 file's first video stream: the header fields and the compressed frames of the
 * 'movi' list (checked against 'idx1' when there is one). Errors name what is malformed.
 */
export function parseAvi(bytes: Uint8Array): AviContents {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const cc = (at: number) => String.fromCharCode(...bytes.subarray(at, at + 4));
  const bad = (what: string) => new SfcError(`not a readable AVI file: ${what}`);
  if (bytes.length < 12 || cc(0) !== 'RIFF' || cc(8) !== 'AVI ') throw bad('no RIFF AVI header');
  const end = Math.min(bytes.length, 8 + v.getUint32(4, true));
  let width = 0;
  let height = 0;
  let fps = 0;
  let codec = '';
  let declaredFrames = 0;
  let moviAt = -1;
  const frames: Uint8Array[] = [];
  let index: { offset: number; size: number }[] | undefined;
  const walk = (from: number, to: number, inside: string) => {
    let p = from;
    while (p + 8 <= to) {
      const id = cc(p);
      const size = v.getUint32(p + 4, true);
      const body = p + 8;
      if (body + size > to) throw bad(`chunk '${id}' at byte ${p} runs past its container`);
      if (id === 'LIST') {
        const kind = cc(body);
        if (kind === 'movi') moviAt = body;
        walk(body + 4, body + size, kind);
      } else if (id === 'avih') {
        declaredFrames = v.getUint32(body + 16, true);
      } else if (id === 'strh' && !codec && cc(body) === 'vids') {
        codec = cc(body + 4);
        const scale = v.getUint32(body + 20, true);
        const rate = v.getUint32(body + 24, true);
        if (scale === 0) throw bad('the stream header has a zero time scale');
        fps = rate / scale;
      } else if (id === 'strf' && !width) {
        width = v.getInt32(body + 4, true);
        height = Math.abs(v.getInt32(body + 8, true));
      } else if (inside === 'movi' && /^00d[cb]$/.test(id)) {
        frames.push(bytes.subarray(body, body + size));
      } else if (id === 'idx1') {
        index = [];
        for (let e = body; e + 16 <= body + size; e += 16)
          if (/^00d[cb]$/.test(cc(e)))
            index.push({ offset: v.getUint32(e + 8, true), size: v.getUint32(e + 12, true) });
      }
      p = body + size + (size & 1);
    }
  };
  walk(12, end, 'AVI ');
  if (!codec || !width) throw bad('no video stream header');
  if (moviAt < 0) throw bad("no 'movi' list");
  if (index) {
    if (index.length !== frames.length)
      throw bad(`the index lists ${index.length} frames, the 'movi' list has ${frames.length}`);
    index.forEach((e, i) => {
      const at = moviAt + e.offset + 8;
      if (frames[i]!.byteOffset - bytes.byteOffset !== at || frames[i]!.length !== e.size)
        throw bad(`index entry ${i} does not point at frame ${i}`);
    });
  }
  return { width, height, fps, codec, declaredFrames, frames };
}
