// MP4 (H.264) through the ffmpeg program: frames are piped to it as raw RGB (never held: each
// append waits for the pipe), it encodes with libx264 into a hidden temporary file, and close renames
// that over the target once ffmpeg exits cleanly. yuv420p (what players expect) needs even sizes, so
// odd ones are padded by a pixel.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, rmSync, renameSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { SfcError } from '../dsl/errors.js';
import { ensureParentDir, tempPathFor } from './atomic.js';
import { checkFps, checkFrame, checkSize, type VideoWriter } from './frames.js';

const INSTALL_HINT =
  'install ffmpeg with libx264 (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg), ' +
  'or write the dependency-free Motion-JPEG AVI instead (format avi)';

function executable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The ffmpeg executable on PATH, or undefined. */
export function findFfmpeg(pathEnv = process.env.PATH ?? ''): string | undefined {
  for (const dir of pathEnv.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, 'ffmpeg');
    if (executable(p)) return p;
  }
  return undefined;
}

export interface Mp4Options {
  width: number;
  height: number;
  fps: number;
  /** libx264 constant rate factor, 0 (lossless) .. 51; default 18 */
  crf?: number;
  /** the ffmpeg program; default: the one on PATH */
  ffmpeg?: string;
}

/** The ffmpeg command line for raw RGB frames on stdin -> H.264 MP4 at `out`. */
export function ffmpegArgs(o: Required<Omit<Mp4Options, 'ffmpeg'>>, out: string): string[] {
  const odd = o.width % 2 === 1 || o.height % 2 === 1;
  return [
    ...['-hide_banner', '-loglevel', 'error', '-nostdin', '-y'],
    ...['-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s:v', `${o.width}x${o.height}`, '-framerate', String(o.fps)],
    ...['-i', 'pipe:0', '-an'],
    ...(odd ? ['-vf', 'pad=ceil(iw/2)*2:ceil(ih/2)*2'] : []),
    ...['-c:v', 'libx264', '-preset', 'medium', '-crf', String(o.crf), '-pix_fmt', 'yuv420p'],
    ...['-movflags', '+faststart', '-f', 'mp4', out],
  ];
}

export class FfmpegMp4Writer implements VideoWriter {
  readonly width: number;
  readonly height: number;
  private readonly tmp: string;
  private readonly proc: ChildProcess;
  private readonly exited: Promise<{ code: number | null; signal: string | null; error?: Error }>;
  private stderr = '';
  private count = 0;
  private state: 'open' | 'closed' | 'failed' = 'open';

  constructor(
    readonly path: string,
    o: Mp4Options,
  ) {
    checkSize(o.width, o.height);
    checkFps(o.fps);
    const crf = o.crf ?? 18;
    if (!Number.isInteger(crf) || crf < 0 || crf > 51)
      throw new SfcError(`crf must be a whole number from 0 to 51, got ${crf}`);
    const program = o.ffmpeg ?? findFfmpeg();
    if (!program || (isAbsolute(program) && !executable(program)))
      throw new SfcError(`ffmpeg was not found${program ? ` at ${program}` : ' on PATH'}, so no MP4 can be written`, {
        hint: INSTALL_HINT,
      });
    this.width = o.width;
    this.height = o.height;
    ensureParentDir(path);
    this.tmp = tempPathFor(path, '.mp4');
    this.proc = spawn(program, ffmpegArgs({ width: o.width, height: o.height, fps: o.fps, crf }, this.tmp), {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stderr!.on('data', (s: string) => {
      this.stderr = (this.stderr + s).slice(-4000);
    });
    // a write to a pipe ffmpeg has closed fails with EPIPE; the exit status says why
    this.proc.stdin!.on('error', () => {});
    this.exited = new Promise((resolve) => {
      this.proc.once('error', (error) => resolve({ code: null, signal: null, error }));
      this.proc.once('close', (code, signal) => resolve({ code, signal }));
    });
  }

  get frames(): number {
    return this.count;
  }

  private async failure(what: string): Promise<SfcError> {
    const r = await this.exited;
    this.state = 'failed';
    rmSync(this.tmp, { force: true });
    const why = r.error
      ? r.error.message
      : r.signal
        ? `killed by ${r.signal}`
        : `exit code ${r.code}${this.stderr.trim() ? `: ${this.stderr.trim().split('\n').slice(-5).join(' | ')}` : ''}`;
    return new SfcError(`ffmpeg failed ${what} ${this.path} (${why})`, { hint: INSTALL_HINT });
  }

  async append(rgb: Uint8Array): Promise<void> {
    if (this.state !== 'open') throw new SfcError(`${this.path}: the writer is ${this.state}`);
    checkFrame(rgb, this.width, this.height);
    const stdin = this.proc.stdin!;
    const ok = await new Promise<boolean>((resolve) => {
      if (stdin.destroyed || !stdin.writable) return resolve(false);
      const flushed = stdin.write(rgb, (err) => {
        if (err) resolve(false);
      });
      if (flushed) resolve(true);
      else {
        const onDrain = () => {
          stdin.off('close', onClose);
          resolve(true);
        };
        const onClose = () => {
          stdin.off('drain', onDrain);
          resolve(false);
        };
        stdin.once('drain', onDrain);
        stdin.once('close', onClose);
      }
    });
    if (!ok) throw await this.failure('while writing');
    this.count++;
  }

  async close(): Promise<string> {
    if (this.state !== 'open') throw new SfcError(`${this.path}: the writer is ${this.state}`);
    if (this.count === 0) {
      await this.abort();
      throw new SfcError(`${this.path}: no frames were written`);
    }
    this.proc.stdin!.end();
    const r = await this.exited;
    if (r.error || r.code !== 0) throw await this.failure('to finish');
    try {
      renameSync(this.tmp, this.path);
    } catch (e) {
      rmSync(this.tmp, { force: true });
      this.state = 'failed';
      throw new SfcError(`cannot finish ${this.path}: ${(e as Error).message}`, { cause: e });
    }
    this.state = 'closed';
    return this.path;
  }

  async abort(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'failed';
    this.proc.stdin!.destroy();
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    await this.exited;
    rmSync(this.tmp, { force: true });
  }
}
