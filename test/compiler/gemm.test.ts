// The GEMM template: instantiations compile with nvcc for sm_90a without spills or serialised wgmma,
// bad specs are rejected, the tensor-map argument packs at its ABI offset, and the JS twin matches a
// float64 reference for every epilogue.
import { describe, expect, it } from 'vitest';
import type { GemmEpilogue, GemmSpec } from '../../dsl/artifact.js';
import { bf16, e4m3, f32 } from '../../dsl/dtypes.js';
import {
  gemmCooperativeCandidates,
  gemmPingpongCandidates,
  gemmSharedBytes,
  gemmSm90,
  maxStages,
  PINGPONG_MAX_BN,
  PINGPONG_TILE_WIDTHS,
  SM90_MAX_SHARED,
} from '../../compiler/templates/gemm.js';
import { wgmmaCall } from '../../compiler/templates/sm90.js';
import { compileCudaAsync, findNvcc } from '../../compiler/nvcc.js';
import { countSm90Opcodes } from '../../compiler/sass.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { gemmGrid, gemmTuneKey, runGemm } from '../../runtime/gemm.js';
import { layoutOf, packArgs } from '../../runtime/launch.js';
import { Tensor } from '../../runtime/tensor.js';
import { mulberry32 } from '../helpers.js';

const nvcc = findNvcc();

