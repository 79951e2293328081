// The mma.sync GEMM template (sm_80 / sm_89): instantiations compile with nvcc without spills or stack,
// and the machine code is mma.sync (HMMA; the e4m3 form on sm_89) fed by ldmatrix (LDSM) and cp.async
// (LDGSTS); names, shared memory, candidates and the specs it refuses.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  gemmMma,
  gemmMmaCandidates,
  gemmMmaSharedBytes,
  MMA_MAX_SHARED,
  mmaStages,
  type GemmMmaSpec,
} from '../../compiler/templates/gemm-mma.js';
import { compileCudaAsync, findNvcc } from '../../compiler/nvcc.js';
import { countOpcodes, SM80_OPCODES } from '../../compiler/sass.js';
import { archRunsOn } from '../../runtime/cuda.js';
import { gemmCandidatesFor } from '../../runtime/gemm.js';
import { gemmSm90 } from '../../compiler/templates/gemm.js';

const nvcc = findNvcc();

describe('GEMM template (mma.sync, sm_80 / sm_89)', () => {
  // the layer compiler's kind of generated epilogue: a gated residual read through extra pointers
  const custom: GemmMmaSpec['epilogue'] = {
    custom: {
      params: [
        { name: 't0', type: 'ptr', ctype: 'const float* __restrict__' },
        { name: 't3', type: 'ptr', ctype: 'const sfc_bf16* __restrict__' },
        { name: 'd_T', type: 'i32', ctype: 'const int' },
      ],
      body: `const float g = t0[(long long)col + (long long)(row / d_T) * 1536];
    y = sfc_round_bf16(sfc_from_bf16(t3[(long long)row * 1536 + col]) + g * y);`,
    },
  };
  const specs: GemmMmaSpec[] = [
    {
      arch: 'sm_80',
      input: 'bf16',
      output: 'bf16',
      bn: 128,
      warps: 4,
      stages: 4,
      epilogue: { bias: 'bf16', activation: 'gelu_tanh' },
    },
    { arch: 'sm_80', input: 'bf16', output: 'bf16', bn: 256, warps: 8, stages: 3, epilogue: custom },
    {
      arch: 'sm_80',
      input: 'f16',
      output: 'f32',
      bn: 128,
      warps: 8,
      stages: 4,
      epilogue: { gatedResidual: { residual: 'f32' } },
    },
    { arch: 'sm_89', input: 'bf16', output: 'e4m3', bn: 256, warps: 8, stages: 2, epilogue: { outScale: true } },
    {
      arch: 'sm_89',
      input: 'e4m3',
      output: 'bf16',
      bn: 128,
      warps: 8,
      stages: 3,
      epilogue: { rowScale: true, colScale: true, bias: 'bf16' },
    },
    { arch: 'sm_89', input: 'e4m3', output: 'bf16', bn: 256, warps: 8, stages: 2, epilogue: { alpha: true } },
  ];

  it.skipIf(!nvcc)(
    'compiles for sm_80 and sm_89 with no spills and no stack; the SASS is HMMA (QMMA for e4m3), LDSM, LDGSTS',
    async () => {
      const results = await Promise.all(
        specs.map((s) => {
          const art = gemmMma(s);
          return compileCudaAsync({ source: art.source, arch: s.arch, name: `${art.entry}.cu` }).then((r) => ({
            art,
            r,
            s,
          }));
        }),
      );
      for (const { art, r, s } of results) {
        expect(r.reports).toHaveLength(1);
        const rep = r.reports[0]!;
        expect(rep.name).toBe(art.entry);
        expect(rep.spillStoreBytes + rep.spillLoadBytes, art.entry).toBe(0);
        expect(rep.stackBytes, art.entry).toBe(0);
        expect(art.sharedBytes).toBeLessThanOrEqual(MMA_MAX_SHARED[s.arch]);
        const ops = countOpcodes(r.cubin, art.entry, SM80_OPCODES);
        // per warp and 128-byte K-slice: 4 m16 fragments x (warp columns / 8) n8 fragments x 4 K steps
        const warpCols = s.bn / ((s.warps ?? 8) / 2);
        const mmas = 4 * (warpCols / 8) * 4;
        const fp8 = s.input === 'e4m3';
        expect(fp8 ? ops.QMMA : ops.HMMA, `${art.entry} mma.sync`).toBeGreaterThanOrEqual(mmas);
        expect(fp8 ? ops.HMMA : ops.QMMA, art.entry).toBe(0);
        // ldmatrix.x4: 4 for A and warpCols / 16 for B per K step
        expect(ops.LDSM, art.entry).toBeGreaterThanOrEqual(4 * (4 + warpCols / 16));
        expect(ops.LDGSTS, art.entry).toBeGreaterThanOrEqual(((128 + s.bn) * 8) / ((s.warps ?? 8) * 32));
      }
    },
    240_000,
  );

  it('names, shares the epilogue parameters with sm_90a, and sizes the ring per architecture', () => {
    const art = gemmMma({
      arch: 'sm_89',
      input: 'e4m3',
      output: 'bf16',
      bn: 128,
      stages: 3,
      epilogue: { alpha: true },
    });
    expect(art.arch).toBe('sm_89');
    expect(art.entry).toBe('sfc_gemm_sm89_e4m3_bf16_128x128x128_w8_s3_a');
    expect(art.bk).toBe(128);
    expect(art.threads).toBe(256);
    expect(art.params.map((p) => p.name)).toEqual(['A', 'B', 'C', 'M', 'N', 'K', 'ldc', 'lda', 'ldb', 'alpha']);
    expect(art.source).toContain('mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32');
    const bf = gemmMma({ arch: 'sm_80', input: 'bf16', output: 'bf16', bn: 256, stages: 3 });
    expect(bf.source).toContain('mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32');
    expect(bf.sharedBytes).toBe(gemmMmaSharedBytes({ bn: 256, stages: 3 }));
    expect([mmaStages('sm_80', 128), mmaStages('sm_80', 256)]).toEqual([4, 3]);
    expect([mmaStages('sm_89', 128), mmaStages('sm_89', 256)]).toEqual([3, 2]);
    const bfCands = gemmMmaCandidates({ input: 'bf16', output: 'bf16', epilogue: { bias: 'bf16' } });
    expect(bfCands.map((c) => c.arch)).toEqual(['sm_80', 'sm_80', 'sm_80', 'sm_89', 'sm_89', 'sm_89']);
    expect(new Set(bfCands.map((c) => c.name)).size).toBe(6);
    // FP8 tensor cores are sm_89's only
    expect(gemmMmaCandidates({ input: 'e4m3', output: 'bf16' }).map((c) => c.arch)).toEqual([
      'sm_89',
      'sm_89',
      'sm_89',
    ]);
  });

  it('runs on its own architecture, else (as PTX) on a newer one; plans take the closest candidates', () => {
    expect(archRunsOn('sm_80', 'sm_80')).toBe(true);
    expect(archRunsOn('sm_80', 'sm_90a')).toBe(true);
    expect(archRunsOn('sm_89', 'sm_86')).toBe(false);
    expect(archRunsOn('sm_90a', 'sm_100')).toBe(false); // arch-specific code runs on its own GPU only
    const cands = [
      gemmSm90({ input: 'bf16', output: 'bf16', bn: 128, stages: 4 }),
      ...gemmMmaCandidates({ input: 'bf16', output: 'bf16' }),
    ];
    const archs = (dev: string) => [...new Set(gemmCandidatesFor(dev, cands).map((c) => c.arch))];
    expect(archs('sm_90a')).toEqual(['sm_90a']);
    expect(archs('sm_89')).toEqual(['sm_89']);
    expect(archs('sm_80')).toEqual(['sm_80']);
    expect(archs('sm_86')).toEqual(['sm_80']);
    expect(archs('sm_120')).toEqual(['sm_89']);
    expect(archs('sm_75')).toEqual([]);
  });

  it('rejects specs it cannot instantiate', () => {
    const base = { input: 'bf16', output: 'bf16', bn: 128, stages: 3 } as const;
    expect(() => gemmMma({ ...base, arch: 'sm_80', input: 'e4m3' })).toThrow(/needs sm_89/);
    expect(() => gemmMma({ ...base, arch: 'sm_89', bn: 256, stages: 3 })).toThrow(/shared memory/);
    expect(() => gemmMma({ ...base, arch: 'sm_80', bn: 96 })).toThrow(/warp columns/);
    expect(() => gemmMma({ ...base, arch: 'sm_80', bn: 256, warps: 4 })).toThrow(/warp columns/);
    expect(() => gemmMma({ ...base, arch: 'sm_80', stages: 1 })).toThrow(/2 stages/);
    expect(() => gemmMma({ ...base, arch: 'sm_80', output: 'e4m3' })).toThrow(/outScale/);
    expect(() => gemmMma({ ...base, arch: 'sm_90a' as 'sm_80' })).toThrow(/sm_80 or sm_89/);
    const rowSum = { params: [], body: 'y += s;', rowSum: 's = y;' } as unknown as { params: []; body: string };
    expect(() => gemmMma({ ...base, arch: 'sm_80', epilogue: { custom: rowSum } })).toThrow(/per-element.*rowSum/);
  });
});

