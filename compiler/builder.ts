// Builds IR with the typing rules of the kernel language: dtype promotion (literals are "weak" and
// take the other operand's type), numpy broadcasting of tile shapes, and constant folding. A rule
// violation throws RuleError with a message; the front end attaches the source location.
import {
  f32ToBf16Bits,
  bf16BitsToF32,
  f32ToF16Bits,
  f16BitsToF32,
  f32ToE4m3Bits,
  e4m3BitsToF32,
  f32ToE5m2Bits,
  e5m2BitsToF32,
} from '../dsl/numerics.js';
import { binaryRules, unaryRules } from './ops.js';
import {
  fmtType,
  isFloat,
  isInt,
  type BinaryOp,
  type ElemType,
  type ReduceOp,
  type Span,
  type Stmt,
  type UnaryOp,
  type Value,
  type ValueOp,
  type VType,
} from './ir.js';

export class RuleError extends Error {}

const fmtShape = (s: readonly number[]) => `[${s.join(', ')}]`;

export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) {
      throw new RuleError(`shape mismatch: ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together`);
    }
    out.push(x === 1 ? y : x);
  }
  return out;
}

const floatRank: Partial<Record<ElemType, number>> = { e4m3: 1, e5m2: 1, bf16: 2, f16: 2, f32: 3 };

/** The dtype two operands compute in. A weak (literal) operand adopts the other's type. */
export function promote(a: Value, b: Value): ElemType {
  return promoteTypes(a.type.dtype, a.op === 'const' && a.weak, b.type.dtype, b.op === 'const' && b.weak);
}

/** promote() on bare dtypes: also used by the layer graph builder. */
export function promoteTypes(da: ElemType, weakA: boolean, db: ElemType, weakB: boolean): ElemType {
  if (da === db) return da;
  if (weakA && !weakB) return isInt(db) && isFloat(da) ? 'f32' : db === 'bool' ? da : db;
  if (weakB && !weakA) return isInt(da) && isFloat(db) ? 'f32' : da === 'bool' ? db : da;
  if (isFloat(da) && isFloat(db)) {
    const ra = floatRank[da]!;
    const rb = floatRank[db]!;
    return ra === rb ? 'f32' : ra > rb ? da : db; // bf16 + f16 computes in f32
  }
  if (isFloat(da)) return da;
  if (isFloat(db)) return db;
  if (da === 'i64' || db === 'i64') return 'i64';
  return 'i32'; // i32/u8/bool mixes
}

/** Rounds a JS number to what a value of `dtype` holds (float32 for f32, bf16 for bf16, ...). */
export function roundToDtype(x: number, d: ElemType): number {
  switch (d) {
    case 'f32':
      return Math.fround(x);
    case 'bf16':
      return bf16BitsToF32(f32ToBf16Bits(x));
    case 'f16':
      return f16BitsToF32(f32ToF16Bits(x));
    case 'e4m3':
      return e4m3BitsToF32(f32ToE4m3Bits(x));
    case 'e5m2':
      return e5m2BitsToF32(f32ToE5m2Bits(x));
    case 'i32':
      return Number.isFinite(x) ? Math.trunc(x) | 0 : 0;
    case 'u8':
      return Number.isFinite(x) ? Math.trunc(x) & 0xff : 0;
    case 'i64':
      return Number.isFinite(x) ? Math.trunc(x) : 0;
    case 'bool':
      return x ? 1 : 0;
  }
}

const cmpOps = new Set<BinaryOp>(['lt', 'le', 'gt', 'ge', 'eq', 'ne']);
const logicOps = new Set<BinaryOp>(['and', 'or']);
const intOps = new Set<BinaryOp>(['bitand', 'bitor', 'bitxor', 'shl', 'shr', 'ushr', 'idiv']);
const floatUnary = new Set<UnaryOp>([
  'exp',
  'exp2',
  'log',
  'log2',
  'sqrt',
  'rsqrt',
  'tanh',
  'sigmoid',
  'erf',
  'sin',
  'cos',
]);

export class Builder {
  private nextId = 0;
  private nextVar = 0;
  /** the statement list being appended to (switches inside for/if) */
  block: Stmt[] = [];

  newVarId(): number {
    return this.nextVar++;
  }

  private make(op: ValueOp, type: VType, args: Value[], span: Span): Value {
    const v = { ...op, id: this.nextId++, type, args, span } as Value;
    if (op.op !== 'const' && op.op !== 'param') this.block.push({ kind: 'def', value: v, span });
    return v;
  }

  /** Values that are not statements: constants and parameters are used by reference. */
  constant(value: number, dtype: ElemType, span: Span, weak = false): Value {
    return this.make({ op: 'const', value: roundToDtype(value, dtype), weak }, { dtype, shape: [] }, [], span);
  }

