// Running GEMM template instantiations (compiler/templates/gemm.ts): operand checks, TMA tensor
// maps, grid and launch on CUDA; the JS twin on the CPU device (float64 accumulation, the epilogue
// in float32 as the kernel does it, one rounding to the output dtype); and a tile autotuner whose
// choice persists per (arch, shape, dtypes, epilogue) in the kernel cache directory.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GemmArtifact, GemmEpilogue } from '../dsl/artifact.js';
import { SfcError } from '../dsl/errors.js';
import { decode, encodeInto, rawArray } from './convert.js';
import { CpuDevice } from './cpu.js';
import { archRunsOn, CudaDevice } from './cuda.js';
import { atomicWrite } from './kernel-cache.js';
import { CudaDataType } from './native/api.js';
import { ShapeError, Tensor } from './tensor.js';

/** The tensors and scalars of one GEMM call; which extras are needed follows the artifact's epilogue. */
export interface GemmOperands {
  /** [M, K], K contiguous */
  a: Tensor;
  /** [N, K], K contiguous (a PyTorch Linear weight) */
  b: Tensor;
  /** [M, N] output; rows may be padded (row stride >= N) */
  c: Tensor;
  alpha?: number;
  rowScale?: Tensor;
  colScale?: Tensor;
  bias?: Tensor;
  residual?: Tensor;
  gate?: Tensor;
  gateRows?: number;
  outScale?: number;
  /** values of a generated epilogue's parameters, by name: tensors (pointers) and integers */
  extra?: Record<string, Tensor | number>;
}

interface Checked {
  M: number;
  N: number;
  K: number;
}

function check(art: GemmArtifact, op: GemmOperands): Checked {
  const e = art.spec.epilogue;
  const name = art.name;
  const mat = (t: Tensor | undefined, what: string, dtype: string): Tensor => {
    if (!(t instanceof Tensor)) throw new SfcError(`${name}: '${what}' must be a tensor`);
    if (t.rank !== 2) throw new ShapeError(`${name}: '${what}' must be 2-D, got shape [${t.shape.join(', ')}]`);
    if (t.dtype.name !== dtype) throw new SfcError(`${name}: '${what}' must be ${dtype}, got ${t.dtype.name}`);
    if (t.strides[1] !== 1) throw new ShapeError(`${name}: '${what}' needs contiguous rows (stride 1 in its last dim)`);
    return t;
  };
  const a = mat(op.a, 'a', art.spec.input);
  const b = mat(op.b, 'b', art.spec.input);
  const c = mat(op.c, 'c', art.spec.output);
  const [M, K] = a.shape as [number, number];
  const N = b.shape[0]!;
  if (b.shape[1] !== K)
    throw new ShapeError(`${name}: a is [${M}, ${K}] but b is [${b.shape.join(', ')}] (want [N, ${K}])`);
  if (M < 1 || N < 1 || K < 1) throw new ShapeError(`${name}: M, N and K must be positive, got ${M} x ${N} x ${K}`);
  if (c.shape[0] !== M || c.shape[1] !== N)
    throw new ShapeError(`${name}: c must be [${M}, ${N}], got [${c.shape.join(', ')}]`);
  const vec = (t: Tensor | undefined, what: string, n: number, dtype: string): void => {
    if (!(t instanceof Tensor)) throw new SfcError(`${name}: this epilogue needs '${what}'`);
    if (t.dtype.name !== dtype) throw new SfcError(`${name}: '${what}' must be ${dtype}, got ${t.dtype.name}`);
    if (t.numel !== n || !t.isContiguous())
      throw new ShapeError(`${name}: '${what}' must be a contiguous [${n}] tensor, got [${t.shape.join(', ')}]`);
  };
  const num = (v: number | undefined, what: string): void => {
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new SfcError(`${name}: this epilogue needs a finite '${what}'`);
  };
  for (const p of e.custom?.params ?? []) {
    const v = op.extra?.[p.name];
    if (p.type === 'ptr') {
      if (!(v instanceof Tensor)) throw new SfcError(`${name}: the epilogue needs tensor '${p.name}'`);
      if (v.device !== a.device)
        throw new SfcError(`${name}: '${p.name}' is on ${v.device.name}, a on ${a.device.name}`);
      if (!v.isContiguous()) throw new ShapeError(`${name}: epilogue tensor '${p.name}' must be contiguous`);
    } else if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new SfcError(`${name}: the epilogue needs a number for '${p.name}'`);
    }
  }
  if (e.alpha) num(op.alpha, 'alpha');
  if (e.outScale) num(op.outScale, 'outScale');
  if (e.rowScale) vec(op.rowScale, 'rowScale', M, 'f32');
  if (e.colScale) vec(op.colScale, 'colScale', N, 'f32');
  if (e.bias) vec(op.bias, 'bias', N, e.bias);
  const resDtype = e.gatedResidual?.residual ?? e.residual;
  if (resDtype) mat(op.residual, 'residual', resDtype);
  if (resDtype && (op.residual!.shape[0] !== M || op.residual!.shape[1] !== N))
    throw new ShapeError(`${name}: residual must be [${M}, ${N}], got [${op.residual!.shape.join(', ')}]`);
  if (e.gatedResidual) {
    const g = mat(op.gate, 'gate', 'f32');
    const gr = op.gateRows;
    if (typeof gr !== 'number' || !Number.isInteger(gr) || gr < 1)
      throw new SfcError(`${name}: gateRows must be a positive integer (tokens per gate row)`);
    if (g.shape[1] !== N || g.shape[0] < Math.ceil(M / gr))
      throw new ShapeError(`${name}: gate must be [>= ${Math.ceil(M / gr)}, ${N}], got [${g.shape.join(', ')}]`);
  }
  for (const [t, what] of [
    [a, 'a'],
    [b, 'b'],
    [c, 'c'],
  ] as const)
    if (t.device !== a.device)
      throw new SfcError(`${name}: '${what}' is on ${t.device.name}, a is on ${a.device.name}`);
  return { M, N, K };
}

