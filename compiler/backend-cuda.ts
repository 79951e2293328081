// The CUDA backend. One program instance is one thread block of `warps * 32` threads. A tile of N
// elements is spread over the threads in chunks of V contiguous elements (thread t holds elements
// [t*V, t*V+V), then [(T+t)*V, ...), ...), so a chunk is one 16-byte access when the data allows.
// Scalars are uniform: every thread computes them. Values are emitted one of three ways:
//  - scalars: a C variable;
//  - lazy tiles (index arithmetic, and float math used once): no storage, re-expressed at each use
//    at the element being computed, which is how elementwise chains fuse into their consumer;
//  - materialised tiles (loads, reductions, shared values): a register array in their own layout.
// A materialised tile used at another shape (broadcast) is exchanged through shared memory. Full
// reductions use warp shuffles plus one shared slot per warp. Loads and stores whose offsets are
// affine in the tile index with unit stride along the last dim, whose masks are constant over a
// chunk, and whose base offsets are provably multiples of the chunk size become 16-byte accesses;
// the runtime launches the variant specialised for aligned pointers and multiple-of-16 integers
// when the arguments allow, else the generic one.
import type { CudaVariant } from '../dsl/artifact.js';
import { RNG_CUDA } from './rng.js';
import { CUDA_PRELUDE } from './cuda-prelude.js';
import { binaryRules, unaryRules } from './ops.js';
import { isFloat, isInt, numel, walk, type ElemType, type KernelIR, type Stmt, type Value } from './ir.js';

export const cType: Record<ElemType, string> = {
  f32: 'float',
  f16: 'float',
  bf16: 'float',
  e4m3: 'float',
  e5m2: 'float',
  i32: 'int',
  i64: 'long long',
  u8: 'int',
  bool: 'bool',
};
export const storageType: Record<ElemType, string> = {
  f32: 'float',
  f16: 'sfc_f16',
  bf16: 'sfc_bf16',
  e4m3: 'sfc_e4m3',
  e5m2: 'sfc_e5m2',
  i32: 'int',
  i64: 'long long',
  u8: 'unsigned char',
  bool: 'unsigned char',
};
const elemBytes: Record<ElemType, number> = {
  f32: 4,
  f16: 2,
  bf16: 2,
  e4m3: 1,
  e5m2: 1,
  i32: 4,
  i64: 8,
  u8: 1,
  bool: 1,
};

const halfOrFp8 = new Set<ElemType>(['bf16', 'f16', 'e4m3', 'e5m2']);

/** A stored element (storageType) as the register value (cType). */
export function fromStorage(d: ElemType, x: string): string {
  if (halfOrFp8.has(d)) return `sfc_from_${d}(${x})`;
  return d === 'u8' ? `(int)(${x})` : d === 'bool' ? `(${x} != 0)` : x;
}
/**
 * `x` without an outer `sfc_round_<d>(...)`: storing as d rounds to d anyway, and rounding is
 * idempotent (to_d(round_d(x)) == to_d(x), NaN and saturation included), so a value cast to the
 * stored dtype is converted once, not converted, decoded and converted again.
 */
function unrounded(d: ElemType, x: string): string {
  const open = `sfc_round_${d}(`;
  if (!x.startsWith(open) || !x.endsWith(')')) return x;
  let depth = 0;
  for (let i = open.length - 1; i < x.length; i++) {
    if (x[i] === '(') depth++;
    else if (x[i] === ')' && --depth === 0) return i === x.length - 1 ? x.slice(open.length, -1) : x;
  }
  return x;
}

/** A register value as a stored element. */
function toStorage(d: ElemType, x: string): string {
  if (halfOrFp8.has(d)) return `sfc_to_${d}(${unrounded(d, x)})`;
  return d === 'u8' || d === 'bool' ? `(unsigned char)(${x})` : x;
}

/** Two register values as two adjacent stored elements, one conversion instruction (half and FP8 types). */
function toStoragePair(d: ElemType, lo: string, hi: string): string {
  return `sfc_to_${d}x2(${unrounded(d, lo)}, ${unrounded(d, hi)})`;
}
/** Rounds a computed float to the precision of dtype d (values of half/FP8 types are kept rounded). */
export function roundTo(d: ElemType, x: string): string {
  return halfOrFp8.has(d) ? `sfc_round_${d}(${x})` : x;
}

/** A register value of dtype `from` converted to dtype `to`, as DSL casts do on the GPU. */
export function castExpr(x: string, from: ElemType, to: ElemType): string {
  if (from === to) return x;
  if (to === 'bool') return `(${x} != 0)`;
  if (isInt(to)) {
    if (isFloat(from))
      return to === 'i64' ? `(long long)(${x})` : to === 'u8' ? `min(max(sfc_f2i(${x}), 0), 255)` : `sfc_f2i(${x})`;
    return to === 'i64' ? `(long long)(${x})` : to === 'u8' ? `((int)(${x}) & 255)` : `(int)(${x})`;
  }
  return roundTo(to, `(float)(${x})`);
}

/**
 * The CUDA expression of an element-wise op over its operands' expressions (`from` = the first
 * operand's dtype, `d` = the result's); undefined for other ops. Shared by the kernel backend and the
 * layer compiler's GEMM epilogues, so both round and convert alike.
 */
export function elementwiseExpr(
  v: { op: string; fn?: string },
  a: (i: number) => string,
  from: ElemType,
  d: ElemType,
): string | undefined {
  switch (v.op) {
    case 'cast':
      return castExpr(a(0), from, d);
    case 'binary':
      return roundTo(d, binaryRules[v.fn as keyof typeof binaryRules].cuda(a(0), a(1), from));
    case 'unary':
      return roundTo(d, unaryRules[v.fn as keyof typeof unaryRules].cuda(a(0), from));
    case 'fma':
      return `fmaf(${a(0)}, ${a(1)}, ${a(2)})`;
    case 'where':
      return `(${a(0)} ? ${a(1)} : ${a(2)})`;
    default:
      return undefined;
  }
}

export function lit(v: number, d: ElemType): string {
  if (d === 'bool') return v ? 'true' : 'false';
  if (isInt(d)) return d === 'i64' ? `${v}LL` : String(v | 0) === String(v) ? String(v) : `${v}`;
  if (Number.isNaN(v)) return '__int_as_float(0x7fc00000)';
  if (v === Infinity) return '__int_as_float(0x7f800000)';
  if (v === -Infinity) return '__int_as_float(0xff800000)';
  const s = Object.is(v, -0) ? '-0.0' : String(v);
  return /[.eE]/.test(s) ? `${s}f` : `${s}.0f`;
}

interface Layout {
  shape: number[];
  n: number;
  /** contiguous elements per chunk */
  v: number;
  /** registers per thread */
  regs: number;
  /** every register maps to a real element (no tail) */
  full: boolean;
  /**
   * replicated: a tile smaller than one row of chunks (T*v elements) whose size divides it; every
   * thread holds v elements, thread t those from (t*v) mod n, so each element has several holders
   * (stores and reductions use the first holder only). Chosen for a tile broadcast into a larger one
   * whose trailing dims it is: the larger tile's register r then holds an element whose broadcast
   * source is this tile's register r mod v in the same thread, with no shared-memory exchange.
   */
  rep?: boolean;
}

