// Tensor = dtype + shape + strides + offset (both in elements) over a device Storage. Views
// (reshape, narrow, slice, select, permute, transpose, expand/broadcast, unsqueeze, squeeze) share
// storage and copy nothing. Host transfers: `Tensor.from` (values -> device), `.toArray()`
// (decoded values, any layout), `.to(device)` (a contiguous copy).
import type { DType } from '../dsl/dtypes.js';
import { SfcError } from '../dsl/errors.js';
import { decode, encodeInto, rawArray, type RawArray, type ValueArray } from './convert.js';
import type { Device, Storage } from './device.js';

export type Shape = readonly number[];

export class ShapeError extends SfcError {
  constructor(message: string) {
    super(message);
    this.name = 'ShapeError';
  }
}

export function numel(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function contiguousStrides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function fmtShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

function checkShape(shape: Shape, what: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${what}: invalid shape ${fmtShape(shape)}`);
  }
}

export class Tensor {
  private constructor(
    readonly storage: Storage,
    readonly dtype: DType,
    readonly shape: Shape,
    readonly strides: Shape,
    /** in elements */
    readonly offset: number,
  ) {}

  // ---- creation --------------------------------------------------------------------------------
  static empty(device: Device, dtype: DType, shape: Shape): Tensor {
    checkShape(shape, 'empty');
    const storage = device.allocate(numel(shape) * dtype.bytes);
    return new Tensor(storage, dtype, [...shape], contiguousStrides(shape), 0);
  }

  /** A tensor holding `values` (numbers are rounded to `dtype` as a CUDA store would). */
  static from(device: Device, dtype: DType, shape: Shape, values: ArrayLike<number> | ArrayLike<bigint>): Tensor {
    checkShape(shape, 'from');
    const n = numel(shape);
    if (values.length !== n) {
      throw new ShapeError(`from: ${values.length} values do not fill shape ${fmtShape(shape)} (${n} elements)`);
    }
    const t = Tensor.empty(device, dtype, shape);
    const raw = rawArray(dtype, new ArrayBuffer(n * dtype.bytes), 0, n);
    encodeInto(dtype, values, raw);
    if (n) device.write(t.storage, 0, new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));
    return t;
  }

  /** A tensor whose elements have raw bit pattern `raw` (no rounding), e.g. bf16 bits in a Uint16Array. */
  static fromRaw(device: Device, dtype: DType, shape: Shape, raw: RawArray): Tensor {
    checkShape(shape, 'fromRaw');
    if (raw.byteLength !== numel(shape) * dtype.bytes) {
      throw new ShapeError(`fromRaw: ${raw.byteLength} bytes do not match ${dtype.name}${fmtShape(shape)}`);
    }
    const t = Tensor.empty(device, dtype, shape);
    if (raw.byteLength) device.write(t.storage, 0, new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));
    return t;
  }

  static zeros(device: Device, dtype: DType, shape: Shape): Tensor {
    const t = Tensor.empty(device, dtype, shape);
    if (t.storage.bytes) device.fill(t.storage, 0, t.storage.bytes, 0);
    return t;
  }

  // ---- properties ------------------------------------------------------------------------------
  get device(): Device {
    return this.storage.device;
  }
  get rank(): number {
    return this.shape.length;
  }
  get numel(): number {
    return numel(this.shape);
  }
  get byteOffset(): number {
    return this.offset * this.dtype.bytes;
  }
  /** bytes the elements occupy when contiguous */
  get nbytes(): number {
    return this.numel * this.dtype.bytes;
  }

  isContiguous(): boolean {
    let expected = 1;
    for (let i = this.rank - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== expected) return false;
      expected *= this.shape[i]!;
    }
    return true;
  }

  toString(): string {
    return `Tensor(${this.dtype.name}${fmtShape(this.shape)} on ${this.device.name})`;
  }

  /** Returns the storage to its device (views of it become unusable). */
  dispose(): void {
    this.device.release(this.storage);
  }

  // ---- views -----------------------------------------------------------------------------------
  private view(shape: Shape, strides: Shape, offset: number): Tensor {
    return new Tensor(this.storage, this.dtype, shape, strides, offset);
  }

  private dim(d: number, what: string): number {
    const r = d < 0 ? d + this.rank : d;
    if (!Number.isInteger(r) || r < 0 || r >= this.rank) {
      throw new ShapeError(`${what}: dim ${d} out of range for ${this.rank}-d tensor ${fmtShape(this.shape)}`);
    }
    return r;
  }

  /** Reshape without copying; -1 infers one dim. Fails when the layout makes a copy necessary. */
  reshape(shape: Shape): Tensor {
    const n = this.numel;
    const infer = shape.indexOf(-1);
    let target = [...shape];
    if (infer >= 0) {
      if (shape.indexOf(-1, infer + 1) >= 0)
        throw new ShapeError(`reshape: only one dim may be -1 in ${fmtShape(shape)}`);
      const known = numel(shape.filter((_, i) => i !== infer));
      if (known === 0 || n % known !== 0) {
        throw new ShapeError(`reshape: cannot infer -1 in ${fmtShape(shape)} for ${n} elements`);
      }
      target[infer] = n / known;
    }
    checkShape(target, 'reshape');
    if (numel(target) !== n) {
      throw new ShapeError(`reshape: ${fmtShape(this.shape)} (${n} elements) cannot become ${fmtShape(target)}`);
    }
    const strides = viewStrides(this.shape, this.strides, target);
    if (!strides) {
      throw new ShapeError(
        `reshape: ${fmtShape(this.shape)} with strides ${fmtShape(this.strides)} cannot be viewed as ${fmtShape(target)} without a copy`,
      );
    }
    target = [...target];
    return this.view(target, strides, this.offset);
  }

  /** Elements start..start+length-1 of dim `d`. */
  narrow(d: number, start: number, length: number): Tensor {
    const k = this.dim(d, 'narrow');
    const size = this.shape[k]!;
    if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > size) {
      throw new ShapeError(`narrow: [${start}, ${start + length}) out of range for dim ${d} of size ${size}`);
    }
    const shape = [...this.shape];
    shape[k] = length;
    return this.view(shape, this.strides, this.offset + start * this.strides[k]!);
  }

  /** Python-style slice of dim `d` (negative indices count from the end; step > 0). */
  slice(d: number, start = 0, end?: number, step = 1): Tensor {
    const k = this.dim(d, 'slice');
    const size = this.shape[k]!;
    if (!Number.isInteger(step) || step <= 0)
      throw new ShapeError(`slice: step must be a positive integer, got ${step}`);
    const norm = (i: number) => Math.min(Math.max(i < 0 ? i + size : i, 0), size);
    const s = norm(start);
    const e = norm(end ?? size);
    const len = Math.max(0, Math.ceil((e - s) / step));
    const shape = [...this.shape];
    const strides = [...this.strides];
    shape[k] = len;
    strides[k] = strides[k]! * step;
    return this.view(shape, strides, this.offset + s * this.strides[k]!);
  }

  /** Index `i` of dim `d`, removing that dim. */
  select(d: number, i: number): Tensor {
    const k = this.dim(d, 'select');
    const size = this.shape[k]!;
    const j = i < 0 ? i + size : i;
    if (!Number.isInteger(j) || j < 0 || j >= size)
      throw new ShapeError(`select: index ${i} out of range for dim ${d} of size ${size}`);
    return this.view(
      this.shape.filter((_, x) => x !== k),
      this.strides.filter((_, x) => x !== k),
      this.offset + j * this.strides[k]!,
    );
  }

  permute(...dims: number[]): Tensor {
    if (dims.length !== this.rank)
      throw new ShapeError(`permute: ${dims.length} dims given for a ${this.rank}-d tensor`);
    const ks = dims.map((d) => this.dim(d, 'permute'));
    if (new Set(ks).size !== ks.length) throw new ShapeError(`permute: repeated dim in (${dims.join(', ')})`);
    return this.view(
      ks.map((k) => this.shape[k]!),
      ks.map((k) => this.strides[k]!),
      this.offset,
    );
  }

  transpose(a: number, b: number): Tensor {
    const dims = this.shape.map((_, i) => i);
    const x = this.dim(a, 'transpose');
    const y = this.dim(b, 'transpose');
    [dims[x], dims[y]] = [dims[y]!, dims[x]!];
    return this.permute(...dims);
  }

  /** Broadcast to `shape` (new leading dims and size-1 dims get stride 0); -1 keeps a dim. */
  expand(shape: Shape): Tensor {
    if (shape.length < this.rank) {
      throw new ShapeError(`expand: cannot expand ${fmtShape(this.shape)} to fewer dims ${fmtShape(shape)}`);
    }
    const lead = shape.length - this.rank;
    const out: number[] = [];
    const strides: number[] = [];
    for (let i = 0; i < shape.length; i++) {
      const want = shape[i]!;
      if (i < lead) {
        if (want < 0) throw new ShapeError(`expand: -1 not allowed for new dim ${i}`);
        out.push(want);
        strides.push(0);
        continue;
      }
      const have = this.shape[i - lead]!;
      const w = want === -1 ? have : want;
      if (have === w) {
        out.push(w);
        strides.push(this.strides[i - lead]!);
      } else if (have === 1) {
        out.push(w);
        strides.push(0);
      } else {
        throw new ShapeError(
          `expand: dim ${i} of size ${have} cannot broadcast to ${want} (${fmtShape(this.shape)} -> ${fmtShape(shape)})`,
        );
      }
    }
    checkShape(out, 'expand');
    return this.view(out, strides, this.offset);
  }

  unsqueeze(d: number): Tensor {
    const k = d < 0 ? d + this.rank + 1 : d;
    if (!Number.isInteger(k) || k < 0 || k > this.rank) throw new ShapeError(`unsqueeze: dim ${d} out of range`);
    const shape = [...this.shape];
    const strides = [...this.strides];
    shape.splice(k, 0, 1);
    strides.splice(k, 0, k < this.rank ? this.strides[k]! * this.shape[k]! : 1);
    return this.view(shape, strides, this.offset);
  }

  squeeze(d?: number): Tensor {
    if (d === undefined) {
      const keep = this.shape.map((s, i) => (s !== 1 ? i : -1)).filter((i) => i >= 0);
      return this.view(
        keep.map((i) => this.shape[i]!),
        keep.map((i) => this.strides[i]!),
        this.offset,
      );
    }
    const k = this.dim(d, 'squeeze');
    if (this.shape[k] !== 1) throw new ShapeError(`squeeze: dim ${d} has size ${this.shape[k]}, not 1`);
    return this.select(k, 0);
  }

  // ---- host transfers --------------------------------------------------------------------------
  /** The element range [min, max] of storage this view touches (in elements). */
  private span(): [number, number] {
    let lo = this.offset;
    let hi = this.offset;
    for (let i = 0; i < this.rank; i++) {
      const ext = (this.shape[i]! - 1) * this.strides[i]!;
      if (ext < 0) lo += ext;
      else hi += ext;
    }
    return [lo, hi];
  }

  /** Raw element bits in logical (row-major) order. */
  toRaw(): RawArray {
    const n = this.numel;
    const d = this.dtype;
    const out = rawArray(d, new ArrayBuffer(n * d.bytes), 0, n);
    if (n === 0) return out;
    const [lo, hi] = this.span();
    const count = hi - lo + 1;
    const bytes = new Uint8Array(count * d.bytes);
    this.device.read(this.storage, lo * d.bytes, bytes);
    const src = rawArray(d, bytes.buffer, 0, count);
    if (this.isContiguous() && this.offset === lo) {
      (out as Uint8Array).set(src as unknown as Uint8Array);
      return out;
    }
    gather(src, out, this.shape, this.strides, this.offset - lo);
    return out;
  }

  /** Decoded values in logical order (floats as Float32Array; i64 as BigInt64Array). */
  toArray(): ValueArray {
    return decode(this.dtype, this.toRaw());
  }

  /** Decoded values of a floating-point tensor as a Float32Array (exact for every float dtype here). */
  toF32(): Float32Array {
    if (!this.dtype.isFloat) throw new SfcError(`toF32: ${this.dtype.name} is not a floating-point dtype`);
    return this.toArray() as Float32Array;
  }

  /** A contiguous copy on `device` (the same device gives a contiguous copy too). */
  to(device: Device): Tensor {
    if (device === this.device && this.isContiguous()) {
      const t = Tensor.empty(device, this.dtype, this.shape);
      if (this.nbytes) device.copy(t.storage, 0, this.storage, this.byteOffset, this.nbytes);
      return t;
    }
    return Tensor.fromRaw(device, this.dtype, this.shape, this.toRaw());
  }

  /** This tensor if contiguous, else a contiguous copy on the same device. */
  contiguous(): Tensor {
    return this.isContiguous() ? this : this.to(this.device);
  }
}

/**
 * Strides that view (shape, strides) as `target` without copying, or undefined if impossible.
 * Walks the source dims from the innermost out, grouping runs that are contiguous with each other;
 * each run must be covered exactly by a run of target dims.
 */
export function viewStrides(shape: Shape, strides: Shape, target: Shape): number[] | undefined {
  if (numel(shape) === 0 || shape.length === 0) return contiguousStrides(target);
  const out = new Array<number>(target.length).fill(1);
  let vd = target.length - 1;
  let base = strides[shape.length - 1]!;
  let tensorNumel = 1;
  let viewNumel = 1;
  for (let td = shape.length - 1; td >= 0; td--) {
    tensorNumel *= shape[td]!;
    const runEnds = td === 0 || (shape[td - 1] !== 1 && strides[td - 1] !== tensorNumel * base);
    if (!runEnds) continue;
    while (vd >= 0 && (viewNumel < tensorNumel || target[vd] === 1)) {
      out[vd] = viewNumel * base;
      viewNumel *= target[vd]!;
      vd--;
    }
    if (viewNumel !== tensorNumel) return undefined;
    if (td > 0) {
      base = strides[td - 1]!;
      tensorNumel = 1;
      viewNumel = 1;
    }
  }
  return vd === -1 ? out : undefined;
}

/** Copies the strided view of `src` (starting at element `offset`) into `out` in logical order. */
function gather(src: RawArray, out: RawArray, shape: Shape, strides: Shape, offset: number): void {
  const rank = shape.length;
  const n = out.length;
  const idx = new Array<number>(rank).fill(0);
  let pos = offset;
  const o = out as unknown as number[];
  const s = src as unknown as number[];
  for (let i = 0; i < n; i++) {
    o[i] = s[pos]!;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      pos += strides[d]!;
      if (idx[d]! < shape[d]!) break;
      pos -= strides[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}
