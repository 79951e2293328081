// The front end: TypeScript source -> kernel IR. A program is built with `ts.createProgram` and the
// type checker resolves every identifier, so imports, helper functions, constants and config
// objects mean what the editor shows. Calls resolve to a DSL intrinsic (declared in dsl/kernel.ts),
// to a helper function (inlined), or are a diagnostic. Statements and expressions are lowered by
// visitor tables keyed by syntax kind; anything else is "X is not supported in kernels" at its
// source location. Bad DSL source never produces an internal error: see `guard`.
import { dirname, join, resolve } from 'node:path';
import ts from 'typescript';
import { dtypeOf } from '../dsl/dtypes.js';
import { Builder, RuleError } from './builder.js';
import { DslError, dslError, fromTsDiagnostic, spanOf } from './diagnostics.js';
import {
  fmtType,
  isInt,
  walk,
  type BinaryOp,
  type ElemType,
  type KernelIR,
  type KernelParam,
  type Stmt,
  type UnaryOp,
  type Value,
  type VType,
} from './ir.js';

export interface KernelSourceRef {
  name: string;
  file: string;
  node: ts.CallExpression;
}

export interface FrontendOptions {
  /** overrides of Const parameters, by kernel parameter name */
  consts?: Record<string, number>;
  /** warps per program, overriding the kernel's option and the automatic choice (tuning) */
  warps?: number;
}

const compilerOptions: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  types: [],
};

/** A TypeScript program over DSL files; `virtual` maps absolute paths to in-memory text. */
export class DslProgram {
  readonly program: ts.Program;
  readonly checker: ts.TypeChecker;

  /**
   * Static sizes specialised at build time (e.g. from a model preset): a top-level `const NAME` or
   * `type NAME` of a DSL file whose name is here takes this value instead of its written one.
   */
  specialize: ReadonlyMap<string, number> = new Map();

  constructor(
    readonly files: string[],
    virtual: Map<string, string> = new Map(),
  ) {
    const host = ts.createCompilerHost(compilerOptions);
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (name, lang, onError, create) => {
      const text = virtual.get(resolve(name));
      return text !== undefined
        ? ts.createSourceFile(name, text, lang, true)
        : getSourceFile(name, lang, onError, create);
    };
    const fileExists = host.fileExists.bind(host);
    host.fileExists = (name) => virtual.has(resolve(name)) || fileExists(name);
    const readFile = host.readFile.bind(host);
    host.readFile = (name) => virtual.get(resolve(name)) ?? readFile(name);
    this.program = ts.createProgram(
      files.map((f) => resolve(f)),
      compilerOptions,
      host,
    );
    this.checker = this.program.getTypeChecker();
  }

  sourceFile(file: string): ts.SourceFile {
    const sf = this.program.getSourceFile(resolve(file));
    if (!sf) throw new DslError({ file, line: 1, col: 1 }, `cannot read DSL source ${file}`, '');
    return sf;
  }

  /** Syntax and type errors of a file, as DslErrors (the first one is thrown by `kernels()`). */
  diagnostics(file: string): DslError[] {
    const sf = this.sourceFile(file);
    const diags = [...this.program.getSyntacticDiagnostics(sf), ...this.program.getSemanticDiagnostics(sf)];
    return diags.map(fromTsDiagnostic);
  }

  /** The kernels a file defines: `const NAME = kernel(...)` at its top level. */
  kernels(file: string): KernelSourceRef[] {
    const errors = this.diagnostics(file);
    if (errors.length) throw errors[0]!;
    const sf = this.sourceFile(file);
    const out: KernelSourceRef[] = [];
    for (const st of sf.statements) {
      if (!ts.isVariableStatement(st)) continue;
      for (const d of st.declarationList.declarations) {
        if (d.initializer && ts.isCallExpression(d.initializer) && ts.isIdentifier(d.name)) {
          if (this.dslName(d.initializer.expression) === 'kernel')
            out.push({ name: d.name.text, file, node: d.initializer });
        }
      }
    }
    return out;
  }

  /** The name of the dsl/ export an expression refers to, or undefined. */
  dslName(node: ts.Node): string | undefined {
    const s = this.dslSymbol(node);
    return s && s.module !== 'layer' ? s.name : undefined;
  }

  /** The dsl/ module (kernel, dtypes or layer) and export name an expression refers to. */
  dslSymbol(node: ts.Node): { module: 'kernel' | 'dtypes' | 'layer'; name: string } | undefined {
    let sym = this.checker.getSymbolAtLocation(node);
    if (!sym) return undefined;
    if (sym.flags & ts.SymbolFlags.Alias) sym = this.checker.getAliasedSymbol(sym);
    const decl = sym.declarations?.[0];
    if (!decl) return undefined;
    const f = decl.getSourceFile().fileName.replace(/\\/g, '/');
    const m = /\/dsl\/(kernel|dtypes|index|layer)\.(d\.)?ts$/.exec(f);
    if (!m) return undefined;
    return { module: m[1] === 'index' ? 'kernel' : (m[1] as 'kernel' | 'dtypes' | 'layer'), name: sym.name };
  }

  /** The layers a file defines: `const NAME = layer(...)` at its top level. */
  layers(file: string): KernelSourceRef[] {
    const errors = this.diagnostics(file);
    if (errors.length) throw errors[0]!;
    const out: KernelSourceRef[] = [];
    for (const st of this.sourceFile(file).statements) {
      if (!ts.isVariableStatement(st)) continue;
      for (const d of st.declarationList.declarations) {
        if (d.initializer && ts.isCallExpression(d.initializer) && ts.isIdentifier(d.name)) {
          const s = this.dslSymbol(d.initializer.expression);
          if (s?.module === 'layer' && s.name === 'layer') out.push({ name: d.name.text, file, node: d.initializer });
        }
      }
    }
    return out;
  }

  /** Lowers one kernel to IR. */
  lower(ref: KernelSourceRef, opts: FrontendOptions = {}): KernelIR {
    return new Lowering(this, ref, opts).run();
  }
}

