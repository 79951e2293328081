// PNG images (pngjs) and PNG frame sequences. A sequence is written into a hidden temporary
// directory beside the target and renamed into place on close, so the target directory appears
// complete or not at all. An existing target is replaced only when it holds nothing but frames of an
// earlier sequence (frame_00000.png, ...); anything else there is an error, never deleted.
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { SfcError } from '../dsl/errors.js';
import { TempFile, ensureParentDir, tempPathFor } from './atomic.js';
import { checkFrame, checkSize, type VideoWriter } from './frames.js';

/** PNG bytes of an RGB image (8-bit truecolour, no alpha). */
export function encodePng(rgb: Uint8Array, width: number, height: number): Uint8Array {
  checkSize(width, height);
  checkFrame(rgb, width, height);
  // pngjs packs any object with width, height and data; its types ask for a whole PNG instance
  const image = { width, height, data: Buffer.from(rgb.buffer, rgb.byteOffset, rgb.length) } as unknown as PNG;
  return PNG.sync.write(image, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

/** Decodes a PNG (any colour type pngjs reads) to RGB bytes. */
export function decodePng(bytes: Uint8Array): { width: number; height: number; rgb: Uint8Array } {
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
  } catch (e) {
    throw new SfcError(`not a readable PNG: ${(e as Error).message}`, { cause: e });
  }
  const { width, height, data } = png;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    rgb[i * 3] = data[i * 4]!;
    rgb[i * 3 + 1] = data[i * 4 + 1]!;
    rgb[i * 3 + 2] = data[i * 4 + 2]!;
  }
  return { width, height, rgb };
}

/** Writes one RGB image as a PNG file, atomically. */
export function writePng(path: string, rgb: Uint8Array, width: number, height: number): void {
  const bytes = encodePng(rgb, width, height);
  const file = new TempFile(path);
  file.write(bytes);
  file.commit();
}

/** Reads a PNG file to RGB bytes. */
export function readPng(path: string): { width: number; height: number; rgb: Uint8Array } {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new SfcError(`cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  return decodePng(bytes);
}

const FRAME = /^frame_\d{5,}\.png$/;

/** The file name of frame i in a sequence. */
export function frameName(i: number): string {
  return `frame_${String(i).padStart(5, '0')}.png`;
}

/** Frames as numbered PNG files in a directory: dir/frame_00000.png, dir/frame_00001.png, ... */
export class PngSequenceWriter implements VideoWriter {
  private readonly tmp: string;
  private count = 0;
  private state: 'open' | 'closed' | 'failed' = 'open';

  constructor(
    readonly path: string,
    readonly width: number,
    readonly height: number,
  ) {
    checkSize(width, height);
    ensureParentDir(path);
    this.checkTarget();
    this.tmp = tempPathFor(path);
    try {
      mkdirSync(this.tmp);
    } catch (e) {
      throw new SfcError(`cannot write ${path}: ${(e as Error).message}`, { cause: e });
    }
  }

  get frames(): number {
    return this.count;
  }

  /** the target must be absent, or a directory of frames only */
  private checkTarget(): string[] {
    let st;
    try {
      st = statSync(this.path);
    } catch {
      return [];
    }
    const names = st.isDirectory() ? readdirSync(this.path) : undefined;
    const foreign = names?.filter((n) => !FRAME.test(n));
    if (!names || foreign!.length)
      throw new SfcError(
        `${this.path} exists and is not an earlier frame sequence${foreign?.length ? ` (it holds ${foreign[0]})` : ''}`,
        { hint: 'choose another output path, or remove it' },
      );
    return names;
  }

  async append(rgb: Uint8Array): Promise<void> {
    if (this.state !== 'open') throw new SfcError(`${this.path}: the writer is ${this.state}`);
    try {
      writeFileSync(join(this.tmp, frameName(this.count)), encodePng(rgb, this.width, this.height));
    } catch (e) {
      await this.abort();
      if (e instanceof SfcError) throw e;
      throw new SfcError(`writing frame ${this.count} of ${this.path} failed: ${(e as Error).message}`, { cause: e });
    }
    this.count++;
  }

  async close(): Promise<string> {
    if (this.state !== 'open') throw new SfcError(`${this.path}: the writer is ${this.state}`);
    if (this.count === 0) {
      await this.abort();
      throw new SfcError(`${this.path}: no frames were written`);
    }
    try {
      const old = this.checkTarget();
      if (old.length || statExists(this.path)) {
        // move the old sequence aside, the new one in, then delete the old one
        const aside = tempPathFor(this.path, '.old');
        renameSync(this.path, aside);
        renameSync(this.tmp, this.path);
        try {
          for (const n of old) rmSync(join(aside, n));
          rmdirSync(aside);
        } catch {
          // the new sequence is in place; a leftover hidden directory is all that remains
        }
      } else {
        renameSync(this.tmp, this.path);
      }
    } catch (e) {
      await this.abort();
      if (e instanceof SfcError) throw e;
      throw new SfcError(`cannot finish ${this.path}: ${(e as Error).message}`, { cause: e });
    }
    this.state = 'closed';
    return this.path;
  }

  async abort(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'failed';
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

function statExists(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}