describe('GEMM template (sm_90a)', () => {
  const specs: GemmSpec[] = [
    { input: 'bf16', output: 'bf16', bn: 256, stages: maxStages(256) },
    {
      input: 'f16',
      output: 'f32',
      bn: 128,
      stages: maxStages(128),
      epilogue: { bias: 'f16', activation: 'gelu_tanh' },
    },
    { input: 'bf16', output: 'f32', bn: 192, stages: maxStages(192), epilogue: { gatedResidual: { residual: 'f32' } } },
    { input: 'e4m3', output: 'bf16', bn: 256, stages: maxStages(256), epilogue: { alpha: true, colScale: true } },
    {
      input: 'e4m3',
      output: 'e4m3',
      bn: 128,
      stages: 4,
      epilogue: { rowScale: true, residual: 'bf16', outScale: true },
    },
    { input: 'bf16', output: 'bf16', bn: 64, stages: maxStages(64), epilogue: { activation: 'silu' } },
    // the ping-pong schedule: a consumer holds a whole 128 x bn tile (bn accumulator registers)
    { input: 'bf16', output: 'bf16', bn: 128, stages: maxStages(128, true), schedule: 'pingpong' },
    {
      input: 'e4m3',
      output: 'bf16',
      bn: 160,
      stages: maxStages(160, true),
      schedule: 'pingpong',
      epilogue: { alpha: true, colScale: true },
    },
    {
      input: 'bf16',
      output: 'f32',
      bn: 160,
      stages: maxStages(160, true),
      schedule: 'pingpong',
      epilogue: { gatedResidual: { residual: 'bf16' } },
    },
    {
      input: 'e4m3',
      output: 'e4m3',
      bn: 128,
      stages: maxStages(128, true),
      schedule: 'pingpong',
      epilogue: { rowScale: true, colScale: true, residual: 'bf16', outScale: true },
    },
    // the 2-CTA cluster variant (A multicast to both CTAs)
    { input: 'bf16', output: 'bf16', bn: 128, stages: maxStages(128, true), schedule: 'pingpong-cluster' },
    {
      input: 'e4m3',
      output: 'e4m3',
      bn: 160,
      stages: maxStages(160, true),
      schedule: 'pingpong-cluster',
      epilogue: { rowScale: true, colScale: true, residual: 'bf16', outScale: true },
    },
    // the cooperative schedule (persistent, both consumers per tile, epilogue through ring slots that
    // a producer-warpgroup thread stores with TMA)
    ...gemmCooperativeCandidates({ input: 'bf16', output: 'bf16' }, 1536, [192, 224, 256]).map((a) => a.spec),
    ...gemmCooperativeCandidates({ input: 'e4m3', output: 'bf16', epilogue: { alpha: true } }).map((a) => a.spec),
    {
      input: 'e4m3',
      output: 'e4m3',
      bn: 192,
      stages: maxStages(192, true),
      schedule: 'cooperative',
      epilogue: { rowScale: true, colScale: true, residual: 'bf16', outScale: true },
    },
    {
      input: 'bf16',
      output: 'f32',
      bn: 128,
      stages: maxStages(128, true),
      schedule: 'cooperative',
      epilogue: { bias: 'bf16', activation: 'gelu_tanh' },
    },
    // a layer compiler's generated epilogue (the DiT FFN's fc2: bias, then the gated residual in f32)
    {
      input: 'bf16',
      output: 'f32',
      bn: 160,
      stages: maxStages(160, true),
      schedule: 'pingpong',
      epilogue: {
        custom: {
          params: [
            { name: 't7', type: 'ptr', ctype: 'const sfc_bf16* __restrict__' },
            { name: 't3', type: 'ptr', ctype: 'const float* __restrict__' },
            { name: 't0', type: 'ptr', ctype: 'const float* __restrict__' },
            { name: 'd_T', type: 'i32', ctype: 'const int' },
          ],
          body: `int r_ = row;
    [[maybe_unused]] const int i1 = r_ % d_T;
    r_ /= d_T;
    [[maybe_unused]] const int i0 = r_;
    const float m_ = sfc_round_bf16(y);
    const float v7 = sfc_from_bf16(t7[(long long)col]);
    const float v45 = sfc_round_bf16((m_ + v7));
    const float v3 = t3[(long long)col + (long long)i0 * 1536];
    const float v0 = t0[(long long)col + (long long)i1 * 1536 + (long long)i0 * 1536 * d_T];
    y = v0 + v45 * v3;`,
        },
      },
    },
  ];
  it.skipIf(!nvcc)(
    'compiles for sm_90a with no spills, no stack and no serialised wgmma',
    async () => {
      const results = await Promise.all(
        specs.map((s) => {
          const art = gemmSm90(s);
          return compileCudaAsync({ source: art.source, arch: 'sm_90a', name: `${art.entry}.cu` }).then((r) => ({
            art,
            r,
          }));
        }),
      );
      for (const { art, r } of results) {
        expect(r.reports).toHaveLength(1);
        const rep = r.reports[0]!;
        expect(rep.name).toBe(art.entry);
        expect(rep.spillStoreBytes + rep.spillLoadBytes, art.entry).toBe(0);
        expect(rep.stackBytes, art.entry).toBe(0);
        // launch_bounds(384, 1): at most 168 registers at entry; setmaxnreg moves them between warpgroups
        expect(rep.registers).toBeLessThanOrEqual(168);
        expect(r.log).not.toMatch(/serializ|C7508|C7510/i);
        expect(art.sharedBytes).toBeLessThanOrEqual(SM90_MAX_SHARED);
        // the tensor-core path is wgmma (HGMMA / QGMMA in the machine code) fed by TMA
        const ops = countSm90Opcodes(r.cubin, art.entry);
        const mma = art.spec.input === 'e4m3' ? ops.QGMMA : ops.HGMMA;
        // a ping-pong consumer issues both m64 halves of its 128-row tile per K step
        const halves = art.spec.schedule === 'default' || art.spec.schedule === 'cooperative' ? 1 : 2;
        expect(mma, `${art.entry} tensor-core instructions`).toBeGreaterThanOrEqual(
          (halves * art.bk) / (art.spec.input === 'e4m3' ? 32 : 16),
        );
        expect(art.spec.input === 'e4m3' ? ops.HGMMA : ops.QGMMA).toBe(0);
        expect(ops.UTMALDG).toBeGreaterThanOrEqual(2);
      }
    },
    240_000,
  );

  it('emits the wgmma for the tile width and input type', () => {
    expect(wgmmaCall('f', 256, 'bf16')).toContain('wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16');
    expect(wgmmaCall('f', 128, 'e4m3')).toContain('m64n128k32.f32.e4m3.e4m3');
    expect(wgmmaCall('f', 64, 'e4m3')).toContain('p, 1, 1;'); // 8-bit inputs take no transpose flags
    expect(() => wgmmaCall('f', 260, 'bf16')).toThrow(/multiple of 8/);
    const art = gemmSm90({ input: 'e4m3', output: 'bf16', bn: 128, stages: 4 });
    expect(art.bk).toBe(128);
    expect(gemmSm90({ input: 'bf16', output: 'bf16', bn: 128, stages: 4 }).bk).toBe(64);
  });

  it('rejects specs it cannot instantiate', () => {
    expect(() => gemmSm90({ input: 'bf16', output: 'bf16', bn: 100, stages: 4 })).toThrow(/multiple of 32/);
    expect(() => gemmSm90({ input: 'bf16', output: 'bf16', bn: 256, stages: 6 })).toThrow(/shared memory/);
    expect(() => gemmSm90({ input: 'bf16', output: 'bf16', bn: 128, stages: 1 })).toThrow(/at least 2/);
    expect(() => gemmSm90({ input: 'bf16', output: 'e4m3', bn: 128, stages: 4 })).toThrow(/outScale/);
    expect(() =>
      gemmSm90({
        input: 'bf16',
        output: 'f32',
        bn: 128,
        stages: 4,
        epilogue: { residual: 'f32', gatedResidual: { residual: 'f32' } },
      }),
    ).toThrow(/one residual/);
    expect(maxStages(256)).toBe(4);
    expect(gemmSharedBytes({ bn: 256, stages: 4 })).toBeLessThanOrEqual(SM90_MAX_SHARED);
  });

  it('instantiates the ping-pong schedule: names, checks, shared memory, candidates and grid', () => {
    const pp = gemmSm90({ input: 'bf16', output: 'bf16', bn: 128, stages: 7, schedule: 'pingpong' });
    expect(pp.name).toBe('sfc_gemm_sm90_bf16_bf16_128x128x64_s7_pp');
    expect(pp.spec.schedule).toBe('pingpong');
    expect(gemmSm90({ input: 'bf16', output: 'bf16', bn: 128, stages: 4 }).spec.schedule).toBe('default');
    expect(
      gemmSm90({ input: 'e4m3', output: 'bf16', bn: 160, stages: 6, schedule: 'pingpong', epilogue: { alpha: true } })
        .name,
    ).toBe('sfc_gemm_sm90_e4m3_bf16_128x160x128_s6_pp_a');
    // one consumer per ring slot releases it; the consumers hand the mainloop over on named barriers 1, 2
    expect(pp.source).toMatch(/sfc_mbar_init\(sfc_smem\(&bars\[7 \+ s\]\), 1\)/);
    expect(pp.source).toContain('sfc_bar_sync(1 + c, 256)');
    expect(pp.source).toContain('sfc_bar_arrive(2 - c, 256)');
    // no f32 staging: the ring alone (7 stages of 128 + 128 rows x 128 bytes), its barriers and alignment slack
    expect(pp.sharedBytes).toBe(1024 + 7 * 256 * 128 + 7 * 16);
    expect(maxStages(128, true)).toBe(7);
    expect(maxStages(160, true)).toBe(6);
    expect(() =>
      gemmSm90({ input: 'bf16', output: 'bf16', bn: PINGPONG_MAX_BN + 32, stages: 4, schedule: 'pingpong' }),
    ).toThrow(/at most 160/);
    expect(() =>
      gemmSm90({ input: 'bf16', output: 'bf16', bn: 128, stages: 4, schedule: 'pingpong', persistent: true }),
    ).toThrow(/neither persistent nor conv/);
    const cands = gemmPingpongCandidates({ input: 'e4m3', output: 'bf16', epilogue: { alpha: true } });
    expect(cands.map((c) => c.spec.bn)).toEqual([...PINGPONG_TILE_WIDTHS]);
    expect(cands.every((c) => c.spec.schedule === 'pingpong' && c.sharedBytes <= SM90_MAX_SHARED)).toBe(true);
    expect(gemmPingpongCandidates({ input: 'bf16', output: 'bf16' }, 64)).toEqual([]);
    // persistent schedules launch one CTA per SM (at most one per tile); the default one CTA per tile
    expect(gemmGrid(pp, 4680, 1536, 132)).toEqual([132, 1, 1]);
    expect(gemmGrid(pp, 200, 100, 132)).toEqual([2, 1, 1]);
    // the 2-CTA cluster variant: half of A per CTA, multicast; slots freed by both CTAs' consumers;
    // an even grid of one pair of N-adjacent tiles per cluster
    const ppc = gemmSm90({ input: 'bf16', output: 'bf16', bn: 160, stages: 6, schedule: 'pingpong-cluster' });
    expect(ppc.name).toBe('sfc_gemm_sm90_bf16_bf16_128x160x64_s6_ppc');
    expect(ppc.source).toContain('__cluster_dims__(2, 1, 1)');
    expect(ppc.source).toContain('sfc_tma_load_2d_multicast(');
    expect(ppc.source).toMatch(/sfc_mbar_init\(sfc_smem\(&bars\[6 \+ s\]\), 2\)/);
    expect(ppc.sharedBytes).toBe(gemmSharedBytes({ bn: 160, stages: 6, schedule: 'pingpong' }));
    expect(gemmGrid(ppc, 4680, 1536, 132)).toEqual([132, 1, 1]);
    expect(gemmGrid(ppc, 300, 131, 132)).toEqual([6, 1, 1]); // 3 row tiles x 1 pair of columns
    expect(gemmGrid(ppc, 4680, 1536, 131)).toEqual([130, 1, 1]);
    expect(
      gemmPingpongCandidates({ input: 'bf16', output: 'bf16' }, 1536, 'pingpong-cluster', [128, 160]).map(
        (c) => c.name,
      ),
    ).toEqual(['sfc_gemm_sm90_bf16_bf16_128x128x64_s7_ppc', 'sfc_gemm_sm90_bf16_bf16_128x160x64_s6_ppc']);
    expect(gemmGrid(gemmSm90({ input: 'bf16', output: 'bf16', bn: 256, stages: 4 }), 4680, 1536, 132)).toEqual([
      37, 6, 1,
    ]);
  });

  it('instantiates the cooperative schedule: names, checks, shared memory, candidates and grid', () => {
    const co = gemmSm90({
      input: 'bf16',
      output: 'bf16',
      bn: 224,
      stages: maxStages(224, true),
      schedule: 'cooperative',
    });
    expect(co.name).toBe('sfc_gemm_sm90_bf16_bf16_128x224x64_s5_co');
    // both consumers release each ring slot (an output slot: the copy and the other consumer)
    expect(co.source).toMatch(/sfc_mbar_init\(sfc_smem\(&bars\[5 \+ s\]\), 2\)/);
    // TMA tensor stores of 64-byte boxes out of the slots, tiles n-fastest where N <= M
    expect(co.source).toContain('sfc_tma_store_2d(&tmC, tn0 + b * 32, row0');
    expect(co.source).toContain('const bool nFast = N <= M;');
    expect(co.params.map((p) => p.name)).toEqual(['tmA', 'tmB', 'tmC', 'C', 'M', 'N', 'K', 'ldc', 'tmaC']);
    // the output values live in ring slots: the ring, 2 x 5 + 4 barriers and alignment slack
    expect(co.sharedBytes).toBe(1024 + 5 * 352 * 128 + 5 * 16 + 32);
    expect(co.sharedBytes).toBeLessThanOrEqual(SM90_MAX_SHARED);
    // 64 rows of output in one slot as whole 64-byte boxes: f32 only up to 128 columns, e4m3 in multiples of 64
    expect(() => gemmSm90({ input: 'bf16', output: 'f32', bn: 160, stages: 4, schedule: 'cooperative' })).toThrow(
      /bn = 160 is too wide or not a multiple of 16 columns/,
    );
    expect(() => gemmSm90({ input: 'e4m3', output: 'e4m3', bn: 224, stages: 4, schedule: 'cooperative' })).toThrow(
      /bn = 224 is too wide or not a multiple of 64 columns/,
    );
    expect(gemmCooperativeCandidates({ input: 'bf16', output: 'f32' }, 1536)).toEqual([]);
    // the output slots sit after the next tile's first stages - 2 slices: 3 stages would deadlock
    expect(() => gemmSm90({ input: 'bf16', output: 'bf16', bn: 128, stages: 3, schedule: 'cooperative' })).toThrow(
      /at least 4 stages/,
    );
    expect(gemmGrid(co, 4680, 1536, 132)).toEqual([132, 1, 1]);
    expect(gemmGrid(co, 100, 100, 132)).toEqual([1, 1, 1]);
    expect(() =>
      gemmSm90({ input: 'bf16', output: 'bf16', bn: 128, stages: 4, schedule: 'cooperative', persistent: true }),
    ).toThrow(/neither persistent nor conv/);
    const cands = gemmCooperativeCandidates({ input: 'e4m3', output: 'bf16', epilogue: { alpha: true } }, 1536);
    expect(cands.map((c) => c.name)).toEqual([
      'sfc_gemm_sm90_e4m3_bf16_128x224x128_s5_co_a',
      'sfc_gemm_sm90_e4m3_bf16_128x256x128_s4_co_a',
    ]);
    expect(gemmCooperativeCandidates({ input: 'bf16', output: 'bf16' }, 64)).toEqual([]);
  });

  it('packs tensor maps at 64-byte-aligned offsets', () => {
    expect(layoutOf(['tmap', 'tmap', 'ptr', 'i32', 'i32']).offsets).toEqual([0, 128, 256, 264, 268]);
    expect(layoutOf(['i32', 'tmap']).offsets).toEqual([0, 64]);
    const map = new Uint8Array(128).fill(7);
    const buf = packArgs(['i32', 'tmap', 'f32'], [3, map, 1.5]);
    expect(buf.length).toBe(196);
    expect(buf[64]).toBe(7);
    expect(() => packArgs(['tmap'], [5])).toThrow(/128-byte tensor map/);
    expect(() => packArgs(['i32'], [map])).toThrow(/expected a number/);
  });
});