/** Convenience: compile DSL source text held in memory (tests, tools). */
export function programFromText(path: string, text: string): DslProgram {
  return new DslProgram([path], new Map([[resolve(path), text]]));
}

type Binding =
  | { kind: 'value'; value: Value }
  | { kind: 'var'; varId: number; type: VType; name: string }
  | { kind: 'ptr'; param: number; dtype: ElemType }
  | { kind: 'object'; props: Map<string, Binding> };

/** TypeScript operators -> IR binary ops (shared by the kernel and layer front ends). */
export const binaryOps: Partial<Record<ts.SyntaxKind, BinaryOp>> = {
  [ts.SyntaxKind.PlusToken]: 'add',
  [ts.SyntaxKind.MinusToken]: 'sub',
  [ts.SyntaxKind.AsteriskToken]: 'mul',
  [ts.SyntaxKind.SlashToken]: 'div',
  [ts.SyntaxKind.PercentToken]: 'rem',
  [ts.SyntaxKind.LessThanToken]: 'lt',
  [ts.SyntaxKind.LessThanEqualsToken]: 'le',
  [ts.SyntaxKind.GreaterThanToken]: 'gt',
  [ts.SyntaxKind.GreaterThanEqualsToken]: 'ge',
  [ts.SyntaxKind.EqualsEqualsToken]: 'eq',
  [ts.SyntaxKind.EqualsEqualsEqualsToken]: 'eq',
  [ts.SyntaxKind.ExclamationEqualsToken]: 'ne',
  [ts.SyntaxKind.ExclamationEqualsEqualsToken]: 'ne',
  [ts.SyntaxKind.AmpersandAmpersandToken]: 'and',
  [ts.SyntaxKind.BarBarToken]: 'or',
  [ts.SyntaxKind.AmpersandToken]: 'bitand',
  [ts.SyntaxKind.BarToken]: 'bitor',
  [ts.SyntaxKind.CaretToken]: 'bitxor',
  [ts.SyntaxKind.LessThanLessThanToken]: 'shl',
  [ts.SyntaxKind.GreaterThanGreaterThanToken]: 'shr',
  [ts.SyntaxKind.GreaterThanGreaterThanGreaterThanToken]: 'ushr',
};

const compoundOps: Partial<Record<ts.SyntaxKind, BinaryOp>> = {
  [ts.SyntaxKind.PlusEqualsToken]: 'add',
  [ts.SyntaxKind.MinusEqualsToken]: 'sub',
  [ts.SyntaxKind.AsteriskEqualsToken]: 'mul',
  [ts.SyntaxKind.SlashEqualsToken]: 'div',
  [ts.SyntaxKind.PercentEqualsToken]: 'rem',
  [ts.SyntaxKind.AmpersandEqualsToken]: 'bitand',
  [ts.SyntaxKind.BarEqualsToken]: 'bitor',
  [ts.SyntaxKind.CaretEqualsToken]: 'bitxor',
  [ts.SyntaxKind.LessThanLessThanEqualsToken]: 'shl',
  [ts.SyntaxKind.GreaterThanGreaterThanEqualsToken]: 'shr',
};

const unaryMath: Record<string, UnaryOp> = {
  exp: 'exp',
  exp2: 'exp2',
  log: 'log',
  log2: 'log2',
  sqrt: 'sqrt',
  rsqrt: 'rsqrt',
  tanh: 'tanh',
  sigmoid: 'sigmoid',
  erf: 'erf',
  sin: 'sin',
  cos: 'cos',
  abs: 'abs',
  floor: 'floor',
  ceil: 'ceil',
};

