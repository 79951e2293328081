// Motion-JPEG AVI, read as a stream: the headers ('hdrl': 'avih', and the 'strl' of the first video
// stream: 'strh', 'strf') are parsed when the file is opened, then the 'movi' list is walked one chunk
// at a time, so only the current frame's bytes are in memory (parseAvi in avi.ts reads a whole file).
// Chunks are RIFF's: a fourcc, a 32-bit little-endian size, the body, and a pad byte after an odd
// size. Frames are the video stream's 'NNdc' (or 'NNdb') chunks, also inside 'rec ' lists; audio,
// 'JUNK' and index chunks are skipped. OpenDML files (over 1 GiB) continue in 'RIFF AVIX' chunks,
// whose 'movi' lists are read too. Each frame is a JPEG decoded with jpeg-js; frames without Huffman
// tables (the "AVI1" Motion-JPEG of many cameras) get the standard tables of the JPEG spec (K.3) as
// ffmpeg's decoder assumes. A zero-sized frame chunk repeats the previous frame (AVI's dropped frame).
import { open, type FileHandle } from 'node:fs/promises';
import jpeg from 'jpeg-js';
import { SfcError } from '../dsl/errors.js';

/** What the headers of a Motion-JPEG AVI say. */
export interface AviStreamInfo {
  width: number;
  height: number;
  /** frames per second (rate / scale of the stream header) */
  fps: number;
  /** the stream's codec fourcc, e.g. 'MJPG' */
  codec: string;
  /** the frame count of the main header (0 when the writer did not fill it in) */
  declaredFrames: number;
  /** the video stream's number (the NN of its 'NNdc' chunks) */
  stream: number;
}

const FFMPEG_HINT = 'install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg)';
const MJPEG_CODECS = new Set(['MJPG', 'AVRN', 'AVDJ', 'DMB1', 'JPEG']);
/** 'hdrl' is a few hundred bytes; a much larger one is not a header we can use */
const MAX_HEADER_LIST = 1 << 24;

function fourccAt(b: Uint8Array, at: number): string {
  return String.fromCharCode(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!);
}

let standardDht: Uint8Array | undefined;

/** The DHT segments (with their FFC4 markers) of jpeg-js's encoder, which writes the tables of K.3. */
function standardHuffmanTables(): Uint8Array {
  if (standardDht) return standardDht;
  const jpg = jpeg.encode({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 4) }, 90).data;
  const parts: Uint8Array[] = [];
  let p = 2;
  while (p + 4 <= jpg.length && jpg[p] === 0xff && jpg[p + 1] !== 0xda) {
    const len = (jpg[p + 2]! << 8) | jpg[p + 3]!;
    if (jpg[p + 1] === 0xc4) parts.push(jpg.subarray(p, p + 2 + len));
    p += 2 + len;
  }
  standardDht = Buffer.concat(parts);
  return standardDht;
}

/**
 * A Motion-JPEG frame with Huffman tables: frames that have none (Motion-JPEG may leave them out)
 * get the standard ones inserted before the start of scan; others are returned as they are.
 */
export function withHuffmanTables(jpg: Uint8Array): Uint8Array {
  if (jpg.length < 4 || jpg[0] !== 0xff || jpg[1] !== 0xd8) return jpg;
  let p = 2;
  while (p + 4 <= jpg.length) {
    if (jpg[p] !== 0xff) return jpg; // not a marker where one should be: let the decoder say so
    const marker = jpg[p + 1]!;
    if (marker === 0xff) {
      p++; // fill byte
      continue;
    }
    if (marker === 0xc4) return jpg;
    if (marker === 0xda)
      return Buffer.concat([jpg.subarray(0, p), standardHuffmanTables(), jpg.subarray(p)]) as Uint8Array;
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      p += 2;
      continue;
    }
    p += 2 + ((jpg[p + 2]! << 8) | jpg[p + 3]!);
  }
  return jpg;
}

/** A streaming reader of one Motion-JPEG AVI file. */
export class MjpegAviReader {
  private constructor(
    readonly path: string,
    private readonly file: FileHandle,
    readonly info: AviStreamInfo,
    /** [start, end) byte ranges of the bodies (after the type) of the 'movi' lists */
    private readonly movi: [number, number][],
  ) {}