export interface CudaOptions {
  /** assume 16-byte-aligned pointers (for the accesses that are vectorised) */
  aligned: boolean;
  /** also assume multiple-of-16 integer parameters where that helps */
  intFacts: boolean;
}

/**
 * An integer known up to divisibility: its exact value when constant, else the largest power of two
 * (capped at 2^20) known to divide it.
 */
interface Term {
  exact: number | null;
  div: number;
}
/** Affine form of an integer tile expression: base + sum(coef[d] * idx[d]) over the tile's dims. */
interface Affine {
  base: Term;
  coef: Term[];
}

const CAP = 1 << 20;
const pow2Of = (x: number): number =>
  x === 0 ? CAP : Math.min(CAP, Math.abs(Math.trunc(x)) & -Math.abs(Math.trunc(x))) || 1;
const exactTerm = (x: number): Term => ({ exact: x, div: pow2Of(x) });
const addTerms = (a: Term, b: Term, sign = 1): Term => ({
  exact: a.exact !== null && b.exact !== null ? a.exact + sign * b.exact : null,
  div: Math.min(a.div, b.div),
});
const scaleTerm = (a: Term, k: Term): Term => {
  if (a.exact === 0 || k.exact === 0) return exactTerm(0);
  return { exact: a.exact !== null && k.exact !== null ? a.exact * k.exact : null, div: Math.min(CAP, a.div * k.div) };
};

class CudaEmitter {
  private readonly lines: string[] = [];
  private ind = '  ';
  private readonly T: number;
  private readonly layouts = new Map<string, Layout>();
  private readonly uses = new Map<number, number>();
  private readonly lazy = new Set<number>();
  private smemBytes = 0;
  private readonly storedParams = new Set<number>();
  /** parameters whose alignment / divisibility the aligned variant relied on */
  private readonly facts = new Set<number>();
  /** shapes whose values go through swapPairs (their chunks must hold both elements of a pair) */
  private readonly pairShapes = new Set<string>();
  /**
   * What shared memory some thread may still be reading at this point of the emitted code, with no
   * barrier since: nothing ('clean', the kernel's start), only the block-reduction scratch area 0 or
   * 1 (right after a reduction into it), or anything ('unknown': exchanges, axis reductions, and the
   * start of a loop body, which may follow its own end). Lets a reduction skip its leading barrier.
   */
  private smemState: 'clean' | 'unknown' | 0 | 1 = 'clean';

  constructor(
    private readonly k: KernelIR,
    private readonly opts: CudaOptions,
  ) {
    this.T = k.warps * 32;
  }

  emit(): CudaVariant {
    this.analyse();
    const k = this.k;
    const params: string[] = [];
    const argTypes: CudaVariant['argTypes'] = [];
    k.params.forEach((p, i) => {
      if (p.kind === 'const') return;
      if (p.kind === 'ptr') {
        const c = this.storedParams.has(i) ? '' : 'const ';
        params.push(`${c}${storageType[p.dtype]}* p${i}`);
        argTypes.push('ptr');
      } else {
        const t = p.dtype === 'i64' ? 'long long' : isInt(p.dtype) || p.dtype === 'bool' ? 'int' : 'float';
        params.push(`${t} p${i}`);
        argTypes.push(t === 'long long' ? 'i64' : t === 'int' ? 'i32' : 'f32');
      }
    });
    const body: string[] = [];
    const saved = this.lines;
    this.block(k.body);
    body.push(...saved);
    const entry = `${k.name}__${this.opts.aligned ? (this.opts.intFacts ? 'aligned' : 'aligned_ptr') : 'generic'}`;
    const src = [
      `// ${k.name} from ${k.file}:${k.span.line}, generated by sfc`,
      CUDA_PRELUDE,
      RNG_CUDA,
      KERNEL_MARK,
      `extern "C" __global__ void __launch_bounds__(${this.T}) ${entry}(${params.join(', ')}) {`,
      '  extern __shared__ __align__(16) unsigned char sfc_smem[];',
      '  const int tid = threadIdx.x;',
      ...body,
      '}',
      '',
    ].join('\n');
    // only the facts a vectorisation decision used: a launch with, say, 1560 tokens per frame
    // (not a multiple of 16) still gets the aligned variant when that number never mattered
    const assumes: Record<string, boolean> = {};
    for (const i of [...this.facts].sort((a, b) => a - b)) assumes[k.params[i]!.name] = true;
    return { assumes, source: src, entry, threads: this.T, sharedBytes: this.smemBytes, argTypes };
  }

  // ---- analysis ------------------------------------------------------------------------------
  private analyse(): void {
    const memBytes = new Map<string, number>();
    const note = (v: Value) => v.args.forEach((a) => this.uses.set(a.id, (this.uses.get(a.id) ?? 0) + 1));
    const shapes: number[][] = [];
    const addShape = (s: number[]) => s.length && shapes.push(s);
    walk(this.k.body, (s) => {
      if (s.kind === 'def') {
        note(s.value);
        addShape(s.value.type.shape);
        if (s.value.op === 'swapPairs') this.pairShapes.add(s.value.type.shape.join(','));
        if (s.value.op === 'load') {
          const key = s.value.type.shape.join(',');
          memBytes.set(key, Math.min(memBytes.get(key) ?? 16, elemBytes[s.value.type.dtype]));
        }
      } else if (s.kind === 'store') {
        this.storedParams.add(s.param);
        [s.offsets, s.value, s.mask].forEach((v) => v && this.uses.set(v.id, (this.uses.get(v.id) ?? 0) + 1));
        addShape(s.offsets.type.shape);
        const key = s.offsets.type.shape.join(',');
        memBytes.set(key, Math.min(memBytes.get(key) ?? 16, elemBytes[s.value.type.dtype]));
      } else if (s.kind === 'var') {
        this.uses.set(s.init.id, (this.uses.get(s.init.id) ?? 0) + 2);
        addShape(s.type.shape);
      } else if (s.kind === 'assign') {
        this.uses.set(s.value.id, (this.uses.get(s.value.id) ?? 0) + 2);
      } else if (s.kind === 'for') {
        [s.start, s.end, s.step].forEach((v) => this.uses.set(v.id, 2));
      } else if (s.kind === 'if') this.uses.set(s.cond.id, 2);
    });
    for (const shape of shapes) {
      const key = shape.join(',');
      if (this.layouts.has(key)) continue;
      const n = numel(shape);
      const last = shape[shape.length - 1]!;
      let v = Math.min(8, 16 / (memBytes.get(key) ?? 4));
      while (v > 1 && (last % v !== 0 || n < v)) v /= 2;
      if (v < 2 && this.pairShapes.has(key)) v = 2; // swapPairs reads the neighbouring register
      const chunks = Math.ceil(n / (this.T * v));
      this.layouts.set(key, { shape, n, v, regs: chunks * v, full: n % (this.T * v) === 0 });
    }
    this.registerBroadcasts();
    // lazy: pure element-wise/index values whose tile operands are lazy or scalar, and that are
    // cheap to recompute (integer/bool) or used once
    walk(this.k.body, (s) => {
      if (s.kind !== 'def') return;
      const v = s.value;
      if (!v.type.shape.length) return;
      const pure = [
        'arange',
        'binary',
        'unary',
        'cast',
        'where',
        'fma',
        'broadcast',
        'expandDims',
        'reshape',
        'full',
      ].includes(v.op);
      const argsOk = v.args.every(
        (a) =>
          !a.type.shape.length ||
          this.lazy.has(a.id) ||
          (v.op !== 'reshape' && this.sameShape(a, v)) ||
          (v.op === 'expandDims'
            ? this.sameLayout(a.type.shape, v.type.shape)
            : this.regCompat(a.type.shape, v.type.shape)),
      );
      const cheap = !isFloat(v.type.dtype) || (this.uses.get(v.id) ?? 0) <= 1 || v.op === 'swapPairs';
      if (pure && argsOk && cheap && v.op !== 'reshape') this.lazy.add(v.id);
    });
  }