/** Evaluates a compile-time numeric constant (literals, const declarations, config objects). */
export function constValue(p: DslProgram, e: ts.Expression, depth = 0): number {
  const checker = p.checker;
  if (depth > 32) throw dslError(e, 'constant definition is too deeply nested (cycle?)');
  if (ts.isParenthesizedExpression(e) || ts.isAsExpression(e) || ts.isSatisfiesExpression(e))
    return constValue(p, e.expression, depth + 1);
  if (ts.isNumericLiteral(e)) return Number(e.text);
  if (ts.isPrefixUnaryExpression(e) && e.operator === ts.SyntaxKind.MinusToken)
    return -constValue(p, e.operand, depth + 1);
  if (ts.isBinaryExpression(e)) {
    const op = binaryOps[e.operatorToken.kind];
    const a = constValue(p, e.left, depth + 1);
    const c = constValue(p, e.right, depth + 1);
    switch (op) {
      case 'add':
        return a + c;
      case 'sub':
        return a - c;
      case 'mul':
        return a * c;
      case 'div':
        return a / c;
      case 'rem':
        return a % c;
      case 'shl':
        return a << c;
      case 'shr':
        return a >> c;
      default:
        throw dslError(e, 'unsupported operator in a compile-time constant');
    }
  }
  if (ts.isIdentifier(e) || ts.isPropertyAccessExpression(e)) {
    const builtin = builtinConstants[e.getText()];
    if (builtin !== undefined && isLibSymbol(p, e)) return builtin;
    let sym = checker.getSymbolAtLocation(ts.isPropertyAccessExpression(e) ? e.name : e);
    if (sym && sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
    const decl = sym?.valueDeclaration;
    if (
      decl &&
      ts.isVariableDeclaration(decl) &&
      decl.initializer &&
      (ts.getCombinedNodeFlags(decl) & ts.NodeFlags.Const) !== 0
    ) {
      const special = ts.isIdentifier(decl.name) ? p.specialize.get(decl.name.text) : undefined;
      if (special !== undefined) return special;
      return constValue(p, decl.initializer, depth + 1);
    }
    if (decl && ts.isPropertyAssignment(decl)) return constValue(p, decl.initializer, depth + 1);
    if (decl && ts.isEnumMember(decl)) {
      const v = checker.getConstantValue(decl);
      if (typeof v === 'number') return v;
    }
    const what = sym
      ? `'${e.getText()}' is not a compile-time constant or a kernel value`
      : `cannot find name '${e.getText()}'`;
    throw dslError(e, what);
  }
  throw dslError(e, 'expected a compile-time numeric constant');
}

function isLibSymbol(p: DslProgram, e: ts.Expression): boolean {
  const sym = p.checker.getSymbolAtLocation(ts.isPropertyAccessExpression(e) ? e.name : e);
  const f = sym?.declarations?.[0]?.getSourceFile();
  return !!f && p.program.isSourceFileDefaultLibrary(f);
}

/** Global numeric constants a kernel may use (resolved only when they are the standard library's). */
const builtinConstants: Record<string, number> = {
  Infinity,
  NaN,
  'Math.PI': Math.PI,
  'Math.E': Math.E,
  'Math.SQRT2': Math.SQRT2,
  'Math.SQRT1_2': Math.SQRT1_2,
  'Math.LN2': Math.LN2,
  'Math.LN10': Math.LN10,
  'Math.LOG2E': Math.LOG2E,
  'Math.LOG10E': Math.LOG10E,
};

/** "X is not supported in kernels", with X named for people ("while loops are", "break is"). */
function unsupported(node: ts.Node): string {
  const names: Partial<Record<ts.SyntaxKind, string>> = {
    [ts.SyntaxKind.ForOfStatement]: 'for...of loops are',
    [ts.SyntaxKind.ForInStatement]: 'for...in loops are',
    [ts.SyntaxKind.WhileStatement]: 'while loops are',
    [ts.SyntaxKind.DoStatement]: 'do...while loops are',
    [ts.SyntaxKind.SwitchStatement]: 'switch statements are',
    [ts.SyntaxKind.TryStatement]: 'try statements are',
    [ts.SyntaxKind.ThrowStatement]: 'throw statements are',
    [ts.SyntaxKind.ClassDeclaration]: 'classes are',
    [ts.SyntaxKind.FunctionDeclaration]: 'nested functions are',
    [ts.SyntaxKind.ArrayLiteralExpression]: 'array literals (outside shapes and helper results) are',
    [ts.SyntaxKind.StringLiteral]: 'strings are',
    [ts.SyntaxKind.TemplateExpression]: 'template strings are',
    [ts.SyntaxKind.NoSubstitutionTemplateLiteral]: 'template strings are',
    [ts.SyntaxKind.ElementAccessExpression]: 'indexing with [] is (use load/store with offsets)',
    [ts.SyntaxKind.NewExpression]: 'new expressions are',
    [ts.SyntaxKind.AwaitExpression]: 'await is',
    [ts.SyntaxKind.ArrowFunction]: 'nested functions are',
    [ts.SyntaxKind.FunctionExpression]: 'nested functions are',
    [ts.SyntaxKind.BreakStatement]: 'break is',
    [ts.SyntaxKind.ContinueStatement]: 'continue is',
    [ts.SyntaxKind.PostfixUnaryExpression]: 'increment/decrement inside an expression is',
    [ts.SyntaxKind.PrefixUnaryExpression]: 'increment/decrement inside an expression is',
    [ts.SyntaxKind.ObjectLiteralExpression]: 'object literals are',
    [ts.SyntaxKind.NullKeyword]: 'null is',
    [ts.SyntaxKind.UndefinedKeyword]: 'undefined is',
    [ts.SyntaxKind.ThisKeyword]: 'this is',
    [ts.SyntaxKind.BigIntLiteral]: 'bigint literals are',
    [ts.SyntaxKind.SpreadElement]: 'spread arguments are',
    [ts.SyntaxKind.TypeOfExpression]: 'typeof is',
    [ts.SyntaxKind.DeleteExpression]: 'delete is',
    [ts.SyntaxKind.LabeledStatement]: 'labels are',
  };
  return `${names[node.kind] ?? `${ts.SyntaxKind[node.kind]} is`} not supported in kernels`;
}

class Lowering {
  private readonly b = new Builder();
  private readonly scopes: Map<ts.Symbol, Binding>[] = [new Map()];
  private readonly params: KernelParam[] = [];
  private readonly checker: ts.TypeChecker;
  /** symbols of `let` bindings that are assigned after their declaration */
  private mutated = new Set<ts.Symbol>();
  private inlineDepth = 0;
  /** the value a helper's `return expr` produced (an array for `return [a, b]`) */
  private returnValue: Value | Value[] | undefined;
  private insideHelper = false;

  constructor(
    private readonly p: DslProgram,
    private readonly ref: KernelSourceRef,
    private readonly opts: FrontendOptions,
  ) {
    this.checker = p.checker;
  }

  run(): KernelIR {
    const call = this.ref.node;
    const fn = call.arguments[0];
    if (!fn || !(ts.isArrowFunction(fn) || ts.isFunctionExpression(fn))) {
      throw dslError(call, 'kernel() takes an arrow function: kernel((x: Ptr<f32>, n: i32) => { ... })');
    }
    const warps = this.kernelOptions(call.arguments[1]);
    this.collectMutations(fn);
    fn.parameters.forEach((p, i) => this.declareParam(p, i));
    this.b.block = [];
    const body = this.guard(fn.body, () => {
      if (ts.isBlock(fn.body)) this.lowerBlock(fn.body.statements);
      else throw dslError(fn.body, 'a kernel body must be a block { ... }');
      return this.b.block;
    });
    const pruned = eliminateDeadCode(body);
    return {
      name: this.ref.name,
      file: spanOf(call).file,
      span: spanOf(call),
      params: this.params,
      body: pruned,
      warps: this.opts.warps ?? warps ?? autoWarps(pruned),
    };
  }

  /** Runs `fn`; a RuleError becomes a diagnostic at `node`, and so does any unexpected failure. */
  private guard<T>(node: ts.Node, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof DslError) throw e;
      if (e instanceof RuleError) throw dslError(node, e.message);
      throw dslError(node, `sfc compiler bug while lowering this code: ${(e as Error).message}`);
    }
  }

  /** warps from `kernel(fn, { warps })`, or undefined to choose from the tile sizes */
  private kernelOptions(node: ts.Expression | undefined): number | undefined {
    if (!node) return undefined;
    if (!ts.isObjectLiteralExpression(node))
      throw dslError(node, 'kernel options must be an object literal, e.g. { warps: 8 }');
    let warps: number | undefined;
    for (const p of node.properties) {
      if (!ts.isPropertyAssignment(p) || !ts.isIdentifier(p.name) || p.name.text !== 'warps') {
        throw dslError(p, 'unknown kernel option (known: warps)');
      }
      const v = this.constValue(p.initializer);
      if (!Number.isInteger(v) || v < 1 || v > 32) {
        throw dslError(p.initializer, `warps must be an integer from 1 to 32, got ${v}`);
      }
      warps = v;
    }
    return warps;
  }

  // ---- scopes --------------------------------------------------------------------------------
  private symbolOf(node: ts.Node): ts.Symbol | undefined {
    return this.checker.getSymbolAtLocation(node);
  }

  private bind(nameNode: ts.Node, binding: Binding): void {
    const sym = this.symbolOf(nameNode);
    if (!sym) throw dslError(nameNode, 'cannot resolve this name');
    this.scopes[this.scopes.length - 1]!.set(sym, binding);
  }

  private lookup(sym: ts.Symbol): Binding | undefined {
    for (let i = this.scopes.length - 1; i >= 0; i--) {
      const b = this.scopes[i]!.get(sym);
      if (b) return b;
    }
    return undefined;
  }

  private collectMutations(root: ts.Node): void {
    const visit = (n: ts.Node): void => {
      if (
        ts.isBinaryExpression(n) &&
        n.operatorToken.kind >= ts.SyntaxKind.FirstAssignment &&
        n.operatorToken.kind <= ts.SyntaxKind.LastAssignment
      ) {
        const s = this.symbolOf(n.left);
        if (s) this.mutated.add(s);
      }
      if (
        (ts.isPostfixUnaryExpression(n) || ts.isPrefixUnaryExpression(n)) &&
        (n.operator === ts.SyntaxKind.PlusPlusToken || n.operator === ts.SyntaxKind.MinusMinusToken)
      ) {
        const s = this.symbolOf(n.operand);
        if (s) this.mutated.add(s);
      }
      ts.forEachChild(n, visit);
    };
    visit(root);
  }

  // ---- parameters ----------------------------------------------------------------------------
  private declareParam(p: ts.ParameterDeclaration, index: number): void {
    if (!ts.isIdentifier(p.name)) throw dslError(p.name, 'kernel parameters must be plain names');
    const name = p.name.text;
    const type = p.type;
    if (!type || !ts.isTypeReferenceNode(type)) {
      throw dslError(p, `parameter '${name}' needs a DSL type: Ptr<dtype>, a dtype such as i32 or f32, or Const<N>`);
    }
    const tname = this.p.dslName(type.typeName);
    const span = spanOf(p);
    if (tname === 'Ptr') {
      const arg = type.typeArguments?.[0];
      const d = arg && ts.isTypeReferenceNode(arg) ? this.p.dslName(arg.typeName) : undefined;
      if (!d || !dtypeOf(d)) throw dslError(arg ?? type, `Ptr needs an element dtype, e.g. Ptr<bf16>`);
      this.params.push({ name, kind: 'ptr', dtype: d as ElemType });
      this.bind(p.name, { kind: 'ptr', param: index, dtype: d as ElemType });
    } else if (tname === 'Const') {
      const arg = type.typeArguments?.[0];
      let value = this.opts.consts?.[name];
      if (value === undefined) {
        if (!arg || !ts.isLiteralTypeNode(arg) || !ts.isNumericLiteral(arg.literal)) {
          throw dslError(arg ?? type, `Const needs a default value, e.g. Const<1024>`);
        }
        value = Number(arg.literal.text);
      }
      this.params.push({ name, kind: 'const', dtype: 'i32', value });
      this.bind(p.name, { kind: 'value', value: this.b.constant(value, 'i32', span, true) });
    } else if (tname && dtypeOf(tname)) {
      const d = tname as ElemType;
      this.params.push({ name, kind: 'scalar', dtype: d });
      this.bind(p.name, { kind: 'value', value: this.b.param(index, d, span) });
    } else {
      throw dslError(
        type,
        `'${type.typeName.getText()}' is not a DSL parameter type (use Ptr<dtype>, a dtype, or Const<N>)`,
      );
    }
  }

  // ---- statements ----------------------------------------------------------------------------
  private lowerBlock(stmts: readonly ts.Statement[]): void {
    this.scopes.push(new Map());
    try {
      for (const s of stmts) this.guard(s, () => this.lowerStatement(s));
    } finally {
      this.scopes.pop();
    }
  }

  private nested(fn: () => void): Stmt[] {
    const saved = this.b.block;
    this.b.block = [];
    try {
      fn();
      return this.b.block;
    } finally {
      this.b.block = saved;
    }
  }

  private lowerStatement(s: ts.Statement): void {
    if (ts.isVariableStatement(s)) return this.lowerDeclarations(s.declarationList);
    if (ts.isExpressionStatement(s)) return this.lowerExpressionStatement(s.expression);
    if (ts.isBlock(s)) return this.lowerBlock(s.statements);
    if (ts.isEmptyStatement(s)) return;
    if (ts.isIfStatement(s)) return this.lowerIf(s);
    if (ts.isForStatement(s)) return this.lowerFor(s);
    if (ts.isReturnStatement(s)) return this.lowerReturn(s);
    throw dslError(s, unsupported(s));
  }

  private lowerDeclarations(list: ts.VariableDeclarationList): void {
    for (const d of list.declarations) {
      if (ts.isArrayBindingPattern(d.name)) {
        this.destructure(d.name, d.initializer);
        continue;
      }
      if (!ts.isIdentifier(d.name)) throw dslError(d.name, 'object destructuring is not supported in kernels');
      if (!d.initializer) throw dslError(d, `'${d.name.text}' needs an initial value`);
      const value = this.expr(d.initializer);
      const sym = this.symbolOf(d.name)!;
      if ((list.flags & ts.NodeFlags.Let) !== 0 && this.mutated.has(sym)) {
        const varId = this.b.newVarId();
        const type = { dtype: value.type.dtype, shape: [...value.type.shape] };
        this.b.block.push({ kind: 'var', varId, name: d.name.text, type, init: value, span: spanOf(d) });
        this.bind(d.name, { kind: 'var', varId, type, name: d.name.text });
      } else {
        this.bind(d.name, { kind: 'value', value });
      }
    }
  }

  /** `const [a, b] = helper(...)` where the helper returns `[x, y]`. */
  private destructure(pattern: ts.ArrayBindingPattern, init: ts.Expression | undefined): void {
    if (!init || !ts.isCallExpression(init) || this.p.dslName(init.expression)) {
      throw dslError(init ?? pattern, 'only the result of a helper that returns [a, b, ...] can be destructured');
    }
    const r = this.inlineHelper(init, false);
    if (!Array.isArray(r))
      throw dslError(init, `${init.expression.getText()}() returns one value, not a list to destructure`);
    if (pattern.elements.length > r.length) {
      throw dslError(
        pattern,
        `${init.expression.getText()}() returns ${r.length} values, ${pattern.elements.length} names given`,
      );
    }
    pattern.elements.forEach((el, i) => {
      if (ts.isOmittedExpression(el)) return;
      if (!ts.isIdentifier(el.name) || el.dotDotDotToken || el.initializer)
        throw dslError(el, 'only plain names can be destructured');
      this.bind(el.name, { kind: 'value', value: r[i]! });
    });
  }

  private lowerExpressionStatement(e: ts.Expression): void {
    if (ts.isParenthesizedExpression(e)) return this.lowerExpressionStatement(e.expression);
    if (ts.isCallExpression(e)) {
      this.call(e, true);
      return;
    }
    if (ts.isBinaryExpression(e) && e.operatorToken.kind === ts.SyntaxKind.EqualsToken)
      return this.assign(e.left, this.expr(e.right), e);
    if (ts.isBinaryExpression(e) && compoundOps[e.operatorToken.kind]) {
      const cur = this.expr(e.left);
      return this.assign(
        e.left,
        this.b.binary(compoundOps[e.operatorToken.kind]!, cur, this.expr(e.right), spanOf(e)),
        e,
      );
    }
    if (
      (ts.isPostfixUnaryExpression(e) || ts.isPrefixUnaryExpression(e)) &&
      (e.operator === ts.SyntaxKind.PlusPlusToken || e.operator === ts.SyntaxKind.MinusMinusToken)
    ) {
      const cur = this.expr(e.operand);
      const one = this.b.literal(1, spanOf(e));
      return this.assign(
        e.operand,
        this.b.binary(e.operator === ts.SyntaxKind.PlusPlusToken ? 'add' : 'sub', cur, one, spanOf(e)),
        e,
      );
    }
    throw dslError(e, 'this expression does nothing; statements must be calls such as store(...) or assignments');
  }

  private assign(target: ts.Expression, value: Value, node: ts.Node): void {
    if (!ts.isIdentifier(target)) throw dslError(target, 'only local variables can be assigned');
    const sym = this.symbolOf(target);
    const binding = sym && this.lookup(sym);
    if (!binding || binding.kind !== 'var') {
      throw dslError(target, `'${target.text}' cannot be assigned (declare it with let inside the kernel)`);
    }
    const span = spanOf(node);
    let v = value;
    if (v.type.shape.join() !== binding.type.shape.join()) {
      const shape = v.type.shape;
      const want = binding.type.shape;
      try {
        v = this.b.broadcastTo(v, [...want], span);
      } catch {
        throw dslError(
          node,
          `cannot assign a ${fmtType(v.type)} to '${binding.name}' of type ${fmtType(binding.type)} (shape [${shape.join(', ')}] vs [${want.join(', ')}])`,
        );
      }
    }
    v = this.b.cast(v, binding.type.dtype, span);
    this.b.block.push({ kind: 'assign', varId: binding.varId, value: v, span });
  }

  private scalarCondition(e: ts.Expression): Value {
    const c = this.expr(e);
    if (c.type.shape.length) {
      throw dslError(
        e,
        `an if condition must be a scalar, got a ${fmtType(c.type)} tile (use where() or a mask for tiles)`,
      );
    }
    return this.b.cast(c, 'bool', spanOf(e));
  }

  private lowerIf(s: ts.IfStatement): void {
    const cond = this.scalarCondition(s.expression);
    if (cond.op === 'const') {
      if (cond.value) this.lowerStatement(s.thenStatement);
      else if (s.elseStatement) this.lowerStatement(s.elseStatement);
      return;
    }
    const thenBody = this.nested(() => this.lowerBlock([s.thenStatement]));
    const elseBody = s.elseStatement ? this.nested(() => this.lowerBlock([s.elseStatement!])) : [];
    this.b.block.push({ kind: 'if', cond, then: thenBody, else: elseBody, span: spanOf(s) });
  }

  private lowerFor(s: ts.ForStatement): void {
    const bad = (n: ts.Node) =>
      dslError(
        n,
        'for loops must look like for (let i = start; i < end; i++ or i += step) with a scalar integer index',
      );
    const init = s.initializer;
    if (!init || !ts.isVariableDeclarationList(init) || init.declarations.length !== 1) throw bad(s);
    const decl = init.declarations[0]!;
    if (!ts.isIdentifier(decl.name) || !decl.initializer) throw bad(decl);
    const start = this.b.cast(this.expr(decl.initializer), 'i32', spanOf(decl));
    if (start.type.shape.length) throw bad(decl.initializer);
    const cond = s.condition;
    if (!cond || !ts.isBinaryExpression(cond) || !ts.isIdentifier(cond.left) || cond.left.text !== decl.name.text)
      throw bad(cond ?? s);
    const inclusive = cond.operatorToken.kind === ts.SyntaxKind.LessThanEqualsToken;
    if (!inclusive && cond.operatorToken.kind !== ts.SyntaxKind.LessThanToken) throw bad(cond);
    const end = this.b.cast(this.expr(cond.right), 'i32', spanOf(cond.right));
    if (end.type.shape.length) throw bad(cond.right);
    const inc = s.incrementor;
    let step: Value;
    if (
      inc &&
      (ts.isPostfixUnaryExpression(inc) || ts.isPrefixUnaryExpression(inc)) &&
      inc.operator === ts.SyntaxKind.PlusPlusToken
    ) {
      step = this.b.literal(1, spanOf(inc));
    } else if (inc && ts.isBinaryExpression(inc) && inc.operatorToken.kind === ts.SyntaxKind.PlusEqualsToken) {
      step = this.b.cast(this.expr(inc.right), 'i32', spanOf(inc.right));
      if (step.type.shape.length || (step.op === 'const' && step.value <= 0)) throw bad(inc);
    } else throw bad(inc ?? s);
    const varId = this.b.newVarId();
    const type: VType = { dtype: 'i32', shape: [] };
    const body = this.nested(() => {
      this.scopes.push(new Map());
      try {
        this.bind(decl.name, { kind: 'var', varId, type, name: decl.name.getText() });
        this.lowerBlock([s.statement]);
      } finally {
        this.scopes.pop();
      }
    });
    this.b.block.push({
      kind: 'for',
      varId,
      name: decl.name.getText(),
      start,
      end,
      step,
      inclusive,
      body,
      span: spanOf(s),
    });
  }

  private lowerReturn(s: ts.ReturnStatement): void {
    if (this.insideHelper) {
      if (!s.expression) throw dslError(s, 'a helper used as a value must return one');
      this.returnValue = ts.isArrayLiteralExpression(s.expression)
        ? s.expression.elements.map((el) => this.expr(el))
        : this.expr(s.expression);
      return;
    }
    if (s.expression) throw dslError(s.expression, 'a kernel returns nothing; write results with store()');
    this.b.block.push({ kind: 'return', span: spanOf(s) });
  }

  // ---- expressions ---------------------------------------------------------------------------
  private expr(e: ts.Expression): Value {
    return this.guard(e, () => this.exprInner(e));
  }

  private exprInner(e: ts.Expression): Value {
    const span = spanOf(e);
    if (
      ts.isParenthesizedExpression(e) ||
      ts.isAsExpression(e) ||
      ts.isNonNullExpression(e) ||
      ts.isSatisfiesExpression(e)
    ) {
      return this.expr(e.expression);
    }
    if (ts.isNumericLiteral(e)) return this.b.literal(Number(e.text), span, e.getText());
    if (e.kind === ts.SyntaxKind.TrueKeyword) return this.b.constant(1, 'bool', span);
    if (e.kind === ts.SyntaxKind.FalseKeyword) return this.b.constant(0, 'bool', span);
    if (ts.isIdentifier(e) || ts.isPropertyAccessExpression(e)) return this.name(e);
    if (ts.isBinaryExpression(e)) {
      const op = binaryOps[e.operatorToken.kind];
      if (!op) {
        if (
          e.operatorToken.kind >= ts.SyntaxKind.FirstAssignment &&
          e.operatorToken.kind <= ts.SyntaxKind.LastAssignment
        ) {
          throw dslError(e, 'assignments are statements in kernels, not expressions');
        }
        throw dslError(e.operatorToken, `operator ${e.operatorToken.getText()} is not supported in kernels`);
      }
      return this.b.binary(op, this.expr(e.left), this.expr(e.right), span);
    }
    if (ts.isPrefixUnaryExpression(e)) {
      const x = () => this.expr(e.operand);
      switch (e.operator) {
        case ts.SyntaxKind.MinusToken:
          return this.b.unary('neg', x(), span);
        case ts.SyntaxKind.PlusToken:
          return x();
        case ts.SyntaxKind.ExclamationToken:
          return this.b.unary('not', x(), span);
        case ts.SyntaxKind.TildeToken:
          return this.b.unary('bitnot', x(), span);
      }
    }
    if (ts.isConditionalExpression(e)) {
      return this.b.where(this.expr(e.condition), this.expr(e.whenTrue), this.expr(e.whenFalse), span);
    }
    if (ts.isCallExpression(e)) {
      const v = this.call(e, false);
      if (!v) throw dslError(e, `${e.expression.getText()}() returns nothing and cannot be used as a value`);
      return v;
    }
    throw dslError(e, unsupported(e));
  }

  /** An identifier or property access: a local, a parameter, or a module-level constant. */
  private name(e: ts.Identifier | ts.PropertyAccessExpression): Value {
    const b = this.resolveBinding(e);
    if (b) {
      if (b.kind === 'value') return b.value;
      if (b.kind === 'var') return this.b.varGet(b.varId, b.type, spanOf(e));
      if (b.kind === 'ptr')
        throw dslError(e, `pointer '${e.getText()}' can only be used as the first argument of load/store`);
      throw dslError(e, `'${e.getText()}' is an object; use one of its numeric fields`);
    }
    return this.b.literal(this.constValue(e), spanOf(e));
  }

  private resolveBinding(e: ts.Expression): Binding | undefined {
    if (ts.isIdentifier(e)) {
      const sym = this.symbolOf(e);
      return sym ? this.lookup(sym) : undefined;
    }
    if (ts.isPropertyAccessExpression(e)) {
      const obj = this.resolveBinding(e.expression);
      if (obj?.kind === 'object') return obj.props.get(e.name.text);
    }
    return undefined;
  }

  /** Evaluates a compile-time numeric constant (literals, const declarations, config objects). */
  private constValue(e: ts.Expression): number {
    return constValue(this.p, e);
  }

  private constInt(e: ts.Expression | undefined, call: ts.CallExpression, what: string): number {
    if (!e) throw dslError(call, `${what} is missing`);
    const v = this.expr(e);
    if (v.op !== 'const' || !Number.isInteger(v.value))
      throw dslError(e, `${what} must be a compile-time integer constant`);
    return v.value;
  }

  private shapeArg(e: ts.Expression | undefined, call: ts.CallExpression): number[] {
    if (!e || !ts.isArrayLiteralExpression(e))
      throw dslError(e ?? call, 'a shape must be an array literal of constants, e.g. [64, 128]');
    return e.elements.map((x) => {
      const v = this.constInt(x, call, 'a shape dim');
      if (v <= 0) throw dslError(x, `shape dims must be positive, got ${v}`);
      return v;
    });
  }

  private ptrArg(e: ts.Expression | undefined, call: ts.CallExpression): { param: number; dtype: ElemType } {
    const b = e && this.resolveBinding(e);
    if (!b || b.kind !== 'ptr') throw dslError(e ?? call, 'the first argument must be a Ptr parameter of the kernel');
    return b;
  }

  private dtypeArg(e: ts.Expression | undefined, call: ts.CallExpression): ElemType {
    const name = e && this.p.dslName(e);
    if (!name || !dtypeOf(name)) throw dslError(e ?? call, 'expected a dtype such as f32, bf16 or e4m3');
    return name as ElemType;
  }

  private arity(call: ts.CallExpression, name: string, min: number, max = min): void {
    const n = call.arguments.length;
    if (n < min || n > max) {
      const want = min === max ? `${min}` : `${min} to ${max}`;
      throw dslError(call, `${name}() takes ${want} argument${max === 1 ? '' : 's'}, got ${n}`);
    }
  }

  /** Lowers a call; `asStatement` allows calls that return nothing (store, helpers). */
  private call(call: ts.CallExpression, asStatement: boolean): Value | undefined {
    const dsl = this.p.dslName(call.expression);
    if (dsl) return this.intrinsic(dsl, call);
    const r = this.inlineHelper(call, asStatement);
    if (Array.isArray(r)) {
      if (asStatement) return undefined;
      throw dslError(
        call,
        `${call.expression.getText()}() returns ${r.length} values; destructure them: const [a, b] = ...`,
      );
    }
    return r;
  }

  private intrinsic(name: string, call: ts.CallExpression): Value | undefined {
    const span = spanOf(call);
    const a = call.arguments;
    const arg = (i: number) => this.expr(a[i]!);
    if (name in unaryMath) {
      this.arity(call, name, 1);
      return this.b.unary(unaryMath[name]!, arg(0), span);
    }
    switch (name) {
      case 'programId':
      case 'numPrograms': {
        this.arity(call, name, 1);
        const axis = this.constInt(a[0], call, 'the grid axis');
        if (axis < 0 || axis > 2) throw dslError(a[0]!, `grid axis must be 0, 1 or 2, got ${axis}`);
        return this.b.programId(axis, span, name === 'numPrograms');
      }
      case 'arange': {
        this.arity(call, name, 2);
        return this.b.arange(this.constInt(a[0], call, 'arange start'), this.constInt(a[1], call, 'arange end'), span);
      }
      case 'full': {
        this.arity(call, name, 2, 3);
        const dtype = a[2] ? this.dtypeArg(a[2], call) : undefined;
        return this.b.full(this.shapeArg(a[0], call), arg(1), dtype, span);
      }
      case 'expandDims':
        this.arity(call, name, 2);
        return this.b.expandDims(arg(0), this.constInt(a[1], call, 'the axis'), span);
      case 'broadcastTo':
        this.arity(call, name, 2);
        return this.b.broadcastTo(arg(0), this.shapeArg(a[1], call), span);
      case 'reshape':
        this.arity(call, name, 2);
        return this.b.reshape(arg(0), this.shapeArg(a[1], call), span);
      case 'load': {
        this.arity(call, name, 2, 4);
        const p = this.ptrArg(a[0], call);
        return this.b.load(p.param, p.dtype, arg(1), a[2] ? arg(2) : null, a[3] ? arg(3) : null, span);
      }
      case 'store':
      case 'atomicAdd':
      case 'atomicMax': {
        this.arity(call, name, 3, 4);
        const p = this.ptrArg(a[0], call);
        const offsets = arg(1);
        if (!isInt(offsets.type.dtype))
          throw dslError(a[1]!, `${name} offsets must be integers, got ${fmtType(offsets.type)}`);
        let value = arg(2);
        const mask = a[3] ? this.b.cast(arg(3), 'bool', span) : null;
        if (name !== 'store' && p.dtype !== 'f32' && p.dtype !== 'i32') {
          throw dslError(a[0]!, `${name} needs a Ptr<f32> or Ptr<i32>, got Ptr<${p.dtype}>`);
        }
        // the stored tile covers the broadcast of offsets, value and mask
        let shape = offsets.type.shape;
        shape = this.guard(call, () => {
          let s = [...shape];
          s = broadcastAll(s, value.type.shape);
          if (mask) s = broadcastAll(s, mask.type.shape);
          return s;
        });
        value = this.b.cast(this.b.broadcastTo(value, shape, span), p.dtype, span);
        const off = this.b.broadcastTo(this.b.cast(offsets, 'i32', span), shape, span);
        this.b.block.push({ kind: 'store', fn: name, param: p.param, offsets: off, value, mask, span });
        return undefined;
      }
      case 'swapPairs':
        this.arity(call, name, 1);
        return this.b.swapPairs(arg(0), span);
      case 'maximum':
      case 'minimum':
      case 'idiv':
        this.arity(call, name, 2);
        return this.b.binary(name, arg(0), arg(1), span);
      case 'fma':
        this.arity(call, name, 3);
        return this.b.fma(arg(0), arg(1), arg(2), span);
      case 'where':
        this.arity(call, name, 3);
        return this.b.where(arg(0), arg(1), arg(2), span);
      case 'cast':
        this.arity(call, name, 2);
        return this.b.cast(arg(0), this.dtypeArg(a[1], call), span);
      case 'sum':
      case 'max':
      case 'min':
      case 'absmax': {
        this.arity(call, name, 1, 2);
        const axis = a[1] ? this.constInt(a[1], call, 'the axis') : null;
        return this.b.reduce(name, arg(0), axis, span);
      }
      case 'rand':
      case 'randn':
        this.arity(call, name, 2);
        return this.b.rand(arg(0), arg(1), name === 'randn', span);
      case 'kernel':
        throw dslError(call, 'kernel() cannot be called inside a kernel');
      default:
        throw dslError(call.expression, `'${name}' is not a kernel intrinsic`);
    }
  }

  /** Inlines a call to a helper function defined in TypeScript source. */
  private inlineHelper(call: ts.CallExpression, asStatement: boolean): Value | Value[] | undefined {
    let sym = this.symbolOf(call.expression);
    if (sym && sym.flags & ts.SymbolFlags.Alias) sym = this.checker.getAliasedSymbol(sym);
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
    if (!fn || !fn.body) {
      const name = call.expression.getText();
      throw dslError(
        call.expression,
        sym ? `'${name}' is not a kernel intrinsic or a helper function` : `cannot find function '${name}'`,
      );
    }
    if (decl!.getSourceFile().isDeclarationFile) {
      throw dslError(
        call.expression,
        `'${call.expression.getText()}' has no source to inline (declared in a .d.ts file)`,
      );
    }
    if (this.inlineDepth >= 16) throw dslError(call, 'helpers nest too deeply (recursion is not supported in kernels)');
    if (call.arguments.length > fn.parameters.length) {
      throw dslError(
        call,
        `${call.expression.getText()}() takes ${fn.parameters.length} arguments, got ${call.arguments.length}`,
      );
    }
    // evaluate arguments in the caller's scope (pointers pass through as bindings)
    const bound: [ts.ParameterDeclaration, Binding][] = fn.parameters.map((p, i) => {
      const argNode = call.arguments[i] ?? p.initializer;
      if (!argNode) throw dslError(call, `missing argument '${p.name.getText()}'`);
      const existing = this.resolveBinding(argNode);
      if (existing && existing.kind === 'ptr') return [p, existing];
      return [p, { kind: 'value', value: this.expr(argNode) }];
    });
    const savedScopes = this.scopes.splice(0, this.scopes.length, new Map());
    const savedReturn = this.returnValue;
    const savedHelper = this.insideHelper;
    this.inlineDepth++;
    this.insideHelper = true;
    this.returnValue = undefined;
    try {
      this.collectMutations(fn.body);
      for (const [p, b] of bound) {
        if (!ts.isIdentifier(p.name)) throw dslError(p.name, 'destructuring parameters are not supported in kernels');
        this.bind(p.name, b);
      }
      if (ts.isBlock(fn.body)) {
        const stmts = fn.body.statements;
        stmts.forEach((s, i) => {
          if (ts.isReturnStatement(s) && i !== stmts.length - 1)
            throw dslError(s, 'return must be the last statement of a helper');
        });
        this.lowerBlock(stmts);
      } else {
        this.returnValue = ts.isArrayLiteralExpression(fn.body)
          ? fn.body.elements.map((el) => this.expr(el))
          : this.expr(fn.body);
      }
      const v = this.returnValue;
      if (!v && !asStatement)
        throw dslError(call, `${call.expression.getText()}() returns nothing and cannot be used as a value`);
      return v;
    } finally {
      this.scopes.splice(0, this.scopes.length, ...savedScopes);
      this.returnValue = savedReturn;
      this.insideHelper = savedHelper;
      this.inlineDepth--;
    }
  }
}

