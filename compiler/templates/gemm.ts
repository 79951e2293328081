// The GEMM template: C[M, N] = epilogue(A[M, K] . B[N, K]^T), A and B row-major with K contiguous
// (activations times a PyTorch Linear weight), f32 accumulation, inputs bf16 / f16 / FP8 e4m3.
//
// sm_90a instantiation (one CTA per BM x BN output tile, 3 warpgroups):
//   warpgroup 0, producer: one thread streams K-slices of A (BM x BK) and B (BN x BK) into a ring of
//     `stages` shared-memory buffers with TMA (128-byte swizzle), each completing on a `full` mbarrier;
//     the warpgroup gives registers back (setmaxnreg.dec).
//   warpgroups 1 and 2, consumers: each owns 64 rows of the tile; per K-slice it waits on `full`,
//     issues BK/k wgmma.m64nBNk{16,32} from shared memory, keeps one wgmma group in flight and frees
//     the previous buffer through its `empty` mbarrier.
//   epilogue: both consumers stage their f32 accumulators in shared memory (padded rows, no bank
//     conflicts), then every thread takes 4 consecutive columns of a row: epilogue math (below, with
//     coalesced reads of bias / scales / residual), conversion and one vector store.
// The epilogue is data (GemmEpilogue), turned into C++ here; the layer compiler fuses the matching
// elementwise ops of a graph into it.
//
// The ping-pong schedule (spec.schedule 'pingpong', entry suffix `_pp`, see pingpongBody below): one
// persistent CTA per SM, the same 3 warpgroups, but each consumer owns whole 128 x bn tiles
// (two m64 accumulator fragments) and the two take alternate tiles of the CTA's list, mainloops in
// turn: while one runs its epilogue from registers straight to global memory, the other runs its
// mainloop, and the producer streams across tile boundaries. 'pingpong-cluster' (suffix `_ppc`) pairs
// CTAs in clusters of 2 on N-adjacent tiles of the same rows: each loads half of the A slice and
// multicasts it to both, cutting the L2-to-SM traffic per tile by a quarter (bn 128) or more.
//
// The cooperative schedule (spec.schedule 'cooperative', suffix `_co`, see cooperativeBody below): one
// persistent CTA per SM, both consumers on each 128 x bn tile as in the default schedule, the producer
// streaming across tile boundaries; each consumer writes its 64 rows of output values into a ring slot
// set aside for it (swizzled 64-byte boxes), which one thread of the producer warpgroup stores to global
// memory with TMA tensor stores, so the consumers go on to the next tile's mainloop as soon as their
// values are in shared memory, with no shared memory taken from the ring. Tiles go n-fastest where
// N <= M (a wave reads all of B and a band of A's rows: A is read once), else m-fastest.
import type { GemmArgType, GemmArtifact, GemmEpilogue, GemmInput, GemmOutput, GemmSpec } from '../../dsl/artifact.js';
import type { DTypeName } from '../../dsl/dtypes.js';
import { CUDA_PRELUDE } from '../cuda-prelude.js';
import { SM90_PINGPONG, SM90_PRELUDE, wgmmaCall, wgmmaK } from './sm90.js';

export type { GemmArgType, GemmArtifact, GemmEpilogue, GemmInput, GemmOutput, GemmSpec } from '../../dsl/artifact.js';

const BM = 128;
const CONSUMERS = 2;
const THREADS = 128 * (1 + CONSUMERS);
/** The largest dynamic shared memory a Hopper block may opt into. */
export const SM90_MAX_SHARED = 232448;

type GemmSchedule = NonNullable<GemmSpec['schedule']>;
const isPingpong = (s: GemmSpec['schedule']): boolean => s === 'pingpong' || s === 'pingpong-cluster';
const SCHEDULE_SUFFIX: Record<GemmSchedule, string> = {
  default: '',
  pingpong: '_pp',
  'pingpong-cluster': '_ppc',
  cooperative: '_co',
};

export const ctype: Record<string, string> = { f32: 'float', bf16: 'sfc_bf16', f16: 'sfc_f16', e4m3: 'sfc_e4m3' };
const load = (dtype: string, expr: string): string =>
  dtype === 'f32' ? expr : dtype === 'bf16' ? `sfc_from_bf16(${expr})` : `sfc_from_f16(${expr})`;
export const elementBytes = (t: GemmInput | GemmOutput): number => (t === 'f32' ? 4 : t === 'e4m3' ? 1 : 2);

/** The instantiation name suffix of an epilogue (shared by every GEMM template). */
export function tag(e: GemmEpilogue): string {
  const parts: string[] = [];
  if (e.custom) parts.push(`x${fnv1a(e.custom.body + JSON.stringify(e.custom.params)).toString(16)}`);
  if (e.alpha) parts.push('a');
  if (e.rowScale) parts.push('rs');
  if (e.colScale) parts.push('cs');
  if (e.bias) parts.push(`b${e.bias}`);
  if (e.activation) parts.push(e.activation);
  if (e.gatedResidual) parts.push(`gr${e.gatedResidual.residual}`);
  if (e.residual) parts.push(`r${e.residual}`);
  if (e.outScale) parts.push('os');
  return parts.length ? `_${parts.join('_')}` : '';
}

/** 32-bit FNV-1a: a short, stable name suffix for generated epilogues. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * What the cooperative schedule adds to SM90_PRELUDE: a 2-D TMA tensor store shared -> global (the box
 * as the tensor map describes it, rows and columns past the tensor clipped), the commit and the wait
 * until the sources of the committed stores have been read, the fence that makes ordinary shared-memory
 * writes visible to such copies.
 */
const SM90_COOPERATIVE = String.raw`
__device__ __forceinline__ void sfc_tma_store_2d(const SfcTensorMap* map, int c0, int c1, sfc_u32 src) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];"
               :: "l"(map), "r"(c0), "r"(c1), "r"(src) : "memory");
}
__device__ __forceinline__ void sfc_bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
__device__ __forceinline__ void sfc_bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory"); }
__device__ __forceinline__ void sfc_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
`;

/**
 * The cooperative schedule's layout of one consumer's 64 output rows in a ring slot: `boxes` boxes of
 * 64 rows x 64 bytes (the C tensor map's box: 64 / element-bytes columns, 64-byte swizzle, so each
 * warp's fragment writes are conflict-free), the first 4 in the slot's A part (128 x 128 bytes), the
 * others in its B part (bn x 128 bytes); `fits` whether a row is whole boxes and all of them fit.
 */
function coopLayout(bn: number, output: GemmOutput): { boxes: number; fits: boolean } {
  const rowBytes = bn * elementBytes(output);
  const boxes = Math.ceil(rowBytes / 64);
  return { boxes, fits: rowBytes % 64 === 0 && boxes <= 4 + bn / 32 };
}

/**
 * Shared memory of one instantiation: the pipeline ring, or the epilogue staging if larger, plus
 * barriers (the cooperative schedule: 4 more).
 */
