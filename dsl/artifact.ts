// The contract between the compiler and the runtime: a compiled kernel as plain data (JSON-able).
// The runtime never imports the compiler; it launches these.
import type { DTypeName } from './dtypes.js';

export interface ArtifactParam {
  name: string;
  kind: 'ptr' | 'scalar' | 'const';
  dtype: DTypeName | 'bool';
  /** value of a const parameter (baked into the code) */
  value?: number;
}

export interface CudaVariant {
  /** facts this variant was specialised for: parameter name -> divisible by 16 (ints) / 16-byte aligned (ptrs) */
  assumes: Record<string, boolean>;
  source: string;
  entry: string;
  threads: number;
  sharedBytes: number;
  /** C ABI types of the launch arguments (non-const params, in order) */
  argTypes: ('ptr' | 'i32' | 'u32' | 'i64' | 'f32' | 'f64')[];
}

export interface KernelArtifact {
  name: string;
  /** the DSL source file and line (for errors and reports) */
  file: string;
  line: number;
  params: ArtifactParam[];
  warps: number;
  /** the IR in text form */
  ir: string;
  /** JS backend: body of `new Function(js)()`, which returns (rt, args, grid) => void */
  js: string;
  /** CUDA backend variants; the runtime picks the most specialised one whose assumptions hold */
  cuda: CudaVariant[];
}