  private sameShape(a: Value, b: Value): boolean {
    return a.type.shape.join(',') === b.type.shape.join(',');
  }

  /**
   * Gives tiles that are broadcast into larger ones (as their trailing dims: a row of weights
   * against a [rows, D] tile, one head's rotary table against [heads, 128]) the larger tile's chunk
   * size and, when they are smaller than one row of chunks, a replicated layout, so that the
   * broadcast reads a register of the same thread (see regCompat) instead of shared memory.
   */
  private registerBroadcasts(): void {
    const pairs: [readonly number[], readonly number[]][] = [];
    const pair = (small: readonly number[], big: readonly number[]) => {
      if (small.length && big.length && small.join(',') !== big.join(',')) pairs.push([small, big]);
    };
    walk(this.k.body, (s) => {
      if (s.kind === 'def') {
        const v = s.value;
        if (v.op === 'reduce' || v.op === 'reshape' || v.op === 'expandDims') return;
        v.args.forEach((a) => pair(a.type.shape, v.type.shape));
      } else if (s.kind === 'store') {
        pair(s.value.type.shape, s.offsets.type.shape);
        if (s.mask) pair(s.mask.type.shape, s.offsets.type.shape);
      }
    });
    pairs.sort((a, b) => numel(b[1]) - numel(a[1]));
    const pinned = new Set<string>();
    for (const [small, big] of pairs) {
      const key = small.join(',');
      const core = stripLeadingOnes(small);
      if (pinned.has(key) || !isSuffix(core, big) || numel(core) >= numel(big)) continue;
      const Lb = this.layout(big);
      const v = Lb.v;
      const n = numel(core);
      const span = this.T * v;
      if (v < 2 && this.pairShapes.has(key)) continue;
      let L: Omit<Layout, 'shape'>;
      if (n < span && span % n === 0) L = { n, v, regs: v, full: true, rep: true };
      else if (n % span === 0) L = { n, v, regs: n / this.T, full: true };
      else continue;
      // the same elements under leading 1s (a row before expandDims) share the layout, so that
      // expandDims stays a register-for-register view
      for (const [k2, L2] of this.layouts) {
        if (pinned.has(k2) || stripLeadingOnes(L2.shape).join(',') !== core.join(',')) continue;
        if (v < 2 && this.pairShapes.has(k2)) continue;
        this.layouts.set(k2, { ...L, shape: L2.shape });
        pinned.add(k2);
      }
    }
  }

  /**
   * True when element-wise use of a `small` tile at the `big` shape (its trailing dims) finds each
   * element in a register of the same thread: register r of big's layout holds an element whose
   * source is register r mod regs(small).
   */
  private regCompat(small: readonly number[], big: readonly number[]): boolean {
    if (!small.length || small.join(',') === big.join(',')) return false;
    const core = stripLeadingOnes(small);
    if (!isSuffix(core, big)) return false;
    const Ls = this.layouts.get(small.join(','));
    const Lb = this.layouts.get(big.join(','));
    if (!Ls || !Lb || Ls.v !== Lb.v) return false;
    const span = this.T * Lb.v;
    return Ls.rep ? span % Ls.n === 0 : Ls.full && Ls.n % span === 0;
  }

  /** Shapes with the same element order and the same layout (they differ by leading 1s). */
  private sameLayout(a: readonly number[], b: readonly number[]): boolean {
    if (stripLeadingOnes(a).join(',') !== stripLeadingOnes(b).join(',')) return false;
    const La = this.layouts.get(a.join(','));
    const Lb = this.layouts.get(b.join(','));
    return !!La && !!Lb && La.v === Lb.v && !!La.rep === !!Lb.rep && La.regs === Lb.regs;
  }

  /**
   * True when evaluating `v` at an element of shape `at` (in a register context) reads every
   * materialised tile it depends on from a register of the same thread.
   */
  private regLocal(v: Value, at: readonly number[]): boolean {
    const vs = v.type.shape;
    if (!vs.length) return true;
    const same = vs.join(',') === at.join(',');
    if (!same && !this.regCompat(vs, at)) return false;
    if (!this.lazy.has(v.id)) return true;
    return v.args.every((a) =>
      v.op === 'expandDims'
        ? !a.type.shape.length || (this.sameLayout(a.type.shape, vs) && this.regLocal(a, a.type.shape))
        : this.regLocal(a, vs),
    );
  }

  /** `tid < holders`: the first holder of each element of a replicated layout ('' otherwise). */
  private primary(L: Layout): string {
    return L.rep ? `tid < ${L.n / L.v}` : '';
  }

  /** Flat index of the first element of chunk `c` (of `lanes` accesses per chunk of L.v). */
  private chunkStart(L: Layout, c: string, lanes: number, vec: number): string {
    if (L.rep) return `(tid * ${L.v}) % ${L.n} + (${c}) * ${vec}`;
    return `(${c} / ${lanes}) * ${this.T * L.v} + tid * ${L.v} + (${c} % ${lanes}) * ${vec}`;
  }

  private layout(shape: readonly number[]): Layout {
    return this.layouts.get(shape.join(','))!;
  }

  // ---- emission helpers ----------------------------------------------------------------------
  private line(s: string): void {
    this.lines.push(this.ind + s);
  }

  /** `for r` over a layout's registers, with `e` (flat element index) and the per-dim indices. */
  /**
   * `for r` over a layout's registers. Registers past the end of a tile (when its size is not a
   * multiple of the block's chunks) are skipped: their element index is out of range, so evaluating
   * anything there could read shared or global memory out of bounds. Their contents stay undefined
   * and nothing reads them (stores, reductions and exchanges are guarded the same way).
   */
  private regLoop(L: Layout, body: (ctx: ElemCtx) => string[]): void {
    const T = this.T;
    this.line(`#pragma unroll`);
    this.line(`for (int r = 0; r < ${L.regs}; ++r) {`);
    if (L.rep) this.line(`  const int e = (tid * ${L.v}) % ${L.n} + r;`);
    else this.line(`  const int e = (r / ${L.v}) * ${T * L.v} + tid * ${L.v} + (r % ${L.v});`);
    const ctx: ElemCtx = { shape: L.shape, idx: dimIndices(L.shape, 'e'), e: 'e', reg: 'r' };
    const inner = body(ctx);
    if (!L.full) this.line(`  if (e < ${L.n}) {`);
    for (const l of inner) this.line(`  ${!L.full ? '  ' : ''}${l}`);
    if (!L.full) this.line('  }');
    this.line('}');
  }

