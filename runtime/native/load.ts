// Loads the native addon once per process. A missing build or a machine without CUDA is not an
// error here: `nativeStatus()` explains, and `requireCuda()` throws a user-facing error that says
// what is missing and what to do.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { SfcError } from '../../dsl/errors.js';
import { packageRoot } from '../../dsl/paths.js';
import type { NativeAddon, NativeStatus } from './api.js';

let cached: { addon?: NativeAddon; error?: string } | undefined;

export function addonPath(): string {
  return process.env.SFC_NATIVE_ADDON ?? join(packageRoot(import.meta.url), 'build', 'Release', 'sfc_native.node');
}

/** The addon, or undefined with the reason in `nativeLoadError()`. */
export function loadNative(): NativeAddon | undefined {
  if (!cached) {
    const path = addonPath();
    if (!existsSync(path)) cached = { error: `native addon not built (${path} missing; run \`npm run build\`)` };
    else {
      try {
        cached = { addon: createRequire(import.meta.url)(path) as NativeAddon };
      } catch (e) {
        cached = { error: `native addon failed to load: ${(e as Error).message}` };
      }
    }
  }
  return cached.addon;
}

export function nativeLoadError(): string | undefined {
  loadNative();
  return cached?.error;
}

export function nativeStatus(): NativeStatus | undefined {
  return loadNative()?.status();
}

/** Why CUDA cannot be used here, or undefined when it can. */
export function cudaUnavailableReason(): string | undefined {
  const addon = loadNative();
  if (!addon) return nativeLoadError();
  const s = addon.status();
  if (!s.cuda.loaded) return `CUDA driver unavailable: ${s.cuda.error ?? 'unknown reason'}`;
  if (!s.cuda.deviceCount) return 'no CUDA device found';
  return undefined;
}

/** The addon with CUDA initialised, or a user-facing error saying what is missing. */
export function requireCuda(): NativeAddon {
  const reason = cudaUnavailableReason();
  if (reason)
    throw new SfcError(reason, { hint: 'run `sfc doctor` to see what sfc found; use --device cpu to run on the CPU' });
  const addon = loadNative()!;
  addon.init();
  return addon;
}
