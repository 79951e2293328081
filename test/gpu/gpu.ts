// Shared setup for GPU tests: one CudaDevice per test file, a throwaway kernel cache, and the reason
// the suite is skipped when there is no GPU.
import { mkdtempSync, writeFileSync } from 'node:fs';
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

/**
 * Runs `fn` twice (the first run warms kernel loads and GEMM heuristics) and times the second with a
 * device sync: wall milliseconds, peak device memory, memory in use before, and the result on the host.
 */
export function timeSecondRun(
  dev: CudaDevice,
  fn: () => { toF32(): Float32Array; dispose(): void },
): { ms: number; peakBytes: number; inUseBefore: number; values: Float32Array } {
  fn().dispose();
  dev.synchronize();
  const before = dev.memoryStats();
  const t0 = performance.now();
  const out = fn();
  dev.synchronize();
  const ms = performance.now() - t0;
  const peakBytes = dev.memoryStats().peakInUse;
  const values = out.toF32();
  out.dispose();
  return { ms, peakBytes, inUseBefore: before.inUse, values };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i]) - Number(b[i])));
  return m;
}

/** Prints a GPU test's result and writes it to $SFC_BENCH_OUT/<name>-<device>.json when set. */
export function reportResult(name: string, dev: CudaDevice, result: Record<string, unknown>): void {
  const full = { device: dev.info.name, commit: process.env.SFC_COMMIT ?? null, ...result };
  console.log(JSON.stringify(full));
  if (process.env.SFC_BENCH_OUT)
    writeFileSync(
      join(process.env.SFC_BENCH_OUT, `${name}-${dev.info.name.replace(/\W+/g, '_')}.json`),
      JSON.stringify(full, null, 1),
    );
}