function broadcastAll(a: number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1)
      throw new RuleError(`shape mismatch: [${a.join(', ')}] and [${b.join(', ')}] cannot be broadcast together`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/**
 * Warps per program when the kernel does not say: about three 16-byte chunks (24 elements) of the
 * largest tile per thread, between 1 and 8 warps. Measured on an H100 for rows of 1536 (commit
 * fc37c71, bench/kernels/memory): 2 warps was best or near best for LayerNorm+modulate, RoPE and
 * the FP8 row cast; RMSNorm ran about as fast with 1, 2 or 6.
 */
export function autoWarps(body: Stmt[]): number {
  let largest = 1;
  walk(body, (s) => {
    const shapes = s.kind === 'def' ? [s.value.type.shape] : s.kind === 'store' ? [s.offsets.type.shape] : [];
    for (const sh of shapes)
      largest = Math.max(
        largest,
        sh.reduce((a, b) => a * b, 1),
      );
  });
  // prefer a block that covers the tile exactly (no tail registers to guard), about 3 chunks each
  let best: number | undefined;
  for (let w = 1; w <= 8; w++) {
    const chunks = largest / (w * 32 * 8);
    if (!Number.isInteger(chunks)) continue;
    if (best === undefined || Math.abs(chunks - 3) < Math.abs(largest / (best * 256) - 3)) best = w;
  }
  return best ?? Math.min(8, Math.max(1, Math.ceil(largest / 768)));
}

/** Removes value definitions nobody uses (loads included: they have no side effects). */
export function eliminateDeadCode(body: Stmt[]): Stmt[] {
  const used = new Set<number>();
  const markValue = (v: Value) => {
    if (used.has(v.id)) return;
    used.add(v.id);
    v.args.forEach(markValue);
  };
  const markStmts = (ss: Stmt[]) => {
    for (const s of ss) {
      if (s.kind === 'store') [s.offsets, s.value, ...(s.mask ? [s.mask] : [])].forEach(markValue);
      else if (s.kind === 'var') markValue(s.init);
      else if (s.kind === 'assign') markValue(s.value);
      else if (s.kind === 'for') {
        [s.start, s.end, s.step].forEach(markValue);
        markStmts(s.body);
      } else if (s.kind === 'if') {
        markValue(s.cond);
        markStmts(s.then);
        markStmts(s.else);
      }
    }
  };
  markStmts(body);
  const sweep = (ss: Stmt[]): Stmt[] =>
    ss
      .filter((s) => s.kind !== 'def' || used.has(s.value.id))
      .map((s) =>
        s.kind === 'for'
          ? { ...s, body: sweep(s.body) }
          : s.kind === 'if'
            ? { ...s, then: sweep(s.then), else: sweep(s.else) }
            : s,
      );
  return sweep(body);
}

/** The directory of the dsl/ sources (for tests that place virtual files next to the project). */
export function dslDir(fromUrl: string): string {
  return join(dirname(new URL(fromUrl).pathname), '..', 'dsl');
}