describe('machine-code opcode reader (sm_80 / sm_89)', () => {
  it('counts what cuobjdump listed for the fixture cubins', () => {
    // mma_sm80_sm89.cu built with nvcc 13.0 here; the .counts are `cuobjdump -sass | grep | uniq -c` of
    // the same files on the GPU machine (HMMA.16816.F32.BF16, QMMA.16832.F32.E4M3.E4M3,
    // LDSM.16.M88.4, LDGSTS.E.BYPASS.128)
    const dir = join(import.meta.dirname, '..', 'fixtures', 'sass');
    for (const arch of ['sm80', 'sm89']) {
      const cubin = new Uint8Array(readFileSync(join(dir, `mma_${arch}.cubin`)));
      const listed = Object.fromEntries(
        readFileSync(join(dir, `mma_${arch}.counts`), 'utf8')
          .trim()
          .split('\n')
          .map((l) => l.trim().split(/\s+/))
          .map(([n, op]) => [op!, Number(n)]),
      );
      expect(countOpcodes(cubin, 'fixture', SM80_OPCODES)).toEqual({
        HMMA: listed.HMMA ?? 0,
        QMMA: listed.QMMA ?? 0,
        LDSM: listed.LDSM,
        LDGSTS: listed.LDGSTS,
      });
    }
  });
});