const addressOf = (dev: CudaDevice, t: Tensor): number => dev.ptrOf(t.storage) + t.byteOffset;

// Per-launch host work is kept small: the compiled kernel is looked up once per (artifact, device)
// (CudaDevice.artifactKernel) and tensor maps are reused while the same view is passed again (a
// model's weights every step).
const maps = new WeakMap<CudaDevice, Map<string, Uint8Array>>();

function tensorMapOf(dev: CudaDevice, m: Parameters<CudaDevice['tensorMap2d']>[0]): Uint8Array {
  let cache = maps.get(dev);
  if (!cache) maps.set(dev, (cache = new Map()));
  const key = `${m.address}:${m.elementBytes}:${m.rows}:${m.cols}:${m.pitchBytes}:${m.boxRows}:${m.boxCols}:${m.swizzle}`;
  let map = cache.get(key);
  if (!map) {
    if (cache.size >= 4096) cache.clear(); // freed allocations are reused at the same addresses
    map = dev.tensorMap2d(m);
    cache.set(key, map);
  }
  return map;
}

/** Runs one GEMM instantiation on the tensors' device. */
export function runGemm(art: GemmArtifact, op: GemmOperands): void {
  const { M, N, K } = check(art, op);
  const dev = op.a.device;
  if (dev instanceof CudaDevice) return runCuda(dev, art, op, M, N, K);
  if (dev instanceof CpuDevice) return gemmCpu(art.spec.epilogue, op, M, N, K);
  throw new SfcError(`${art.name}: unsupported device ${dev.name}`);
}

function runCuda(dev: CudaDevice, art: GemmArtifact, op: GemmOperands, M: number, N: number, K: number): void {
  if (!archRunsOn(art.arch, dev.arch))
    throw new SfcError(`${art.name} is built for ${art.arch}; ${dev.name} is ${dev.arch}`, {
      hint: 'instantiate the GEMM for this GPU',
    });
  const eb = op.a.dtype.bytes as 1 | 2;
  if ((K * eb) % 16 !== 0)
    throw new ShapeError(
      `${art.name}: K * ${eb} bytes must be a multiple of 16 for ${art.arch === 'sm_90a' ? 'TMA' : 'cp.async'}, K = ${K}`,
    );
  const values: Record<string, number | Uint8Array> =
    art.arch === 'sm_90a' ? tensorMaps(dev, art, op, M, N, K) : mmaOperands(dev, art, op);
  Object.assign(values, { C: addressOf(dev, op.c), M, N, K, ldc: op.c.strides[0]! });
  epilogueValues(dev, art, op, values);
  const kernel = dev.artifactKernel(art);
  const args = art.params.map((p) => {
    const v = values[p.name];
    if (v === undefined) throw new SfcError(`${art.name}: no value for parameter '${p.name}'`);
    return v;
  });
  dev.launch(
    kernel,
    {
      grid: gemmGrid(art, M, N, dev.info.multiprocessors),
      block: [art.threads, 1, 1],
      sharedBytes: art.sharedBytes,
    },
    args,
  );
}

