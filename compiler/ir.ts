// The tile-level IR: typed SSA values (dtype + constant tile shape; [] is a scalar) defined by
// statements in program order, plus mutable local variables for `let` bindings that are reassigned
// (loop accumulators) and structured control flow (for, if). Every node carries the TypeScript source
// span it came from. `printKernel` gives the text form that tests snapshot.
import type { ArtifactParam } from '../dsl/artifact.js';
import type { DTypeName } from '../dsl/dtypes.js';

export type ElemType = DTypeName | 'bool';

export interface VType {
  dtype: ElemType;
  shape: number[];
}

export interface Span {
  file: string;
  line: number;
  col: number;
}

export type BinaryOp =
  | 'add'
  | 'sub'
  | 'mul'
  | 'div'
  | 'rem'
  | 'lt'
  | 'le'
  | 'gt'
  | 'ge'
  | 'eq'
  | 'ne'
  | 'and'
  | 'or'
  | 'bitand'
  | 'bitor'
  | 'bitxor'
  | 'shl'
  | 'shr'
  | 'ushr'
  | 'maximum'
  | 'minimum'
  | 'idiv';

export type UnaryOp =
  | 'neg'
  | 'not'
  | 'bitnot'
  | 'exp'
  | 'exp2'
  | 'log'
  | 'log2'
  | 'sqrt'
  | 'rsqrt'
  | 'tanh'
  | 'sigmoid'
  | 'erf'
  | 'sin'
  | 'cos'
  | 'abs'
  | 'floor'
  | 'ceil';

export type ReduceOp = 'sum' | 'max' | 'min' | 'absmax';

/** Operations that define values. */
export type ValueOp =
  | { op: 'const'; value: number; weak: boolean }
  | { op: 'param'; index: number }
  | { op: 'programId'; axis: number }
  | { op: 'numPrograms'; axis: number }
  | { op: 'arange'; start: number }
  | { op: 'full' }
  | { op: 'load'; param: number }
  | { op: 'binary'; fn: BinaryOp }
  | { op: 'unary'; fn: UnaryOp }
  | { op: 'fma' }
  | { op: 'cast' }
  | { op: 'where' }
  | { op: 'reduce'; fn: ReduceOp; axis: number | null }
  | { op: 'broadcast' }
  | { op: 'expandDims'; axis: number }
  | { op: 'reshape' }
  | { op: 'swapPairs' }
  | { op: 'rand'; normal: boolean }
  | { op: 'var.get'; varId: number };

export type Value = ValueOp & {
  id: number;
  type: VType;
  args: Value[];
  span: Span;
};

export type Stmt =
  | { kind: 'def'; value: Value; span: Span }
  | {
      kind: 'store';
      fn: 'store' | 'atomicAdd' | 'atomicMax';
      param: number;
      offsets: Value;
      value: Value;
      mask: Value | null;
      span: Span;
    }
  | { kind: 'var'; varId: number; name: string; type: VType; init: Value; span: Span }
  | { kind: 'assign'; varId: number; value: Value; span: Span }
  | {
      kind: 'for';
      varId: number;
      name: string;
      start: Value;
      end: Value;
      step: Value;
      inclusive: boolean;
      body: Stmt[];
      span: Span;
    }
  | { kind: 'if'; cond: Value; then: Stmt[]; else: Stmt[]; span: Span }
  | { kind: 'return'; span: Span };

export type KernelParam = ArtifactParam;

export interface KernelIR {
  name: string;
  file: string;
  span: Span;
  params: KernelParam[];
  body: Stmt[];
  warps: number;
}

export function fmtType(t: VType): string {
  return t.shape.length ? `${t.dtype}[${t.shape.join(',')}]` : t.dtype;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export const isFloat = (d: ElemType): boolean =>
  d === 'f32' || d === 'f16' || d === 'bf16' || d === 'e4m3' || d === 'e5m2';
export const isInt = (d: ElemType): boolean => d === 'i32' || d === 'i64' || d === 'u8';

/** Walks every statement (depth first, in order). */
export function walk(body: Stmt[], fn: (s: Stmt) => void): void {
  for (const s of body) {
    fn(s);
    if (s.kind === 'for') walk(s.body, fn);
    if (s.kind === 'if') {
      walk(s.then, fn);
      walk(s.else, fn);
    }
  }
}

/** How a value is referred to: constants inline, parameters by name, others as %id. */
function ref(v: Value, params: KernelParam[]): string {
  if (v.op === 'const') return `${v.value}:${v.type.dtype}`;
  if (v.op === 'param') return params[v.index]!.name;
  return `%${v.id}`;
}

function fmtValueOp(v: Value, params: KernelParam[]): string {
  const a = v.args.map((x) => ref(x, params)).join(', ');
  switch (v.op) {
    case 'const':
      return `const ${v.value}${v.weak ? ' (weak)' : ''}`;
    case 'param':
      return `param ${params[v.index]!.name}`;
    case 'programId':
    case 'numPrograms':
      return `${v.op} ${v.axis}`;
    case 'arange':
      return `arange ${v.start}`;
    case 'load':
      return `load ${params[v.param]!.name}[${a}]`;
    case 'binary':
    case 'unary':
      return `${v.fn} ${a}`;
    case 'reduce':
      return `reduce.${v.fn}${v.axis === null ? '' : ` axis=${v.axis}`} ${a}`;
    case 'expandDims':
      return `expandDims ${a} axis=${v.axis}`;
    case 'rand':
      return `${v.normal ? 'randn' : 'rand'} ${a}`;
    case 'var.get':
      return `get $${v.varId}`;
    default:
      return `${v.op} ${a}`;
  }
}

export function printKernel(k: KernelIR): string {
  const lines: string[] = [];
  const ps = k.params
    .map(
      (p) => `${p.name}: ${p.kind === 'ptr' ? `ptr<${p.dtype}>` : p.kind === 'const' ? `const ${p.value}` : p.dtype}`,
    )
    .join(', ');
  lines.push(`kernel ${k.name}(${ps}) warps=${k.warps}`);
  const r = (v: Value) => ref(v, k.params);
  const emit = (body: Stmt[], ind: string) => {
    for (const s of body) {
      switch (s.kind) {
        case 'def':
          lines.push(`${ind}%${s.value.id} = ${fmtValueOp(s.value, k.params)} : ${fmtType(s.value.type)}`);
          break;
        case 'store':
          lines.push(
            `${ind}${s.fn} ${k.params[s.param]!.name}[${r(s.offsets)}] = ${r(s.value)}${s.mask ? ` if ${r(s.mask)}` : ''}`,
          );
          break;
        case 'var':
          lines.push(`${ind}var $${s.varId} ${s.name}: ${fmtType(s.type)} = ${r(s.init)}`);
          break;
        case 'assign':
          lines.push(`${ind}$${s.varId} = ${r(s.value)}`);
          break;
        case 'for':
          lines.push(
            `${ind}for $${s.varId} ${s.name} = ${r(s.start)} ${s.inclusive ? 'to' : 'until'} ${r(s.end)} step ${r(s.step)} {`,
          );
          emit(s.body, `${ind}  `);
          lines.push(`${ind}}`);
          break;
        case 'if':
          lines.push(`${ind}if ${r(s.cond)} {`);
          emit(s.then, `${ind}  `);
          if (s.else.length) {
            lines.push(`${ind}} else {`);
            emit(s.else, `${ind}  `);
          }
          lines.push(`${ind}}`);
          break;
        case 'return':
          lines.push(`${ind}return`);
          break;
      }
    }
  };
  emit(k.body, '  ');
  return lines.join('\n') + '\n';
}