export function gemmSharedBytes(spec: Pick<GemmSpec, 'bn' | 'stages' | 'persistent' | 'schedule'>): number {
  const ring = spec.stages * (BM + spec.bn) * 128;
  if (spec.schedule === 'cooperative') return 1024 + ring + spec.stages * 16 + 32;
  const staging = spec.persistent || isPingpong(spec.schedule) ? 0 : BM * (spec.bn + 8) * 4;
  return 1024 /* alignment slack */ + Math.max(ring, staging) + spec.stages * 16;
}

/**
 * The deepest pipeline that fits in shared memory for this tile width (`persistent`: no f32 staging,
 * as in the persistent schedules).
 */
export function maxStages(bn: number, persistent = false): number {
  let s = 2;
  while (s < 8 && gemmSharedBytes({ bn, stages: s + 1, persistent }) <= SM90_MAX_SHARED) s++;
  return s;
}

export function validateGemmSpec(spec: GemmSpec): void {
  if (!Number.isInteger(spec.bn) || spec.bn % 32 !== 0 || spec.bn < 64 || spec.bn > 256)
    throw new RangeError(`GEMM tile width bn must be a multiple of 32 in [64, 256], got ${spec.bn}`);
  if (!Number.isInteger(spec.stages) || spec.stages < 2)
    throw new RangeError(`GEMM pipeline needs at least 2 stages, got ${spec.stages}`);
  if (gemmSharedBytes(spec) > SM90_MAX_SHARED)
    throw new RangeError(
      `GEMM bn=${spec.bn} with ${spec.stages} stages needs ${gemmSharedBytes(spec)} bytes of shared memory (max ${SM90_MAX_SHARED})`,
    );
  if (isPingpong(spec.schedule)) {
    if (spec.persistent || spec.conv)
      throw new RangeError('the ping-pong GEMM schedule is neither persistent nor conv');
    if (spec.bn > PINGPONG_MAX_BN)
      throw new RangeError(
        `a ping-pong consumer holds a 128 x bn tile in registers: bn at most ${PINGPONG_MAX_BN}, got ${spec.bn}`,
      );
  }
  if (spec.schedule === 'cooperative') {
    if (spec.persistent || spec.conv)
      throw new RangeError('the cooperative GEMM schedule is neither persistent nor conv');
    if (!coopLayout(spec.bn, spec.output).fits)
      throw new RangeError(
        `the cooperative GEMM schedule writes 64 rows of ${spec.output} output into one ring slot as 64-byte boxes: bn = ${spec.bn} is too wide or not a multiple of ${64 / elementBytes(spec.output)} columns`,
      );
    // a tile's output slots sit between its successor's first stages - 2 slices and the rest: with 3
    // stages slice 1 would wait for the slot slice 0 holds until slice 1 is issued
    if (spec.stages < 4) throw new RangeError('the cooperative GEMM schedule needs at least 4 stages');
  }
  validateGemmEpilogue(spec);
}

/** The checks of a spec's epilogue and output every GEMM template shares. */
export function validateGemmEpilogue(spec: Pick<GemmSpec, 'input' | 'output' | 'epilogue'>): void {
  const e = spec.epilogue ?? {};
  if (e.gatedResidual && e.residual) throw new RangeError('a GEMM epilogue has one residual, gated or not');
  if (e.custom && Object.keys(e).some((k) => k !== 'custom' && e[k as keyof GemmEpilogue] !== undefined))
    throw new RangeError('a generated (custom) GEMM epilogue replaces the built-in steps; give one or the other');
  if (spec.output === 'e4m3' && spec.input !== 'e4m3' && !e.outScale && !e.custom)
    throw new RangeError('an FP8 output needs outScale (the reciprocal of its scale)');
}

export function epilogueParams(e: GemmEpilogue): { name: string; type: GemmArgType; decl: string }[] {
  if (e.custom) return e.custom.params.map((q) => ({ name: q.name, type: q.type, decl: `${q.ctype} ${q.name}` }));
  const p: { name: string; type: GemmArgType; decl: string }[] = [];
  if (e.alpha) p.push({ name: 'alpha', type: 'f32', decl: 'const float alpha' });
  if (e.rowScale) p.push({ name: 'rowScale', type: 'ptr', decl: 'const float* __restrict__ rowScale' });
  if (e.colScale) p.push({ name: 'colScale', type: 'ptr', decl: 'const float* __restrict__ colScale' });
  if (e.bias) p.push({ name: 'bias', type: 'ptr', decl: `const ${ctype[e.bias]}* __restrict__ bias` });
  if (e.gatedResidual) {
    const r = e.gatedResidual.residual;
    p.push({ name: 'residual', type: 'ptr', decl: `const ${ctype[r]}* __restrict__ residual` });
    p.push({ name: 'ldr', type: 'i32', decl: 'const int ldr' });
    p.push({ name: 'gate', type: 'ptr', decl: 'const float* __restrict__ gate' });
    p.push({ name: 'ldg', type: 'i32', decl: 'const int ldg' });
    p.push({ name: 'gateRows', type: 'i32', decl: 'const int gateRows' });
  }
  if (e.residual) {
    p.push({ name: 'residual', type: 'ptr', decl: `const ${ctype[e.residual]}* __restrict__ residual` });
    p.push({ name: 'ldr', type: 'i32', decl: 'const int ldr' });
  }
  if (e.outScale) p.push({ name: 'outScale', type: 'f32', decl: 'const float outScale' });
  return p;
}

/** The per-element epilogue: statements that turn `y` (f32) at (row, col) into the stored value. */
function epilogueBody(e: GemmEpilogue): string {
  if (e.custom) return e.custom.body;
  const s: string[] = [];
  if (e.alpha) s.push('y *= alpha;');
  if (e.rowScale) s.push('y *= rowScale[row];');
  if (e.colScale) s.push('y *= colScale[col];');
  if (e.bias) s.push(`y += ${load(e.bias, 'bias[col]')};`);
  if (e.activation === 'gelu_tanh')
    s.push('y = 0.5f * y * (1.0f + tanhf(0.7978845608028654f * (y + 0.044715f * y * y * y)));');
  if (e.activation === 'silu') s.push('y = y / (1.0f + expf(-y));');
  if (e.activation === 'relu') s.push('y = fmaxf(y, 0.0f);');
  if (e.gatedResidual) {
    const r = e.gatedResidual.residual;
    s.push(
      `y = ${load(r, 'residual[(long long)row * ldr + col]')} + gate[(long long)(row / gateRows) * ldg + col] * y;`,
    );
  }
  if (e.residual) s.push(`y = ${load(e.residual, 'residual[(long long)row * ldr + col]')} + y;`);
  if (e.outScale) s.push('y *= outScale;');
  return s.join('\n    ');
}

/**
 * The device function `sfc_epilogue(y, row, col, ...params)` every schedule of every GEMM template
 * calls per accumulator: the built-in steps or the generated body.
 */
export function epilogueFunction(e: GemmEpilogue): string {
  const decls = epilogueParams(e)
    .map((p) => `, ${p.decl}`)
    .join('');
  const rowSum = e.custom?.rowSum;
  // a row reduction: the term each element adds to its row's sum, and the sum as an argument
  const term = rowSum
    ? `__device__ __forceinline__ float sfc_rowsum_term(float y, const int row, const int col${decls}) {
    float s;
    ${rowSum}
    return s;
}
`
    : '';
  return `${term}__device__ __forceinline__ float sfc_epilogue(float y, const int row, const int col${decls}${rowSum ? ', const float rowsum' : ''}) {
    ${epilogueBody(e)}
    return y;
}
`;
}

