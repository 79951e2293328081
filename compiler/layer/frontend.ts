// Layer source -> layer graph. Uses the same TypeScript program and checker as the kernel front end:
// parameters are `Tensor<dtype, [dims]>` (static sizes and symbolic names) or scalars; the body is
// const declarations, helper calls (inlined) and a return of one tensor or a list of them. Composite
// ops are decomposed here (LayerNorm, RMSNorm, softmax, SiLU, GELU, linear), so the graph holds only
// primitives. Shape and dtype errors name the layer line and both shapes.
import ts from 'typescript';
import { dtypeOf } from '../../dsl/dtypes.js';
import { promoteTypes, roundToDtype } from '../builder.js';
import { DslError, dslError, spanOf } from '../diagnostics.js';
import { binaryOps, constValue, type DslProgram, type KernelSourceRef } from '../frontend.js';
import { isFloat, type BinaryOp, type ElemType, type Span, type UnaryOp } from '../ir.js';
import { binaryRules } from '../ops.js';
import { convType, type ConvGeometry, type Triple } from './conv.js';
import {
  fmtShape,
  fmtTType,
  type AttentionMaskDims,
  type Dim,
  type GNode,
  type GraphOp,
  type LayerGraph,
  type TType,
} from './graph.js';

class ShapeRuleError extends Error {}

const unaryOps: Record<string, UnaryOp> = {
  exp: 'exp',
  tanh: 'tanh',
  sigmoid: 'sigmoid',
  sqrt: 'sqrt',
  rsqrt: 'rsqrt',
  abs: 'abs',
};

export function broadcastDims(a: readonly Dim[], b: readonly Dim[]): Dim[] {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) {
      throw new ShapeRuleError(`shape mismatch: ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together`);
    }
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Builds graph nodes with the typing rules of the kernel language (weak literals, promotion). */
export class GraphBuilder {
  private nextId = 0;
  readonly nodes: GNode[] = [];

  private make(op: GraphOp, type: TType, inputs: GNode[], span: Span): GNode {
    const n = { ...op, id: this.nextId++, type, inputs, span } as GNode;
    this.nodes.push(n);
    return n;
  }

  input(index: number, name: string, type: TType, span: Span): GNode {
    return this.make({ op: 'input', index, name }, type, [], span);
  }

  constant(value: number, dtype: ElemType, span: Span, weak = false): GNode {
    return this.make({ op: 'const', value: roundToDtype(value, dtype), weak }, { dtype, shape: [] }, [], span);
  }

  literal(value: number, span: Span, written?: string): GNode {
    const int = Number.isInteger(value) && Math.abs(value) < 2 ** 31 && !(written && /[.eE]/.test(written));
    return this.constant(value, int ? 'i32' : 'f32', span, true);
  }

  /** the size of a dim as a scalar (a constant for static dims) */
  dimValue(d: Dim, span: Span): GNode {
    return typeof d === 'number'
      ? this.constant(d, 'i32', span, true)
      : this.make({ op: 'dim', name: d }, { dtype: 'i32', shape: [] }, [], span);
  }

  cast(x: GNode, dtype: ElemType, span: Span): GNode {
    if (x.type.dtype === dtype) return x;
    if (x.op === 'const') return this.constant(x.value, dtype, span);
    return this.make({ op: 'cast' }, { dtype, shape: x.type.shape }, [x], span);
  }

  binary(fn: BinaryOp, a: GNode, b: GNode, span: Span): GNode {
    const shape = broadcastDims(a.type.shape, b.type.shape);
    const weakA = a.op === 'const' && a.weak;
    const weakB = b.op === 'const' && b.weak;
    let compute = promoteTypes(a.type.dtype, weakA, b.type.dtype, weakB);
    if (fn === 'div' && !isFloat(compute)) compute = 'f32';
    const cmp = ['lt', 'le', 'gt', 'ge', 'eq', 'ne'].includes(fn);
    const ca = this.cast(a, compute, span);
    const cb = this.cast(b, compute, span);
    if (ca.op === 'const' && cb.op === 'const') {
      return this.constant(binaryRules[fn].fold(ca.value, cb.value), cmp ? 'bool' : compute, span, weakA && weakB);
    }
    return this.make({ op: 'binary', fn }, { dtype: cmp ? 'bool' : compute, shape }, [ca, cb], span);
  }

  unary(fn: UnaryOp, x: GNode, span: Span): GNode {
    const d: ElemType = fn === 'neg' || fn === 'abs' ? x.type.dtype : 'f32';
    return this.make({ op: 'unary', fn }, { dtype: d, shape: x.type.shape }, [this.cast(x, d, span)], span);
  }

