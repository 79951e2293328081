// Opening a video writer by format: MP4 through ffmpeg, the dependency-free Motion-JPEG AVI, or PNG
// frames. 'auto' takes the format from the path's extension (.mp4, .avi), and for a path without one
// picks MP4 when ffmpeg is on PATH, else AVI, and appends the extension.
import { extname } from 'node:path';
import { SfcError } from '../dsl/errors.js';
import { MjpegAviWriter } from './avi.js';
import { FfmpegMp4Writer, findFfmpeg } from './ffmpeg.js';
import { checkFps, checkSize, type VideoWriter } from './frames.js';
import { PngSequenceWriter } from './png.js';

export type VideoFormat = 'auto' | 'mp4' | 'avi' | 'png';

export interface VideoOptions {
  width: number;
  height: number;
  fps: number;
  /** default 'auto' */
  format?: VideoFormat;
  /** JPEG quality of the AVI, 1..100 (default 90) */
  quality?: number;
  /** H.264 constant rate factor of the MP4, 0..51 (default 18) */
  crf?: number;
  /** the ffmpeg program (default: the one on PATH) */
  ffmpeg?: string;
}

/** The format 'auto' resolves to for `path`, and the path with its extension. */
export function resolveFormat(
  path: string,
  format: VideoFormat = 'auto',
  haveFfmpeg: boolean = findFfmpeg() !== undefined,
): { format: Exclude<VideoFormat, 'auto'>; path: string } {
  const ext = extname(path).toLowerCase();
  if (format === 'png') return { format, path };
  if (format === 'mp4' || format === 'avi') {
    if (ext && ext !== `.${format}`)
      throw new SfcError(`${path}: a ${format.toUpperCase()} file should end in .${format}, not ${ext}`);
    return { format, path: ext ? path : `${path}.${format}` };
  }
  if (format !== 'auto') throw new SfcError(`unknown video format '${String(format)}' (known: auto, mp4, avi, png)`);
  if (ext === '.mp4' || ext === '.avi') return { format: ext === '.mp4' ? 'mp4' : 'avi', path };
  if (ext) throw new SfcError(`${path}: cannot tell the video format from '${ext}' (use .mp4 or .avi)`);
  return haveFfmpeg ? { format: 'mp4', path: `${path}.mp4` } : { format: 'avi', path: `${path}.avi` };
}

/** Opens a streaming writer; `writer.path` is where the finished video will be. */
export async function openVideo(path: string, o: VideoOptions): Promise<VideoWriter> {
  checkSize(o.width, o.height);
  checkFps(o.fps);
  const r = resolveFormat(path, o.format, (o.ffmpeg ?? findFfmpeg()) !== undefined);
  if (r.format === 'mp4') return new FfmpegMp4Writer(r.path, o);
  if (r.format === 'avi') return new MjpegAviWriter(r.path, o);
  return new PngSequenceWriter(r.path, o.width, o.height);
}