  /** Opens `path` and reads its headers; errors name the file and what is wrong. */
  static async open(path: string): Promise<MjpegAviReader> {
    let file: FileHandle;
    try {
      file = await open(path, 'r');
    } catch (e) {
      throw new SfcError(`cannot read ${path}: ${(e as Error).message}`, { cause: e });
    }
    try {
      const size = (await file.stat()).size;
      const { info, movi } = await readHeaders(path, file, size);
      return new MjpegAviReader(path, file, info, movi);
    } catch (e) {
      await file.close();
      throw e;
    }
  }

  /** The compressed frames in order (each a fresh buffer); closes the file when done or stopped. */
  async *jpegs(): AsyncGenerator<Uint8Array> {
    const head = new Uint8Array(12);
    const v = new DataView(head.buffer);
    const video = String(this.info.stream).padStart(2, '0');
    let index = 0;
    let previous: Uint8Array | undefined;
    try {
      for (const [start, end] of this.movi) {
        let p = start;
        while (p + 8 <= end) {
          await readAt(this.file, head.subarray(0, 8), p, this.path);
          const id = fourccAt(head, 0);
          const size = v.getUint32(4, true);
          if (id === 'LIST') {
            p += 12; // a 'rec ' list groups chunks: read what it holds in place
            continue;
          }
          const body = p + 8;
          if (body + size > end) {
            if (id.startsWith(video))
              throw new SfcError(`${this.path} is truncated: frame ${index} runs past the end of the file`);
            break; // a partial trailing chunk of another kind: the frames before it are whole
          }
          if (id === `${video}dc` || id === `${video}db`) {
            if (size === 0) {
              if (previous) yield previous.slice();
            } else {
              const jpg = new Uint8Array(size);
              await readAt(this.file, jpg, body, this.path);
              previous = jpg;
              yield jpg;
            }
            index++;
          }
          p = body + size + (size & 1);
        }
      }
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    await this.file.close().catch(() => {});
  }
}

async function readAt(file: FileHandle, into: Uint8Array, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < into.length) {
    let n: number;
    try {
      n = (await file.read(into, done, into.length - done, position + done)).bytesRead;
    } catch (e) {
      throw new SfcError(`cannot read ${path}: ${(e as Error).message}`, { cause: e });
    }
    if (n === 0) throw new SfcError(`${path} is truncated (it ends at byte ${position + done})`);
    done += n;
  }
}

/** Walks the top-level chunks: the header list is parsed, the 'movi' lists are only located. */
async function readHeaders(
  path: string,
  file: FileHandle,
  fileSize: number,
): Promise<{ info: AviStreamInfo; movi: [number, number][] }> {
  const bad = (what: string, hint?: string) =>
    new SfcError(`${path} is not a readable AVI file: ${what}`, hint ? { hint } : {});
  const head = new Uint8Array(12);
  const v = new DataView(head.buffer);
  if (fileSize < 12) throw bad('it is too short');
  await readAt(file, head, 0, path);
  if (fourccAt(head, 0) !== 'RIFF' || fourccAt(head, 8) !== 'AVI ') throw bad('no RIFF AVI header');
  let info: AviStreamInfo | undefined;
  let unsupported: string | undefined;
  const movi: [number, number][] = [];
  // the first RIFF 'AVI ', then (OpenDML) any RIFF 'AVIX'
  let riff = 0;
  while (riff + 12 <= fileSize) {
    await readAt(file, head, riff, path);
    if (fourccAt(head, 0) !== 'RIFF') break;
    const kind = fourccAt(head, 8);
    const riffEnd = Math.min(fileSize, riff + 8 + v.getUint32(4, true));
    if (riff > 0 && kind !== 'AVIX') break;
    let p = riff + 12;
    while (p + 8 <= riffEnd) {
      await readAt(file, head.subarray(0, 8), p, path);
      const id = fourccAt(head, 0);
      const size = v.getUint32(4, true);
      const body = p + 8;
      // a 'movi' list whose size was never filled in (a recording that stopped) runs to the file's end
      const bodyEnd = Math.min(body + size, riffEnd);
      if (id === 'LIST' && bodyEnd - body >= 4) {
        await readAt(file, head.subarray(8, 12), body, path);
        const type = fourccAt(head, 8);
        if (type === 'movi') movi.push([body + 4, bodyEnd]);
        else if (type === 'hdrl' && !info) {
          if (body + size > riffEnd) throw bad('the header list runs past the end of the file');
          if (size > MAX_HEADER_LIST) throw bad(`the header list is implausibly large (${size} bytes)`);
          const hdrl = new Uint8Array(size - 4);
          await readAt(file, hdrl, body + 4, path);
          const r = parseHeaderList(hdrl);
          if ('error' in r) throw bad(r.error);
          if ('unsupported' in r) unsupported = r.unsupported;
          else info = r.info;
        }
      }
      p = body + size + (size & 1);
    }
    riff = riffEnd + (riffEnd & 1);
  }
  if (unsupported)
    throw new SfcError(
      `${path} is an AVI with ${unsupported === 'uncompressed' ? 'uncompressed' : `'${unsupported}'`} video; ` +
        'without ffmpeg only Motion-JPEG AVIs can be read',
      { hint: FFMPEG_HINT },
    );
  if (!info) throw bad('no video stream header');
  if (!movi.length) throw bad("no 'movi' list (no frames)");
  return { info, movi };
}