  where(c: GNode, a: GNode, b: GNode, span: Span): GNode {
    const shape = broadcastDims(broadcastDims(c.type.shape, a.type.shape), b.type.shape);
    const d = promoteTypes(a.type.dtype, a.op === 'const' && a.weak, b.type.dtype, b.op === 'const' && b.weak);
    return this.make(
      { op: 'where' },
      { dtype: d, shape },
      [this.cast(c, 'bool', span), this.cast(a, d, span), this.cast(b, d, span)],
      span,
    );
  }

  swapPairs(x: GNode, span: Span): GNode {
    const s = x.type.shape;
    const last = s[s.length - 1];
    if (typeof last !== 'number' || last % 2 !== 0) {
      throw new ShapeRuleError(`swapPairs needs a static, even last dim, got ${fmtTType(x.type)}`);
    }
    return this.make({ op: 'swapPairs' }, { ...x.type, shape: [...s] }, [x], span);
  }

  reduce(fn: 'sum' | 'max', x: GNode, axis: number, keepdim: boolean, span: Span): GNode {
    const r = x.type.shape.length;
    const a = axis < 0 ? axis + r : axis;
    if (a < 0 || a >= r) throw new ShapeRuleError(`${fn}: axis ${axis} out of range for ${fmtTType(x.type)}`);
    const shape = keepdim ? x.type.shape.map((d, i) => (i === a ? 1 : d)) : x.type.shape.filter((_, i) => i !== a);
    const d: ElemType = isFloat(x.type.dtype) ? 'f32' : x.type.dtype;
    return this.make({ op: 'reduce', fn, axis: a, keepdim }, { dtype: d, shape }, [this.cast(x, d, span)], span);
  }

  matmul(a: GNode, b: GNode, transB: boolean, span: Span): GNode {
    const as = a.type.shape;
    const bs = b.type.shape;
    if (as.length < 2 && !transB)
      throw new ShapeRuleError(`matmul needs at least 2-d operands, got ${fmtTType(a.type)}`);
    if (bs.length !== 2) throw new ShapeRuleError(`the weight of a matmul must be 2-d, got ${fmtTType(b.type)}`);
    const k = as[as.length - 1]!;
    const [bk, n] = transB ? [bs[1]!, bs[0]!] : [bs[0]!, bs[1]!];
    if (k !== bk) {
      throw new ShapeRuleError(
        `matmul inner dims differ: ${fmtShape(as)} x ${transB ? `${fmtShape(bs)}^T` : fmtShape(bs)} (${k} vs ${bk})`,
      );
    }
    if (a.type.dtype !== b.type.dtype) {
      throw new ShapeRuleError(
        `matmul operands must have one dtype, got ${a.type.dtype} and ${b.type.dtype} (cast one)`,
      );
    }
    // FP8 operands (the FP8 rewrite's quantised Linears) give the f32 accumulator; the scales follow
    const fp8 = a.type.dtype === 'e4m3' || a.type.dtype === 'e5m2';
    const dtype = fp8 ? 'f32' : a.type.dtype;
    return this.make({ op: 'matmul', transB }, { dtype, shape: [...as.slice(0, -1), n] }, [a, b], span);
  }

  /** A copy of node `n` (any op) over new inputs: for passes that rebuild a graph (compiler/layer/fp8.ts). */
  copy(n: GNode, inputs: GNode[]): GNode {
    const { id: _id, inputs: _inputs, type, span, ...op } = n;
    return this.make(op as GraphOp, { dtype: type.dtype, shape: [...type.shape] }, inputs, span);
  }

  attention(q: GNode, k: GNode, v: GNode, scale: number | undefined, span: Span, mask?: AttentionMaskDims): GNode {
    const [qs, ks, vs] = [q.type.shape, k.type.shape, v.type.shape];
    if (qs.length !== 3 || ks.length !== 3 || vs.length !== 3) {
      throw new ShapeRuleError(
        `attention takes q [Lq, H, D], k and v [Lk, H, D]; got ${fmtShape(qs)}, ${fmtShape(ks)}, ${fmtShape(vs)}`,
      );
    }
    if (qs[1] !== ks[1] || qs[2] !== ks[2] || ks.join() !== vs.join()) {
      throw new ShapeRuleError(
        `attention heads and head dims differ: q ${fmtShape(qs)}, k ${fmtShape(ks)}, v ${fmtShape(vs)}`,
      );
    }
    if (typeof qs[2] !== 'number') throw new ShapeRuleError(`attention needs a static head dim, got '${qs[2]}'`);
    if (q.type.dtype !== 'bf16' || k.type.dtype !== 'bf16' || v.type.dtype !== 'bf16') {
      throw new ShapeRuleError(
        `attention takes bf16 q, k and v (cast them), got ${q.type.dtype}, ${k.type.dtype}, ${v.type.dtype}`,
      );
    }
    const s = scale ?? 1 / Math.sqrt(qs[2]);
    return this.make(
      { op: 'attention', scale: s, ...(mask && Object.keys(mask).length ? { mask } : {}) },
      { dtype: 'bf16', shape: [...qs] },
      [q, k, v],
      span,
    );
  }

