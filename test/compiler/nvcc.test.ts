// Tests of the offline nvcc driver. The parser is tested on ptxas logs captured from nvcc 13.0 on the build
// machine (pasted verbatim below), so it runs anywhere; the compile tests need nvcc and are skipped visibly
// without it. Each nvcc call takes about a second, so compiled results are shared between assertions.

import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Arch, CompileResult } from '../../compiler/nvcc.js';
import {
  BUILD_ARCHS,
  compileCuda,
  findNvcc,
  formatReportTable,
  gencodeFlags,
  nvccVersion,
  parsePtxasReport,
} from '../../compiler/nvcc.js';

// nvcc 13.0, sm_80: extern "C" axpy, extern "C" reduce_smem (__shared__ float[256]), template scale<float>.
const MULTI_SM80 = `ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z5scaleIfEvPT_S0_' for 'sm_80'
ptxas info    : Function properties for _Z5scaleIfEvPT_S0_
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 0 barriers, 364 bytes cmem[0]
ptxas info    : Compile time = 18.680 ms
ptxas info    : Compiling entry function 'reduce_smem' for 'sm_80'
ptxas info    : Function properties for reduce_smem
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 1 barriers, 1024 bytes smem, 368 bytes cmem[0]
ptxas info    : Compile time = 4.812 ms
ptxas info    : Compiling entry function 'axpy' for 'sm_80'
ptxas info    : Function properties for axpy
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers, 380 bytes cmem[0]
ptxas info    : Compile time = 1.652 ms
`;

// Same file for sm_90a: nvcc 13.0 prints no cmem there.
const MULTI_SM90A = `ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z5scaleIfEvPT_S0_' for 'sm_90a'
ptxas info    : Function properties for _Z5scaleIfEvPT_S0_
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 0 barriers
ptxas info    : Compile time = 7.296 ms
ptxas info    : Compiling entry function 'reduce_smem' for 'sm_90a'
ptxas info    : Function properties for reduce_smem
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 1 barriers, 1024 bytes smem
ptxas info    : Compile time = 6.140 ms
ptxas info    : Compiling entry function 'axpy' for 'sm_90a'
ptxas info    : Function properties for axpy
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers
ptxas info    : Compile time = 2.069 ms
`;

// sm_89: a register-hungry kernel under __launch_bounds__(1024, 2) (with a ptxas warning), and a kernel with a
// dynamically indexed float[512] (stack, no spills).
const SPILL_SM89 = `ptxas warning : Value of threads per SM for entry pressure is out of range. .minnctapersm will be ignored
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'pressure' for 'sm_89'
ptxas info    : Function properties for pressure
    16352 bytes stack frame, 23216 bytes spill stores, 25832 bytes spill loads
ptxas info    : Used 64 registers, used 0 barriers, 16352 bytes cumulative stack size, 368 bytes cmem[0]
ptxas info    : Compile time = 6995.839 ms
ptxas info    : Compiling entry function 'spill' for 'sm_89'
ptxas info    : Function properties for spill
    2048 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 0 barriers, 2048 bytes cumulative stack size, 372 bytes cmem[0]
ptxas info    : Compile time = 12.713 ms
`;

// sm_80: __constant__ array (cmem[3] on the gmem line), a __noinline__ device function whose properties come
// after all entries, extern __shared__ plus a static __shared__ int[8], and a namespaced kernel.
const MISC_SM80 = `ptxas info    : 0 bytes gmem, 256 bytes cmem[3]
ptxas info    : Compiling entry function '_ZN2ns1kEPi' for 'sm_80'
ptxas info    : Function properties for _ZN2ns1kEPi
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 0 barriers, 360 bytes cmem[0]
ptxas info    : Compile time = 5.815 ms
ptxas info    : Compiling entry function 'dyn_smem' for 'sm_80'
ptxas info    : Function properties for dyn_smem
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 1 barriers, 32 bytes smem, 360 bytes cmem[0]
ptxas info    : Compile time = 2.742 ms
ptxas info    : Compiling entry function 'uses_helper' for 'sm_80'
ptxas info    : Function properties for uses_helper
    64 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers, 64 bytes cumulative stack size, 364 bytes cmem[0]
ptxas info    : Compile time = 7.454 ms
ptxas info    : Function properties for _Z6helperPfi
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
`;