/** A float of CTA `rank`'s shared memory at this CTA's offset `at` (distributed shared memory). */
const ROWSUM_PRELUDE = `__device__ __forceinline__ float sfc_ld_cluster_f32(sfc_u32 at, sfc_u32 rank) {
  float v;
  asm volatile("{ .reg .b32 ra; mapa.shared::cluster.u32 ra, %1, %2; ld.shared::cluster.f32 %0, [ra]; }"
               : "=f"(v) : "r"(at), "r"(rank) : "memory");
  return v;
}
`;

/**
 * The row-sum epilogue's reduction (the staged schedule, `custom.rowSum`): each consumer's 128
 * threads add the terms of their 64 staged rows (two threads per row), the CTAs of the row's cluster
 * exchange the partial sums through distributed shared memory, and `rowTot` holds each row's total.
 * `rowPart` / `rowTot` are 128 floats each past the staging area; two cluster barriers (the producer
 * warpgroup arrives too): partials written -> totals read -> nobody exits while others still read.
 */
function rowSumReduction(o: { bn: number; pitch: number; cluster: number; args: string }): string {
  const { bn, pitch, cluster, args } = o;
  return `{
      const int lr = tid / 2, half = tid % 2, row = m0 + c * 64 + lr;
      float part = 0.0f;
      if (row < M)
        for (int j = half * ${bn / 2}; j < (half + 1) * ${bn / 2}; ++j)
          if (n0 + j < N) part += sfc_rowsum_term(stage[lr * ${pitch} + j], row, n0 + j${args});
      part += __shfl_xor_sync(0xffffffffu, part, 1);
      if (half == 0) rowPart[c * 64 + lr] = part;
      sfc_cluster_sync();
      if (half == 0) {
        float tot = 0.0f;
        const sfc_u32 at = sfc_smem(&rowPart[c * 64 + lr]);
#pragma unroll
        for (int r = 0; r < ${cluster}; ++r) tot += sfc_ld_cluster_f32(at, r);
        rowTot[c * 64 + lr] = tot;
      }
      sfc_cluster_sync();
    }`;
}

/** Stores 4 consecutive outputs from v[0..3] at C + offset (vectorised when aligned). */
function storeVec4(out: GemmOutput): string {
  switch (out) {
    case 'f32':
      return `*reinterpret_cast<float4*>(C + off) = make_float4(v[0], v[1], v[2], v[3]);`;
    case 'bf16':
    case 'f16': {
      const cv = out === 'bf16' ? 'sfc_to_bf16' : 'sfc_to_f16';
      return `uint2 w;
      w.x = (sfc_u32)${cv}(v[0]) | ((sfc_u32)${cv}(v[1]) << 16);
      w.y = (sfc_u32)${cv}(v[2]) | ((sfc_u32)${cv}(v[3]) << 16);
      *reinterpret_cast<uint2*>(C + off) = w;`;
    }
    case 'e4m3':
      return `*reinterpret_cast<sfc_u32*>(C + off) = (sfc_u32)sfc_to_e4m3(v[0]) | ((sfc_u32)sfc_to_e4m3(v[1]) << 8) |
          ((sfc_u32)sfc_to_e4m3(v[2]) << 16) | ((sfc_u32)sfc_to_e4m3(v[3]) << 24);`;
  }
}

/** Stores v[0], v[1] at C + off, C + off + 1 (or at the output-typed pointer `at`) as one access (off is even). */
export function storePair(out: GemmOutput, at = 'C + off'): string {
  switch (out) {
    case 'f32':
      return `*reinterpret_cast<float2*>(${at}) = make_float2(v[0], v[1]);`;
    case 'bf16':
    case 'f16': {
      const cv = out === 'bf16' ? 'sfc_to_bf16' : 'sfc_to_f16';
      return `*reinterpret_cast<sfc_u32*>(${at}) = (sfc_u32)${cv}(v[0]) | ((sfc_u32)${cv}(v[1]) << 16);`;
    }
    case 'e4m3':
      return `*reinterpret_cast<unsigned short*>(${at}) = (unsigned short)(sfc_to_e4m3(v[0]) | (sfc_to_e4m3(v[1]) << 8));`;
  }
}

export function storeScalarAt(out: GemmOutput, i: number): string {
  const cv: Record<GemmOutput, string> = {
    f32: `v[${i}]`,
    bf16: `sfc_to_bf16(v[${i}])`,
    f16: `sfc_to_f16(v[${i}])`,
    e4m3: `sfc_to_e4m3(v[${i}])`,
  };
  return `C[off + ${i}] = ${cv[out]};`;
}

/**
 * Runs the epilogue on the accumulators `acc0`, `acc1` of columns col and col + 1 of `row` (C++
 * expressions; `args` is `, name` per epilogue parameter) and stores them: one paired store where the
 * kernel's `pairs` holds, only the first where col + 1 is past N. Declares `v` and `off`.
 */
export function epiloguePairStore(output: GemmOutput, acc0: string, acc1: string, args: string): string {
  return `float v[2];
        v[0] = sfc_epilogue(${acc0}, row, col${args});
        const long long off = (long long)row * ldc + col;
        if (col + 1 < N) {
          v[1] = sfc_epilogue(${acc1}, row, col + 1${args});
          if (pairs) {
            ${storePair(output)}
          } else {
            ${storeScalarAt(output, 0)}
            ${storeScalarAt(output, 1)}
          }
        } else {
          ${storeScalarAt(output, 0)}
        }`;
}

function storeScalar(out: GemmOutput): string {
  const cv: Record<GemmOutput, string> = {
    f32: 'v[i]',
    bf16: 'sfc_to_bf16(v[i])',
    f16: 'sfc_to_f16(v[i])',
    e4m3: 'sfc_to_e4m3(v[i])',
  };
  return `C[off + i] = ${cv[out]};`;
}

