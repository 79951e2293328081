// Compiled model bundles cached on disk ($SFC_CACHE_DIR/bundles/<hash>.json): the key hashes the sfc
// version, every DSL source file and compiler source of the project and the sizes the bundle is specialised for, so an
// edited layer or another preset never reuses a stale bundle. Compiling takes seconds; loading the
// JSON takes milliseconds.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { buildWanDitBundle, type WanDitDims, type WanPrecision } from '../compiler/bundle.js';
import type { ModelBundle } from '../dsl/artifact.js';
import { packageRoot } from '../dsl/paths.js';
import { atomicWrite, defaultCacheDir } from '../runtime/kernel-cache.js';
import { version } from './version.js';

let sourcesDigest: string | undefined;

/** One hash of every source a bundle is compiled from (read once per process). */
function sourcesHash(): string {
  if (sourcesDigest) return sourcesDigest;
  const h = createHash('sha256').update(version());
  for (const f of dslSources()) h.update(f).update(readFileSync(f));
  return (sourcesDigest = h.digest('hex'));
}

function dslSources(): string[] {
  const root = packageRoot(import.meta.url);
  const dirs = [
    'models/kernels',
    'models/wan',
    'models/vae',
    'models/text',
    'compiler',
    'compiler/layer',
    'compiler/templates',
  ].map((d) => join(root, d));
  const files: string[] = [];
  for (const d of dirs) {
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d).sort()) if (f.endsWith('.ts') && !f.endsWith('.d.ts')) files.push(join(d, f));
  }
  return files;
}

/** The bundle for `key` from the cache, or built (and stored) now. */
export function cachedBundle<T>(what: string, key: unknown, build: () => T): T {
  const h = createHash('sha256').update(sourcesHash()).update(what).update(JSON.stringify(key));
  const path = join(defaultCacheDir(), 'bundles', `${what}-${h.digest('hex').slice(0, 24)}.json`);
  if (existsSync(path)) {
    try {
      return JSON.parse(readFileSync(path, 'utf8')) as T;
    } catch {
      // a damaged entry is rebuilt below
    }
  }
  const b = build();
  mkdirSync(dirname(path), { recursive: true });
  atomicWrite(path, JSON.stringify(b));
  return b;
}

/**
 * The Wan DiT bundle of a preset at a precision, from the cache or built now. The precisions are
 * separate entries (`wan-dit-*.json` for bf16, as before, `wan-dit-fp8-*.json` for FP8): the name and
 * the hashed key both differ, so one never serves the other.
 */
export function cachedDitBundle(dit: WanDitDims, precision: WanPrecision = 'bf16'): ModelBundle {
  if (precision === 'bf16') return cachedBundle<ModelBundle>('wan-dit', dit, () => buildWanDitBundle(dit));
  return cachedBundle<ModelBundle>(`wan-dit-${precision}`, { dit, precision }, () =>
    buildWanDitBundle(dit, { precision }),
  );
}