const row = (name: string, registers: number, sharedBytes: number, stack = 0, st = 0, ld = 0) => ({
  name,
  registers,
  sharedBytes,
  stackBytes: stack,
  spillStoreBytes: st,
  spillLoadBytes: ld,
});

describe('parsePtxasReport', () => {
  it('reads every kernel of a multi-kernel file, mangled names as printed', () => {
    const r = parsePtxasReport(MULTI_SM80, 'sm_80');
    expect(r).toMatchObject([row('_Z5scaleIfEvPT_S0_', 8, 0), row('reduce_smem', 12, 1024), row('axpy', 10, 0)]);
    expect(r.map((k) => [k.arch, k.constantBytes])).toEqual([
      ['sm_80', 364],
      ['sm_80', 368],
      ['sm_80', 380],
    ]);
  });

  it('handles sm_90a lines without cmem', () => {
    const r = parsePtxasReport(MULTI_SM90A, 'sm_90a');
    expect(r).toMatchObject([row('_Z5scaleIfEvPT_S0_', 8, 0), row('reduce_smem', 12, 1024), row('axpy', 10, 0)]);
    expect(r.every((k) => k.arch === 'sm_90a' && k.constantBytes === undefined)).toBe(true);
  });

  it('reads spills and stack frames, ignoring warnings', () => {
    expect(parsePtxasReport(SPILL_SM89, 'sm_89')).toMatchObject([
      row('pressure', 64, 0, 16352, 23216, 25832),
      row('spill', 40, 0, 2048),
    ]);
  });

  it('ignores device functions and module-level cmem', () => {
    expect(parsePtxasReport(MISC_SM80, 'sm_80')).toEqual([
      { ...row('_ZN2ns1kEPi', 8, 0), arch: 'sm_80', constantBytes: 360 },
      { ...row('dyn_smem', 12, 32), arch: 'sm_80', constantBytes: 360 },
      { ...row('uses_helper', 32, 0, 64), arch: 'sm_80', constantBytes: 364 },
    ]);
  });

  it('does not depend on field or block order (older nvcc wording, CRLF)', () => {
    // Hand-written: nvcc 11-style Used line (no barriers, smem before cmem, two cmem banks), placed before
    // the Function properties block.
    const log = [
      "ptxas info    : Compiling entry function 'k' for 'sm_80'",
      'ptxas info    : Used 40 registers, 4096 bytes smem, 360 bytes cmem[0], 8 bytes cmem[2]',
      'ptxas info    : Function properties for k',
      '    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads',
    ].join('\r\n');
    expect(parsePtxasReport(log, 'sm_80')).toEqual([
      { ...row('k', 40, 4096, 16, 8, 12), arch: 'sm_80', constantBytes: 368 },
    ]);
    expect(parsePtxasReport('', 'sm_80')).toEqual([]);
  });
});

describe('formatReportTable', () => {
  it('aligns columns and counts spilling kernels', () => {
    const table = formatReportTable([
      ...parsePtxasReport(MULTI_SM80, 'sm_80'),
      ...parsePtxasReport(SPILL_SM89, 'sm_89'),
    ]).split('\n');
    expect(table[0]).toMatch(/^kernel\s+arch\s+regs\s+smem\s+stack\s+spills \(st\/ld\)$/);
    expect(table[2]).toMatch(/^reduce_smem\s+sm_80\s+12\s+1024\s+0\s+0\/0$/);
    expect(table[4]).toMatch(/^pressure\s+sm_89\s+64\s+0\s+16352\s+23216\/25832$/);
    expect(new Set(table.slice(0, -1).map((l) => l.length)).size).toBe(1);
    expect(table.at(-1)).toBe('1 of 5 kernels spill');
  });
});