  /** a numeric literal: weak i32 when written as an integer (`3`), weak f32 otherwise (`3.0`, `1e-6`) */
  literal(value: number, span: Span, written?: string): Value {
    const isIntLit = Number.isInteger(value) && Math.abs(value) < 2 ** 31 && !(written && /[.eE]/.test(written));
    return this.constant(value, isIntLit ? 'i32' : 'f32', span, true);
  }

  param(index: number, dtype: ElemType, span: Span): Value {
    return this.make({ op: 'param', index }, { dtype, shape: [] }, [], span);
  }

  programId(axis: number, span: Span, num = false): Value {
    return this.make(
      num ? { op: 'numPrograms', axis } : { op: 'programId', axis },
      { dtype: 'i32', shape: [] },
      [],
      span,
    );
  }

  arange(start: number, end: number, span: Span): Value {
    const n = end - start;
    if (!Number.isInteger(start) || !Number.isInteger(end) || n <= 0) {
      throw new RuleError(`arange(${start}, ${end}) needs integer bounds with end > start`);
    }
    if (n > 1 << 16) throw new RuleError(`arange of ${n} elements is too large for one tile (at most 65536)`);
    return this.make({ op: 'arange', start }, { dtype: 'i32', shape: [n] }, [], span);
  }

  full(shape: number[], value: Value, dtype: ElemType | undefined, span: Span): Value {
    if (value.type.shape.length) throw new RuleError('full(): the fill value must be a scalar');
    const d = dtype ?? value.type.dtype;
    if (value.op === 'const' && shape.length === 0) return this.constant(value.value, d, span);
    return this.make({ op: 'full' }, { dtype: d, shape }, [this.cast(value, d, span)], span);
  }

  cast(x: Value, dtype: ElemType, span: Span): Value {
    if (x.type.dtype === dtype) return x;
    if (x.op === 'const') return this.constant(x.value, dtype, span);
    return this.make({ op: 'cast' }, { dtype, shape: x.type.shape }, [x], span);
  }

  binary(fn: BinaryOp, a: Value, b: Value, span: Span): Value {
    const shape = broadcastShapes(a.type.shape, b.type.shape);
    let compute: ElemType;
    let result: ElemType;
    if (logicOps.has(fn)) {
      compute = 'bool';
      result = 'bool';
    } else {
      compute = promote(a, b);
      if (intOps.has(fn) && !isInt(compute) && compute !== 'bool') {
        throw new RuleError(`operator ${fn} needs integer operands, got ${fmtType(a.type)} and ${fmtType(b.type)}`);
      }
      if (fn === 'div' && (isInt(compute) || compute === 'bool')) compute = 'f32'; // `/` divides as floats
      if (compute === 'bool' && !cmpOps.has(fn) && fn !== 'bitand' && fn !== 'bitor' && fn !== 'bitxor')
        compute = 'i32';
      result = cmpOps.has(fn) ? 'bool' : compute;
    }
    const ca = this.cast(a, compute, span);
    const cb = this.cast(b, compute, span);
    if (ca.op === 'const' && cb.op === 'const') {
      const weak = a.op === 'const' && a.weak && b.op === 'const' && b.weak;
      return this.constant(binaryRules[fn].fold(ca.value, cb.value), result, span, weak);
    }
    return this.make({ op: 'binary', fn }, { dtype: result, shape }, [ca, cb], span);
  }

  unary(fn: UnaryOp, x: Value, span: Span): Value {
    let d = x.type.dtype;
    if (floatUnary.has(fn)) d = 'f32';
    else if (fn === 'not') d = 'bool';
    else if (fn === 'bitnot') {
      if (!isInt(d)) throw new RuleError(`operator ~ needs an integer operand, got ${fmtType(x.type)}`);
    } else if (d === 'bool') d = 'i32';
    const cx = this.cast(x, d, span);
    const fold = unaryRules[fn].fold;
    if (cx.op === 'const' && fold) return this.constant(fold(cx.value), d, span, x.op === 'const' && x.weak);
    return this.make({ op: 'unary', fn }, { dtype: d, shape: x.type.shape }, [cx], span);
  }

  fma(a: Value, b: Value, c: Value, span: Span): Value {
    const shape = broadcastShapes(broadcastShapes(a.type.shape, b.type.shape), c.type.shape);
    return this.make(
      { op: 'fma' },
      { dtype: 'f32', shape },
      [a, b, c].map((v) => this.cast(v, 'f32', span)),
      span,
    );
  }

