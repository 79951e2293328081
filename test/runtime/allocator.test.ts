import { describe, expect, it } from 'vitest';
import { CachingAllocator, OutOfMemoryError, type RawMemory } from '../../runtime/allocator.js';

const MiB = 1024 * 1024;

/** A fake device with `capacity` bytes and a bump allocator that records calls. */
function fakeMemory(capacity: number) {
  let next = 0x10000;
  const live = new Map<number, number>();
  const log: string[] = [];
  const raw: RawMemory & { live: Map<number, number>; log: string[] } = {
    live,
    log,
    malloc(bytes) {
      const used = [...live.values()].reduce((a, b) => a + b, 0);
      if (used + bytes > capacity) throw Object.assign(new Error('oom'), { cudaError: 'CUDA_ERROR_OUT_OF_MEMORY' });
      const p = next;
      next += bytes + 4096;
      live.set(p, bytes);
      log.push(`malloc ${bytes}`);
      return p;
    },
    free(ptr) {
      if (!live.delete(ptr)) throw new Error('bad free');
      log.push('free');
    },
    memInfo() {
      const used = [...live.values()].reduce((a, b) => a + b, 0);
      return { free: capacity - used, total: capacity };
    },
    isOutOfMemory: (e) => (e as { cudaError?: string }).cudaError === 'CUDA_ERROR_OUT_OF_MEMORY',
  };
  return raw;
}

describe('CachingAllocator', () => {
  it('packs small requests into 2 MiB segments and reuses freed blocks', () => {
    const raw = fakeMemory(1024 * MiB);
    const a = new CachingAllocator(raw);
    const x = a.allocate(1000);
    const y = a.allocate(3000);
    expect(raw.log).toEqual([`malloc ${2 * MiB}`]);
    expect(x.size).toBe(1024);
    expect(y.ptr).toBe(x.ptr + 1024);
    a.release(x);
    const z = a.allocate(900);
    expect(z.ptr).toBe(x.ptr); // best fit: the freed 1024-byte block
    expect(raw.log).toHaveLength(1);
    expect(a.stats()).toMatchObject({ inUse: 1024 + 3072, reserved: 2 * MiB, segments: 1, driverAllocations: 1 });
  });

  it('merges neighbours so a freed segment can serve a request as large as itself', () => {
    const raw = fakeMemory(1024 * MiB);
    const a = new CachingAllocator(raw);
    const blocks = [1, 2, 3, 4].map(() => a.allocate(256 * 1024));
    a.release(blocks[1]!);
    a.release(blocks[0]!);
    a.release(blocks[3]!);
    a.release(blocks[2]!);
    expect(a.stats().inUse).toBe(0);
    const big = a.allocate(1024 * 1024);
    expect(big.ptr).toBe(blocks[0]!.ptr);
    expect(raw.log).toHaveLength(1);
  });

  it('keeps pools per stream', () => {
    const raw = fakeMemory(1024 * MiB);
    const a = new CachingAllocator(raw);
    const x = a.allocate(4096, 1);
    a.release(x);
    const y = a.allocate(4096, 2);
    expect(y.ptr).not.toBe(x.ptr);
    expect(raw.log).toHaveLength(2);
  });

  it('rounds large requests to 2 MiB and splits only worthwhile remainders', () => {
    const raw = fakeMemory(1024 * MiB);
    const a = new CachingAllocator(raw);
    const x = a.allocate(5 * MiB + 1);
    expect(raw.log).toEqual([`malloc ${6 * MiB}`]);
    expect(x.size).toBe(6 * MiB); // a remainder under 1 MiB is not worth a split
    a.release(x);
    const y = a.allocate(2.5 * MiB); // reuses the 6 MiB segment, 3.5 MiB stays free
    expect(y.ptr).toBe(x.ptr);
    expect(y.size).toBe(2.5 * MiB);
    const z = a.allocate(3 * MiB);
    expect(z.ptr).toBe(x.ptr + 2.5 * MiB);
    expect(raw.log).toHaveLength(1);
  });

  it('tracks peak usage and resets it', () => {
    const a = new CachingAllocator(fakeMemory(1024 * MiB));
    const x = a.allocate(8 * MiB);
    a.release(x);
    a.allocate(2 * MiB);
    expect(a.stats().peakInUse).toBe(8 * MiB);
    a.resetPeak();
    expect(a.stats().peakInUse).toBe(2 * MiB);
  });

  it('releases cached segments and retries before reporting out of memory', () => {
    const raw = fakeMemory(64 * MiB);
    const a = new CachingAllocator(raw);
    const x = a.allocate(40 * MiB);
    a.release(x); // cached, not returned
    const y = a.allocate(50 * MiB); // does not fit beside the cache: cache released, retried
    expect(a.stats().retries).toBe(1);
    expect(raw.live.size).toBe(1);
    let err: unknown;
    try {
      a.allocate(30 * MiB);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as Error).message).toBe(
      'GPU out of memory: tried to allocate 30.00 MiB; the GPU has 14.00 MiB free of 64.00 MiB; sfc holds 50.00 MiB in use and 0 B cached',
    );
    expect((err as OutOfMemoryError).hint).toContain('--precision fp8');
    a.release(y);
    expect(a.emptyCache()).toBe(50 * MiB);
    expect(raw.live.size).toBe(0);
  });

  it('refuses double frees and bad sizes', () => {
    const a = new CachingAllocator(fakeMemory(64 * MiB));
    const x = a.allocate(100);
    a.release(x);
    expect(() => a.release(x)).toThrow('release: block is not live (double free?)');
    expect(() => a.allocate(0)).toThrow('allocate: bytes must be a positive integer, got 0');
  });

  it('survives a random workload with no overlapping live blocks', () => {
    const a = new CachingAllocator(fakeMemory(4096 * MiB));
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const live: ReturnType<CachingAllocator['allocate']>[] = [];
    for (let i = 0; i < 1500; i++) {
      if (live.length && rand() < 0.45) a.release(live.splice(Math.floor(rand() * live.length), 1)[0]!);
      else live.push(a.allocate(1 + Math.floor(rand() ** 3 * 32 * MiB), rand() < 0.8 ? 0 : 7));
      const sorted = [...live].sort((p, q) => p.ptr - q.ptr);
      for (let j = 1; j < sorted.length; j++)
        expect(sorted[j - 1]!.ptr + sorted[j - 1]!.size).toBeLessThanOrEqual(sorted[j]!.ptr);
    }
    expect(a.stats().inUse).toBe(live.reduce((s, b) => s + b.size, 0));
  });
});
