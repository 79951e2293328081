// The on-disk kernel cache ($SFC_CACHE_DIR, default ~/.cache/sfc). An entry is keyed by a SHA-256 of
// everything that changes the binary: the CUDA source, the compile options, the target architecture
// and sfc's compiler version; the toolchain that built it (nvrtc-13.0, nvcc-13.0) is part of the file
// name, so cubins precompiled by `sfc build` with nvcc and ones built at run time by NVRTC sit side by
// side. Each binary has a metadata file with its own SHA-256: a corrupt or truncated entry is deleted
// and rebuilt, never loaded. Writes are atomic (temp file + rename).
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Bump when generated code changes meaning for the same source (it is part of every key). */
export const KERNEL_ABI_VERSION = 1;

export interface KernelKey {
  source: string;
  options: readonly string[];
  /** sm_80, sm_89, sm_90a, ... */
  arch: string;
}

export interface CacheEntry {
  binary: Uint8Array;
  toolchain: string;
  meta: EntryMeta;
}

interface EntryMeta {
  key: string;
  arch: string;
  toolchain: string;
  sha256: string;
  bytes: number;
  created: string;
  /** free-form build report (registers, spills, ...) */
  report?: unknown;
}

export function defaultCacheDir(): string {
  return process.env.SFC_CACHE_DIR ?? join(homedir(), '.cache', 'sfc');
}

export function keyOf(k: KernelKey): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ abi: KERNEL_ABI_VERSION, arch: k.arch, options: k.options, source: k.source }));
  return h.digest('hex');
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9.-]/g, '_');
}

export class KernelCache {
  readonly dir: string;
  /** counters, for tests and `sfc build` reports */
  readonly counters = { hits: 0, misses: 0, corrupt: 0, writes: 0 };

  constructor(dir: string = defaultCacheDir()) {
    this.dir = join(dir, 'kernels');
  }

  private bucket(key: string): string {
    return join(this.dir, key.slice(0, 2));
  }

  /**
   * Finds a valid entry for `key`; prefers `toolchain` when given, else any toolchain. Corrupt
   * entries (checksum or size mismatch, unreadable metadata) are deleted.
   */
  get(key: string, preferToolchain?: string): CacheEntry | undefined {
    let names: string[];
    try {
      names = readdirSync(this.bucket(key)).filter((n) => n.startsWith(`${key}.`) && n.endsWith('.bin'));
    } catch {
      this.counters.misses++;
      return undefined;
    }
    const toolchainOf = (n: string) => n.slice(key.length + 1, -'.bin'.length);
    names.sort((a, b) => Number(toolchainOf(b) === preferToolchain) - Number(toolchainOf(a) === preferToolchain));
    for (const n of names) {
      const binPath = join(this.bucket(key), n);
      const metaPath = binPath.replace(/\.bin$/, '.json');
      try {
        const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as EntryMeta;
        const binary = new Uint8Array(readFileSync(binPath));
        if (meta.key !== key || binary.byteLength !== meta.bytes || sha256(binary) !== meta.sha256) {
          throw new Error('checksum mismatch');
        }
        this.counters.hits++;
        return { binary, toolchain: meta.toolchain, meta };
      } catch {
        this.counters.corrupt++;
        rmSync(binPath, { force: true });
        rmSync(metaPath, { force: true });
      }
    }
    this.counters.misses++;
    return undefined;
  }

  put(key: string, arch: string, toolchain: string, binary: Uint8Array, report?: unknown): void {
    const dir = this.bucket(key);
    mkdirSync(dir, { recursive: true });
    const base = join(dir, `${key}.${safeName(toolchain)}`);
    const meta: EntryMeta = {
      key,
      arch,
      toolchain,
      sha256: sha256(binary),
      bytes: binary.byteLength,
      created: new Date().toISOString(),
      report,
    };
    atomicWrite(`${base}.bin`, binary);
    atomicWrite(`${base}.json`, JSON.stringify(meta, null, 2));
    this.counters.writes++;
  }
}

/** Writes a file so readers see either the old or the complete new content, never a partial one. */
export function atomicWrite(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