/** The sm_90a template's operands: TMA tensor maps of A and B. */
function tensorMaps(
  dev: CudaDevice,
  art: GemmArtifact,
  op: GemmOperands,
  M: number,
  N: number,
  K: number,
): Record<string, Uint8Array | number> {
  const eb = op.a.dtype.bytes as 1 | 2;
  const map = (t: Tensor, rows: number, boxRows: number) =>
    tensorMapOf(dev, {
      address: addressOf(dev, t),
      elementBytes: eb,
      rows,
      cols: K,
      pitchBytes: t.strides[0]! * eb,
      boxRows,
      boxCols: art.bk,
      swizzle: '128B',
    });
  const maps: Record<string, Uint8Array | number> = {
    // the 2-CTA ping-pong loads half of A's rows per CTA (multicast to both)
    tmA: map(op.a, M, art.spec.schedule === 'pingpong-cluster' ? art.bm / 2 : art.bm),
    tmB: map(op.b, N, art.spec.bn),
  };
  if (art.spec.schedule === 'cooperative') {
    // the cooperative epilogue stores boxes of 64 rows x 64 bytes of C (64-byte swizzle) with TMA, where
    // C's address and row pitch are multiples of 16 bytes; else its warps copy element by element
    // (tmaC = 0, any map in tmC's place)
    const cb = op.c.dtype.bytes as 1 | 2 | 4;
    const pitchBytes = op.c.strides[0]! * cb;
    const ok = addressOf(dev, op.c) % 16 === 0 && pitchBytes % 16 === 0;
    maps.tmC = ok
      ? tensorMapOf(dev, {
          address: addressOf(dev, op.c),
          elementBytes: cb,
          rows: M,
          cols: N,
          pitchBytes,
          boxRows: 64,
          boxCols: 64 / cb,
          swizzle: '64B',
        })
      : maps.tmA!;
    maps.tmaC = ok ? 1 : 0;
  }
  return maps;
}

/** The mma.sync template's operands (sm_80, sm_89): A and B by address and row pitch. */
function mmaOperands(dev: CudaDevice, art: GemmArtifact, op: GemmOperands): Record<string, number> {
  const eb = op.a.dtype.bytes;
  for (const [t, what] of [
    [op.a, 'a'],
    [op.b, 'b'],
  ] as const)
    if (addressOf(dev, t) % 16 !== 0 || (t.strides[0]! * eb) % 16 !== 0)
      throw new ShapeError(
        `${art.name}: '${what}' must start 16-byte aligned with a row pitch of a multiple of 16 bytes`,
      );
  return { A: addressOf(dev, op.a), B: addressOf(dev, op.b), lda: op.a.strides[0]!, ldb: op.b.strides[0]! };
}

/**
 * The candidates of a plan's GEMM step that run on `arch`: those built for it, else (an architecture
 * no template is built for, e.g. sm_86) those of the newest older one without arch-specific code.
 */
export function gemmCandidatesFor(arch: string, candidates: readonly GemmArtifact[]): GemmArtifact[] {
  const own = candidates.filter((c) => c.arch === arch);
  if (own.length) return own;
  const older = candidates.filter((c) => archRunsOn(c.arch, arch)).map((c) => c.arch);
  const best = older.sort().at(-1);
  return candidates.filter((c) => c.arch === best);
}