/** Instantiates the sm_90a GEMM template. */
export function gemmSm90(specIn: GemmSpec): GemmArtifact {
  validateGemmSpec(specIn);
  const epilogue = specIn.epilogue ?? {};
  const persistent = specIn.persistent ?? false;
  const conv = specIn.conv ?? false;
  const schedule = specIn.schedule ?? 'default';
  if (conv && persistent) throw new Error('the convolution GEMM has no persistent variant');
  const spec = {
    input: specIn.input,
    output: specIn.output,
    bn: specIn.bn,
    stages: specIn.stages,
    persistent,
    schedule,
    conv,
    epilogue,
  };
  const { bn, stages, input, output } = spec;
  const bk = 128 / elementBytes(input); // 128-byte rows: the 128-byte swizzle span
  const kStep = wgmmaK(input);
  // a row-sum epilogue: the N / bn tiles of a row as one cluster (rowSumReduction)
  const rowCluster = epilogue.custom?.rowSum ? (epilogue.custom.rowCluster ?? 0) : 0;
  if (epilogue.custom?.rowSum) {
    if (persistent || conv || schedule !== 'default')
      throw new RangeError('a row-sum GEMM epilogue runs on the default (staged) schedule only');
    if (!Number.isInteger(rowCluster) || rowCluster < 1 || rowCluster > 8)
      throw new RangeError(`a row-sum epilogue needs 1..8 CTAs per row (N / bn), got ${rowCluster}`);
    const ring = stages * (BM + bn) * 128;
    const need = (2 * 64 * (bn + 8) + 256) * 4;
    if (ring < need)
      throw new RangeError(`a row-sum epilogue at bn = ${bn} needs ${need} bytes of staging, the ring has ${ring}`);
  }
  const entry = `sfc_gemm_sm90_${input}_${output}_128x${bn}x${bk}_s${stages}${persistent ? '_p' : ''}${SCHEDULE_SUFFIX[schedule]}${conv ? '_conv' : ''}${tag(epilogue)}`;
  const extra = epilogueParams(epilogue);
  const params: GemmArtifact['params'] = [
    { name: 'tmA', type: 'tmap' },
    { name: 'tmB', type: 'tmap' },
    ...(schedule === 'cooperative' ? [{ name: 'tmC', type: 'tmap' as const }] : []),
    { name: 'C', type: 'ptr' },
    { name: 'M', type: 'i32' },
    { name: 'N', type: 'i32' },
    { name: 'K', type: 'i32' },
    { name: 'ldc', type: 'i32' },
    ...(schedule === 'cooperative' ? [{ name: 'tmaC', type: 'i32' as const }] : []),
    ...(conv
      ? (['convC', 'convTx', 'convTy', 'convPy', 'convPt'] as const).map((name) => ({ name, type: 'i32' as const }))
      : []),
    ...extra.map(({ name, type }) => ({ name, type })),
  ];
  const aBytes = BM * 128;
  // the A K-slice kt: a plain GEMM reads columns kt * bk of rows m0..; a convolution reads the
  // slice's channels of the rows shifted by its tap's offset
  const loadA = conv
    ? `{
          const int k0 = kt * ${bk}, tap = k0 / convC, c0 = k0 - tap * convC;
          const int tx = tap % convTx, tyt = tap / convTx, ty = tyt % convTy, tt = tyt / convTy;
          sfc_tma_load_2d(sfc_smem(ringA + s * ${aBytes}), &tmA, c0, m0 + tx + ty * convPy + tt * convPt, full);
        }`
    : `sfc_tma_load_2d(sfc_smem(ringA + s * ${aBytes}), &tmA, kt * ${bk}, m0, full);`;
  const bBytes = bn * 128;
  const pitch = bn + 8; // f32 staging row pitch: == 8 (mod 32) words, conflict-free float2 writes
  const regs = bn / 2;
  const STAGED_BODY = `  if (wg == 0) {
    sfc_setmaxnreg_dec<40>();
    if (tid == 0) {
      sfc_tma_prefetch_map(&tmA);
      sfc_tma_prefetch_map(&tmB);
      for (int kt = 0; kt < kTiles; ++kt) {
        const int s = kt % ${stages};
        sfc_mbar_wait(sfc_smem(&bars[${stages} + s]), ((kt / ${stages}) & 1) ^ 1);
        const sfc_u32 full = sfc_smem(&bars[s]);
        sfc_mbar_expect_tx(full, ${aBytes + bBytes});
        ${loadA}
        sfc_tma_load_2d(sfc_smem(ringB + s * ${bBytes}), &tmB, kt * ${bk}, n0, full);
      }
    }${rowCluster ? '\n    // the two cluster barriers of the row-sum epilogue\n    sfc_cluster_sync();\n    sfc_cluster_sync();' : ''}
  } else {
    sfc_setmaxnreg_inc<232>();
    float acc[${regs}];
#pragma unroll
    for (int i = 0; i < ${regs}; ++i) acc[i] = 0.0f;
    const int c = wg - 1;
    for (int kt = 0; kt < kTiles; ++kt) {
      const int s = kt % ${stages};
      sfc_mbar_wait(sfc_smem(&bars[s]), (kt / ${stages}) & 1);
      const sfc_u64 da = sfc_wgmma_desc_sw128(sfc_smem(ringA + s * ${aBytes} + c * ${64 * 128}));
      const sfc_u64 db = sfc_wgmma_desc_sw128(sfc_smem(ringB + s * ${bBytes}));
      sfc_wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < ${bk / kStep}; ++kk) sfc_mma(acc, da + 2 * kk, db + 2 * kk);
      sfc_wgmma_commit();
      sfc_wgmma_wait<1>();
      if (kt > 0 && tid == 0) sfc_mbar_arrive(sfc_smem(&bars[${stages} + (kt - 1) % ${stages}]));
    }
    sfc_wgmma_wait<0>();
    // both consumers are done reading the ring: reuse it to stage the f32 tile
    sfc_bar_sync(1, ${128 * CONSUMERS});
    float* stage = reinterpret_cast<float*>(smem) + c * ${64 * pitch};
    const int warp = tid / 32, lane = tid % 32;
    const int r0 = warp * 16 + lane / 4, c0 = 2 * (lane % 4);
#pragma unroll
    for (int j = 0; j < ${bn / 8}; ++j) {
      *reinterpret_cast<float2*>(&stage[r0 * ${pitch} + 8 * j + c0]) = make_float2(acc[4 * j], acc[4 * j + 1]);
      *reinterpret_cast<float2*>(&stage[(r0 + 8) * ${pitch} + 8 * j + c0]) = make_float2(acc[4 * j + 2], acc[4 * j + 3]);
    }
    sfc_bar_sync(2 + c, 128);${
      rowCluster
        ? `
    float* rowPart = reinterpret_cast<float*>(smem) + ${2 * 64 * pitch};
    float* rowTot = rowPart + 128;
    ${rowSumReduction({ bn, pitch, cluster: rowCluster, args: extra.map((p) => `, ${p.name}`).join('') })}`
        : ''
    }
    const bool vec = (N % 4 == 0) && (ldc % 4 == 0);
    for (int i = tid; i < ${(64 * bn) / 4}; i += 128) {
      const int lr = i / ${bn / 4}, lc = 4 * (i % ${bn / 4});
      const int row = m0 + c * 64 + lr, col = n0 + lc;
      if (row >= M || col >= N) continue;
      const float4 a = *reinterpret_cast<const float4*>(&stage[lr * ${pitch} + lc]);
      float v[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (col + e < N) v[e] = sfc_epilogue(v[e], row, col + e${extra.map((p) => `, ${p.name}`).join('')}${rowCluster ? ', rowTot[c * 64 + lr]' : ''});
      const long long off = (long long)row * ldc + col;
      if (vec) {
        ${storeVec4(output)}
      } else {
        for (int i = 0; i < 4 && col + i < N; ++i) ${storeScalar(output)}
      }
    }
  }
`;
  // the persistent schedule: CTAs loop over tiles (m fastest); the producer runs ahead
  // across tile boundaries, so the next tile's first K-slices load while the consumers run this tile's
  // epilogue; each consumer computes 64 rows of every tile
  const tileLoop = `for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      const int tm0 = (tile % tilesM) * ${BM}, tn0 = (tile / tilesM) * ${bn};`;
  const tileProducer = `const int tilesM = (M + ${BM - 1}) / ${BM}, tiles = tilesM * ((N + ${bn - 1}) / ${bn});
  if (wg == 0) {
    sfc_setmaxnreg_dec<40>();
    if (tid == 0) {
      sfc_tma_prefetch_map(&tmA);
      sfc_tma_prefetch_map(&tmB);
      int it = 0;
      ${tileLoop}
        for (int kt = 0; kt < kTiles; ++kt, ++it) {
          const int s = it % ${stages};
          sfc_mbar_wait(sfc_smem(&bars[${stages} + s]), ((it / ${stages}) & 1) ^ 1);
          const sfc_u32 full = sfc_smem(&bars[s]);
          sfc_mbar_expect_tx(full, ${aBytes + bBytes});
          sfc_tma_load_2d(sfc_smem(ringA + s * ${aBytes}), &tmA, kt * ${bk}, tm0, full);
          sfc_tma_load_2d(sfc_smem(ringB + s * ${bBytes}), &tmB, kt * ${bk}, tn0, full);
        }
      }
    }`;
  const tileMainloop = `sfc_setmaxnreg_inc<232>();
    const int c = wg - 1;
    const int warp = tid / 32, lane = tid % 32;
    const int r0 = warp * 16 + lane / 4, c0 = 2 * (lane % 4);
    int it = 0;
    ${tileLoop}
      float acc[${regs}];
      for (int kt = 0; kt < kTiles; ++kt, ++it) {
        const int s = it % ${stages};
        ${consumerSlice({ stages, aBytes, bBytes, bk, kStep, pos: 'it' })}
        if (kt > 0 && tid == 0) sfc_mbar_arrive(sfc_smem(&bars[${stages} + (it - 1) % ${stages}]));
      }
      sfc_wgmma_wait<0>();
      if (tid == 0) sfc_mbar_arrive(sfc_smem(&bars[${stages} + (it - 1) % ${stages}]));`;
  const PERSISTENT_BODY = `  ${tileProducer}
  } else {
    ${tileMainloop}
      const bool pairs = (N % 2 == 0) && (ldc % 2 == 0);
      // epilogue straight from the accumulator fragments: pairs of adjacent columns per store
#pragma unroll
      for (int j = 0; j < ${bn / 8}; ++j) {
        const int col = tn0 + 8 * j + c0;
        if (col >= N) continue;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = tm0 + c * 64 + r0 + 8 * h;
          if (row >= M) continue;
          ${epiloguePairStore(output, 'acc[4 * j + 2 * h]', 'acc[4 * j + 2 * h + 1]', extra.map((p) => `, ${p.name}`).join(''))}
        }
      }
    }
  }
`;
  const source = `${CUDA_PRELUDE}
${SM90_PRELUDE}${isPingpong(schedule) || rowCluster ? SM90_PINGPONG : ''}${schedule === 'cooperative' ? SM90_COOPERATIVE : ''}
${wgmmaCall('sfc_mma', bn, input)}
${epilogueFunction(epilogue)}
${rowCluster ? ROWSUM_PRELUDE : ''}extern "C" __global__ void __launch_bounds__(${THREADS}, 1)${schedule === 'pingpong-cluster' ? ' __cluster_dims__(2, 1, 1)' : rowCluster ? ` __cluster_dims__(1, ${rowCluster}, 1)` : ''}
${entry}(const __grid_constant__ SfcTensorMap tmA, const __grid_constant__ SfcTensorMap tmB,${schedule === 'cooperative' ? ' const __grid_constant__ SfcTensorMap tmC,' : ''}
    ${ctype[output]}* __restrict__ C, const int M, const int N, const int K, const int ldc${schedule === 'cooperative' ? ', const int tmaC' : ''}${conv ? ',\n    const int convC, const int convTx, const int convTy, const int convPy, const int convPt' : ''}${extra.map((p) => `,\n    ${p.decl}`).join('')}) {
  extern __shared__ unsigned char sfc_smem_raw[];
  unsigned char* smem = (unsigned char*)(((sfc_u64)sfc_smem_raw + 1023) & ~(sfc_u64)1023);
  unsigned char* ringA = smem;                          // [stages][${BM} rows][128 bytes]
  unsigned char* ringB = smem + ${stages * aBytes};     // [stages][${bn} rows][128 bytes]
  sfc_u64* bars = (sfc_u64*)(smem + ${Math.max(stages * (aBytes + bBytes), persistent || isPingpong(schedule) || schedule === 'cooperative' ? 0 : BM * pitch * 4)});
  // full[s] = bars[s], empty[s] = bars[${stages} + s]${schedule === 'cooperative' ? `; consumer c's output values: written[c] = bars[${2 * stages} + c], copied[c] = bars[${2 * stages + 2} + c]` : ''}
  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
  const int m0 = blockIdx.x * ${BM}, n0 = blockIdx.y * ${bn};
  const int kTiles = (K + ${bk - 1}) / ${bk};
  if (threadIdx.x == 0) {
    for (int s = 0; s < ${stages}; ++s) {
      sfc_mbar_init(sfc_smem(&bars[s]), 1);
      sfc_mbar_init(sfc_smem(&bars[${stages} + s]), ${schedule === 'pingpong' ? 1 : schedule === 'pingpong-cluster' ? 2 : CONSUMERS});
    }${
      schedule === 'cooperative'
        ? `
    for (int c = 0; c < 2; ++c) {
      sfc_mbar_init(sfc_smem(&bars[${2 * stages} + c]), 128); // every thread of consumer c wrote its values
      sfc_mbar_init(sfc_smem(&bars[${2 * stages + 2} + c]), 1); // the stores (or copies) have read them
    }`
        : ''
    }
    sfc_mbar_fence_init();
  }
  __syncthreads();

${isPingpong(schedule) ? pingpongBody({ bn, stages, bk, kStep, output, cluster: schedule === 'pingpong-cluster', args: extra.map((p) => `, ${p.name}`).join('') }) : schedule === 'cooperative' ? cooperativeBody({ bn, stages, bk, kStep, output, args: extra.map((p) => `, ${p.name}`).join('') }) : persistent ? PERSISTENT_BODY : STAGED_BODY}}
`;
  return {
    kind: 'gemm',
    name: entry,
    arch: 'sm_90a',
    spec,
    bm: BM,
    bk,
    threads: THREADS,
    sharedBytes: gemmSharedBytes(spec),
    source,
    entry,
    params,
  };
}

/**
 * The widest ping-pong tile: a consumer's 128 x bn accumulators are bn of its 232 registers per thread;
 * at 192 the layer compiler's FP8 epilogues already spill (ptxas, CUDA 13.0).
 */
export const PINGPONG_MAX_BN = 160;

/**
 * Tile widths of the ping-pong schedule the plans offer the autotuner. 160 only: on the H100 it won at
 * M x N x K = 4680 x 8960 x 1536 (bf16 and FP8); 128 (2 m64n128 per K step, more L2 traffic per
 * FLOP) lost to it on every model shape measured (bench/results/kernels-gemm-NVIDIA_H100_80GB_HBM3.json).
 */
export const PINGPONG_TILE_WIDTHS: readonly number[] = [160];

/**
 * Ping-pong instantiations for the autotuner, one per width (default PINGPONG_TILE_WIDTHS; the
 * deepest ring each fits), for a GEMM that also offers the one-CTA-per-tile candidates; none for
 * N <= 64 (too few tiles for two consumers per SM).
 */
export function gemmPingpongCandidates(
  base: Omit<GemmSpec, 'bn' | 'stages' | 'schedule' | 'persistent' | 'conv'>,
  N?: number,
  schedule: 'pingpong' | 'pingpong-cluster' = 'pingpong',
  widths: readonly number[] = PINGPONG_TILE_WIDTHS,
): GemmArtifact[] {
  if (N !== undefined && N <= 64) return [];
  return widths.map((bn) => gemmSm90({ ...base, bn, stages: maxStages(bn, true), schedule }));
}

/**
 * The ping-pong mainloop and epilogue. The CTA takes work units blockIdx.x, blockIdx.x + gridDim.x,
 * ... (m fastest: the CTAs in flight share B's column blocks, and A, 14 MB at the model's M = 4680,
 * stays in L2); its j-th unit goes to consumer j % 2. The ring's slices are filled in unit order;
 * consumer c starts the mainloop of unit j only after the other consumer has waited on every slice of
 * unit j - 1 (named barriers 1 and 2, one per direction), so a consumer never waits on a `full`
 * barrier more than one phase ahead (parity waits cannot tell phase n from n - 2), and each ring slot
 * is released by the one consumer that read it (`empty` counts 1 arrival). The hand-off comes right
 * after the last slice's wgmma is issued: the tensor cores go from one consumer's tile to the other's
 * while the first drains its last wgmma group and runs its epilogue.
 *
 * With `cluster`, a unit is a pair of N-adjacent tiles of the same 128 rows, one per CTA of a 2-CTA
 * cluster (rank r takes tile columns 2 np + r; a column past N computes zeros and stores nothing).
 * Each CTA's producer loads rows r * 64 .. r * 64 + 63 of the A slice multicast into both CTAs and
 * its own B slice (boxes start inside the matrix, clamped where a tile lies past M or N); a slot is refilled once the consumers of both CTAs released it (`empty` counts 2:
 * its own consumer and, through mapa, the peer's), and each `full` barrier expects the whole A slice
 * (half from the peer) plus B. Cluster barriers after the barrier set-up and before exit keep either
 * CTA from touching the other's shared memory before it exists or after it is gone.
 */
function pingpongBody(o: {
  bn: number;
  stages: number;
  bk: number;
  kStep: number;
  output: GemmOutput;
  cluster: boolean;
  /** `, name` for each epilogue parameter */
  args: string;
}): string {
  const { bn, stages, bk, kStep, output, args, cluster } = o;
  const aBytes = BM * 128;
  const bBytes = bn * 128;
  const regs = bn / 2;
  // (cluster) boxes are clamped to start inside the matrix: rows and columns they then bring in past
  // the tile's own are never stored
  const loadA = cluster
    ? `sfc_tma_load_2d_multicast(sfc_smem(ringA + s * ${aBytes} + rank * ${64 * 128}), &tmA, kt * ${bk}, tm0 + rank * 64 < M ? tm0 + rank * 64 : M - 1, full, 3);`
    : `sfc_tma_load_2d(sfc_smem(ringA + s * ${aBytes}), &tmA, kt * ${bk}, tm0, full);`;
  const bRow = cluster ? `tn0 < N ? tn0 : (tilesN - 1) * ${bn}` : 'tn0';
  const release = (slot: string) =>
    cluster
      ? `{
          const sfc_u32 e = sfc_smem(&bars[${stages} + ${slot}]);
          sfc_mbar_arrive(e);
          sfc_mbar_arrive_cluster(e, rank ^ 1);
        }`
      : `sfc_mbar_arrive(sfc_smem(&bars[${stages} + ${slot}]));`;
  // a work unit's first tile: tiles m-fastest, or (cluster) pairs of N-adjacent tiles m-fastest
  const unitTile = `const int tm0 = (u % tilesM) * ${BM}, tn0 = ${cluster ? `(2 * (u / tilesM) + rank) * ${bn}` : `(u / tilesM) * ${bn}`};`;
  return `  // ping-pong: persistent CTAs, consumers on alternate tiles (see pingpongBody in compiler/templates/gemm.ts)
  (void)m0;
  (void)n0;
  const int tilesM = (M + ${BM - 1}) / ${BM}, tilesN = (N + ${bn - 1}) / ${bn};