describe('nvcc lookup and flags', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('uses the gencode form for every arch', () => {
    expect(gencodeFlags('sm_80')).toEqual(['-gencode=arch=compute_80,code=sm_80']);
    expect(gencodeFlags('sm_89')).toEqual(['-gencode=arch=compute_89,code=sm_89']);
    expect(gencodeFlags('sm_90a')).toEqual(['-gencode=arch=compute_90a,code=sm_90a']);
  });

  it('prefers an executable $SFC_NVCC and skips a missing one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfc-nvcc-test-'));
    const fake = join(dir, 'nvcc');
    writeFileSync(fake, '#!/bin/sh\necho "Cuda compilation tools, release 99.1, V99.1.0"\n');
    chmodSync(fake, 0o755);
    vi.stubEnv('SFC_NVCC', fake);
    expect(findNvcc()).toBe(fake);
    expect(nvccVersion(fake)).toBe('99.1');
    vi.stubEnv('SFC_NVCC', join(dir, 'missing'));
    vi.stubEnv('CUDA_HOME', '');
    vi.stubEnv('CUDA_PATH', '');
    vi.stubEnv('PATH', dir);
    expect(findNvcc()).toBe(fake);
    vi.stubEnv('PATH', '');
    expect(findNvcc()).toBeUndefined();
    expect(() => compileCuda({ source: '', arch: 'sm_80' })).toThrow(/^nvcc not found$/);
    rmSync(dir, { recursive: true });
  });
});

const nvcc = findNvcc();
const AXPY = `extern "C" __global__ void axpy(float a, const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
`;
const compiled = new Map<Arch, CompileResult>();
const compileAxpy = (arch: Arch) => {
  if (!compiled.has(arch)) compiled.set(arch, compileCuda({ source: AXPY, arch, name: 'axpy' }));
  return compiled.get(arch)!;
};

describe('compileCuda (needs nvcc)', () => {
  for (const arch of BUILD_ARCHS) {
    it.skipIf(!nvcc)(`compiles a kernel for ${arch}`, () => {
      const { cubin, reports, log, toolchain } = compileAxpy(arch);
      expect([...cubin.slice(0, 4)]).toEqual([0x7f, 0x45, 0x4c, 0x46]);
      expect(toolchain).toMatch(/^nvcc-\d+\.\d+$/);
      expect(log).toContain(`Compiling entry function 'axpy' for '${arch}'`);
      expect(reports).toHaveLength(1);
      expect(reports[0]).toMatchObject({ name: 'axpy', arch, spillStoreBytes: 0, spillLoadBytes: 0 });
      expect(reports[0].registers).toBeGreaterThan(0);
    });
  }

  it.skipIf(!nvcc)('accepts wgmma for sm_90a only; ptxas errors name the source', () => {
    const source = 'extern "C" __global__ void w() { asm volatile("wgmma.fence.sync.aligned;"); }\n';
    expect(compileCuda({ source, arch: 'sm_90a', name: 'w' }).reports).toMatchObject([{ name: 'w', arch: 'sm_90a' }]);
    expect(() => compileCuda({ source, arch: 'sm_80', name: 'w' })).toThrow(
      /^nvcc failed to compile w for sm_80:\nptxas w\.ptx, line \d+; error +: Instruction 'wgmma.fence' not supported/,
    );
  });

  it.skipIf(!nvcc)('reports a syntax error with the source name, not the temp path', () => {
    const source = 'extern "C" __global__ void broken(float* p) {\n  p[0] = 1.0f\n}\n';
    let err: unknown;
    try {
      compileCuda({ source, arch: 'sm_80', name: 'broken.cu' });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ name: 'SfcError' });
    const message = (err as Error).message;
    expect(message).toMatch(/^nvcc failed to compile broken\.cu for sm_80:\nbroken\.cu\(3\): error: expected a ";"/);
    expect(message).not.toContain(tmpdir());
  });
});
