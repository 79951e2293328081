import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KernelCache, keyOf } from '../../runtime/kernel-cache.js';

const fresh = () => new KernelCache(mkdtempSync(join(tmpdir(), 'sfc-cache-')));
const key = keyOf({ source: 'extern "C" __global__ void k() {}', options: ['-O3'], arch: 'sm_90a' });

describe('KernelCache', () => {
  it('keys on source, options and architecture', () => {
    expect(keyOf({ source: 'a', options: [], arch: 'sm_80' })).not.toBe(
      keyOf({ source: 'a', options: [], arch: 'sm_89' }),
    );
    expect(keyOf({ source: 'a', options: [], arch: 'sm_80' })).not.toBe(
      keyOf({ source: 'a', options: ['-G'], arch: 'sm_80' }),
    );
    expect(keyOf({ source: 'a', options: [], arch: 'sm_80' })).not.toBe(
      keyOf({ source: 'b', options: [], arch: 'sm_80' }),
    );
    expect(keyOf({ source: 'a', options: [], arch: 'sm_80' })).toBe(keyOf({ source: 'a', options: [], arch: 'sm_80' }));
  });

  it('misses, stores, then hits; prefers the requested toolchain', () => {
    const c = fresh();
    expect(c.get(key)).toBeUndefined();
    c.put(key, 'sm_90a', 'nvcc-13.0', new Uint8Array([1, 2, 3]));
    c.put(key, 'sm_90a', 'nvrtc-13.0', new Uint8Array([4, 5]));
    expect(c.get(key, 'nvrtc-13.0')?.binary).toEqual(new Uint8Array([4, 5]));
    expect(c.get(key, 'nvcc-13.0')?.binary).toEqual(new Uint8Array([1, 2, 3]));
    expect(c.counters).toMatchObject({ hits: 2, misses: 1, writes: 2 });
  });

  it('deletes and ignores corrupt or truncated entries', () => {
    const c = fresh();
    c.put(key, 'sm_90a', 'nvrtc-13.0', new Uint8Array(100).fill(7));
    const dir = join(c.dir, key.slice(0, 2));
    const bin = readdirSync(dir).find((f) => f.endsWith('.bin'))!;
    writeFileSync(join(dir, bin), new Uint8Array(50).fill(7)); // truncated
    expect(c.get(key)).toBeUndefined();
    expect(c.counters.corrupt).toBe(1);
    expect(readdirSync(dir)).toEqual([]);
    c.put(key, 'sm_90a', 'nvrtc-13.0', new Uint8Array(100).fill(7));
    const meta = readdirSync(dir).find((f) => f.endsWith('.json'))!;
    writeFileSync(join(dir, meta), '{ not json');
    expect(c.get(key)).toBeUndefined();
    c.put(key, 'sm_90a', 'nvrtc-13.0', new Uint8Array(100).fill(7));
    const bytes = readFileSync(join(dir, bin));
    bytes[3] ^= 1; // flipped bit
    writeFileSync(join(dir, bin), bytes);
    expect(c.get(key)).toBeUndefined();
    expect(c.counters.corrupt).toBe(3);
  });

  it('leaves no temporary files behind', () => {
    const c = fresh();
    c.put(key, 'sm_80', 'nvcc-13.0', new Uint8Array([9]));
    expect(readdirSync(join(c.dir, key.slice(0, 2))).filter((f) => f.includes('.tmp'))).toEqual([]);
  });
});