/** Adds the values of the epilogue's parameters (built-in or generated) to `values`. */
function epilogueValues(
  dev: CudaDevice,
  art: GemmArtifact,
  op: GemmOperands,
  values: Record<string, number | Uint8Array>,
): void {
  if (op.alpha !== undefined) values.alpha = op.alpha;
  if (op.outScale !== undefined) values.outScale = op.outScale;
  if (op.rowScale) values.rowScale = addressOf(dev, op.rowScale);
  if (op.colScale) values.colScale = addressOf(dev, op.colScale);
  if (op.bias) values.bias = addressOf(dev, op.bias);
  if (op.residual) {
    values.residual = addressOf(dev, op.residual);
    values.ldr = op.residual.strides[0]!;
  }
  for (const p of art.spec.epilogue.custom?.params ?? []) {
    const v = op.extra![p.name]!;
    values[p.name] = v instanceof Tensor ? addressOf(dev, v) : v;
  }
  if (op.gate) {
    values.gate = addressOf(dev, op.gate);
    values.ldg = op.gate.strides[0]!;
    values.gateRows = op.gateRows!;
  }
}

/**
 * The launch grid: one CTA per output tile, or for the persistent schedules (`persistent`, ping-pong,
 * cooperative) one CTA per SM, at most one per tile, each looping over tiles blockIdx.x + i * gridDim.x; the
 * 2-CTA-cluster ping-pong takes pairs of N-adjacent tiles, so an even count, one pair per cluster.
 */
export function gemmGrid(art: GemmArtifact, M: number, N: number, sms: number): [number, number, number] {
  const tilesM = Math.ceil(M / art.bm);
  const tilesN = Math.ceil(N / art.spec.bn);
  if (art.spec.schedule === 'pingpong-cluster')
    return [2 * Math.max(1, Math.min(Math.floor(sms / 2), tilesM * Math.ceil(tilesN / 2))), 1, 1];
  if (art.spec.persistent || art.spec.schedule === 'pingpong' || art.spec.schedule === 'cooperative')
    return [Math.max(1, Math.min(sms, tilesM * tilesN)), 1, 1];
  return [tilesM, tilesN, 1];
}

const gelu = (y: number) => 0.5 * y * (1 + Math.tanh(0.7978845608028654 * (y + 0.044715 * y * y * y)));

/** The JS twin: float64 dot products, then the epilogue in float32 steps, then the output rounding. */
export function gemmCpu(e: GemmEpilogue, op: GemmOperands, M: number, N: number, K: number): void {
  if (e.custom)
    throw new SfcError(
      'a generated GEMM epilogue is CUDA code; on the CPU, run the unfused matmul and group (plans do)',
    );
  const rows = (t: Tensor): Float64Array => {
    const v = decode(t.dtype, t.contiguous().toRaw());
    return Float64Array.from(v as ArrayLike<number>);
  };
  const f = Math.fround;
  const a = rows(op.a);
  const b = rows(op.b);
  const vecOf = (t: Tensor | undefined) => (t ? rows(t) : undefined);
  // only what the epilogue uses: extra operands passed along are ignored, as on the GPU
  const rowScale = e.rowScale ? vecOf(op.rowScale) : undefined;
  const colScale = e.colScale ? vecOf(op.colScale) : undefined;
  const bias = e.bias ? vecOf(op.bias) : undefined;
  const residual = e.residual || e.gatedResidual ? vecOf(op.residual) : undefined;
  const gate = e.gatedResidual ? vecOf(op.gate) : undefined;
  const gateN = op.gate?.shape[1] ?? 0;
  const out = new Float32Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k]! * b[j * K + k]!;
      let y = f(s);
      if (e.alpha) y = f(y * f(op.alpha!));
      if (rowScale) y = f(y * rowScale[i]!);
      if (colScale) y = f(y * colScale[j]!);
      if (bias) y = f(y + bias[j]!);
      if (e.activation === 'gelu_tanh') y = f(gelu(y));
      if (e.activation === 'silu') y = f(y / (1 + Math.exp(-y)));
      if (e.activation === 'relu') y = Math.max(y, 0);
      if (e.gatedResidual) y = f(residual![i * N + j]! + f(gate![Math.floor(i / op.gateRows!) * gateN + j]! * y));
      if (e.residual) y = f(residual![i * N + j]! + y);
      if (e.outScale) y = f(y * f(op.outScale!));
      out[i * N + j] = y;
    }
  const c = op.c;
  const raw = rawArray(c.dtype, new ArrayBuffer(M * N * c.dtype.bytes), 0, M * N);
  encodeInto(c.dtype, out, raw);
  if (c.isContiguous()) {
    c.device.write(c.storage, c.byteOffset, new Uint8Array(raw.buffer));
    return;
  }
  const rowBytes = N * c.dtype.bytes;
  for (let i = 0; i < M; i++)
    c.device.write(
      c.storage,
      c.byteOffset + i * c.strides[0]! * c.dtype.bytes,
      new Uint8Array(raw.buffer, i * rowBytes, rowBytes),
    );
}