  /** Scalar C expression of a shape-[] value. */
  private scalar(v: Value): string {
    if (v.op === 'const') return lit(v.value, v.type.dtype);
    if (v.op === 'param') {
      const p = this.k.params[v.index]!;
      return p.kind === 'const' ? lit(p.value!, 'i32') : `p${v.index}`;
    }
    return `v${v.id}`;
  }

  /**
   * C expression of `v` at the element described by ctx (v broadcasts to ctx.shape). Materialised
   * tiles of another shape are read from their shared-memory copy (see prepare()).
   */
  private at(v: Value, ctx: ElemCtx): string {
    const vs = v.type.shape;
    if (!vs.length) return this.scalar(v);
    const idx = alignIndices(vs, ctx);
    if (!this.lazy.has(v.id)) {
      const exch = this.exchange.get(v.id);
      if (exch !== undefined) return `((${cType[v.type.dtype]}*)(sfc_smem + ${exch}))[${flatIndex(vs, idx)}]`;
      if (vs.join(',') === ctx.shape.join(',') && ctx.reg) return `v${v.id}[${ctx.reg}]`;
      if (ctx.reg && this.regCompat(vs, ctx.shape)) return `v${v.id}[(${ctx.reg}) % ${this.layout(vs).regs}]`;
      throw new Error(`internal: tile %${v.id} used at another shape without an exchange`);
    }
    const reg =
      vs.join(',') === ctx.shape.join(',')
        ? ctx.reg
        : ctx.reg && this.regCompat(vs, ctx.shape)
          ? `((${ctx.reg}) % ${this.layout(vs).regs})`
          : null;
    const sub: ElemCtx = { shape: vs, idx, e: null, reg };
    const a = (j: number) => this.at(v.args[j]!, sub);
    const d = v.type.dtype;
    switch (v.op) {
      case 'arange':
        return `(${v.start} + ${idx[0]})`;
      case 'swapPairs': {
        // the partner element e ^ 1: the neighbouring register when x is held in this layout
        const x = v.args[0]!;
        if (!this.lazy.has(x.id)) {
          const exch = this.exchange.get(x.id);
          if (exch !== undefined) return `((${cType[x.type.dtype]}*)(sfc_smem + ${exch}))[${flatIndex(vs, idx)} ^ 1]`;
          if (!sub.reg) throw new Error(`internal: swapPairs of %${x.id} outside its layout`);
          return `v${x.id}[(${sub.reg}) ^ 1]`;
        }
        const e2 = `(${flatIndex(vs, idx)} ^ 1)`;
        return this.at(x, { shape: vs, idx: dimIndices(vs, e2), e: e2, reg: sub.reg ? `((${sub.reg}) ^ 1)` : null });
      }
      case 'full':
        return a(0);
      case 'broadcast':
        return a(0);
      case 'expandDims':
        return this.at(v.args[0]!, {
          shape: v.args[0]!.type.shape,
          idx: idx.filter((_, i) => i !== v.axis),
          e: null,
          reg: sub.reg && this.sameLayout(v.args[0]!.type.shape, vs) ? sub.reg : null,
        });
      case 'cast':
      case 'binary':
      case 'unary':
      case 'fma':
      case 'where':
        return elementwiseExpr(v, a, v.args[0]!.type.dtype, d)!;
      default:
        throw new Error(`internal: ${v.op} cannot be lazy`);
    }
  }

  /** materialised tiles currently readable from shared memory: value id -> byte offset */
  private exchange = new Map<number, number>();

  /**
   * Values (materialised, non-scalar) that `roots` read at a shape other than their own, except
   * those each element finds in a register of its own thread (regCompat); `strict` roots get every
   * such value.
   */
  private exchangesFor(roots: Value[], shape: readonly number[], strict: Value[] = []): Value[] {
    const out = new Map<number, Value>();
    let inRegs = true;
    const visit = (v: Value, atShape: readonly number[]) => {
      if (!v.type.shape.length) return;
      if (!this.lazy.has(v.id)) {
        if (v.type.shape.join(',') !== atShape.join(',') && !(inRegs && this.regCompat(v.type.shape, atShape)))
          out.set(v.id, v);
        return;
      }
      v.args.forEach((a) => visit(a, v.op === 'expandDims' ? v.args[0]!.type.shape : v.type.shape));
      // a lazy value evaluated at another shape is re-expressed there, so its materialised
      // operands must be readable at arbitrary indices unless shapes line up (or each element's
      // operands are registers of the same thread)
      if (v.type.shape.join(',') !== atShape.join(',') && !(inRegs && this.regLocal(v, atShape))) {
        const mats: Value[] = [];
        const collect = (x: Value) => {
          if (!x.type.shape.length) return;
          if (!this.lazy.has(x.id)) mats.push(x);
          else x.args.forEach(collect);
        };
        v.args.forEach(collect);
        mats.forEach((m) => out.set(m.id, m));
      }
    };
    roots.forEach((r) => visit(r, shape));
    // values evaluated where no register index is at hand (a vector load's `other` outside its
    // chunks) always read other shapes from shared memory
    inRegs = false;
    strict.forEach((r) => visit(r, shape));
    return [...out.values()];
  }

  /** Writes the given tiles to shared memory so any thread can read any element. */
  private prepare(values: Value[]): void {
    this.exchange = new Map();
    if (!values.length) return;
    let off = 0;
    this.line('__syncthreads();');
    for (const v of values) {
      const L = this.layout(v.type.shape);
      const t = cType[v.type.dtype];
      const bytes = elemBytes[v.type.dtype] > 4 || v.type.dtype === 'i64' ? 8 : 4;
      off = Math.ceil(off / 16) * 16;
      this.exchange.set(v.id, off);
      this.regLoop(L, (c) => [`((${t}*)(sfc_smem + ${off}))[${c.e}] = v${v.id}[r];`]);
      off += L.n * bytes;
    }
    this.smemBytes = Math.max(this.smemBytes, off);
    this.line('__syncthreads();');
    this.smemState = 'unknown';
  }

  private block(stmts: Stmt[]): void {
    for (const s of stmts) this.stmt(s);
  }

  private nested(fn: () => void): void {
    const saved = this.ind;
    this.ind += '  ';
    fn();
    this.ind = saved;
  }

  private stmt(s: Stmt): void {
    switch (s.kind) {
      case 'def':
        return this.def(s.value);
      case 'store':
        return this.store(s);
      case 'var': {
        const t = cType[s.type.dtype];
        if (!s.type.shape.length) return this.line(`${t} x${s.varId} = ${this.scalar(s.init)};`);
        const L = this.layout(s.type.shape);
        this.prepare(this.exchangesFor([s.init], s.type.shape));
        this.line(`${t} x${s.varId}[${L.regs}];`);
        this.regLoop(L, (c) => [`x${s.varId}[r] = ${this.at(s.init, c)};`]);
        return;
      }
      case 'assign': {
        const shape = s.value.type.shape;
        if (!shape.length) return this.line(`x${s.varId} = ${this.scalar(s.value)};`);
        this.prepare(this.exchangesFor([s.value], shape));
        const L = this.layout(shape);
        const tmp = `t${s.value.id}`;
        // through a temporary: the new value may read the variable's old elements
        this.line(`${cType[s.value.type.dtype]} ${tmp}[${L.regs}];`);
        this.regLoop(L, (c) => [`${tmp}[r] = ${this.at(s.value, c)};`]);
        this.line(`#pragma unroll`);
        this.line(`for (int r = 0; r < ${L.regs}; ++r) x${s.varId}[r] = ${tmp}[r];`);
        return;
      }
      case 'for':
        this.line(
          `for (int x${s.varId} = ${this.scalar(s.start)}; x${s.varId} ${s.inclusive ? '<=' : '<'} ${this.scalar(s.end)}; x${s.varId} += ${this.scalar(s.step)}) {`,
        );
        this.smemState = 'unknown';
        this.nested(() => this.block(s.body));
        this.smemState = 'unknown';
        this.line('}');
        return;
      case 'if': {
        const before = this.smemState;
        this.line(`if (${this.scalar(s.cond)}) {`);
        this.nested(() => this.block(s.then));
        const afterThen = this.smemState;
        this.smemState = before;
        if (s.else.length) {
          this.line('} else {');
          this.nested(() => this.block(s.else));
        }
        if (this.smemState !== afterThen) this.smemState = 'unknown';
        this.line('}');
        return;
      }
      case 'return':
        this.line('return;');
        return;
    }
  }

