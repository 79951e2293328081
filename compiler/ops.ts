// Element-wise operations as data: one entry per op with its constant folder and its JS and CUDA
// emitters, read by the builder (folding) and both backends. Adding an op means adding one entry.
import { isFloat, type BinaryOp, type ElemType, type UnaryOp } from './ir.js';

export interface BinaryRule {
  fold: (x: number, y: number) => number;
  /** JS expression; `operand` is the dtype the operands were promoted to */
  js: (a: string, b: string, operand: ElemType) => string;
  cuda: (a: string, b: string, operand: ElemType) => string;
}

const infix = (op: string, cudaOp = op): Pick<BinaryRule, 'js' | 'cuda'> => ({
  js: (a, b) => `(${a} ${op} ${b})`,
  cuda: (a, b) => `(${a} ${cudaOp} ${b})`,
});

// NaN handling of CUDA's fmaxf/fminf (a NaN operand is ignored), mirrored by rt.fmax/rt.fmin
export const binaryRules: Record<BinaryOp, BinaryRule> = {
  add: { fold: (x, y) => x + y, ...infix('+') },
  sub: { fold: (x, y) => x - y, ...infix('-') },
  mul: {
    fold: (x, y) => x * y,
    js: (a, b, t) => (t === 'i32' || t === 'u8' ? `Math.imul(${a}, ${b})` : `(${a} * ${b})`),
    cuda: (a, b) => `(${a} * ${b})`,
  },
  div: { fold: (x, y) => x / y, ...infix('/') },
  rem: {
    fold: (x, y) => x % y,
    js: (a, b) => `(${a} % ${b})`,
    cuda: (a, b, t) => (isFloat(t) ? `fmodf(${a}, ${b})` : `(${a} % ${b})`),
  },
  lt: { fold: (x, y) => +(x < y), ...infix('<') },
  le: { fold: (x, y) => +(x <= y), ...infix('<=') },
  gt: { fold: (x, y) => +(x > y), ...infix('>') },
  ge: { fold: (x, y) => +(x >= y), ...infix('>=') },
  eq: { fold: (x, y) => +(x === y), ...infix('===', '==') },
  ne: { fold: (x, y) => +(x !== y), ...infix('!==', '!=') },
  and: { fold: (x, y) => +(!!x && !!y), ...infix('&&') },
  or: { fold: (x, y) => +(!!x || !!y), ...infix('||') },
  bitand: { fold: (x, y) => x & y, ...infix('&') },
  bitor: { fold: (x, y) => x | y, ...infix('|') },
  bitxor: { fold: (x, y) => x ^ y, ...infix('^') },
  shl: { fold: (x, y) => x << y, ...infix('<<') },
  shr: { fold: (x, y) => x >> y, ...infix('>>') },
  ushr: { fold: (x, y) => x >>> y, js: (a, b) => `(${a} >>> ${b})`, cuda: (a, b) => `(int)((unsigned)(${a}) >> ${b})` },
  maximum: {
    fold: (x, y) => Math.max(x, y),
    js: (a, b) => `rt.fmax(${a}, ${b})`,
    cuda: (a, b, t) => (isFloat(t) ? `fmaxf(${a}, ${b})` : `max(${a}, ${b})`),
  },
  minimum: {
    fold: (x, y) => Math.min(x, y),
    js: (a, b) => `rt.fmin(${a}, ${b})`,
    cuda: (a, b, t) => (isFloat(t) ? `fminf(${a}, ${b})` : `min(${a}, ${b})`),
  },
  idiv: { fold: (x, y) => Math.trunc(x / y), js: (a, b) => `Math.trunc(${a} / ${b})`, cuda: (a, b) => `(${a} / ${b})` },
};

export interface UnaryRule {
  /** constant folder, for the ops whose result does not depend on float precision */
  fold?: (x: number) => number;
  js: (a: string) => string;
  cuda: (a: string, operand: ElemType) => string;
}

const call = (js: string, cuda: string): UnaryRule => ({ js: (a) => `${js}(${a})`, cuda: (a) => `${cuda}(${a})` });

export const unaryRules: Record<UnaryOp, UnaryRule> = {
  neg: { fold: (x) => -x, js: (a) => `(-${a})`, cuda: (a) => `(-${a})` },
  not: { fold: (x) => +!x, js: (a) => `(${a} ? 0 : 1)`, cuda: (a) => `(!${a})` },
  bitnot: { fold: (x) => ~x, js: (a) => `(~${a})`, cuda: (a) => `(~${a})` },
  abs: {
    fold: (x) => Math.abs(x),
    js: (a) => `Math.abs(${a})`,
    cuda: (a, t) => (isFloat(t) ? `fabsf(${a})` : `abs(${a})`),
  },
  exp: call('Math.exp', 'expf'),
  exp2: { js: (a) => `Math.pow(2, ${a})`, cuda: (a) => `exp2f(${a})` },
  log: call('Math.log', 'logf'),
  log2: call('Math.log2', 'log2f'),
  sqrt: call('Math.sqrt', 'sqrtf'),
  rsqrt: { js: (a) => `(1 / Math.sqrt(${a}))`, cuda: (a) => `rsqrtf(${a})` },
  tanh: call('Math.tanh', 'tanhf'),
  sigmoid: { js: (a) => `(1 / (1 + Math.exp(-${a})))`, cuda: (a) => `sfc_sigmoid(${a})` },
  erf: call('rt.erf', 'erff'),
  sin: call('Math.sin', 'sinf'),
  cos: call('Math.cos', 'cosf'),
  floor: call('Math.floor', 'floorf'),
  ceil: call('Math.ceil', 'ceilf'),
};