// ---- autotuning -----------------------------------------------------------------------------------

/** The key a tuned choice is stored under. */
export function gemmTuneKey(
  arch: string,
  M: number,
  N: number,
  K: number,
  candidates: readonly GemmArtifact[],
): string {
  const s = candidates[0]!.spec;
  const epi = JSON.stringify(s.epilogue);
  // the candidate set and their sources too: a choice made among fewer (older) candidates, or among
  // kernels whose code has changed since under the same names, is not reused
  let h = 0x811c9dc5;
  for (const c of candidates)
    for (const ch of `${c.name}\n${c.source},`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return `${arch}|${s.input}->${s.output}|${M}x${N}x${K}|${epi}|${h.toString(16)}`;
}

export interface TuneResult {
  chosen: GemmArtifact;
  /** median milliseconds per candidate name (empty when the choice came from the file) */
  timings: Record<string, number>;
  fromCache: boolean;
}

/**
 * Picks the fastest of `candidates` (same input/output/epilogue, different tiles) for these
 * operands, timing each with CUDA events (median of `reps` after warm-up), and remembers the choice
 * in `gemm-tuning.json` of the device's kernel cache directory. The output is overwritten while timing.
 */
export function tuneGemm(
  dev: CudaDevice,
  candidates: readonly GemmArtifact[],
  op: GemmOperands,
  options: { reps?: number; cacheDir?: string; retune?: boolean } = {},
): TuneResult {
  if (candidates.length === 0) throw new SfcError('tuneGemm needs at least one candidate');
  const { M, N, K } = check(candidates[0]!, op);
  const dir = options.cacheDir ?? dev.cache.dir;
  const file = join(dir, 'gemm-tuning.json');
  const key = gemmTuneKey(dev.arch, M, N, K, candidates);
  let table: Record<string, string> = {};
  if (existsSync(file)) {
    try {
      table = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
    } catch {
      table = {}; // a corrupt tuning file is rebuilt, never trusted
    }
  }
  const known = options.retune ? undefined : candidates.find((c) => c.name === table[key]);
  if (known) return { chosen: known, timings: {}, fromCache: true };
  const reps = options.reps ?? 20;
  const timings: Record<string, number> = {};
  for (const c of candidates) for (let i = 0; i < 3; i++) runGemm(c, op);
  // round robin: each round times every candidate once (10 launches, so the host's launch work
  // overlaps the GPU's and is not counted), so clock changes under sustained load (power and
  // temperature) reach all candidates alike instead of favouring the first ones timed
  const ts: number[][] = candidates.map(() => []);
  for (let i = 0; i < reps; i++)
    candidates.forEach((c, j) =>
      ts[j]!.push(
        dev.time(() => {
          for (let r = 0; r < 10; r++) runGemm(c, op);
        }) / 10,
      ),
    );
  candidates.forEach((c, j) => {
    const sorted = ts[j]!.sort((x, y) => x - y);
    timings[c.name] = sorted[Math.floor(sorted.length / 2)]!;
  });
  const chosen = candidates.reduce((best, c) => (timings[c.name]! < timings[best.name]! ? c : best));
  table[key] = chosen.name;
  mkdirSync(dir, { recursive: true });
  atomicWrite(file, JSON.stringify(table, null, 1));
  return { chosen, timings, fromCache: false };
}

/** Operands of an implicit-GEMM convolution (a `conv` instantiation of the GEMM template). */
export interface ConvGemmOperands {
  /** zero-padded channels-last input [rows, C] (bf16); reads past its rows are zeros */
  buf: Tensor;
  /** weights [N, taps * C] (bf16), K ordered (tap, channel), taps x fastest, then y, then t */
  w: Tensor;
  /** output [M, N] (f32), row r = the convolution at buffer row r (before the taps' shifts) */
  out: Tensor;
  /** tap extents and the row offsets of one step in y and in t */
  taps: { x: number; y: number; t: number; py: number; pt: number };
}

/** Runs a convolution GEMM: out[r] = sum over taps and channels of buf[r + offset(tap)] . w. */
export function runConvGemm(art: GemmArtifact, op: ConvGemmOperands): void {
  const dev = op.buf.device;
  if (!(dev instanceof CudaDevice) || dev.arch !== art.arch || !art.spec.conv)
    throw new SfcError(`${art.name} is an sm_90a convolution GEMM; ${dev.name} cannot run it`);
  const [rows, C] = op.buf.shape as [number, number];
  const [N, K] = op.w.shape as [number, number];
  const [M, No] = op.out.shape as [number, number];
  const taps = op.taps.x * op.taps.y * op.taps.t;
  if (C % art.bk !== 0)
    throw new ShapeError(`${art.name}: the input's channels (${C}) must be a multiple of ${art.bk}`);
  if (K !== taps * C)
    throw new ShapeError(`${art.name}: weights [${N}, ${K}] do not match ${taps} taps of ${C} channels`);
  if (No !== N || op.out.dtype.name !== 'f32') throw new ShapeError(`${art.name}: the output must be f32 [M, ${N}]`);
  for (const [t, what] of [
    [op.buf, 'input'],
    [op.w, 'weights'],
    [op.out, 'output'],
  ] as const)
    if (!t.isContiguous()) throw new ShapeError(`${art.name}: the ${what} must be contiguous`);
  const map = (t: Tensor, r: number, cols: number, boxRows: number) =>
    tensorMapOf(dev, {
      address: addressOf(dev, t),
      elementBytes: 2,
      rows: r,
      cols,
      pitchBytes: cols * 2,
      boxRows,
      boxCols: art.bk,
      swizzle: '128B',
    });
  const values: Record<string, number | Uint8Array> = {
    tmA: map(op.buf, rows, C, art.bm),
    tmB: map(op.w, N, K, art.spec.bn),
    C: addressOf(dev, op.out),
    M,
    N,
    K,
    ldc: N,
    convC: C,
    convTx: op.taps.x,
    convTy: op.taps.y,
    convPy: op.taps.py,
    convPt: op.taps.pt,
  };
  dev.launch(
    dev.artifactKernel(art),
    {
      grid: [Math.ceil(M / art.bm), Math.ceil(N / art.spec.bn), 1],
      block: [art.threads, 1, 1],
      sharedBytes: art.sharedBytes,
    },
    art.params.map((p) => {
      const v = values[p.name];
      if (v === undefined) throw new SfcError(`${art.name}: no value for parameter '${p.name}'`);
      return v;
    }),
  );
}

/** D = A . B^T with cuBLASLt (a Linear: A [M, K], B [N, K]; bf16 output; FP8 inputs take `unitScale`, an f32 1 of
 * its own 16-byte-aligned allocation): the baseline the GEMM tests and benchmarks time against. */
export function cublasGemm(dev: CudaDevice, a: Tensor, b: Tensor, d: Tensor, unitScale?: Tensor): void {
  const [M, K] = a.shape as [number, number];
  const N = b.shape[0]!;
  const ptr = (t: Tensor) => dev.ptrOf(t.storage) + t.byteOffset;
  const t = CudaDataType[a.dtype.name as 'bf16' | 'f16' | 'e4m3'];
  dev.gemm({
    m: M,
    n: N,
    k: K,
    a: ptr(a),
    b: ptr(b),
    c: ptr(d),
    d: ptr(d),
    typeA: t,
    typeB: t,
    typeC: CudaDataType.bf16,
    typeD: CudaDataType.bf16,
    lda: K,
    ldb: K,
    ldc: N,
    ldd: N,
    transA: false,
    transB: true,
    alpha: 1,
    beta: 0,
    aScale: unitScale ? ptr(unitScale) : 0,
    bScale: unitScale ? ptr(unitScale) : 0,
  });
}
