// `sfc doctor`: what sfc found on this machine. Never fails because something is missing: it says
// what is missing and exits 0 (1 only when the addon itself is broken).
import type { Command } from 'commander';
import { defaultCacheDir } from '../../runtime/kernel-cache.js';
import { addonPath, loadNative, nativeLoadError } from '../../runtime/native/load.js';
import type { Io } from '../main.js';
import { version } from '../version.js';

function fmtCudaVersion(v: unknown): string {
  return typeof v === 'number' ? `${Math.floor(v / 1000)}.${(v % 1000) / 10}` : 'unknown';
}

export interface DoctorReport {
  sfc: string;
  node: string;
  addon: { path: string; loaded: boolean; error?: string };
  cuda: { available: boolean; driver?: string; library?: string; error?: string; devices: unknown[] };
  nvrtc: { available: boolean; version?: string; library?: string; error?: string };
  cublasLt: { available: boolean; version?: number; library?: string; error?: string };
  nccl: { available: boolean; version?: number; library?: string; error?: string };
  cacheDir: string;
}

export function doctorReport(): DoctorReport {
  const native = loadNative();
  const report: DoctorReport = {
    sfc: version(),
    node: process.version,
    addon: { path: addonPath(), loaded: !!native, error: nativeLoadError() },
    cuda: { available: false, devices: [] },
    nvrtc: { available: false },
    cublasLt: { available: false },
    nccl: { available: false },
    cacheDir: defaultCacheDir(),
  };
  if (!native) return report;
  const s = native.status();
  report.cuda = {
    available: s.cuda.loaded && (s.cuda.deviceCount ?? 0) > 0,
    driver: s.cuda.version !== undefined ? fmtCudaVersion(s.cuda.version) : undefined,
    library: s.cuda.path,
    error: s.cuda.error ?? (s.cuda.loaded && !s.cuda.deviceCount ? 'no CUDA device found' : undefined),
    devices: [],
  };
  if (report.cuda.available) {
    try {
      native.init();
      for (let i = 0; i < native.deviceCount(); i++) {
        const d = native.deviceInfo(i);
        native.setDevice(i);
        const mem = native.memInfo();
        report.cuda.devices.push({ ...d, freeMemory: mem.free });
      }
    } catch (e) {
      report.cuda.error = (e as Error).message;
    }
  }
  const nv = s.nvrtc;
  report.nvrtc = {
    available: nv.loaded,
    library: nv.path,
    error: nv.error,
    version: Array.isArray(nv.version) ? nv.version.join('.') : undefined,
  };
  report.cublasLt = {
    available: s.cublasLt.loaded,
    library: s.cublasLt.path,
    error: s.cublasLt.error,
    version: s.cublasLt.version as number,
  };
  report.nccl = {
    available: s.nccl.loaded,
    library: s.nccl.path,
    error: s.nccl.error,
    version: s.nccl.version as number,
  };
  return report;
}

const GiB = 1024 ** 3;

export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  const row = (k: string, v: string) => lines.push(`${k.padEnd(10)} ${v}`);
  row('sfc', r.sfc);
  row('node', r.node);
  row('addon', r.addon.loaded ? `ok (${r.addon.path})` : `MISSING: ${r.addon.error}`);
  if (r.addon.loaded) {
    row(
      'cuda',
      r.cuda.available ? `driver supports CUDA ${r.cuda.driver} (${r.cuda.library})` : `unavailable: ${r.cuda.error}`,
    );
    for (const d of r.cuda.devices as Array<Record<string, unknown>>) {
      const cc = d.computeCapability as number[];
      row(
        `  cuda:${d.ordinal as number}`,
        `${d.name as string}, sm_${cc.join('')}, ${d.multiprocessors as number} SMs, ` +
          `${((d.totalMemory as number) / GiB).toFixed(1)} GiB (${((d.freeMemory as number) / GiB).toFixed(1)} free), ` +
          `L2 ${((d.l2CacheBytes as number) / 1024 ** 2).toFixed(0)} MiB, smem/block ${((d.maxSharedMemoryPerBlockOptin as number) / 1024).toFixed(0)} KiB`,
      );
    }
    row('nvrtc', r.nvrtc.available ? `${r.nvrtc.version} (${r.nvrtc.library})` : `unavailable: ${r.nvrtc.error}`);
    row(
      'cublasLt',
      r.cublasLt.available ? `${r.cublasLt.version} (${r.cublasLt.library})` : `unavailable: ${r.cublasLt.error}`,
    );
    row('nccl', r.nccl.available ? `${r.nccl.version} (${r.nccl.library})` : `unavailable: ${r.nccl.error}`);
  }
  row('cache', r.cacheDir);
  if (!r.cuda.available) {
    lines.push('');
    lines.push('No usable GPU: sfc runs on the CPU backend (slow, exact). For GPU runs install the NVIDIA driver;');
    lines.push('sfc looks for libcuda.so.1, libnvrtc.so.13/12 and libcublasLt.so.13/12 on the loader path and in');
    lines.push('$SFC_CUDA_LIB_DIR, $CUDA_HOME/lib64 and $CUDA_PATH/lib64.');
  }
  return `${lines.join('\n')}\n`;
}

export function registerDoctor(program: Command, io: Io): void {
  program
    .command('doctor')
    .description('report Node, the native addon, GPUs, driver, NVRTC, cuBLASLt, NCCL and the kernel cache')
    .option('--json', 'print the report as JSON')
    .action((opts: { json?: boolean }) => {
      const r = doctorReport();
      io.stdout(opts.json ? `${JSON.stringify(r, null, 2)}\n` : formatDoctor(r));
    });
}
