// Shared setup for GPU tests: one CudaDevice per test file, a throwaway kernel cache, and the reason
// the suite is skipped when there is no GPU.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CudaDevice } from '../../runtime/cuda.js';
import { KernelCache } from '../../runtime/kernel-cache.js';
import { cudaUnavailableReason } from '../../runtime/native/load.js';

export const noGpuReason = cudaUnavailableReason();
if (noGpuReason) console.warn(`GPU tests skipped: ${noGpuReason}`);

export function openDevice(cacheDir = mkdtempSync(join(tmpdir(), 'sfc-gpu-cache-'))): CudaDevice {
  return CudaDevice.open(0, new KernelCache(cacheDir));
}

/** ||a - b|| / ||b|| */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Number(a[i]) - Number(b[i]);
    num += d * d;
    den += Number(b[i]) ** 2;
  }
  return Math.sqrt(num) / Math.sqrt(den);
}

export function randn(n: number, seed: number): Float64Array {
  let s = seed >>> 0 || 1;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}