  private def(v: Value): void {
    const t = cType[v.type.dtype];
    const d = v.type.dtype;
    if (!v.type.shape.length) {
      // scalars (uniform): simple expressions, or a block reduction
      if (v.op === 'reduce') return this.reduceAll(v);
      const a = (j: number) => this.scalar(v.args[j]!);
      let e: string;
      switch (v.op) {
        case 'programId':
          e = `(int)blockIdx.${'xyz'[v.axis]}`;
          break;
        case 'numPrograms':
          e = `(int)gridDim.${'xyz'[v.axis]}`;
          break;
        case 'var.get':
          e = `x${v.varId}`;
          break;
        case 'cast':
        case 'binary':
        case 'unary':
        case 'fma':
        case 'where':
          e = elementwiseExpr(v, a, v.args[0]!.type.dtype, d)!;
          break;
        case 'reshape':
        case 'full':
        case 'broadcast':
        case 'expandDims':
          e = a(0);
          break;
        case 'load': {
          const p = this.k.params[v.param]!;
          const read = fromStorage(p.dtype, `p${v.param}[${a(0)}]`);
          e = v.args[1] ? `(${a(1)} ? ${read} : ${v.args[2] ? a(2) : lit(0, d)})` : read;
          break;
        }
        case 'rand':
          e = `sfc_${v.normal ? 'randn' : 'rand'}((unsigned)${a(0)}, (unsigned)${a(1)})`;
          break;
        default:
          throw new Error(`internal: scalar ${v.op}`);
      }
      this.line(`const ${t} v${v.id} = ${e};`);
      return;
    }
    if (this.lazy.has(v.id)) return;
    if (v.op === 'reduce') return this.reduceAxis(v);
    if (v.op === 'load') return this.load(v);
    const L = this.layout(v.type.shape);
    if (v.op === 'var.get') {
      this.line(`${t} v${v.id}[${L.regs}];`);
      this.line(`#pragma unroll`);
      this.line(`for (int r = 0; r < ${L.regs}; ++r) v${v.id}[r] = x${v.varId}[r];`);
      return;
    }
    if (v.op === 'reshape') {
      // element order is unchanged: exchange through shared memory, read back in the new layout
      this.prepare([v.args[0]!].filter((x) => !this.lazy.has(x.id)));
      this.line(`${t} v${v.id}[${L.regs}];`);
      const src = v.args[0]!;
      this.regLoop(L, (c) => {
        if (this.lazy.has(src.id)) {
          const idx = dimIndices(src.type.shape, c.e!);
          return [`v${v.id}[r] = ${this.at(src, { shape: src.type.shape, idx, e: c.e, reg: null })};`];
        }
        return [`v${v.id}[r] = ((${t}*)(sfc_smem + ${this.exchange.get(src.id)}))[${c.e}];`];
      });
      return;
    }
    // a materialised element-wise value: compute its elements in its own layout
    this.prepare(this.exchangesFor(v.args, v.type.shape));
    this.line(`${t} v${v.id}[${L.regs}];`);
    if (v.op === 'rand') {
      this.regLoop(L, (c) => [
        `v${v.id}[r] = sfc_${v.normal ? 'randn' : 'rand'}((unsigned)${this.at(v.args[0]!, c)}, (unsigned)${this.at(v.args[1]!, c)});`,
      ]);
      return;
    }
    // evaluate v's own expression (as if lazy) at each element
    this.lazy.add(v.id);
    const exprs: string[] = [];
    this.regLoop(L, (c) => {
      const x = this.at(v, c);
      exprs.push(x);
      return [`v${v.id}[r] = ${x};`];
    });
    this.lazy.delete(v.id);
  }

  // ---- loads and stores ----------------------------------------------------------------------
  private load(v: Value & { op: 'load' }): void {
    const p = this.k.params[v.param]!;
    const L = this.layout(v.type.shape);
    const t = cType[v.type.dtype];
    const [offs, mask, other] = v.args;
    this.prepare(this.exchangesFor([offs!, ...(mask ? [mask] : [])], v.type.shape, other ? [other] : []));
    this.line(`${t} v${v.id}[${L.regs}];`);
    const { vec, uniform } = this.vectorWidth(L, offs!, mask ?? null, p.dtype);
    if (vec > 1) {
      this.facts.add(v.param);
      const chunkBytes = vec * elemBytes[p.dtype];
      const words = chunkBytes / 4;
      const vtype = words === 4 ? 'uint4' : words === 2 ? 'uint2' : 'unsigned';
      const lanes = L.v / vec;
      this.line(`#pragma unroll`);
      this.line(`for (int c = 0; c < ${L.regs / vec}; ++c) {`);
      this.line(`  const int e = ${this.chunkStart(L, 'c', lanes, vec)};`);
      const ctx: ElemCtx = { shape: L.shape, idx: dimIndices(L.shape, 'e'), e: 'e', reg: null };
      if (!uniform) {
        // the mask may change inside a chunk (a tail): whole chunks take the vector path
        const ek: ElemCtx = {
          shape: L.shape,
          idx: dimIndices(L.shape, '(e + k)'),
          e: '(e + k)',
          reg: `(c * ${vec} + k)`,
        };
        const tail = L.full ? '' : `(e + k) < ${L.n} && `;
        this.line(`  bool all = true;`);
        this.line(`  #pragma unroll`);
        this.line(`  for (int k = 0; k < ${vec}; ++k) all = all && ${tail}${this.at(mask!, ek)};`);
        this.line(`  if (!all) {`);
        this.line(`    #pragma unroll`);
        const o = other ? this.at(other, ek) : lit(0, v.type.dtype);
        this.line(
          `    for (int k = 0; k < ${vec}; ++k) v${v.id}[c * ${vec} + k] = (${tail}${this.at(mask!, ek)}) ? ${fromStorage(p.dtype, `p${v.param}[${this.at(offs!, ek)}]`)} : ${o};`,
        );
        this.line(`    continue;`);
        this.line(`  }`);
      }
      const ok =
        [L.full ? '' : `e < ${L.n}`, mask && uniform ? this.at(mask, ctx) : ''].filter(Boolean).join(' && ') || 'true';
      this.line(`  if (${ok}) {`);
      this.line(`    const ${vtype} q = *reinterpret_cast<const ${vtype}*>(p${v.param} + (${this.at(offs!, ctx)}));`);
      this.line(`    const ${storageType[p.dtype]}* s = reinterpret_cast<const ${storageType[p.dtype]}*>(&q);`);
      this.line(`    #pragma unroll`);
      this.line(`    for (int k = 0; k < ${vec}; ++k) v${v.id}[c * ${vec} + k] = ${fromStorage(p.dtype, 's[k]')};`);
      this.line('  } else {');
      const otherExpr = other ? this.at(other, { ...ctx, reg: null }) : lit(0, v.type.dtype);
      this.line(`    #pragma unroll`);
      this.line(
        `    for (int k = 0; k < ${vec}; ++k) v${v.id}[c * ${vec} + k] = ${other && other.type.shape.length ? otherExpr.replace(/\be\b/g, '(e + k)') : otherExpr};`,
      );
      this.line('  }');
      this.line('}');
      return;
    }
    this.regLoop(L, (c) => {
      const read = fromStorage(p.dtype, `p${v.param}[${this.at(offs!, c)}]`);
      const o = other ? this.at(other, c) : lit(0, v.type.dtype);
      // registers past the end of a tile (when N is not a multiple of the block) read nothing
      const cond = [L.full ? '' : `e < ${L.n}`, mask ? this.at(mask, c) : ''].filter(Boolean).join(' && ');
      return [cond ? `v${v.id}[r] = (${cond}) ? ${read} : ${o};` : `v${v.id}[r] = ${read};`];
    });
  }