${
  cluster
    ? `  const int rank = (int)sfc_cluster_rank();
  const int units = tilesM * ((tilesN + 1) / 2), unit0 = (int)blockIdx.x / 2, unitStride = (int)gridDim.x / 2;
  sfc_cluster_sync(); // the peer's barriers are initialised before any multicast or remote arrival`
    : `  const int units = tilesM * tilesN, unit0 = (int)blockIdx.x, unitStride = (int)gridDim.x;`
}
  const int nLocal = unit0 < units ? (units - 1 - unit0) / unitStride + 1 : 0;
  if (wg == 0) {
    sfc_setmaxnreg_dec<40>();
    if (tid == 0) {
      sfc_tma_prefetch_map(&tmA);
      sfc_tma_prefetch_map(&tmB);
      int it = 0;
      for (int j = 0; j < nLocal; ++j) {
        const int u = unit0 + j * unitStride;
        ${unitTile}
        for (int kt = 0; kt < kTiles; ++kt, ++it) {
          const int s = it % ${stages};
          sfc_mbar_wait(sfc_smem(&bars[${stages} + s]), ((it / ${stages}) & 1) ^ 1);
          const sfc_u32 full = sfc_smem(&bars[s]);
          sfc_mbar_expect_tx(full, ${aBytes + bBytes});
          ${loadA}
          sfc_tma_load_2d(sfc_smem(ringB + s * ${bBytes}), &tmB, kt * ${bk}, ${bRow}, full);
        }
      }
    }
  } else {
    sfc_setmaxnreg_inc<232>();
    const int c = wg - 1;
    const int warp = tid / 32, lane = tid % 32;
    const int r0 = warp * 16 + lane / 4, c0 = 2 * (lane % 4);
    const bool pairs = (N % 2 == 0) && (ldc % 2 == 0);
    for (int j = c; j < nLocal; j += 2) {
      const int u = unit0 + j * unitStride;
      ${unitTile}
      float acc[2][${regs}];
      // the other consumer has waited on every slice of unit j - 1 (barrier 1: consumer 1 -> 0, 2: 0 -> 1)
      if (j > 0) sfc_bar_sync(1 + c, 256);
      int it = j * kTiles;
      for (int kt = 0; kt < kTiles; ++kt, ++it) {
        const int s = it % ${stages};
        sfc_mbar_wait(sfc_smem(&bars[s]), (it / ${stages}) & 1);
        const sfc_u64 da = sfc_wgmma_desc_sw128(sfc_smem(ringA + s * ${aBytes}));
        const sfc_u64 db = sfc_wgmma_desc_sw128(sfc_smem(ringB + s * ${bBytes}));
        sfc_wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < ${bk / kStep}; ++kk) {
          sfc_mma(acc[0], da + 2 * kk, db + 2 * kk, kt > 0 || kk > 0);
          sfc_mma(acc[1], da + ${(64 * 128) >> 4} + 2 * kk, db + 2 * kk, kt > 0 || kk > 0);
        }
        sfc_wgmma_commit();
        sfc_wgmma_wait<1>();
        if (kt > 0 && tid == 0) ${release(`(it - 1) % ${stages}`)}
      }
      if (j + 1 < nLocal) sfc_bar_arrive(2 - c, 256);
      sfc_wgmma_wait<0>();
      if (tid == 0) ${release(`(it - 1) % ${stages}`)}
      // epilogue straight from the accumulator fragments, one row of the thread's at a time: pairs of
      // adjacent columns per store
#pragma unroll
      for (int f = 0; f < 2; ++f) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = tm0 + 64 * f + r0 + 8 * h;
          if (row >= M) continue;
#pragma unroll
          for (int jn = 0; jn < ${bn / 8}; ++jn) {
            const int col = tn0 + 8 * jn + c0;
            if (col >= N) continue;
            ${epiloguePairStore(output, 'acc[f][4 * jn + 2 * h]', 'acc[f][4 * jn + 2 * h + 1]', args)}
          }
        }
      }
    }
  }${
    cluster
      ? `
  sfc_cluster_sync(); // no CTA leaves while its peer may still arrive on its barriers`
      : ''
  }