  where(cond: Value, a: Value, b: Value, span: Span): Value {
    const shape = broadcastShapes(broadcastShapes(cond.type.shape, a.type.shape), b.type.shape);
    const d = promote(a, b);
    const c = this.cast(cond, 'bool', span);
    if (c.op === 'const') return this.cast(c.value ? a : b, d, span);
    return this.make({ op: 'where' }, { dtype: d, shape }, [c, this.cast(a, d, span), this.cast(b, d, span)], span);
  }

  reduce(fn: ReduceOp, x: Value, axis: number | null, span: Span): Value {
    const rank = x.type.shape.length;
    if (rank === 0) throw new RuleError(`${fn}() needs a tile, got a scalar`);
    let shape: number[] = [];
    if (axis !== null) {
      const a = axis < 0 ? axis + rank : axis;
      if (a < 0 || a >= rank) throw new RuleError(`${fn}(): axis ${axis} out of range for a ${rank}-d tile`);
      axis = a;
      shape = x.type.shape.filter((_, i) => i !== a);
    }
    const d: ElemType =
      isFloat(x.type.dtype) || fn === 'absmax' ? 'f32' : x.type.dtype === 'bool' ? 'i32' : x.type.dtype;
    return this.make({ op: 'reduce', fn, axis }, { dtype: d, shape }, [this.cast(x, d, span)], span);
  }

  broadcastTo(x: Value, shape: number[], span: Span): Value {
    const s = broadcastShapes(x.type.shape, shape);
    if (s.length !== shape.length || s.some((d, i) => d !== shape[i])) {
      throw new RuleError(`cannot broadcast ${fmtShape(x.type.shape)} to ${fmtShape(shape)}`);
    }
    if (s.length === x.type.shape.length && s.every((d, i) => d === x.type.shape[i])) return x;
    return this.make({ op: 'broadcast' }, { dtype: x.type.dtype, shape }, [x], span);
  }

  expandDims(x: Value, axis: number, span: Span): Value {
    const rank = x.type.shape.length;
    const a = axis < 0 ? axis + rank + 1 : axis;
    if (a < 0 || a > rank) throw new RuleError(`expandDims(): axis ${axis} out of range for a ${rank}-d tile`);
    const shape = [...x.type.shape];
    shape.splice(a, 0, 1);
    return this.make({ op: 'expandDims', axis: a }, { dtype: x.type.dtype, shape }, [x], span);
  }

  reshape(x: Value, shape: number[], span: Span): Value {
    const n = x.type.shape.reduce((p, q) => p * q, 1);
    if (shape.reduce((p, q) => p * q, 1) !== n) {
      throw new RuleError(`reshape(): ${fmtShape(x.type.shape)} has ${n} elements, ${fmtShape(shape)} does not`);
    }
    return this.make({ op: 'reshape' }, { dtype: x.type.dtype, shape }, [x], span);
  }

  /** y[..., 2k] = x[..., 2k+1] and y[..., 2k+1] = x[..., 2k]: the partner of each complex pair */
  swapPairs(x: Value, span: Span): Value {
    const s = x.type.shape;
    if (!s.length || s[s.length - 1]! % 2 !== 0) {
      throw new RuleError(`swapPairs() needs a tile whose last dim is even, got ${fmtType(x.type)}`);
    }
    return this.make({ op: 'swapPairs' }, { ...x.type, shape: [...s] }, [x], span);
  }

  load(param: number, dtype: ElemType, offsets: Value, mask: Value | null, other: Value | null, span: Span): Value {
    if (!isInt(offsets.type.dtype)) throw new RuleError(`load offsets must be integers, got ${fmtType(offsets.type)}`);
    let shape = offsets.type.shape;
    if (mask) shape = broadcastShapes(shape, mask.type.shape);
    const args = [this.cast(offsets, 'i32', span)];
    if (mask || other) args.push(mask ? this.cast(mask, 'bool', span) : this.constant(1, 'bool', span));
    if (other) args.push(this.cast(other, dtype, span));
    return this.make({ op: 'load', param }, { dtype, shape: [...shape] }, args, span);
  }

  rand(seed: Value, offsets: Value, normal: boolean, span: Span): Value {
    if (seed.type.shape.length) throw new RuleError('rand(): the seed must be a scalar');
    if (!isInt(offsets.type.dtype))
      throw new RuleError(`rand(): offsets must be integers, got ${fmtType(offsets.type)}`);
    return this.make(
      { op: 'rand', normal },
      { dtype: 'f32', shape: offsets.type.shape },
      [this.cast(seed, 'i32', span), this.cast(offsets, 'i32', span)],
      span,
    );
  }

  varGet(varId: number, type: VType, span: Span): Value {
    return this.make({ op: 'var.get', varId }, type, [], span);
  }
}
