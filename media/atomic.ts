// Files that appear whole or not at all: written under a hidden temporary name beside the target
// (same directory, so the final rename stays on one filesystem) and renamed over the target on
// commit. A failed or aborted write removes the temporary file; a process killed mid-write leaves
// only the hidden `.NAME.tmp-*` file, never a partial file at the target path.
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { SfcError } from '../dsl/errors.js';

/** A hidden temporary path beside `target`, ending in `suffix` (e.g. '.mp4' for tools that look). */
export function tempPathFor(target: string, suffix = ''): string {
  const rand = Math.random().toString(36).slice(2, 10);
  return join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${rand}${suffix}`);
}

/** Creates the directory that will hold `target`, with a clear error when that fails. */
export function ensureParentDir(target: string): void {
  try {
    mkdirSync(dirname(target), { recursive: true });
  } catch (e) {
    throw new SfcError(`cannot create the directory for ${target}: ${(e as Error).message}`, { cause: e });
  }
}

/** A file written sequentially (with patches at earlier positions) and committed by rename. */
export class TempFile {
  readonly tmp: string;
  private fd: number | undefined;
  /** bytes written so far (the append position) */
  size = 0;

  constructor(readonly target: string) {
    ensureParentDir(target);
    this.tmp = tempPathFor(target);
    try {
      this.fd = openSync(this.tmp, 'wx');
    } catch (e) {
      throw new SfcError(`cannot write ${target}: ${(e as Error).message}`, { cause: e });
    }
  }

  private handle(): number {
    if (this.fd === undefined) throw new SfcError(`${this.target} is already closed`);
    return this.fd;
  }

  /** Appends bytes. */
  write(data: Uint8Array): void {
    this.writeAt(data, this.size);
    this.size += data.length;
  }

  /** Overwrites bytes at `position` (< size). */
  writeAt(data: Uint8Array, position: number): void {
    const fd = this.handle();
    let done = 0;
    try {
      while (done < data.length) done += writeSync(fd, data, done, data.length - done, position + done);
    } catch (e) {
      this.discard();
      throw new SfcError(`writing ${this.target} failed: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Closes the file and renames it over the target. */
  commit(): void {
    const fd = this.handle();
    this.fd = undefined;
    try {
      closeSync(fd);
      renameSync(this.tmp, this.target);
    } catch (e) {
      rmSync(this.tmp, { force: true });
      throw new SfcError(`cannot finish ${this.target}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Closes and removes the temporary file (idempotent). */
  discard(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // already failing; the removal below is what matters
      }
      this.fd = undefined;
    }
    rmSync(this.tmp, { force: true });
  }
}
