// Frames as the writers take them: RGB, 8 bits per channel, interleaved row-major (width * height * 3
// bytes), and the conversion from the decoder's float video. The reference turns the VAE output x
// (clamped to [-1, 1]) into pixels (x * 0.5 + 0.5).clamp(0, 1), scales by 255 and casts to uint8
// (torchvision's write_video), which truncates; rgbFrame does the same in float32.
import { SfcError } from '../dsl/errors.js';

/** A streaming video (or image sequence) writer: frames are written as they come, never all held. */
export interface VideoWriter {
  /** where the finished file (or directory) will be */
  readonly path: string;
  readonly width: number;
  readonly height: number;
  /** frames appended so far */
  readonly frames: number;
  /** appends one RGB frame (width * height * 3 bytes) */
  append(rgb: Uint8Array): Promise<void>;
  /** finishes the file and moves it to `path`; returns `path` */
  close(): Promise<string>;
  /** stops and removes everything written (nothing appears at `path`); safe to call after a failure */
  abort(): Promise<void>;
}

export function checkSize(width: number, height: number): void {
  for (const [name, v] of [
    ['width', width],
    ['height', height],
  ] as const)
    if (!Number.isInteger(v) || v < 1 || v > 65535)
      throw new SfcError(`video ${name} must be a whole number from 1 to 65535, got ${v}`);
}

export function checkFps(fps: number): void {
  if (!(fps > 0 && fps <= 1000) || !Number.isFinite(fps)) throw new SfcError(`fps must be in (0, 1000], got ${fps}`);
}

export function checkFrame(rgb: Uint8Array, width: number, height: number): void {
  if (!(rgb instanceof Uint8Array)) throw new SfcError('a frame must be a Uint8Array of RGB bytes');
  if (rgb.length !== width * height * 3)
    throw new SfcError(
      `a ${width}x${height} RGB frame has ${width * height * 3} bytes, got ${rgb.length}` +
        (rgb.length === width * height * 4 ? ' (RGBA? frames are RGB)' : ''),
    );
}

const f = Math.fround;

/** One pixel value of the reference: trunc(255 * clamp(x * 0.5 + 0.5, 0, 1)) in float32. */
export function pixelOf(x: number): number {
  if (Number.isNaN(x)) return 0;
  const p = Math.min(1, Math.max(0, f(f(x * 0.5) + 0.5)));
  return Math.trunc(f(255 * p));
}

/**
 * Frame t of a decoded video, float32 [3, frames, height, width] in [-1, 1] (channels first, as the
 * Wan VAE decoder writes it), as interleaved RGB bytes.
 */
export function rgbFrame(video: Float32Array, t: number, frames: number, height: number, width: number): Uint8Array {
  const hw = height * width;
  if (video.length !== 3 * frames * hw)
    throw new SfcError(
      `a [3, ${frames}, ${height}, ${width}] video has ${3 * frames * hw} values, got ${video.length}`,
    );
  if (!Number.isInteger(t) || t < 0 || t >= frames) throw new SfcError(`frame ${t} is outside 0..${frames - 1}`);
  const out = new Uint8Array(hw * 3);
  for (let c = 0; c < 3; c++) {
    const base = (c * frames + t) * hw;
    for (let i = 0; i < hw; i++) out[i * 3 + c] = pixelOf(video[base + i]!);
  }
  return out;
}