`;
}

/**
 * Tile widths of the cooperative schedule the plans offer the autotuner: 224 and 256 (the one-CTA-per-
 * tile winners at N = 1536; 7 and 6 column tiles there).
 */
export const COOPERATIVE_TILE_WIDTHS: readonly number[] = [224, 256];

/**
 * Cooperative instantiations for the autotuner, one per width (the deepest ring each fits), none where
 * 64 rows of output are not whole 64-byte boxes that fit a ring slot (f32 outputs wider than 128
 * columns, e4m3 outputs not a multiple of 64 columns) or N <= 64.
 */
export function gemmCooperativeCandidates(
  base: Omit<GemmSpec, 'bn' | 'stages' | 'schedule' | 'persistent' | 'conv'>,
  N?: number,
  widths: readonly number[] = COOPERATIVE_TILE_WIDTHS,
): GemmArtifact[] {
  if (N !== undefined && N <= 64) return [];
  return widths
    .filter((bn) => coopLayout(bn, base.output).fits)
    .map((bn) => gemmSm90({ ...base, bn, stages: maxStages(bn, true), schedule: 'cooperative' }));
}

/**
 * One K-slice of a consumer's mainloop (the persistent and cooperative schedules): wait until ring slot
 * `s` holds ring position `pos`, issue the slice's wgmmas on this consumer's 64 rows (the tile's first
 * slice, kt = 0, overwrites the accumulators), commit, and wait until at most this group is in flight,
 * so the previous slice's slot may be released.
 */
function consumerSlice(o: {
  stages: number;
  aBytes: number;
  bBytes: number;
  bk: number;
  kStep: number;
  pos: string;
}): string {
  const { stages, aBytes, bBytes, bk, kStep, pos } = o;
  return `sfc_mbar_wait(sfc_smem(&bars[s]), (${pos} / ${stages}) & 1);
        const sfc_u64 da = sfc_wgmma_desc_sw128(sfc_smem(ringA + s * ${aBytes} + c * ${64 * 128}));
        const sfc_u64 db = sfc_wgmma_desc_sw128(sfc_smem(ringB + s * ${bBytes}));
        sfc_wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < ${bk / kStep}; ++kk) sfc_mma(acc, da + 2 * kk, db + 2 * kk, kt > 0 || kk > 0);
        sfc_wgmma_commit();
        sfc_wgmma_wait<1>();`;
}

/**
 * The cooperative schedule. The CTA takes tiles blockIdx.x, blockIdx.x + gridDim.x, ... (n-fastest where
 * N <= M: a wave reads all of B, the smaller operand, and a band of A's rows, so A is read once; else
 * m-fastest). Each tile takes kTiles + 2 ring positions: its K-slices and one output slot per consumer
 * for the tile before it, placed after the tile's first P = stages - 2 slices (the last tile's output
 * slots come after it): when a tile's mainloop ends, the next tile's first P slices are loading and its
 * output slots are the slots its last two slices just left; the ring waits for the output slots to be
 * stored only at the next tile's slice 2P. The producer hands an output slot over (a plain arrival on
 * `full`) once it is free. Consumer c (rows 64 c .. 64 c + 63) applies the epilogue to its accumulators
 * in registers, waits for `copied[c]` (its previous values are out, so `written[c]` never runs two
 * phases ahead) and for both output slots' `full` (every consumer waits on every phase of every `full`
 * barrier), gives the other consumer's slot its arrival on `empty` (so no slot is reused before both
 * consumers have seen its phase), writes its values, converted, into its own slot (coopLayout: 64-byte
 * boxes with the 64-byte swizzle, 16-byte chunk k of row r at chunk k ^ ((r / 2) % 4)) and arrives on
 * `written[c]`. Warps 1-3 of the producer warpgroup wait on `written[c]`; thread 32 (warp 1, lane 0)
 * stores the boxes with TMA tensor stores (rows and columns past C clipped) and waits until they have read the slot, then gives
 * the slot its other `empty` arrival and arrives on `copied[c]`. Where C cannot take a tensor map
 * (`tmaC` = 0: an address or row pitch that is not a multiple of 16 bytes) warps 1-3 copy the values
 * element by element instead.
 */
function cooperativeBody(o: {
  bn: number;
  stages: number;
  bk: number;
  kStep: number;
  output: GemmOutput;
  /** `, name` for each epilogue parameter */
  args: string;
}): string {
  const { bn, stages, bk, kStep, output, args } = o;
  const { boxes } = coopLayout(bn, output);
  const eb = elementBytes(output);
  const aBytes = BM * 128;
  const bBytes = bn * 128;
  const T = ctype[output];
  const written = (c: string) => `sfc_smem(&bars[${2 * stages} + ${c}])`;
  const copied = (c: string) => `sfc_smem(&bars[${2 * stages + 2} + ${c}])`;
  const full = (pos: string) => `sfc_smem(&bars[(${pos}) % ${stages}])`;
  const empty = (pos: string) => `sfc_smem(&bars[${stages} + (${pos}) % ${stages}])`;
  const tileLoop = `for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x, ++t) {
      const int tm0 = (nFast ? tile / tilesN : tile % tilesM) * ${BM}, tn0 = (nFast ? tile % tilesN : tile / tilesM) * ${bn};`;
  return `  // cooperative: persistent CTAs, both consumers on each tile, the epilogue through ring slots
  // (see cooperativeBody in compiler/templates/gemm.ts)
  (void)m0;
  (void)n0;
  const int tilesM = (M + ${BM - 1}) / ${BM}, tilesN = (N + ${bn - 1}) / ${bn}, tiles = tilesM * tilesN;
  const bool nFast = N <= M;
  const int nLocal = (int)blockIdx.x < tiles ? (tiles - 1 - (int)blockIdx.x) / (int)gridDim.x + 1 : 0;
  const int P = kTiles < ${stages - 2} ? kTiles : ${stages - 2};
  // ring positions: tile t's K-slice kt, and tile t's first output slot
  auto slicePos = [&](int t, int kt) -> int {
    return t == 0 ? kt : t * (kTiles + 2) - 2 + (kt < P ? kt : kt + 2);
  };
  auto outPos = [&](int t) -> int { return (t + 1) * (kTiles + 2) - 2 + (t + 1 < nLocal ? P : 0); };
  // byte x of output row r (0..63) in ring slot s: box x / 64 (4 in the A part, the rest in the B
  // part), 64-byte rows, 16-byte chunks swizzled as the C tensor map's 64-byte swizzle
  auto slotAt = [&](int s, int r, int x) -> unsigned char* {
    const int box = x >> 6;
    unsigned char* base = box < 4 ? ringA + s * ${aBytes} + box * 4096 : ringB + s * ${bBytes} + (box - 4) * 4096;
    return base + r * 64 + ((((x >> 4) ^ (r >> 1)) & 3) << 4) + (x & 15);
  };
  if (wg == 0) {
    sfc_setmaxnreg_dec<40>();
    if (tid == 0) {
      sfc_tma_prefetch_map(&tmA);
      sfc_tma_prefetch_map(&tmB);
      // hands the two output slots at ring position p over to the consumers as soon as they are free
      auto handOver = [&](int p) {
        for (int e = 0; e < 2; ++e) {
          sfc_mbar_wait(${empty('p + e')}, (((p + e) / ${stages}) & 1) ^ 1);
          sfc_mbar_arrive(${full('p + e')});
        }
      };
      int t = 0;
      ${tileLoop}
        for (int kt = 0; kt < kTiles; ++kt) {
          if (t > 0 && kt == P) handOver(outPos(t - 1));
          const int pos = slicePos(t, kt), s = pos % ${stages};
          sfc_mbar_wait(${empty('pos')}, ((pos / ${stages}) & 1) ^ 1);
          const sfc_u32 fb = sfc_smem(&bars[s]);
          sfc_mbar_expect_tx(fb, ${aBytes + bBytes});
          sfc_tma_load_2d(sfc_smem(ringA + s * ${aBytes}), &tmA, kt * ${bk}, tm0, fb);
          sfc_tma_load_2d(sfc_smem(ringB + s * ${bBytes}), &tmB, kt * ${bk}, tn0, fb);
        }
        if (t > 0 && P == kTiles) handOver(outPos(t - 1));
      }
      if (nLocal > 0) handOver(outPos(nLocal - 1));
    } else if (tid >= 32) {
      // the storing thread (tid 32), or with no C tensor map the copying warps
      const int q = tid - 32;
      int t = 0;
      ${tileLoop}
        for (int c = 0; c < 2; ++c) {
          const int pos = outPos(t) + c, s = pos % ${stages};
          sfc_mbar_wait(${written('c')}, t & 1);
          const int row0 = tm0 + c * 64;
          if (tmaC) {
            if (q == 0 && row0 < M) {
#pragma unroll 1
              for (int b = 0; b < ${boxes}; ++b)
                if (tn0 + b * ${64 / eb} < N) sfc_tma_store_2d(&tmC, tn0 + b * ${64 / eb}, row0, sfc_smem(slotAt(s, 0, b * 64)));
              sfc_bulk_commit();
              sfc_bulk_wait_read();
            }
          } else {
#pragma unroll 1
            for (int i = q; i < ${64 * bn}; i += 96) {
              const int lr = i / ${bn}, lc = i - lr * ${bn};
              const int row = row0 + lr, col = tn0 + lc;
              if (row < M && col < N) C[(long long)row * ldc + col] = *reinterpret_cast<const ${T}*>(slotAt(s, lr, lc * ${eb}));
            }
          }
          sfc_bar_sync(1, 96);
          if (q == 0) {
            sfc_mbar_arrive(${empty('pos')});
            sfc_mbar_arrive(${copied('c')});
          }
        }
      }
    }
  } else {
    sfc_setmaxnreg_inc<232>();
    const int c = wg - 1;
    const int warp = tid / 32, lane = tid % 32;
    const int r0 = warp * 16 + lane / 4, c0 = 2 * (lane % 4);
    int t = 0;
    ${tileLoop}
      float acc[${bn / 2}];
      int prev = 0;
      for (int kt = 0; kt < kTiles; ++kt) {
        const int pos = slicePos(t, kt), s = pos % ${stages};
        ${consumerSlice({ stages, aBytes, bBytes, bk, kStep, pos: 'pos' })}
        if (kt > 0 && tid == 0) sfc_mbar_arrive(${empty('prev')});
        prev = pos;
      }
      sfc_wgmma_wait<0>();
      if (tid == 0) sfc_mbar_arrive(${empty('prev')});
      // the epilogue math in registers, before waiting for the slot
#pragma unroll
      for (int j = 0; j < ${bn / 8}; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = tm0 + c * 64 + r0 + 8 * h, col = tn0 + 8 * j + c0;
          if (row < M && col < N) acc[4 * j + 2 * h] = sfc_epilogue(acc[4 * j + 2 * h], row, col${args});
          if (row < M && col + 1 < N)
            acc[4 * j + 2 * h + 1] = sfc_epilogue(acc[4 * j + 2 * h + 1], row, col + 1${args});
        }
      const int out = outPos(t);
      sfc_mbar_wait(${copied('c')}, (t & 1) ^ 1);
      sfc_mbar_wait(${full('out')}, (out / ${stages}) & 1);
      sfc_mbar_wait(${full('out + 1')}, ((out + 1) / ${stages}) & 1);
      // the other consumer's slot is released by its copy and by this consumer, after all its threads
      // have seen the slot's phase
      sfc_bar_sync(2 + c, 128);
      if (tid == 0) sfc_mbar_arrive(${empty('out + 1 - c')});
      const int s = (out + c) % ${stages};
#pragma unroll
      for (int j = 0; j < ${bn / 8}; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float v[2] = {acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]};
          ${storePair(output, `reinterpret_cast<${T}*>(slotAt(s, r0 + 8 * h, (8 * j + c0) * ${eb}))`)}
        }
      sfc_fence_proxy_async(); // the tensor stores read the slot through the async proxy
      sfc_mbar_arrive(${written('c')});
    }
  }
`;
}

/** The dtype names of a spec's operands, for checking tensors at launch. */
export function gemmDtypes(spec: Pick<GemmSpec, 'input' | 'output'>): { a: DTypeName; b: DTypeName; c: DTypeName } {
  return { a: spec.input, b: spec.input, c: spec.output };
}
