// A stream-ordered caching allocator, after PyTorch's: device memory is taken from the driver in
// segments, split into blocks, and freed blocks go back to a per-stream pool instead of cuMemFree.
// A block freed on stream S is reused at once by later work on S (stream order makes that safe);
// other streams must not touch it until they synchronise with S. Adjacent free blocks of a segment
// merge. When the driver says out-of-memory, cached segments are released and the request retried;
// if it still fails the error names the request, the free and the cached bytes, and a remedy.
import { SfcError } from '../dsl/errors.js';

/** What the allocator needs from a device: raw allocation and a memory report. */
export interface RawMemory {
  malloc(bytes: number): number;
  free(ptr: number): void;
  memInfo(): { free: number; total: number };
  /** true when `e` (thrown by malloc) means out of memory */
  isOutOfMemory(e: unknown): boolean;
}

export interface Block {
  readonly ptr: number;
  readonly size: number;
  readonly stream: number;
  /** bytes the caller asked for */
  requested: number;
  /** @internal */ segment: Segment;
  /** @internal */ prev: Block | null;
  /** @internal */ next: Block | null;
  /** @internal */ free: boolean;
}

interface Segment {
  ptr: number;
  size: number;
  small: boolean;
  stream: number;
}

export interface AllocatorStats {
  /** bytes in blocks handed out (rounded sizes) */
  inUse: number;
  /** bytes held from the driver: in use + cached */
  reserved: number;
  /** reserved - inUse */
  cached: number;
  /** highest inUse since creation or resetPeak() */
  peakInUse: number;
  peakReserved: number;
  segments: number;
  allocations: number;
  /** driver allocations (cuMemAlloc calls) */
  driverAllocations: number;
  /** times cached memory was released to satisfy a request */
  retries: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
export const ALIGN = 512;
const SMALL_LIMIT = 1 * MiB; // requests up to this size share 2 MiB segments
const SMALL_SEGMENT = 2 * MiB;
const LARGE_ROUND = 2 * MiB;
const MIN_LARGE_SPLIT = 1 * MiB; // a large block is split only when the rest is at least this

export class OutOfMemoryError extends SfcError {
  constructor(
    readonly requested: number,
    readonly free: number,
    readonly total: number,
    readonly stats: AllocatorStats,
  ) {
    super(
      `GPU out of memory: tried to allocate ${fmtBytes(requested)}; the GPU has ${fmtBytes(free)} free of ` +
        `${fmtBytes(total)}; sfc holds ${fmtBytes(stats.inUse)} in use and ${fmtBytes(stats.cached)} cached`,
      {
        hint:
          'lower the resolution or frames per chunk, use --precision fp8, set model_kwargs.local_attn_size, ' +
          'enable text_encoder_cpu_offload, or stop other processes using the GPU',
      },
    );
    this.name = 'OutOfMemoryError';
  }
}

export function fmtBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(2)} MiB`;
  if (n >= KiB) return `${(n / KiB).toFixed(1)} KiB`;
  return `${n} B`;
}

function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

export class CachingAllocator {
  // free blocks per pool key (`${stream}:${small}`), kept sorted by size then address
  private readonly pools = new Map<string, Block[]>();
  private readonly segments = new Set<Segment>();
  private readonly live = new Map<number, Block>();
  private s: AllocatorStats = {
    inUse: 0,
    reserved: 0,
    cached: 0,
    peakInUse: 0,
    peakReserved: 0,
    segments: 0,
    allocations: 0,
    driverAllocations: 0,
    retries: 0,
  };

  constructor(private readonly raw: RawMemory) {}

  stats(): AllocatorStats {
    return { ...this.s, cached: this.s.reserved - this.s.inUse, segments: this.segments.size };
  }

  resetPeak(): void {
    this.s.peakInUse = this.s.inUse;
    this.s.peakReserved = this.s.reserved;
  }

  /** Allocates `bytes` for use on `stream`. */
  allocate(bytes: number, stream = 0): Block {
    if (!Number.isInteger(bytes) || bytes <= 0)
      throw new RangeError(`allocate: bytes must be a positive integer, got ${bytes}`);
    const size = roundUp(bytes, ALIGN);
    const small = size <= SMALL_LIMIT;
    const pool = this.pool(stream, small);
    let block = this.takeBestFit(pool, size);
    if (!block) {
      const segSize = small ? SMALL_SEGMENT : roundUp(size, LARGE_ROUND);
      const seg = this.newSegment(segSize, small, stream, bytes);
      block = { ptr: seg.ptr, size: segSize, stream, requested: 0, segment: seg, prev: null, next: null, free: true };
    }
    block = this.split(block, size, pool);
    block.free = false;
    block.requested = bytes;
    this.live.set(block.ptr, block);
    this.s.inUse += block.size;
    this.s.allocations++;
    this.s.peakInUse = Math.max(this.s.peakInUse, this.s.inUse);
    return block;
  }

  /** Returns a block to its stream's pool (merging with free neighbours). */
  release(block: Block): void {
    if (this.live.get(block.ptr) !== block) throw new RangeError('release: block is not live (double free?)');
    this.live.delete(block.ptr);
    this.s.inUse -= block.size;
    block.free = true;
    block.requested = 0;
    let b = block;
    const pool = this.pool(b.stream, b.segment.small);
    for (const n of [b.prev, b.next]) {
      if (n && n.free) {
        this.removeFromPool(pool, n);
        b = this.merge(b, n);
      }
    }
    this.insertIntoPool(pool, b);
  }

  /** Releases every fully free segment to the driver; returns the bytes released. */
  emptyCache(): number {
    let released = 0;
    for (const [key, pool] of this.pools) {
      const keep: Block[] = [];
      for (const b of pool) {
        if (b.prev === null && b.next === null && b.size === b.segment.size) {
          this.raw.free(b.segment.ptr);
          this.segments.delete(b.segment);
          this.s.reserved -= b.segment.size;
          released += b.segment.size;
        } else keep.push(b);
      }
      this.pools.set(key, keep);
    }
    return released;
  }

  /** Frees everything (the device is going away). */
  dispose(): void {
    for (const seg of this.segments) this.raw.free(seg.ptr);
    this.segments.clear();
    this.pools.clear();
    this.live.clear();
    this.s.inUse = 0;
    this.s.reserved = 0;
  }

  private pool(stream: number, small: boolean): Block[] {
    const key = `${stream}:${small ? 's' : 'l'}`;
    let p = this.pools.get(key);
    if (!p) this.pools.set(key, (p = []));
    return p;
  }

  private newSegment(size: number, small: boolean, stream: number, requested: number): Segment {
    let ptr: number;
    try {
      ptr = this.raw.malloc(size);
    } catch (e) {
      if (!this.raw.isOutOfMemory(e)) throw e;
      this.s.retries++;
      this.emptyCache();
      try {
        ptr = this.raw.malloc(size);
      } catch (e2) {
        if (!this.raw.isOutOfMemory(e2)) throw e2;
        const info = this.raw.memInfo();
        throw new OutOfMemoryError(requested, info.free, info.total, this.stats());
      }
    }
    const seg: Segment = { ptr, size, small, stream };
    this.segments.add(seg);
    this.s.reserved += size;
    this.s.driverAllocations++;
    this.s.peakReserved = Math.max(this.s.peakReserved, this.s.reserved);
    return seg;
  }

  private takeBestFit(pool: Block[], size: number): Block | undefined {
    // pool is sorted by (size, ptr): binary search for the first block >= size
    let lo = 0;
    let hi = pool.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (pool[mid]!.size < size) lo = mid + 1;
      else hi = mid;
    }
    if (lo === pool.length) return undefined;
    const b = pool[lo]!;
    // do not carve a small request out of a huge cached block (keeps large blocks for large tensors)
    if (!b.segment.small && b.size - size >= 64 * MiB && size < 16 * MiB) return undefined;
    pool.splice(lo, 1);
    return b;
  }

  private split(block: Block, size: number, pool: Block[]): Block {
    const rest = block.size - size;
    const canSplit = block.segment.small ? rest >= ALIGN : rest >= MIN_LARGE_SPLIT;
    if (!canSplit) return block;
    const head: Block = { ...block, size, next: null };
    const tail: Block = {
      ptr: block.ptr + size,
      size: rest,
      stream: block.stream,
      requested: 0,
      segment: block.segment,
      prev: head,
      next: block.next,
      free: true,
    };
    head.next = tail;
    if (block.prev) block.prev.next = head;
    if (block.next) block.next.prev = tail;
    this.insertIntoPool(pool, tail);
    return head;
  }

  private merge(a: Block, b: Block): Block {
    const [first, second] = a.ptr < b.ptr ? [a, b] : [b, a];
    const m: Block = {
      ptr: first.ptr,
      size: first.size + second.size,
      stream: first.stream,
      requested: 0,
      segment: first.segment,
      prev: first.prev,
      next: second.next,
      free: true,
    };
    if (m.prev) m.prev.next = m;
    if (m.next) m.next.prev = m;
    return m;
  }

  private insertIntoPool(pool: Block[], b: Block): void {
    let lo = 0;
    let hi = pool.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const p = pool[mid]!;
      if (p.size < b.size || (p.size === b.size && p.ptr < b.ptr)) lo = mid + 1;
      else hi = mid;
    }
    pool.splice(lo, 0, b);
  }

  private removeFromPool(pool: Block[], b: Block): void {
    const i = pool.indexOf(b);
    if (i >= 0) pool.splice(i, 1);
  }
}