  private store(s: Stmt & { kind: 'store' }): void {
    const p = this.k.params[s.param]!;
    const shape = s.offsets.type.shape;
    const roots = [s.offsets, s.value, ...(s.mask ? [s.mask] : [])];
    if (!shape.length) {
      // a scalar store: one thread writes
      const m = s.mask ? ` && ${this.scalar(s.mask)}` : '';
      this.line(
        `if (tid == 0${m}) ${this.storeOp(s, `p${s.param}[${this.scalar(s.offsets)}]`, this.scalar(s.value), p.dtype)}`,
      );
      return;
    }
    const L = this.layout(shape);
    this.prepare(this.exchangesFor(roots, shape));
    const { vec, uniform } =
      s.fn === 'store' ? this.vectorWidth(L, s.offsets, s.mask, p.dtype) : { vec: 1, uniform: false };
    if (vec > 1) {
      this.facts.add(s.param);
      const words = (vec * elemBytes[p.dtype]) / 4;
      const vtype = words === 4 ? 'uint4' : words === 2 ? 'uint2' : 'unsigned';
      const lanes = L.v / vec;
      const st = storageType[p.dtype];
      this.line(`#pragma unroll`);
      this.line(`for (int c = 0; c < ${L.regs / vec}; ++c) {`);
      this.line(`  const int e0 = ${this.chunkStart(L, 'c', lanes, vec)};`);
      const ctx0: ElemCtx = { shape, idx: dimIndices(shape, 'e0'), e: 'e0', reg: null };
      if (!uniform) {
        // a chunk whose mask is not all true stores element by element
        const ek: ElemCtx = { shape, idx: dimIndices(shape, '(e0 + k)'), e: '(e0 + k)', reg: `(c * ${vec} + k)` };
        const tail = L.full ? '' : `(e0 + k) < ${L.n} && `;
        const first = L.rep ? `${this.primary(L)} && ` : '';
        this.line(`  bool all = true;`);
        this.line(`  #pragma unroll`);
        this.line(`  for (int k = 0; k < ${vec}; ++k) all = all && ${tail}${this.at(s.mask!, ek)};`);
        this.line(`  if (!all) {`);
        this.line(`    #pragma unroll`);
        const store = this.storeOp(s, `p${s.param}[${this.at(s.offsets, ek)}]`, this.at(s.value, ek), p.dtype);
        this.line(`    for (int k = 0; k < ${vec}; ++k) if (${first}${tail}${this.at(s.mask!, ek)}) ${store}`);
        this.line(`    continue;`);
        this.line(`  }`);
      }
      const ok =
        [this.primary(L), L.full ? '' : `e0 < ${L.n}`, s.mask && uniform ? this.at(s.mask, ctx0) : '']
          .filter(Boolean)
          .join(' && ') || 'true';
      this.line(`  if (${ok}) {`);
      this.line(`    ${vtype} q;`);
      const ctx: ElemCtx = { shape, idx: dimIndices(shape, 'e'), e: 'e', reg: 'r' };
      if (halfOrFp8.has(p.dtype)) {
        // pairs of elements through the two-wide conversions (cvt.rn.bf16x2.f32 and friends)
        const pairType = elemBytes[p.dtype] === 2 ? 'unsigned' : 'unsigned short';
        const next: ElemCtx = { shape, idx: dimIndices(shape, '(e + 1)'), e: '(e + 1)', reg: '(r + 1)' };
        this.line(`    ${pairType}* s = reinterpret_cast<${pairType}*>(&q);`);
        this.line(`    #pragma unroll`);
        this.line(`    for (int k = 0; k < ${vec}; k += 2) {`);
        this.line(`      const int e = e0 + k;`);
        this.line(`      const int r = c * ${vec} + k;`);
        this.line(`      s[k / 2] = ${toStoragePair(p.dtype, this.at(s.value, ctx), this.at(s.value, next))};`);
      } else {
        this.line(`    ${st}* s = reinterpret_cast<${st}*>(&q);`);
        this.line(`    #pragma unroll`);
        this.line(`    for (int k = 0; k < ${vec}; ++k) {`);
        this.line(`      const int e = e0 + k;`);
        this.line(`      const int r = c * ${vec} + k;`);
        this.line(`      s[k] = ${toStorage(p.dtype, this.at(s.value, ctx))};`);
      }
      this.line('    }');
      this.line(`    *reinterpret_cast<${vtype}*>(p${s.param} + (${this.at(s.offsets, ctx0)})) = q;`);
      this.line('  }');
      this.line('}');
      return;
    }
    this.regLoop(L, (c) => {
      const cond = [this.primary(L), s.mask ? this.at(s.mask, c) : ''].filter(Boolean).join(' && ');
      const m = cond ? `if (${cond}) ` : '';
      return [`${m}${this.storeOp(s, `p${s.param}[${this.at(s.offsets, c)}]`, this.at(s.value, c), p.dtype)}`];
    });
  }

  private storeOp(s: Stmt & { kind: 'store' }, lvalue: string, value: string, d: ElemType): string {
    if (s.fn === 'store') return `${lvalue} = ${toStorage(d, value)};`;
    if (s.fn === 'atomicAdd') return `atomicAdd(&${lvalue}, ${value});`;
    return d === 'f32' ? `sfc_atomic_max(&${lvalue}, ${value});` : `atomicMax(&${lvalue}, ${value});`;
  }

