// The tile-level kernel language. A kernel is a TypeScript arrow function wrapped in `kernel()`; one
// program instance runs per grid point and works on tiles (blocks of elements whose shape is a
// compile-time constant). The declarations here exist for the editor and tsc: the compiler
// (compiler/frontend.ts) reads the source and gives every call its meaning, and none of these
// functions runs in JavaScript (calling one outside the compiler throws).
//
//   export const scale = kernel((x: Ptr<f32>, y: Ptr<f32>, n: i32, a: f32, BLOCK: Const<1024>) => {
//     const offs = programId(0) * BLOCK + arange(0, BLOCK);
//     store(y, offs, load(x, offs, offs < n, 0) * a, offs < n);
//   });
//
// Tiles and scalars are typed as (branded) numbers so `a * b`, `i < n` and `m ? a : b` type-check.
import type { DType } from './dtypes.js';

export type { Scalar } from './dtypes.js';
export { bf16, e4m3, e5m2, f16, f32, i32, i64, u8 } from './dtypes.js';

declare const ptrBrand: unique symbol;
declare const constBrand: unique symbol;

/** A pointer parameter to global memory holding elements of type T. */
export interface Ptr<T extends number = number> {
  readonly [ptrBrand]?: T;
}

/** A compile-time constant parameter; the type argument is its default value. */
export type Const<N extends number = number> = number & { readonly [constBrand]?: N };

/** A tile (or scalar) of element type T. Alias of T: tiles are numbers to the type checker. */
export type Tile<T extends number = number> = T;

/** Launch options a kernel may declare. */
export interface KernelOptions {
  /** warps per program (default 4) */
  warps?: number;
}

/** A compiled kernel handle: the runtime launches it from the artifact the compiler emitted. */
export interface Kernel<A extends unknown[] = unknown[]> {
  readonly __kernel: true;
  readonly __args?: A;
}

function dslOnly(name: string): never {
  throw new Error(`${name}() is a DSL intrinsic: it only has meaning inside kernel() source compiled by sfc`);
}

/** Marks a kernel. The compiler finds these calls; at run time sfc launches the compiled artifact. */
export function kernel<A extends unknown[]>(fn: (...args: A) => void, _options?: KernelOptions): Kernel<A> {
  void fn;
  return { __kernel: true };
}

// ---- program and index intrinsics ----------------------------------------------------------------
/** Index of this program along grid axis 0, 1 or 2. */
export function programId(_axis: 0 | 1 | 2): number {
  return dslOnly('programId');
}
/** Number of programs along grid axis 0, 1 or 2. */
export function numPrograms(_axis: 0 | 1 | 2): number {
  return dslOnly('numPrograms');
}
/** The 1-D i32 tile [start, start + 1, ..., end - 1]; end - start must be a constant power of two. */
export function arange(_start: number, _end: number): number {
  return dslOnly('arange');
}
/** A tile of `shape` filled with `value` (dtype of value, or `dtype` when given). */
export function full(_shape: readonly number[], _value: number, _dtype?: DType): number {
  return dslOnly('full');
}
/** Inserts a size-1 dim at `axis` (x[:, None] is expandDims(x, 1)). */
export function expandDims<T extends number | boolean>(_x: T, _axis: number): T {
  return dslOnly('expandDims');
}
/** Broadcasts a tile to `shape`. */
export function broadcastTo<T extends number | boolean>(_x: T, _shape: readonly number[]): T {
  return dslOnly('broadcastTo');
}
/** Swaps neighbours along the last dim (x[2k] <-> x[2k+1]): the partner of each complex pair (RoPE). */
export function swapPairs(_x: number): number {
  return dslOnly('swapPairs');
}
/** Reshapes a tile (same number of elements). */
export function reshape<T extends number | boolean>(_x: T, _shape: readonly number[]): T {
  return dslOnly('reshape');
}

// ---- memory --------------------------------------------------------------------------------------
/** Loads ptr[offsets] where mask holds, `other` elsewhere (default 0). */
export function load<T extends number>(_ptr: Ptr<T>, _offsets: number, _mask?: boolean, _other?: number): T {
  return dslOnly('load');
}
/** Stores value (converted to the pointer's element type) to ptr[offsets] where mask holds. */
export function store<T extends number>(_ptr: Ptr<T>, _offsets: number, _value: number, _mask?: boolean): void {
  dslOnly('store');
}
/** Atomically adds value to ptr[offsets] (f32 and i32 pointers). */
export function atomicAdd<T extends number>(_ptr: Ptr<T>, _offsets: number, _value: number, _mask?: boolean): void {
  dslOnly('atomicAdd');
}
/** Atomically takes the maximum with ptr[offsets] (f32 and i32 pointers). */
export function atomicMax<T extends number>(_ptr: Ptr<T>, _offsets: number, _value: number, _mask?: boolean): void {
  dslOnly('atomicMax');
}

// ---- element-wise math (float results; integer inputs are converted to f32) ---------------------
export function exp(_x: number): number {
  return dslOnly('exp');
}
export function exp2(_x: number): number {
  return dslOnly('exp2');
}
export function log(_x: number): number {
  return dslOnly('log');
}
export function log2(_x: number): number {
  return dslOnly('log2');
}
export function sqrt(_x: number): number {
  return dslOnly('sqrt');
}
export function rsqrt(_x: number): number {
  return dslOnly('rsqrt');
}
export function tanh(_x: number): number {
  return dslOnly('tanh');
}
export function sigmoid(_x: number): number {
  return dslOnly('sigmoid');
}
export function erf(_x: number): number {
  return dslOnly('erf');
}
export function sin(_x: number): number {
  return dslOnly('sin');
}
export function cos(_x: number): number {
  return dslOnly('cos');
}
export function abs(_x: number): number {
  return dslOnly('abs');
}
export function floor(_x: number): number {
  return dslOnly('floor');
}
export function ceil(_x: number): number {
  return dslOnly('ceil');
}
/** Element-wise maximum of two tiles. */
export function maximum(_a: number, _b: number): number {
  return dslOnly('maximum');
}
/** Element-wise minimum of two tiles. */
export function minimum(_a: number, _b: number): number {
  return dslOnly('minimum');
}
/** a * b + c with one rounding. */
export function fma(_a: number, _b: number, _c: number): number {
  return dslOnly('fma');
}
/** cond ? a : b, element-wise (the ?: operator means the same). */
export function where(_cond: boolean, _a: number, _b: number): number {
  return dslOnly('where');
}
/** Converts to `dtype` (round to nearest even; FP8 saturates to the largest finite value). */
export function cast<D extends DType>(_x: number, _dtype: D): number {
  return dslOnly('cast');
}
/** Integer division, truncating toward zero (`/` on integers divides as floats). */
export function idiv(_a: number, _b: number): number {
  return dslOnly('idiv');
}

// ---- reductions (over all elements, or one axis) -------------------------------------------------
export function sum(_x: number, _axis?: number): number {
  return dslOnly('sum');
}
export function max(_x: number, _axis?: number): number {
  return dslOnly('max');
}
export function min(_x: number, _axis?: number): number {
  return dslOnly('min');
}
/** max(|x|): the scale statistic of FP8 quantisation. */
export function absmax(_x: number, _axis?: number): number {
  return dslOnly('absmax');
}

// ---- random numbers (counter-based Philox: the same (seed, offset) gives the same value) --------
/** Uniform in (0, 1). */
export function rand(_seed: number, _offsets: number): number {
  return dslOnly('rand');
}
/** Standard normal. */
export function randn(_seed: number, _offsets: number): number {
  return dslOnly('randn');
}