describe('GEMM JS twin', () => {
  const cpu = new CpuDevice();
  const rnd = mulberry32(5);
  const randn = (n: number, s = 1) =>
    Float64Array.from({ length: n }, () => s * Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd()));
  const [M, N, K] = [13, 11, 24];
  const epilogues: GemmEpilogue[] = [
    {},
    { alpha: true, colScale: true, rowScale: true },
    { bias: 'bf16', activation: 'gelu_tanh' },
    { bias: 'f32', activation: 'silu', outScale: true },
    { gatedResidual: { residual: 'f32' } },
    { residual: 'bf16', activation: 'relu' },
  ];
  for (const e of epilogues)
    it(`matches float64 for epilogue ${JSON.stringify(e)}`, () => {
      const a = Tensor.from(cpu, bf16, [M, K], randn(M * K));
      const b = Tensor.from(cpu, bf16, [N, K], randn(N * K, 0.2));
      const c = Tensor.empty(cpu, f32, [M, N]);
      const rowScale = Tensor.from(cpu, f32, [M], randn(M));
      const colScale = Tensor.from(cpu, f32, [N], randn(N));
      const bias = Tensor.from(cpu, e.bias === 'bf16' ? bf16 : f32, [N], randn(N));
      const residual = Tensor.from(cpu, e.residual === 'bf16' ? bf16 : f32, [M, N], randn(M * N));
      const gate = Tensor.from(cpu, f32, [3, N], randn(3 * N));
      const art = gemmSm90({ input: 'bf16', output: 'f32', bn: 64, stages: 2, epilogue: e });
      runGemm(art, { a, b, c, alpha: 0.5, outScale: 3, rowScale, colScale, bias, residual, gate, gateRows: 5 });
      const A = a.toArray(),
        B = b.toArray(),
        rs = rowScale.toArray(),
        cs = colScale.toArray(),
        bi = bias.toArray(),
        re = residual.toArray(),
        g = gate.toArray();
      const got = c.toArray();
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) {
          let y = 0;
          for (let k = 0; k < K; k++) y += Number(A[i * K + k]) * Number(B[j * K + k]);
          if (e.alpha) y *= 0.5;
          if (e.rowScale) y *= Number(rs[i]);
          if (e.colScale) y *= Number(cs[j]);
          if (e.bias) y += Number(bi[j]);
          if (e.activation === 'gelu_tanh')
            y = 0.5 * y * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (y + 0.044715 * y ** 3)));
          if (e.activation === 'silu') y /= 1 + Math.exp(-y);
          if (e.activation === 'relu') y = Math.max(0, y);
          if (e.gatedResidual) y = Number(re[i * N + j]) + Number(g[Math.floor(i / 5) * N + j]) * y;
          if (e.residual) y += Number(re[i * N + j]);
          if (e.outScale) y *= 3;
          expect(Number(got[i * N + j])).toBeCloseTo(y, 4);
        }
    });

  it('writes bf16 and e4m3 outputs rounded once, into padded rows', () => {
    const a = Tensor.from(cpu, e4m3, [4, 16], randn(64));
    const b = Tensor.from(cpu, e4m3, [3, 16], randn(48, 0.5));
    const wide = Tensor.zeros(cpu, bf16, [4, 8]);
    const c = wide.narrow(1, 0, 3);
    runGemm(gemmSm90({ input: 'e4m3', output: 'bf16', bn: 64, stages: 2 }), { a, b, c });
    const A = a.toArray(),
      B = b.toArray(),
      got = wide.toArray();
    for (let i = 0; i < 4; i++) {
      for (let j = 0; j < 3; j++) {
        let y = 0;
        for (let k = 0; k < 16; k++) y += Number(A[i * 16 + k]) * Number(B[j * 16 + k]);
        expect(Math.abs(Number(got[i * 8 + j]) - y)).toBeLessThanOrEqual(Math.abs(y) / 256 + 1e-30);
      }
      for (let j = 3; j < 8; j++) expect(Number(got[i * 8 + j])).toBe(0); // padding untouched
    }
  });

  it('refuses an empty K, and keys tuning choices on the candidates sources as well as their names', () => {
    const art = gemmSm90({ input: 'bf16', output: 'bf16', bn: 64, stages: 2 });
    const a = Tensor.zeros(cpu, bf16, [4, 0]);
    const b = Tensor.zeros(cpu, bf16, [3, 0]);
    const c = Tensor.zeros(cpu, bf16, [4, 3]);
    expect(() => runGemm(art, { a, b, c })).toThrow(/M, N and K must be positive, got 4 x 3 x 0/);
    const changed = { ...art, source: `${art.source}\n// changed` };
    expect(gemmTuneKey('sm_90a', 4680, 1536, 1536, [art])).not.toBe(gemmTuneKey('sm_90a', 4680, 1536, 1536, [changed]));
    expect(gemmTuneKey('sm_90a', 4680, 1536, 1536, [art])).toBe(gemmTuneKey('sm_90a', 4680, 1536, 1536, [art]));
  });
});

describe('machine-code opcode reader', () => {
  it('counts what cuobjdump listed for a cubin built on the GPU machine', async () => {
    const { readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const dir = join(import.meta.dirname, '..', 'fixtures', 'sass');
    const cubin = new Uint8Array(readFileSync(join(dir, 'gemm_bf16_sm90a.cubin')));
    // gemm_bf16_sm90a.counts: `cuobjdump -sass | grep | uniq -c` of the same file (CUDA 13.0, H200 machine)
    const listed = Object.fromEntries(
      readFileSync(join(dir, 'gemm_bf16_sm90a.counts'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .map(([n, op]) => [op, Number(n)]),
    );
    const ops = countSm90Opcodes(cubin, 'sfc_gemm_sm90_bf16_bf16_128x256x64_s4');
    expect(ops).toEqual({ HGMMA: listed.HGMMA, QGMMA: 0, UTMALDG: listed.UTMALDG });
  });
});