  /**
   * Elements per vector access (1 = scalar accesses). Requires unit stride along the last dim,
   * chunk starts that are multiples of the access size (from constants and, in the aligned
   * variant, multiple-of-16 integer parameters), and a mask that is constant over each chunk.
   */
  /**
   * The vector width of an access and whether its mask is provably constant over each chunk (when
   * it is not, chunks test every element's mask at run time and fall back to scalar accesses).
   */
  private vectorWidth(L: Layout, offsets: Value, mask: Value | null, d: ElemType): { vec: number; uniform: boolean } {
    if (!this.opts.aligned) return { vec: 1, uniform: false };
    // first without assuming anything about parameters; then with multiple-of-16 integers, keeping
    // the facts only when they help (they become the variant's launch conditions)
    const score = (w: { vec: number; uniform: boolean }) => w.vec * 2 + (w.uniform ? 1 : 0);
    const plain = this.widthWith(L, offsets, mask, d, undefined);
    const facts = new Set<number>();
    const assumed = this.widthWith(L, offsets, mask, d, facts);
    if (score(assumed) > score(plain)) {
      facts.forEach((f) => this.facts.add(f));
      return assumed;
    }
    return plain;
  }

  private widthWith(
    L: Layout,
    offsets: Value,
    mask: Value | null,
    d: ElemType,
    facts: Set<number> | undefined,
  ): { vec: number; uniform: boolean } {
    const none = { vec: 1, uniform: false };
    let vec = Math.min(L.v, 16 / elemBytes[d]);
    if (vec <= 1) return none;
    const aff = this.affine(offsets, L.shape, facts);
    if (!aff) return none;
    const last = L.shape.length - 1;
    if (aff.coef[last]!.exact !== 1) return none;
    // divisibility of every chunk start: base, and the other dims' strides
    let div = aff.base.div;
    aff.coef.forEach((c, i) => {
      if (i !== last) div = Math.min(div, c.div);
    });
    while (vec > 1 && div % vec !== 0) vec /= 2;
    if (vec <= 1) return none;
    return { vec, uniform: !mask || this.chunkUniform(mask, L.shape, vec, facts) };
  }

  /** Largest power of two (up to 2^20) known to divide a scalar integer value. */
  /**
   * A scalar integer up to divisibility. With `facts`, integer parameters are assumed to be
   * multiples of 16 and each one relied on is added to `facts`.
   */
  private scalarTerm(v: Value, facts?: Set<number>): Term {
    if (v.op === 'const') return exactTerm(Math.trunc(v.value));
    if (v.op === 'param') {
      const p = this.k.params[v.index]!;
      if (p.kind === 'const') return exactTerm(p.value!);
      if (!facts || !isInt(p.dtype) || !this.opts.intFacts) return { exact: null, div: 1 };
      facts.add(v.index);
      return { exact: null, div: 16 };
    }
    if (v.op === 'binary' && isInt(v.type.dtype) && ['mul', 'add', 'sub', 'shl'].includes(v.fn)) {
      const [a, b] = v.args.map((x) => this.scalarTerm(x, facts)) as [Term, Term];
      if (v.fn === 'mul') return scaleTerm(a, b);
      if (v.fn === 'add') return addTerms(a, b);
      if (v.fn === 'sub') return addTerms(a, b, -1);
      if (v.fn === 'shl' && b.exact !== null) return scaleTerm(a, exactTerm(2 ** b.exact));
    }
    if (v.op === 'cast' && isInt(v.type.dtype) && isInt(v.args[0]!.type.dtype))
      return this.scalarTerm(v.args[0]!, facts);
    return { exact: null, div: 1 };
  }

  /** base + sum coef*idx over `shape`'s dims, or undefined when not affine. */
  private affine(v: Value, shape: readonly number[], facts?: Set<number>): Affine | undefined {
    const r = shape.length;
    const zeros = () => Array.from({ length: r }, () => exactTerm(0));
    if (!v.type.shape.length) return { base: this.scalarTerm(v, facts), coef: zeros() };
    if (!this.lazy.has(v.id) || !isInt(v.type.dtype)) return undefined;
    const off = r - v.type.shape.length; // v's dims map onto the trailing dims of shape
    switch (v.op) {
      case 'arange': {
        const coef = zeros();
        if (v.type.shape[0] !== 1) coef[off] = exactTerm(1);
        return { base: exactTerm(v.start), coef };
      }
      case 'broadcast':
      case 'full':
      case 'cast':
        return this.affine(v.args[0]!, shape, facts);
      case 'expandDims': {
        const inner = this.affine(v.args[0]!, v.args[0]!.type.shape, facts);
        if (!inner) return undefined;
        const coef = zeros();
        let j = 0;
        for (let i = 0; i < v.type.shape.length; i++) {
          if (i === v.axis) continue;
          coef[off + i] = inner.coef[j++]!;
        }
        return { base: inner.base, coef };
      }
      case 'binary': {
        const x = this.affine(v.args[0]!, shape, facts);
        const y = this.affine(v.args[1]!, shape, facts);
        if (!x || !y) return undefined;
        if (v.fn === 'add' || v.fn === 'sub') {
          const sg = v.fn === 'add' ? 1 : -1;
          return { base: addTerms(x.base, y.base, sg), coef: x.coef.map((c, i) => addTerms(c, y.coef[i]!, sg)) };
        }
        if (v.fn === 'mul') {
          const isScalar = (a: Affine) => a.coef.every((c) => c.exact === 0);
          if (isScalar(y)) return { base: scaleTerm(x.base, y.base), coef: x.coef.map((c) => scaleTerm(c, y.base)) };
          if (isScalar(x)) return { base: scaleTerm(y.base, x.base), coef: y.coef.map((c) => scaleTerm(c, x.base)) };
        }
        return undefined;
      }
      default:
        return undefined;
    }
  }

  /** True when a boolean tile is provably equal over each aligned chunk of `vec` elements along the last dim. */
  private chunkUniform(m: Value, shape: readonly number[], vec: number, facts?: Set<number>): boolean {
    const last = shape.length - 1;
    const off = shape.length - m.type.shape.length;
    if (!m.type.shape.length) return true;
    if (m.type.shape[m.type.shape.length - 1] === 1 && off + m.type.shape.length - 1 === last) return true;
    if (!this.lazy.has(m.id)) return false;
    if (m.op === 'binary' && (m.fn === 'and' || m.fn === 'or'))
      return m.args.every((a) => this.chunkUniform(a, shape, vec, facts));
    if (m.op === 'broadcast' || m.op === 'expandDims' || m.op === 'cast')
      return this.chunkUniform(m.args[0]!, shape, vec);
    if (m.op === 'binary' && ['lt', 'le', 'gt', 'ge'].includes(m.fn)) {
      // x < bound with x = base + idx_last (+ chunk-aligned terms) and bound a multiple of vec
      const [x, y] = m.args as [Value, Value];
      const ax = this.affine(x, shape, facts);
      const ay = this.affine(y, shape, facts);
      if (!ax || !ay) return false;
      const lin = addTerms(ax.coef[last]!, ay.coef[last]!, -1);
      if (lin.exact === 0) return true;
      if (lin.exact === null || Math.abs(lin.exact) !== 1) return false;
      // the mask flips where x - y crosses 0 (or -1 for <=/>): that point must be a chunk boundary
      const strict = m.fn === 'lt' || m.fn === 'ge';
      let div = addTerms(addTerms(ax.base, ay.base, -1), exactTerm(strict ? 0 : 1)).div;
      ax.coef.forEach((c, i) => {
        if (i !== last) div = Math.min(div, addTerms(c, ay.coef[i]!, -1).div);
      });
      return div % vec === 0;
    }
    return false;
  }

