import { describe, expect, it } from 'vitest';
import { bf16, e4m3, f32, i32, i64 } from '../../dsl/dtypes.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { Tensor, viewStrides } from '../../runtime/tensor.js';
import { errorOf } from '../helpers.js';

const cpu = new CpuDevice();
const iota = (n: number) => Array.from({ length: n }, (_, i) => i);
/** the reference: element at multi-index `idx` of a row-major array of `shape` */
function at(values: number[], shape: number[], idx: number[]): number {
  let off = 0;
  for (let d = 0; d < shape.length; d++) off = off * shape[d]! + idx[d]!;
  return values[off]!;
}

describe('Tensor views', () => {
  const base = () => Tensor.from(cpu, f32, [2, 3, 4], iota(24));

  it('round-trips values and reports its layout', () => {
    const t = base();
    expect(Array.from(t.toF32())).toEqual(iota(24));
    expect(t.strides).toEqual([12, 4, 1]);
    expect(t.isContiguous()).toBe(true);
    expect(t.toString()).toBe('Tensor(f32[2, 3, 4] on cpu)');
  });

  it('permute / transpose gather the right elements without copying', () => {
    const t = base();
    const p = t.permute(2, 0, 1);
    expect(p.shape).toEqual([4, 2, 3]);
    expect(p.storage).toBe(t.storage);
    expect(p.isContiguous()).toBe(false);
    const v = Array.from(p.toF32());
    for (let a = 0; a < 4; a++)
      for (let b = 0; b < 2; b++)
        for (let c = 0; c < 3; c++) expect(v[(a * 2 + b) * 3 + c]).toBe(at(iota(24), [2, 3, 4], [b, c, a]));
    expect(Array.from(t.transpose(0, 2).toF32())).toEqual(Array.from(t.permute(2, 1, 0).toF32()));
  });

  it('narrow, slice with step, select, negative indices', () => {
    const t = base();
    expect(Array.from(t.narrow(1, 1, 2).toF32())).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23]);
    expect(Array.from(t.slice(2, 0, undefined, 2).toF32())).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]);
    expect(Array.from(t.slice(2, -1).toF32())).toEqual([3, 7, 11, 15, 19, 23]);
    expect(Array.from(t.select(0, 1).select(0, -1).toF32())).toEqual([20, 21, 22, 23]);
  });

  it('reshape views when the layout allows and refuses otherwise', () => {
    const t = base();
    expect(t.reshape([6, -1]).shape).toEqual([6, 4]);
    expect(Array.from(t.reshape([4, 6]).toF32())).toEqual(iota(24));
    const n = t.narrow(2, 0, 2); // [2,3,2] strides [12,4,1]
    expect(n.reshape([2, 3, 2, 1]).shape).toEqual([2, 3, 2, 1]);
    expect(errorOf(() => n.reshape([12]))).toBe(
      'reshape: [2, 3, 2] with strides [12, 4, 1] cannot be viewed as [12] without a copy',
    );
    expect(Array.from(n.contiguous().reshape([12]).toF32())).toEqual([0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21]);
    expect(errorOf(() => t.reshape([5, 5]))).toBe('reshape: [2, 3, 4] (24 elements) cannot become [5, 5]');
    // merging dims of a permuted view that happen to stay contiguous
    expect(viewStrides([3, 4], [1, 3], [12])).toBeUndefined();
    expect(viewStrides([2, 3, 4], [12, 4, 1], [2, 12])).toEqual([12, 1]);
    expect(viewStrides([2, 1, 4], [4, 99, 1], [8])).toEqual([1]);
  });

  it('expand broadcasts with stride 0; unsqueeze / squeeze', () => {
    const row = Tensor.from(cpu, f32, [1, 3], [1, 2, 3]);
    const e = row.expand([2, 2, 3]);
    expect(e.strides).toEqual([0, 0, 1]);
    expect(Array.from(e.toF32())).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
    expect(errorOf(() => row.expand([2, 4]))).toBe('expand: dim 1 of size 3 cannot broadcast to 4 ([1, 3] -> [2, 4])');
    expect(row.unsqueeze(0).shape).toEqual([1, 1, 3]);
    expect(row.unsqueeze(-1).shape).toEqual([1, 3, 1]);
    expect(row.squeeze().shape).toEqual([3]);
    expect(errorOf(() => row.squeeze(1))).toBe('squeeze: dim 1 has size 3, not 1');
  });

  it('converts on the way in and out (bf16, fp8, ints)', () => {
    expect(Array.from(Tensor.from(cpu, bf16, [3], [1.00390625, 3.14159, -0]).toF32())).toEqual([1, 3.140625, -0]);
    expect(Array.from(Tensor.from(cpu, e4m3, [3], [500, -1e9, 0.3]).toF32())).toEqual([448, -448, 0.3125]);
    expect(Array.from(Tensor.from(cpu, i32, [2], [7.9, -7.9]).toArray() as Int32Array)).toEqual([7, -7]);
    expect(Array.from(Tensor.from(cpu, i64, [1], [2n ** 40n]).toArray() as BigInt64Array)).toEqual([2n ** 40n]);
  });

  it('copies to another device and keeps the values', () => {
    const other = new CpuDevice();
    const t = base().permute(1, 0, 2);
    const c = t.to(other);
    expect(c.device).toBe(other);
    expect(c.isContiguous()).toBe(true);
    expect(Array.from(c.toF32())).toEqual(Array.from(t.toF32()));
  });

  it('rejects bad arguments with clear errors', () => {
    const t = base();
    expect(errorOf(() => t.narrow(1, 2, 2))).toBe('narrow: [2, 4) out of range for dim 1 of size 3');
    expect(errorOf(() => t.permute(0, 0, 1))).toBe('permute: repeated dim in (0, 0, 1)');
    expect(errorOf(() => t.select(3, 0))).toBe('select: dim 3 out of range for 3-d tensor [2, 3, 4]');
    expect(errorOf(() => Tensor.from(cpu, f32, [2, 2], [1, 2, 3]))).toBe(
      'from: 3 values do not fill shape [2, 2] (4 elements)',
    );
    const d = base();
    d.dispose();
    expect(errorOf(() => d.toF32())).toBe('read: storage was released');
  });
});