/** The first video stream of an 'hdrl' list body (after its type). */
function parseHeaderList(b: Uint8Array): { info: AviStreamInfo } | { unsupported: string } | { error: string } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let declaredFrames = 0;
  let stream = 0;
  let p = 0;
  while (p + 8 <= b.length) {
    const id = fourccAt(b, p);
    const size = v.getUint32(p + 4, true);
    const body = p + 8;
    if (body + size > b.length) return { error: `chunk '${id}' runs past the header list` };
    if (id === 'avih' && size >= 20) declaredFrames = v.getUint32(body + 16, true);
    if (id === 'LIST' && size >= 4 && fourccAt(b, body) === 'strl') {
      const s = parseStreamList(b.subarray(body + 4, body + size));
      if ('error' in s) return s;
      if (s.video) {
        if (!MJPEG_CODECS.has(s.codec.toUpperCase())) return { unsupported: s.codec };
        return { info: { ...s.info, declaredFrames, stream, codec: s.codec } };
      }
      stream++;
    }
    p = body + size + (size & 1);
  }
  return { error: 'no video stream header' };
}

function parseStreamList(
  b: Uint8Array,
):
  | { video: false }
  | { video: true; codec: string; info: { width: number; height: number; fps: number } }
  | { error: string } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let handler = '';
  let compression = '';
  let fps = 0;
  let width = 0;
  let height = 0;
  let isVideo = false;
  let p = 0;
  while (p + 8 <= b.length) {
    const id = fourccAt(b, p);
    const size = v.getUint32(p + 4, true);
    const body = p + 8;
    if (body + size > b.length) return { error: `chunk '${id}' runs past its stream list` };
    if (id === 'strh' && size >= 28) {
      isVideo = fourccAt(b, body) === 'vids';
      handler = fourccAt(b, body + 4);
      const scale = v.getUint32(body + 20, true);
      const rate = v.getUint32(body + 24, true);
      fps = scale > 0 ? rate / scale : 0;
    } else if (id === 'strf' && size >= 20) {
      width = v.getInt32(body + 4, true);
      height = Math.abs(v.getInt32(body + 8, true));
      compression = fourccAt(b, body + 16);
    }
    p = body + size + (size & 1);
  }
  if (!isVideo) return { video: false };
  // the BITMAPINFOHEADER's compression is what decoders go by; the stream handler may be anything
  const printable = (cc: string) => /^[\x20-\x7e]{4}$/.test(cc) && cc.trim() !== '';
  const codec = printable(compression) ? compression : printable(handler) ? handler : 'uncompressed';
  return { video: true, codec, info: { width, height, fps } };
}