  /** x [T, H, W, Cin] * w [Cout, kt, ky, kx, Cin] (bf16) -> f32 [T', H', W', Cout]; see compiler/layer/conv.ts */
  conv(x: GNode, w: GNode, geom: ConvGeometry, span: Span, op = 'conv3d'): GNode {
    const type = convType(x.type, w.type, geom, op);
    if (typeof type === 'string') throw new ShapeRuleError(type);
    return this.make({ op: 'conv', ...geom }, type, [x, w], span);
  }

  reshape(x: GNode, shape: Dim[], span: Span): GNode {
    const prod = (s: readonly Dim[]) => {
      let n = 1;
      const syms: string[] = [];
      for (const d of s) {
        if (typeof d === 'number') n *= d;
        else syms.push(d);
      }
      return `${n}*${syms.sort().join('*')}`;
    };
    if (prod(shape) !== prod(x.type.shape)) {
      throw new ShapeRuleError(
        `reshape: ${fmtShape(x.type.shape)} cannot become ${fmtShape(shape)} (element counts differ)`,
      );
    }
    return this.make({ op: 'reshape' }, { dtype: x.type.dtype, shape }, [x], span);
  }

  /** xs joined along `axis` (static sizes there; every other dim equal) */
  concat(xs: GNode[], axis: number, span: Span): GNode {
    if (xs.length < 1) throw new ShapeRuleError('concat needs at least one tensor');
    const r = xs[0]!.type.shape.length;
    const a = axis < 0 ? axis + r : axis;
    if (a < 0 || a >= r) throw new ShapeRuleError(`concat: axis ${axis} out of range for ${fmtTType(xs[0]!.type)}`);
    let total = 0;
    for (const x of xs) {
      const s = x.type.shape;
      if (s.length !== r || s.some((d, i) => i !== a && d !== xs[0]!.type.shape[i]))
        throw new ShapeRuleError(
          `concat: ${fmtTType(x.type)} does not match ${fmtTType(xs[0]!.type)} outside axis ${axis}`,
        );
      if (x.type.dtype !== xs[0]!.type.dtype)
        throw new ShapeRuleError(`concat: dtypes differ (${xs[0]!.type.dtype} and ${x.type.dtype}); cast first`);
      const d = s[a]!;
      if (typeof d !== 'number') throw new ShapeRuleError(`concat: axis ${axis} of ${fmtTType(x.type)} is not static`);
      total += d;
    }
    const shape = xs[0]!.type.shape.map((d, i) => (i === a ? total : d));
    return this.make({ op: 'concat', axis: a }, { dtype: xs[0]!.type.dtype, shape }, xs, span);
  }

  /** x[..., start:end, ...] along `axis` (static bounds, a static dim) */
  slice(x: GNode, axis: number, start: number, end: number, span: Span): GNode {
    const r = x.type.shape.length;
    const a = axis < 0 ? axis + r : axis;
    if (a < 0 || a >= r) throw new ShapeRuleError(`slice: axis ${axis} out of range for ${fmtTType(x.type)}`);
    const d = x.type.shape[a]!;
    if (typeof d !== 'number') throw new ShapeRuleError(`slice: axis ${axis} of ${fmtTType(x.type)} is not static`);
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > d || start >= end) {
      throw new ShapeRuleError(
        `slice: [${start}, ${end}) is not a non-empty range inside axis ${axis} of ${fmtTType(x.type)}`,
      );
    }
    const shape = x.type.shape.map((s, i) => (i === a ? end - start : s));
    return this.make({ op: 'slice', axis: a, start }, { dtype: x.type.dtype, shape }, [x], span);
  }

  permute(x: GNode, perm: number[], span: Span): GNode {
    const r = x.type.shape.length;
    if (perm.length !== r || new Set(perm).size !== r || perm.some((p) => p < 0 || p >= r)) {
      throw new ShapeRuleError(`permute: [${perm.join(', ')}] is not a permutation of ${r} dims`);
    }
    return this.make(
      { op: 'permute', perm },
      { dtype: x.type.dtype, shape: perm.map((p) => x.type.shape[p]!) },
      [x],
      span,
    );
  }
}

type Binding = { kind: 'tensor'; node: GNode } | { kind: 'tuple'; nodes: GNode[] };

/** Lowers one `layer(...)` to a graph. */
export function lowerLayer(p: DslProgram, ref: KernelSourceRef): LayerGraph {
  return new LayerLowering(p, ref).run();
}

class LayerLowering {
  private readonly g = new GraphBuilder();
  private readonly scopes: Map<ts.Symbol, Binding>[] = [new Map()];
  private depth = 0;

  constructor(
    private readonly p: DslProgram,
    private readonly ref: KernelSourceRef,
  ) {}

