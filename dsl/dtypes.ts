// Element types, shared by the DSL (as values the compiler reads and types the editor checks), the
// runtime (storage sizes, host conversions) and the backends. `bf16` is both a value and a type:
//   const y = cast(x, bf16);   // value: the compiler reads its name
//   let p: Ptr<bf16>;          // type: the editor checks it

export type DTypeName = 'f32' | 'f16' | 'bf16' | 'e4m3' | 'e5m2' | 'i32' | 'i64' | 'u8';

export interface DType<N extends DTypeName = DTypeName> {
  readonly name: N;
  /** bytes per element */
  readonly bytes: number;
  readonly isFloat: boolean;
  /** the C++ type the CUDA backend stores it as */
  readonly cType: string;
}

function dtype<N extends DTypeName>(name: N, bytes: number, isFloat: boolean, cType: string): DType<N> {
  return Object.freeze({ name, bytes, isFloat, cType });
}

export const f32 = dtype('f32', 4, true, 'float');
export const f16 = dtype('f16', 2, true, 'sfc_f16');
export const bf16 = dtype('bf16', 2, true, 'sfc_bf16');
export const e4m3 = dtype('e4m3', 1, true, 'sfc_e4m3');
export const e5m2 = dtype('e5m2', 1, true, 'sfc_e5m2');
export const i32 = dtype('i32', 4, false, 'int');
export const i64 = dtype('i64', 8, false, 'long long');
export const u8 = dtype('u8', 1, false, 'unsigned char');

// As types, the dtype names are branded numbers: the element type of a tile or scalar in DSL code.
// Arithmetic on them type-checks as plain numbers; the compiler infers the real dtypes.
declare const dtypeBrand: unique symbol;
export type Scalar<N extends DTypeName = DTypeName> = number & { readonly [dtypeBrand]?: N };
export type f32 = Scalar<'f32'>;
export type f16 = Scalar<'f16'>;
export type bf16 = Scalar<'bf16'>;
export type e4m3 = Scalar<'e4m3'>;
export type e5m2 = Scalar<'e5m2'>;
export type i32 = Scalar<'i32'>;
export type i64 = Scalar<'i64'>;
export type u8 = Scalar<'u8'>;

export const dtypes: Readonly<Record<DTypeName, DType>> = Object.freeze({ f32, f16, bf16, e4m3, e5m2, i32, i64, u8 });

export function dtypeOf(name: string): DType | undefined {
  return (dtypes as Record<string, DType>)[name];
}
