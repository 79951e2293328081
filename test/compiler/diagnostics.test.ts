// Malformed DSL: every case gives one diagnostic at the right file:line:col with a caret excerpt,
// and none makes the compiler throw an internal error. Line numbers count the 5-line import header.
import { describe, expect, it } from 'vitest';
import { diagnose } from './dsl.js';

const k = (params: string, body: string, extra = '') =>
  `${extra}export const t = kernel((${params}) => {\n${body}\n});\n`;
const P = 'x: Ptr<f32>, y: Ptr<f32>, n: i32';

const cases: [string, string, string][] = [
  ['while loop', k(P, '  while (n > 0) {}'), 'case.ts:7:3: while loops are not supported in kernels'],
  ['break', k(P, '  for (let i = 0; i < n; i++) { break; }'), 'case.ts:7:33: break is not supported in kernels'],
  ['string', k(P, "  const s = 'hello';"), 'case.ts:7:13: strings are not supported in kernels'],
  [
    'tile if condition',
    k(P, '  const c = arange(0, 64);\n  if (c < n) {}'),
    'case.ts:8:7: an if condition must be a scalar, got a bool[64] tile (use where() or a mask for tiles)',
  ],
  [
    'shape mismatch',
    k(P, '  const a = arange(0, 64) + arange(0, 128);'),
    'case.ts:7:13: shape mismatch: [64] and [128] cannot be broadcast together',
  ],
  [
    'dynamic arange',
    k(P, '  const a = arange(0, n);'),
    'case.ts:7:23: arange end must be a compile-time integer constant',
  ],
  [
    'untyped parameter',
    k('x: Ptr<f32>, n: number', '  store(x, 0, n);'),
    "case.ts:6:39: parameter 'n' needs a DSL type: Ptr<dtype>, a dtype such as i32 or f32, or Const<N>",
  ],
  [
    'Const without default',
    k('x: Ptr<f32>, B: Const', '  store(x, 0, B);'),
    'case.ts:6:42: Const needs a default value, e.g. Const<1024>',
  ],
  [
    'float offsets',
    k(P, '  store(y, arange(0, 64) * 1.5, 0);'),
    'case.ts:7:12: store offsets must be integers, got f32[64]',
  ],
  [
    'bit op on floats',
    k(P, '  const v = load(x, arange(0, 64));\n  store(y, arange(0, 64), v & 1);'),
    'case.ts:8:27: operator bitand needs integer operands, got f32[64] and i32',
  ],
  [
    'assign to a parameter',
    k(P, '  n = 3;'),
    "case.ts:7:3: 'n' cannot be assigned (declare it with let inside the kernel)",
  ],
  ['kernel returns a value', k(P, '  return 1;'), 'case.ts:7:10: a kernel returns nothing; write results with store()'],
  [
    'bad for header',
    k(P, '  for (let i = 0; i != n; i++) {}'),
    'case.ts:7:19: for loops must look like for (let i = start; i < end; i++ or i += step) with a scalar integer index',
  ],
  [
    'array literal',
    k(P, '  const a = [1, 2];'),
    'case.ts:7:13: array literals (outside shapes and helper results) are not supported in kernels',
  ],
  [
    'bad warps',
    'export const t = kernel((x: Ptr<f32>) => { store(x, 0, 1); }, { warps: 33 });\n',
    'case.ts:6:72: warps must be an integer from 1 to 32, got 33',
  ],
  [
    'recursion',
    k(P, '  store(y, 0, f(1));', 'function f(a: number): number { return f(a); }\n'),
    'case.ts:6:40: helpers nest too deeply (recursion is not supported in kernels)',
  ],
  [
    'tuple as a value',
    k(P, '  const a = two(1);', 'function two(a: number): [number, number] { return [a, a]; }\n'),
    'case.ts:8:13: two() returns 2 values; destructure them: const [a, b] = ...',
  ],
  ['object literal', k(P, '  const o = { a: 1 };'), 'case.ts:7:13: object literals are not supported in kernels'],
  [
    'axis out of range',
    k(P, '  const s = sum(load(x, arange(0, 64)), 1);'),
    'case.ts:7:13: sum(): axis 1 out of range for a 1-d tile',
  ],
  [
    'reshape mismatch',
    k(P, '  const r = reshape(arange(0, 64), [8, 4]);'),
    'case.ts:7:13: reshape(): [64] has 64 elements, [8, 4] does not',
  ],
  ['syntax error', k(P, '  const v = ;'), 'case.ts:7:13: TypeScript: Expression expected.'],
  [
    'type error',
    k(P, '  const v = load(n, arange(0, 64));'),
    "case.ts:7:18: TypeScript: Type 'i32' has no properties in common with type 'Ptr<number>'.",
  ],
  [
    'dynamic shape',
    k(P, '  const t2 = full([n], 0);'),
    'case.ts:7:20: a shape dim must be a compile-time integer constant',
  ],
  ['nested function', k(P, '  const f = () => 1;'), 'case.ts:7:13: nested functions are not supported in kernels'],
  [
    'atomic on bf16',
    k('x: Ptr<bf16>', '  atomicAdd(x, 0, 1);'),
    'case.ts:7:13: atomicAdd needs a Ptr<f32> or Ptr<i32>, got Ptr<bf16>',
  ],
  [
    'unknown helper source',
    k(P, '  store(y, 0, Math.hypot(1, 2));'),
    "case.ts:7:15: 'Math.hypot' is not a kernel intrinsic or a helper function",
  ],
  [
    'non-constant global',
    k(P, '  store(y, 0, limit);', 'let limit = 3;\n'),
    "case.ts:8:15: 'limit' is not a compile-time constant or a kernel value",
  ],
  [
    'useless expression',
    k(P, '  n + 1;'),
    'case.ts:7:3: this expression does nothing; statements must be calls such as store(...) or assignments',
  ],
  [
    'pointer as a value',
    k(P, '  store(y, 0, 1);\n  const q = where(n > 0, 1, 2);\n  load(q as never, 0);'),
    'case.ts:9:8: the first argument must be a Ptr parameter of the kernel',
  ],
  ['wrong arity', k(P, '  store(y, 0);'), 'case.ts:7:3: TypeScript: Expected 3-4 arguments, but got 2.'],
];

describe('DSL diagnostics', () => {
  it.each(cases)('%s', (_name, src, expected) => {
    const d = diagnose(src);
    expect(d.message).toBe(expected);
    // an excerpt with the line and a caret under the offending code
    expect(d.excerpt).toMatch(/^ +\d+ \| .*\n +\| +\^+$/);
  });

  it('points at the line in files with several kernels and helpers', () => {
    const src =
      `function helper(v: number): number {\n  return v + arange(0, 8);\n}\n` +
      k(P, '  store(y, arange(0, 64), helper(1));');
    expect(diagnose(src).message).toBe('case.ts:10:3: shape mismatch: [64] and [8] cannot be broadcast together');
  });
});
