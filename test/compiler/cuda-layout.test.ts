// What the CUDA backend emits for memory-bound code (compiler/backend-cuda.ts): row broadcasts over
// 2-D tiles read registers of the same thread (replicated layouts, no shared-memory exchange), with
// stores, reductions and atomics from the first holder only; block reductions skip the leading
// barrier where no thread can still read their scratch; half and FP8 stores convert pairs of
// elements in one instruction and do not round twice. Numerics of the same kernels: the kernel
// suites (test/kernels/library.ts: rowBroadcast, rope3d, the norms, the FP8 casts; CPU and GPU).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { combinedSource, kernelPart } from '../../compiler/backend-cuda.js';
import { compileFiles } from '../../compiler/compile.js';
import { BUILD_ARCHS, compileCuda, findNvcc } from '../../compiler/nvcc.js';
import type { KernelArtifact } from '../../dsl/artifact.js';
import { packageRoot } from '../../dsl/paths.js';

const root = packageRoot(import.meta.url);
const compile = (file: string, consts: Record<string, number> = {}): Map<string, KernelArtifact> =>
  new Map(compileFiles([join(root, file)], { consts }).map((a) => [a.name, a]));
/** the kernel body of a kernel's most specialised variant */
const body = (a: KernelArtifact): string => kernelPart(a.cuda[0]!.source);

describe('CUDA backend: register layouts, barriers, conversions', () => {
  it('broadcasts a row over a 2-D tile in registers (replicated layout), writing it once', () => {
    const k = body(compile('test/kernels/layout-kernels.ts').get('rowBroadcast')!);
    expect(k).not.toContain('__syncthreads'); // no exchange through shared memory
    expect(k).toContain('const int e = (tid * 8) % 128 + r;'); // every thread holds 8 of the 128
    expect(k).toMatch(/v\d+\[\(r\) % 8\]/); // the [4, 128] tile reads the row's register r mod 8
    expect(k).toContain('if (tid < 16) atomicAdd('); // atomics from the first holder only
    expect(k).toMatch(/if \(tid < 16\) \{\n\s+#pragma unroll\n\s+for \(int r = 0; r < 8; \+\+r\)/); // reduction
  });

  it('keeps the plain layout of a row that spans whole rows of chunks, still in registers', () => {
    const k = body(compile('test/kernels/layout-kernels.ts', { ROWS: 2, N: 512 }).get('rowBroadcast')!);
    expect(k).not.toContain('__syncthreads');
    expect(k).not.toContain('tid < ');
    expect(k).toMatch(/v\d+\[\(r\) % 8\]/);
  });

  it('RoPE reads each token cos/sin row once per thread, not per element', () => {
    const k = body(compile('models/kernels/rope.ts', { HEADS: 12 }).get('rope3d')!);
    expect(k).not.toContain('sfc_smem +');
    expect(k.match(/p1\[/g)).toHaveLength(1); // one cos load expression, in an 8-register loop
    expect(k).toContain('float v31[8];');
  });

  it('drops the leading barrier of a reduction where its scratch cannot be in use', () => {
    const norm = compile('models/kernels/norm.ts', { BLOCK: 1536 });
    const reduces = (name: string) =>
      [
        ...body(norm.get(name)!).matchAll(
          /sfc_block_reduce<[^>]*>, float, (\d+), (true|false)>\([^,]+, \(float\*\)\(sfc_smem \+ (\d+)\)\)/g,
        ),
      ].map((m) => `${m[2]}@${m[3]}`);
    expect(reduces('rmsNorm')).toEqual(['false@0']);
    expect(reduces('layerNorm')).toEqual(['false@0', 'false@16']); // two areas, no leading barrier
    expect(reduces('modulatedLayerNorm')).toEqual(['true@0', 'false@16']); // in a loop: the first waits
  });

  it('stores half and FP8 values two at a time, rounded once', () => {
    const fp8 = body(compile('models/kernels/fp8.ts', { BLOCK: 1536 }).get('quantizeE4m3PerRow')!);
    expect(fp8).toContain('sfc_to_e4m3x2(');
    expect(fp8).not.toContain('sfc_round_e4m3');
    const rms = body(compile('models/kernels/norm.ts', { BLOCK: 1536 }).get('rmsNorm')!);
    expect(rms).toContain('sfc_to_bf16x2(');
    expect(rms).not.toContain('sfc_round_bf16');
  });
});

describe.skipIf(!findNvcc())('CUDA backend layouts through nvcc', () => {
  it.each(BUILD_ARCHS.map((a) => [a]))('%s: the layout test kernels compile with zero spills', (arch) => {
    // two instantiations of one kernel: entry names made unique
    const renamed = [
      ...compile('test/kernels/layout-kernels.ts').values(),
      ...compile('test/kernels/layout-kernels.ts', { ROWS: 2, N: 512 }).values(),
    ]
      .flatMap((a) => a.cuda)
      .map((v, i) => ({ entry: `${v.entry}_${i}`, source: v.source.replaceAll(v.entry, `${v.entry}_${i}`) }));
    const r = compileCuda({ source: combinedSource(renamed.map((v) => v.source)), arch, name: `layouts-${arch}` });
    for (const v of renamed) {
      const k = r.reports.find((x) => x.name === v.entry);
      expect(k, v.entry).toBeDefined();
      expect(k!.spillStoreBytes + k!.spillLoadBytes, `${v.entry} spills on ${arch}`).toBe(0);
    }
  });
});