  run(): LayerGraph {
    const call = this.ref.node;
    const fn = call.arguments[0];
    if (!fn || !(ts.isArrowFunction(fn) || ts.isFunctionExpression(fn))) {
      throw dslError(call, "layer() takes an arrow function: layer((x: Tensor<bf16, ['L', 1536]>) => ...)");
    }
    const inputs = fn.parameters.map((param, i) => this.declareInput(param, i));
    const result = this.guard(fn.body, () => this.body(fn.body));
    const outputs = result.kind === 'tensor' ? [result.node] : result.nodes;
    // nodes no output depends on (e.g. a transpose folded into a matmul) are dropped; inputs stay
    const live = new Set<number>();
    const mark = (n: GNode): void => {
      if (live.has(n.id)) return;
      live.add(n.id);
      n.inputs.forEach(mark);
    };
    outputs.forEach(mark);
    const nodes = this.g.nodes.filter((n) => live.has(n.id) || n.op === 'input');
    return { name: this.ref.name, file: spanOf(call).file, span: spanOf(call), inputs, outputs, nodes };
  }

  private guard<T>(node: ts.Node, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof DslError) throw e;
      if (e instanceof ShapeRuleError) throw dslError(node, e.message);
      throw dslError(node, `sfc compiler bug while lowering this code: ${(e as Error).message}`);
    }
  }

  private bind(name: ts.Node, b: Binding): void {
    const sym = this.p.checker.getSymbolAtLocation(name);
    if (!sym) throw dslError(name, 'cannot resolve this name');
    this.scopes[this.scopes.length - 1]!.set(sym, b);
  }

  private lookup(node: ts.Node): Binding | undefined {
    const sym = this.p.checker.getSymbolAtLocation(node);
    if (!sym) return undefined;
    for (let i = this.scopes.length - 1; i >= 0; i--) {
      const b = this.scopes[i]!.get(sym);
      if (b) return b;
    }
    return undefined;
  }

  private declareInput(param: ts.ParameterDeclaration, index: number): GNode {
    if (!ts.isIdentifier(param.name)) throw dslError(param.name, 'layer parameters must be plain names');
    const name = param.name.text;
    const t = param.type;
    const span = spanOf(param);
    const bad = () =>
      dslError(t ?? param, `parameter '${name}' needs a type: Tensor<dtype, [dims]> or a dtype such as f32`);
    if (!t || !ts.isTypeReferenceNode(t)) throw bad();
    const s = this.p.dslSymbol(t.typeName);
    let type: TType;
    if (s?.module === 'layer' && s.name === 'Tensor') {
      const [dt, sh] = t.typeArguments ?? [];
      const d = dt && ts.isTypeReferenceNode(dt) ? this.p.dslSymbol(dt.typeName)?.name : undefined;
      if (!d || !dtypeOf(d)) throw dslError(dt ?? t, "Tensor needs an element dtype, e.g. Tensor<bf16, ['L', 1536]>");
      if (!sh || !ts.isTupleTypeNode(sh)) throw dslError(sh ?? t, "Tensor needs a shape tuple, e.g. ['L', 1536]");
      const shape = sh.elements.map((el): Dim => {
        if (ts.isLiteralTypeNode(el) && ts.isNumericLiteral(el.literal)) return Number(el.literal.text);
        if (ts.isLiteralTypeNode(el) && ts.isStringLiteral(el.literal)) return el.literal.text;
        if (ts.isTypeReferenceNode(el) && !el.typeArguments) {
          // a named static size: `type DIM = 1536`, specialised by the build from a model preset
          const special = ts.isIdentifier(el.typeName) ? this.p.specialize.get(el.typeName.text) : undefined;
          if (special !== undefined) return special;
          const t = this.p.checker.getTypeFromTypeNode(el);
          if (t.isNumberLiteral()) return t.value;
        }
        throw dslError(
          el,
          "a dim is a number (static), a string (symbolic) or a `type NAME = 1536` alias, e.g. ['L', 1536]",
        );
      });
      type = { dtype: d as ElemType, shape };
    } else if (s && dtypeOf(s.name)) {
      type = { dtype: s.name as ElemType, shape: [] };
    } else throw bad();
    const node = this.g.input(index, name, type, span);
    this.bind(param.name, { kind: 'tensor', node });
    return node;
  }

  private body(b: ts.ConciseBody): Binding {
    if (!ts.isBlock(b)) return this.value(b);
    this.scopes.push(new Map());
    try {
      for (const st of b.statements) {
        if (ts.isVariableStatement(st)) {
          if ((st.declarationList.flags & ts.NodeFlags.Const) === 0)
            throw dslError(st, 'layers use const bindings (a layer is a dataflow graph)');
          for (const d of st.declarationList.declarations) {
            if (!d.initializer) throw dslError(d, 'a const needs a value');
            const v = this.guard(d.initializer, () => this.value(d.initializer!));
            if (ts.isIdentifier(d.name)) this.bind(d.name, v);
            else if (ts.isArrayBindingPattern(d.name) && v.kind === 'tuple') {
              d.name.elements.forEach((el, i) => {
                if (ts.isOmittedExpression(el)) return;
                if (!ts.isIdentifier(el.name)) throw dslError(el, 'only plain names can be destructured');
                const n = v.nodes[i];
                if (!n) throw dslError(el, `the value has only ${v.nodes.length} elements`);
                this.bind(el.name, { kind: 'tensor', node: n });
              });
            } else throw dslError(d.name, 'cannot destructure this value');
          }
        } else if (ts.isReturnStatement(st)) {
          if (!st.expression) throw dslError(st, 'a layer returns its output tensor(s)');
          return this.guard(st.expression, () => this.value(st.expression!));
        } else {
          throw dslError(st, `${ts.SyntaxKind[st.kind]} is not supported in layers (use const bindings and return)`);
        }
      }
      throw dslError(b, 'a layer must return its output tensor(s)');
    } finally {
      this.scopes.pop();
    }
  }

  private tensor(e: ts.Expression): GNode {
    const v = this.value(e);
    if (v.kind !== 'tensor') throw dslError(e, 'expected a tensor, got a list');
    return v.node;
  }

  private value(e: ts.Expression): Binding {
    return this.guard(e, () => this.valueInner(e));
  }

  private valueInner(e: ts.Expression): Binding {
    const span = spanOf(e);
    const t = (n: GNode): Binding => ({ kind: 'tensor', node: n });
    if (ts.isParenthesizedExpression(e) || ts.isAsExpression(e) || ts.isNonNullExpression(e))
      return this.value(e.expression);
    if (ts.isNumericLiteral(e)) return t(this.g.literal(Number(e.text), span, e.getText()));
    if (ts.isArrayLiteralExpression(e)) return { kind: 'tuple', nodes: e.elements.map((x) => this.tensor(x)) };
    if (ts.isIdentifier(e) || ts.isPropertyAccessExpression(e)) {
      const b = this.lookup(ts.isPropertyAccessExpression(e) ? e.name : e);
      if (b) return b;
      return t(this.g.literal(constValue(this.p, e), span));
    }
    if (ts.isPrefixUnaryExpression(e) && e.operator === ts.SyntaxKind.MinusToken) {
      const x = this.tensor(e.operand);
      return t(x.op === 'const' ? this.g.constant(-x.value, x.type.dtype, span, x.weak) : this.g.unary('neg', x, span));
    }
    if (ts.isBinaryExpression(e)) {
      const fn = binaryOps[e.operatorToken.kind];
      if (!fn) throw dslError(e.operatorToken, `operator ${e.operatorToken.getText()} is not supported in layers`);
      return t(this.g.binary(fn, this.tensor(e.left), this.tensor(e.right), span));
    }
    if (ts.isConditionalExpression(e)) {
      return t(this.g.where(this.tensor(e.condition), this.tensor(e.whenTrue), this.tensor(e.whenFalse), span));
    }
    if (ts.isCallExpression(e)) return this.call(e);
    throw dslError(e, `${ts.SyntaxKind[e.kind]} is not supported in layers`);
  }

  private constArg(e: ts.Expression | undefined, call: ts.CallExpression, what: string): number {
    if (!e) throw dslError(call, `${what} is missing`);
    return constValue(this.p, e);
  }

  private dimsArg(e: ts.Expression | undefined, call: ts.CallExpression): Dim[] {
    if (!e || !ts.isArrayLiteralExpression(e))
      throw dslError(e ?? call, "a shape is an array literal, e.g. ['L', 12, 128]");
    return e.elements.map((x) => (ts.isStringLiteral(x) ? x.text : constValue(this.p, x)));
  }

  private call(call: ts.CallExpression): Binding {
    const s = this.p.dslSymbol(call.expression);
    const span = spanOf(call);
    const a = call.arguments;
    const t = (n: GNode): Binding => ({ kind: 'tensor', node: n });
    if (!s) return this.inline(call);
    if (s.module !== 'layer')
      throw dslError(call.expression, `'${s.name}' is a kernel intrinsic; layers use the ops of dsl/layer.ts`);
    const x = () => this.tensor(a[0]!);
    const g = this.g;
    const name = s.name;
    if (name in unaryOps) {
      const v = x();
      return t(g.cast(g.unary(unaryOps[name]!, v, span), isFloat(v.type.dtype) ? v.type.dtype : 'f32', span));
    }
    switch (name) {
      case 'layerNorm':
        return t(
          this.layerNorm(
            x(),
            this.constArg(a[1], call, 'eps'),
            a[2] && this.tensor(a[2]),
            a[3] && this.tensor(a[3]),
            span,
          ),
        );
      case 'rmsNorm':
        return t(this.rmsNorm(x(), this.tensor(a[1]!), this.constArg(a[2], call, 'eps'), span));
      case 'softmax':
        return t(this.softmax(x(), a[1] ? this.constArg(a[1], call, 'axis') : -1, span));
      case 'silu': {
        const v = x();
        const f = g.cast(v, 'f32', span);
        return t(g.cast(g.binary('mul', f, g.unary('sigmoid', f, span), span), v.type.dtype, span));
      }
      case 'geluTanh': {
        const v = x();
        const f = g.cast(v, 'f32', span);
        const c = (k: number) => g.literal(k, span);
        const inner = g.binary(
          'mul',
          c(0.7978845608028654),
          g.binary(
            'add',
            f,
            g.binary('mul', c(0.044715), g.binary('mul', f, g.binary('mul', f, f, span), span), span),
            span,
          ),
          span,
        );
        const y = g.binary(
          'mul',
          g.binary('mul', c(0.5), f, span),
          g.binary('add', c(1), g.unary('tanh', inner, span), span),
          span,
        );
        return t(g.cast(y, v.type.dtype, span));
      }
      case 'swapPairs':
        return t(g.swapPairs(x(), span));
      case 'rope': {
        const v = x();
        const f = g.cast(v, 'f32', span);
        const c = g.cast(this.tensor(a[1]!), 'f32', span);
        const sn = g.cast(this.tensor(a[2]!), 'f32', span);
        const y = g.binary('add', g.binary('mul', f, c, span), g.binary('mul', g.swapPairs(f, span), sn, span), span);
        if (y.type.shape.join() !== v.type.shape.join()) {
          throw new ShapeRuleError(
            `rope tables ${fmtShape(c.type.shape)} must broadcast to x ${fmtShape(v.type.shape)}, not widen it`,
          );
        }
        return t(g.cast(y, v.type.dtype, span));
      }
      case 'maximum':
      case 'minimum':
        return t(g.binary(name, x(), this.tensor(a[1]!), span));
      case 'where':
        return t(g.where(x(), this.tensor(a[1]!), this.tensor(a[2]!), span));
      case 'cast': {
        const d = a[1] && this.p.dslSymbol(a[1])?.name;
        if (!d || !dtypeOf(d)) throw dslError(a[1] ?? call, 'expected a dtype such as f32 or bf16');
        return t(g.cast(x(), d as ElemType, span));
      }
      case 'sum':
      case 'max':
      case 'mean': {
        const v = x();
        const axis = this.constArg(a[1], call, 'axis');
        const k = a[2];
        const keep = !k
          ? false
          : k.kind === ts.SyntaxKind.TrueKeyword
            ? true
            : k.kind === ts.SyntaxKind.FalseKeyword
              ? false
              : constValue(this.p, k) !== 0;
        if (name === 'mean') {
          const r = g.reduce('sum', v, axis, keep, span);
          const dim = v.type.shape[axis < 0 ? axis + v.type.shape.length : axis]!;
          return t(g.binary('div', r, g.cast(g.dimValue(dim, span), 'f32', span), span));
        }
        return t(g.reduce(name, v, axis, keep, span));
      }
      case 'linear': {
        const y = g.matmul(x(), this.tensor(a[1]!), true, span);
        return t(a[2] ? g.cast(g.binary('add', y, this.tensor(a[2]), span), y.type.dtype, span) : y);
      }
      case 'matmul': {
        // a @ b^T with b a 2-d transpose: the matmul reads b transposed (no copy)
        const b = this.tensor(a[1]!);
        const tb = b.op === 'permute' && b.perm.length === 2 && b.perm[0] === 1;
        return t(g.matmul(x(), tb ? b.inputs[0]! : b, tb, span));
      }
      case 'attention': {
        // attention(q, k, v, scale?) or attention(q, k, v, { scale?, blockTokens?, window?, sink? })
        const o = a[3] && ts.isObjectLiteralExpression(a[3]) ? this.attentionOptions(a[3]) : undefined;
        const scale = o ? o.scale : a[3] ? this.constArg(a[3], call, 'scale') : undefined;
        return t(g.attention(x(), this.tensor(a[1]!), this.tensor(a[2]!), scale, span, o?.mask));
      }
      case 'conv3d':
      case 'conv2d':
        return t(this.conv(name, call, span));
      case 'reshape':
        return t(g.reshape(x(), this.dimsArg(a[1], call), span));
      case 'permute':
        return t(g.permute(x(), this.dimsArg(a[1], call).map(Number), span));
      case 'concat': {
        const list = a[0];
        if (!list || !ts.isArrayLiteralExpression(list))
          throw dslError(list ?? call, 'concat takes an array of tensors: concat([a, b], -1)');
        return t(
          g.concat(
            list.elements.map((e) => this.tensor(e)),
            this.constArg(a[1], call, 'axis'),
            span,
          ),
        );
      }
      case 'slice':
        return t(
          g.slice(
            x(),
            this.constArg(a[1], call, 'axis'),
            this.constArg(a[2], call, 'start'),
            this.constArg(a[3], call, 'end'),
            span,
          ),
        );
      case 'transpose': {
        const v = x();
        const r = v.type.shape.length;
        const i = this.constArg(a[1], call, 'dim');
        const j = this.constArg(a[2], call, 'dim');
        const perm = [...Array(r).keys()];
        const ii = i < 0 ? i + r : i;
        const jj = j < 0 ? j + r : j;
        [perm[ii], perm[jj]] = [perm[jj]!, perm[ii]!];
        return t(g.permute(v, perm, span));
      }
      case 'unsqueeze': {
        const v = x();
        const axis = this.constArg(a[1], call, 'axis');
        const shape = [...v.type.shape];
        shape.splice(axis < 0 ? axis + shape.length + 1 : axis, 0, 1);
        return t(g.reshape(v, shape, span));
      }
      default:
        throw dslError(call.expression, `'${name}' is not a layer op`);
    }
  }

  /**
   * conv3d(x, w, b?, {stride, padding, causal}) and conv2d (a conv3d with kt = 1 over [N, H, W, C]
   * or one [H, W, C] frame): the conv node, plus the bias as an element-wise add.
   */
  private conv(name: 'conv3d' | 'conv2d', call: ts.CallExpression, span: Span): GNode {
    const g = this.g;
    const a = call.arguments;
    let x = this.tensor(a[0]!);
    let w = this.tensor(a[1]!);
    const bias = a[2] && !(ts.isIdentifier(a[2]) && a[2].text === 'undefined') ? this.tensor(a[2]) : undefined;
    const dims = name === 'conv3d' ? 3 : 2;
    const opts = this.convOptions(a[3], dims);
    const frame = name === 'conv2d' && x.type.shape.length === 3;
    if (name === 'conv2d') {
      // frames-first: the leading dim of [N, H, W, C] is conv3d's T with a 1-tap kernel
      if (frame) x = g.reshape(x, [1, ...x.type.shape], span);
      if (w.type.shape.length === 4) w = g.reshape(w, [w.type.shape[0]!, 1, ...w.type.shape.slice(1)], span);
      else throw new ShapeRuleError(`conv2d takes w [Cout, ky, kx, Cin], got ${fmtShape(w.type.shape)}`);
    }
    const [ps, ss] = [opts.padding, opts.stride];
    const geom: ConvGeometry = {
      kernel: w.type.shape.slice(1, 4) as Triple,
      stride: ss,
      pad: [opts.causal ? [2 * ps[0], 0] : [ps[0], ps[0]], [ps[1], ps[1]], [ps[2], ps[2]]],
    };
    let y = g.conv(x, w, geom, span, name);
    if (frame) y = g.reshape(y, y.type.shape.slice(1), span);
    return bias ? g.binary('add', y, bias, span) : y;
  }

  /** `{ stride, padding, causal }` of a convolution (each a number or a per-dim list) */
  private convOptions(e: ts.Expression | undefined, dims: 2 | 3): { stride: Triple; padding: Triple; causal: boolean } {
    const r = { stride: [1, 1, 1] as Triple, padding: [0, 0, 0] as Triple, causal: false };
    if (!e) return r;
    if (!ts.isObjectLiteralExpression(e))
      throw dslError(e, 'convolution options are an object literal, e.g. { stride: 2, padding: 1, causal: true }');
    for (const prop of e.properties) {
      if (!ts.isPropertyAssignment(prop) || !ts.isIdentifier(prop.name))
        throw dslError(prop, 'write convolution options as `name: value`');
      const key = prop.name.text;
      const v = prop.initializer;
      if (key === 'causal' && dims === 3) {
        if (v.kind !== ts.SyntaxKind.TrueKeyword && v.kind !== ts.SyntaxKind.FalseKeyword)
          throw dslError(v, 'causal is true or false');
        r.causal = v.kind === ts.SyntaxKind.TrueKeyword;
      } else if (key === 'stride' || key === 'padding') {
        const vals = ts.isArrayLiteralExpression(v) ? v.elements.map((x) => constValue(this.p, x)) : undefined;
        if (vals && vals.length !== dims)
          throw dslError(v, `${key} is one number or ${dims} (${dims === 3 ? 't, y, x' : 'y, x'}), got ${vals.length}`);
        const per = vals ?? Array<number>(dims).fill(constValue(this.p, v));
        r[key] = (dims === 3 ? per : [key === 'stride' ? 1 : 0, ...per]) as Triple;
      } else
        throw dslError(
          prop.name,
          `'${key}' is not a ${dims === 3 ? 'conv3d' : 'conv2d'} option (${dims === 3 ? 'stride, padding, causal' : 'stride, padding'})`,
        );
    }
    return r;
  }

  /** `{ scale?, blockTokens?, window?, sink? }` of attention: numbers, or dim names ('T') for the masks */
  private attentionOptions(e: ts.ObjectLiteralExpression): { scale?: number; mask: AttentionMaskDims } {
    const r: { scale?: number; mask: AttentionMaskDims } = { mask: {} };
    const keys: Record<string, keyof AttentionMaskDims> = {
      blockTokens: 'blockTokens',
      window: 'windowTokens',
      sink: 'sinkTokens',
    };
    for (const prop of e.properties) {
      if (!ts.isPropertyAssignment(prop) || !ts.isIdentifier(prop.name))
        throw dslError(prop, 'write attention options as `name: value`');
      const key = prop.name.text;
      const v = prop.initializer;
      if (key === 'scale') r.scale = constValue(this.p, v);
      else if (keys[key]) {
        const d: Dim = ts.isStringLiteral(v) ? v.text : constValue(this.p, v);
        if (typeof d === 'number' && (!Number.isInteger(d) || d < 0))
          throw dslError(v, `${key} is a whole number of tokens or a dim name, got ${d}`);
        r.mask[keys[key]] = d;
      } else throw dslError(prop.name, `'${key}' is not an attention option (scale, blockTokens, window, sink)`);
    }
    return r;
  }

  /** mean / variance in float32 over the last dim; output in x's dtype */
  private layerNorm(x: GNode, eps: number, w: GNode | undefined, b: GNode | undefined, span: Span): GNode {
    const g = this.g;
    const f = g.cast(x, 'f32', span);
    const n = g.cast(g.dimValue(x.type.shape[x.type.shape.length - 1]!, span), 'f32', span);
    const mean = g.binary('div', g.reduce('sum', f, -1, true, span), n, span);
    const d = g.binary('sub', f, mean, span);
    const varr = g.binary('div', g.reduce('sum', g.binary('mul', d, d, span), -1, true, span), n, span);
    let y = g.binary('mul', d, g.unary('rsqrt', g.binary('add', varr, g.literal(eps, span), span), span), span);
    if (w) y = g.binary('mul', y, w, span);
    if (b) y = g.binary('add', y, b, span);
    return g.cast(y, x.type.dtype, span);
  }

  /** as WanRMSNorm: normalise in float32, cast back to x's dtype, then scale by the weight */
  private rmsNorm(x: GNode, w: GNode, eps: number, span: Span): GNode {
    const g = this.g;
    const f = g.cast(x, 'f32', span);
    const n = g.cast(g.dimValue(x.type.shape[x.type.shape.length - 1]!, span), 'f32', span);
    const ms = g.binary('div', g.reduce('sum', g.binary('mul', f, f, span), -1, true, span), n, span);
    const y = g.cast(
      g.binary('mul', f, g.unary('rsqrt', g.binary('add', ms, g.literal(eps, span), span), span), span),
      x.type.dtype,
      span,
    );
    return g.binary('mul', y, w, span);
  }

  private softmax(x: GNode, axis: number, span: Span): GNode {
    const g = this.g;
    const f = g.cast(x, 'f32', span);
    const e = g.unary('exp', g.binary('sub', f, g.reduce('max', f, axis, true, span), span), span);
    return g.cast(g.binary('div', e, g.reduce('sum', e, axis, true, span), span), x.type.dtype, span);
  }

  /** a helper function: inlined with its arguments bound */
  private inline(call: ts.CallExpression): Binding {
    let sym = this.p.checker.getSymbolAtLocation(call.expression);
    if (sym && sym.flags & ts.SymbolFlags.Alias) sym = this.p.checker.getAliasedSymbol(sym);
    const decl = sym?.valueDeclaration;
    let fn: ts.FunctionLikeDeclaration | undefined;
    if (decl && ts.isFunctionDeclaration(decl)) fn = decl;
    else if (
      decl &&
      ts.isVariableDeclaration(decl) &&
      decl.initializer &&
      (ts.isArrowFunction(decl.initializer) || ts.isFunctionExpression(decl.initializer))
    ) {
      fn = decl.initializer;
    }
    if (!fn?.body || decl!.getSourceFile().isDeclarationFile) {
      throw dslError(call.expression, `'${call.expression.getText()}' is not a layer op or a helper function`);
    }
    if (this.depth >= 16) throw dslError(call, 'helpers nest too deeply (recursion is not supported in layers)');
    const args = fn.parameters.map((p, i) => {
      const arg = call.arguments[i] ?? p.initializer;
      if (!arg) throw dslError(call, `missing argument '${p.name.getText()}'`);
      return this.value(arg);
    });
    const saved = this.scopes.splice(0, this.scopes.length, new Map());
    this.depth++;
    try {
      fn.parameters.forEach((p, i) => {
        if (!ts.isIdentifier(p.name)) throw dslError(p.name, 'destructuring parameters are not supported in layers');
        this.bind(p.name, args[i]!);
      });
      return this.body(fn.body);
    } finally {
      this.depth--;
      this.scopes.splice(0, this.scopes.length, ...saved);
    }
  }
}
