// Shared pieces of every benchmark: statistics, the device/commit/command stamp, and atomic JSON
// output under bench/results/.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { packageRoot } from '../dsl/paths.js';
import { CudaDevice } from '../runtime/cuda.js';
import type { Device } from '../runtime/device.js';
import { atomicWrite } from '../runtime/kernel-cache.js';

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))]!;
}

export function commit(): string {
  if (process.env.SFC_COMMIT) return process.env.SFC_COMMIT;
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: packageRoot(import.meta.url), encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

export interface Stamp {
  date: string;
  commit: string;
  command: string;
  device: string;
  computeCapability?: string;
  driver?: string;
  node: string;
}

/** Where and how a result was measured; `command` defaults to this process's command line. */
export function stamp(dev: Device, command?: string): Stamp {
  const root = packageRoot(import.meta.url);
  const base = {
    date: new Date().toISOString(),
    commit: commit(),
    // the command line with paths inside the project made relative to it (results carry no machine's paths)
    command:
      command ??
      process.env.SFC_BENCH_COMMAND ??
      process.argv
        .slice(1)
        .map((a) => (isAbsolute(a) && !relative(root, a).startsWith('..') ? relative(root, a) : a))
        .join(' '),
    node: process.version,
  };
  if (!(dev instanceof CudaDevice)) return { ...base, device: dev.name };
  const v = dev.native.status().cuda.version as number | undefined;
  return {
    ...base,
    device: dev.info.name,
    computeCapability: dev.info.computeCapability.join('.'),
    driver: v ? `CUDA ${Math.floor(v / 1000)}.${(v % 1000) / 10}` : 'unknown',
  };
}

/** Writes bench/results/<name>.json (or into $SFC_BENCH_OUT) atomically; returns the path. */
export function writeResult(name: string, data: unknown): string {
  const dir = process.env.SFC_BENCH_OUT ?? join(packageRoot(import.meta.url), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.json`);
  atomicWrite(path, `${JSON.stringify(data, null, 2)}\n`);
  return path;
}
