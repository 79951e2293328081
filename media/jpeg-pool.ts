// JPEG encoding on worker threads: the pure-JS encoder takes ~0.1-0.2 s for an 832x480 frame, which
// would cap a stream at a few frames per second on one thread; a pool spreads frames over cores.
// `encode` resolves in any order; callers that need order await the promises in order.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { SfcError } from '../dsl/errors.js';
import { packageRoot } from '../dsl/paths.js';

interface Job {
  resolve: (jpg: Uint8Array) => void;
  reject: (e: Error) => void;
}

export class JpegPool {
  private readonly workers: Worker[] = [];
  private readonly jobs = new Map<number, Job>();
  private readonly load: number[] = [];
  private next = 0;
  private closed = false;

  /** `size` workers (default: the cores less one, at most 16) */
  constructor(size = Math.max(1, Math.min(16, availableParallelism() - 1))) {
    // the compiled worker (under vitest this module runs from its .ts source; the worker runs from dist/)
    const url = import.meta.url.endsWith('.ts')
      ? pathToFileURL(join(packageRoot(import.meta.url), 'dist', 'media', 'jpeg-worker.js'))
      : new URL('./jpeg-worker.js', import.meta.url);
    for (let i = 0; i < size; i++) {
      const w = new Worker(url);
      w.on('message', (m: { id: number; jpg?: Uint8Array; error?: string }) => {
        const job = this.jobs.get(m.id);
        if (!job) return;
        this.jobs.delete(m.id);
        this.load[i]!--;
        if (m.jpg) job.resolve(new Uint8Array(m.jpg.buffer, m.jpg.byteOffset, m.jpg.byteLength));
        else job.reject(new SfcError(`JPEG encoding failed: ${m.error ?? 'unknown error'}`));
      });
      w.on('error', (e) => {
        for (const job of this.jobs.values()) job.reject(new SfcError(`a JPEG worker failed: ${e.message}`));
        this.jobs.clear();
      });
      this.workers.push(w);
      this.load.push(0);
    }
  }

  get size(): number {
    return this.workers.length;
  }

  /** Encodes one RGB frame (width * height * 3 bytes; the bytes are copied) at `quality` (1..100). */
  encode(rgb: Uint8Array, width: number, height: number, quality = 90): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new SfcError('the JPEG pool is closed'));
    const id = this.next++;
    let w = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i]! < this.load[w]!) w = i;
    this.load[w]!++;
    return new Promise<Uint8Array>((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      this.workers[w]!.postMessage({ id, rgb: rgb.slice(), width, height, quality });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    for (const job of this.jobs.values()) job.reject(new SfcError('the JPEG pool was closed'));
    this.jobs.clear();
  }
}