  // ---- reductions ----------------------------------------------------------------------------
  private reduceAll(v: Value & { op: 'reduce' }): void {
    const x = v.args[0]!;
    const L = this.layout(x.type.shape);
    const t = cType[v.type.dtype];
    const op = v.fn === 'sum' ? 'SfcSum' : v.fn === 'min' ? 'SfcMin' : 'SfcMax';
    const init =
      v.fn === 'sum' || v.fn === 'absmax'
        ? lit(0, v.type.dtype)
        : v.fn === 'max'
          ? lit(-Infinity, v.type.dtype)
          : lit(Infinity, v.type.dtype);
    this.prepare(this.exchangesFor([x], x.type.shape));
    this.line(`${t} a${v.id} = ${init};`);
    // a replicated tile counts each element once (its first holder)
    if (L.rep) this.line(`if (${this.primary(L)}) {`);
    this.regLoop(L, (c) => {
      const e = this.at(x, c);
      return [`a${v.id} = ${op}<${t}>::f(a${v.id}, ${v.fn === 'absmax' ? `fabsf(${e})` : e});`];
    });
    if (L.rep) this.line('}');
    if (this.k.warps === 1) {
      // warp shuffles only: no shared memory, no barrier
      this.line(`const ${t} v${v.id} = sfc_block_reduce<${op}<${t}>, ${t}, 1>(a${v.id}, nullptr);`);
      return;
    }
    // two scratch areas of one slot per warp (8 bytes each: room for i64/f64): a reduction right
    // after another one uses the other area and needs no leading barrier (see smemState)
    const prev = this.smemState;
    const area = prev === 0 ? 1 : 0;
    const lead = prev === 'unknown';
    this.smemBytes = Math.max(this.smemBytes, (area + 1) * this.k.warps * 8);
    this.line(
      `const ${t} v${v.id} = sfc_block_reduce<${op}<${t}>, ${t}, ${this.k.warps}, ${lead}>(a${v.id}, (${t}*)(sfc_smem + ${area * this.k.warps * 8}));`,
    );
    this.smemState = area;
  }

  private reduceAxis(v: Value & { op: 'reduce' }): void {
    const x = v.args[0]!;
    const xs = x.type.shape;
    const axis = v.axis!;
    const t = cType[v.type.dtype];
    const Lx = this.layout(xs);
    const L = this.layout(v.type.shape);
    const op = v.fn === 'sum' ? 'SfcSum' : v.fn === 'min' ? 'SfcMin' : 'SfcMax';
    const init =
      v.fn === 'sum' || v.fn === 'absmax'
        ? lit(0, v.type.dtype)
        : v.fn === 'max'
          ? lit(-Infinity, v.type.dtype)
          : lit(Infinity, v.type.dtype);
    // x (in its layout) -> shared memory; then each output element loops over the reduced axis
    const deps = this.exchangesFor([x], xs);
    this.prepare(deps);
    const depOffsets = new Map(this.exchange);
    let off = 0;
    for (const d of deps) off = Math.max(off, depOffsets.get(d.id)! + this.layout(d.type.shape).n * 8);
    off = Math.ceil(off / 16) * 16;
    if (!deps.length) this.line('__syncthreads();');
    this.smemState = 'unknown';
    this.regLoop(Lx, (c) => [`((${t}*)(sfc_smem + ${off}))[${c.e}] = ${this.at(x, c)};`]);
    this.line('__syncthreads();');
    this.smemBytes = Math.max(this.smemBytes, off + Lx.n * 8);
    const len = xs[axis]!;
    const inner = numel(xs.slice(axis + 1));
    this.line(`${t} v${v.id}[${L.regs}];`);
    this.regLoop(L, (c) => [
      `const int base = (${c.e} / ${inner}) * ${len * inner} + (${c.e} % ${inner});`,
      `${t} acc = ${init};`,
      `for (int k = 0; k < ${len}; ++k) { const ${t} y = ((${t}*)(sfc_smem + ${off}))[base + k * ${inner}]; acc = ${op}<${t}>::f(acc, ${v.fn === 'absmax' ? 'fabsf(y)' : 'y'}); }`,
      `v${v.id}[r] = acc;`,
    ]);
  }
}

interface ElemCtx {
  shape: readonly number[];
  /** C expressions of the per-dim indices */
  idx: string[];
  /** flat index expression when known */
  e: string | null;
  /** register index when the element is this thread's own register of a same-shape tile */
  reg: string | null;
}

function dimIndices(shape: readonly number[], e: string): string[] {
  const out: string[] = [];
  let suffix = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    const s = shape[d]!;
    const q = suffix === 1 ? e : `(${e} / ${suffix})`;
    out[d] = d === 0 ? q : `(${q} % ${s})`;
    suffix *= s;
  }
  return out;
}

/** The shape without its leading size-1 dims (same elements in the same order). */
function stripLeadingOnes(shape: readonly number[]): readonly number[] {
  let i = 0;
  while (i < shape.length - 1 && shape[i] === 1) i++;
  return shape.slice(i);
}

/** True when `small` equals the trailing dims of `big`. */
function isSuffix(small: readonly number[], big: readonly number[]): boolean {
  if (small.length > big.length) return false;
  const off = big.length - small.length;
  return small.every((d, i) => d === big[off + i]);
}

/** Indices of a value of shape vs broadcast into ctx.shape (trailing alignment, size-1 dims -> 0). */
function alignIndices(vs: readonly number[], ctx: ElemCtx): string[] {
  const off = ctx.shape.length - vs.length;
  return vs.map((d, i) => (d === 1 ? '0' : ctx.idx[off + i]!));
}

function flatIndex(shape: readonly number[], idx: string[]): string {
  let e = '';
  let stride = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1) e = `${e ? `${e} + ` : ''}${stride === 1 ? idx[d] : `${idx[d]} * ${stride}`}`;
    stride *= shape[d]!;
  }
  return e || '0';
}

/** Separates the shared prelude from the kernel in a variant's source. */
export const KERNEL_MARK = '// ---- kernel ----';

/** The kernel part of a variant's source (after the prelude). */
export function kernelPart(source: string): string {
  return source.slice(source.indexOf(KERNEL_MARK) + KERNEL_MARK.length);
}

/** One translation unit holding many kernels (one prelude): how `sfc build` and CI check them fast. */
export function combinedSource(sources: readonly string[]): string {
  return [CUDA_PRELUDE, RNG_CUDA, ...sources.map(kernelPart)].join('\n');
}

/**
 * The CUDA variants of a kernel, most specialised first: aligned pointers and multiple-of-16
 * integers; aligned pointers only (chunks check their masks at run time); generic. Variants that
 * came out identical to a more general one are dropped.
 */
export function emitCuda(k: KernelIR): CudaVariant[] {
  const all = [
    new CudaEmitter(k, { aligned: true, intFacts: true }).emit(),
    new CudaEmitter(k, { aligned: true, intFacts: false }).emit(),
    new CudaEmitter(k, { aligned: false, intFacts: false }).emit(),
  ];
  const body = (v: CudaVariant) => kernelPart(v.source).replace(v.entry, '');
  return all.filter(
    (v, i) =>
      !all
        .slice(i + 1)
        .some((w) => body(w) === body(v) && Object.keys(w.assumes).length <= Object.keys(v.assumes).length),
  );
}
