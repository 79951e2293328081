// The kernel language end to end on the JS backend (the executable definition of the IR), its IR
// text, and the same kernels through nvcc: loops with accumulators, scalar if/return, helpers and
// tuples, 2-D tiles with broadcasting and axis reductions, constants from config objects.
import { describe, expect, it } from 'vitest';
import { combinedSource } from '../../compiler/backend-cuda.js';
import { BUILD_ARCHS, compileCuda, findNvcc } from '../../compiler/nvcc.js';
import { bf16, f32, i32 } from '../../dsl/dtypes.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { launch } from '../../runtime/kernels.js';
import { Tensor } from '../../runtime/tensor.js';
import { compileText } from './dsl.js';

const dev = new CpuDevice();
const src = `
const cfg = { block: 16, scale: 0.5 } as const;
const TILE = 4 * 4;

function twice(v: number): number { return v * 2; }
function meanAndMax(v: number, n: number): [number, number] { return [sum(v) / n, max(v)]; }

/** y[row] = sum over k-blocks of x[row, k] (a loop-carried accumulator tile) */
export const rowSumLoop = kernel((x: Ptr<f32>, y: Ptr<f32>, K: i32) => {
  const row = programId(0);
  const cols = arange(0, TILE);
  let acc = full([TILE], 0, f32);
  for (let k = 0; k < K; k += TILE) {
    acc = acc + load(x, row * K + k + cols, k + cols < K, 0);
  }
  store(y, row, sum(acc));
});

/** scalar if / else and early return */
export const branches = kernel((y: Ptr<i32>, n: i32) => {
  const p = programId(0);
  if (p >= n) return;
  if (p % 2 === 0) {
    store(y, p, p * 10);
  } else {
    store(y, p, -p);
  }
});

/** helpers, tuples, config constants, ternaries */
export const helpers = kernel((x: Ptr<f32>, y: Ptr<f32>, stats: Ptr<f32>, n: i32) => {
  const i = arange(0, cfg.block);
  const v = load(x, i, i < n, 0);
  const [m, mx] = meanAndMax(v, n);
  store(stats, 0, m);
  store(stats, 1, mx);
  store(y, i, i < 3 ? twice(v) : v * cfg.scale, i < n);
});

/** 2-D tiles: outer products by broadcasting, row and column reductions */
export const tiles2d = kernel((a: Ptr<f32>, b: Ptr<f32>, outer: Ptr<f32>, rows: Ptr<f32>, cols: Ptr<f32>) => {
  const r = arange(0, 8);
  const c = arange(0, 16);
  const av = expandDims(load(a, r), 1); // [8, 1]
  const bv = expandDims(load(b, c), 0); // [1, 16]
  const o = av * bv; // [8, 16]
  store(outer, expandDims(r, 1) * 16 + expandDims(c, 0), o);
  store(rows, r, sum(o, 1));
  store(cols, c, max(o, 0));
});

/** complex rotation of interleaved pairs with swapPairs */
export const rotate = kernel((x: Ptr<f32>, y: Ptr<f32>) => {
  const e = arange(0, 64);
  const v = load(x, e);
  store(y, e, (e & 1) === 1 ? swapPairs(v) : -swapPairs(v));
});

/** bf16 arithmetic rounds like the GPU: weak literals keep the tile's dtype */
export const bf16Math = kernel((x: Ptr<bf16>, y: Ptr<bf16>, n: i32) => {
  const i = arange(0, 32);
  const v = load(x, i, i < n, 0);
  store(y, i, v * 3 + 1, i < n);
});
`;

describe('kernel language (JS backend)', () => {
  const arts = compileText(src, 'language.ts');
  const get = (n: string) => arts.get(n)!;

  it('loop-carried accumulators', () => {
    const R = 3;
    const K = 37; // not a multiple of the tile
    const xs = Array.from({ length: R * K }, (_, i) => (i % 7) - 3);
    const x = Tensor.from(dev, f32, [R, K], xs);
    const y = Tensor.empty(dev, f32, [R]);
    launch(get('rowSumLoop'), [R], [x, y, K]);
    const ref = [0, 1, 2].map((r) => xs.slice(r * K, r * K + K).reduce((a, b) => a + b, 0));
    expect(Array.from(y.toF32())).toEqual(ref);
  });

  it('scalar branches and early return', () => {
    const y = Tensor.from(dev, i32, [8], new Array(8).fill(99));
    launch(get('branches'), [8], [y, 5]);
    expect(Array.from(y.toArray() as Int32Array)).toEqual([0, -1, 20, -3, 40, 99, 99, 99]);
  });

  it('helpers, tuples, config constants and ternaries', () => {
    const n = 10;
    const x = Tensor.from(
      dev,
      f32,
      [n],
      Array.from({ length: n }, (_, i) => i + 1),
    );
    const y = Tensor.from(dev, f32, [n], new Array(n).fill(-1));
    const stats = Tensor.empty(dev, f32, [2]);
    launch(get('helpers'), [1], [x, y, stats, n]);
    expect(Array.from(stats.toF32())).toEqual([5.5, 10]);
    expect(Array.from(y.toF32())).toEqual([2, 4, 6, 2, 2.5, 3, 3.5, 4, 4.5, 5]);
  });

  it('2-D tiles, broadcasting and axis reductions', () => {
    const a = Tensor.from(dev, f32, [8], [1, 2, 3, 4, 5, 6, 7, 8]);
    const bvals = Array.from({ length: 16 }, (_, i) => i - 8);
    const b = Tensor.from(dev, f32, [16], bvals);
    const outer = Tensor.empty(dev, f32, [8, 16]);
    const rows = Tensor.empty(dev, f32, [8]);
    const cols = Tensor.empty(dev, f32, [16]);
    launch(get('tiles2d'), [1], [a, b, outer, rows, cols]);
    const o = outer.toF32();
    expect(o[3 * 16 + 5]).toBe(4 * (5 - 8));
    const bsum = bvals.reduce((p, q) => p + q, 0);
    expect(Array.from(rows.toF32())).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((v) => v * bsum));
    expect(Array.from(cols.toF32())).toEqual(bvals.map((v) => Math.max(v, 8 * v)));
  });

  it('swapPairs exchanges neighbours', () => {
    const x = Tensor.from(
      dev,
      f32,
      [64],
      Array.from({ length: 64 }, (_, i) => i),
    );
    const y = Tensor.empty(dev, f32, [64]);
    launch(get('rotate'), [1], [x, y]);
    expect(Array.from(y.toF32()).slice(0, 6)).toEqual([-1, 0, -3, 2, -5, 4]);
  });

  it('rounds bf16 arithmetic after each op', () => {
    const x = Tensor.from(dev, bf16, [3], [1.0078125, 257, -3]);
    const y = Tensor.empty(dev, bf16, [3]);
    launch(get('bf16Math'), [1], [x, y, 3]);
    // 1.0078125 * 3 = 3.0234375, a tie -> bf16 3.03125 (even); + 1 = 4.03125 (exact)
    // 257 -> bf16 256 (tie, even); * 3 = 768; + 1 = 769 -> 768
    expect(Array.from(y.toF32())).toEqual([4.03125, 768, -8]);
  });

  it('prints its IR', () => {
    expect(get('bf16Math').ir).toMatchInlineSnapshot(`
      "kernel bf16Math(x: ptr<bf16>, y: ptr<bf16>, n: i32) warps=1
        %3 = arange 0 : i32[32]
        %4 = lt %3, n : bool[32]
        %7 = load x[%3, %4, 0:bf16] : bf16[32]
        %10 = mul %7, 3:bf16 : bf16[32]
        %13 = add %10, 1:bf16 : bf16[32]
        store y[%3] = %13 if %4
      "
    `);
  });

  it('checks arguments', () => {
    const y = Tensor.empty(dev, f32, [8]);
    expect(() => launch(get('branches'), [8], [y, 5])).toThrow("branches: 'y' expects i32, got a f32 tensor");
    expect(() => launch(get('branches'), [8], [y])).toThrow('branches takes 2 arguments (y, n), got 1');
  });

  it('reports out-of-bounds accesses at the kernel line', () => {
    const x = Tensor.from(dev, f32, [2, 5], new Array(10).fill(1));
    const y = Tensor.empty(dev, f32, [2]);
    expect(() => launch(get('rowSumLoop'), [2], [x, y, 37])).toThrow(
      /language\.ts:\d+: load of x\[\d+\] is out of bounds \(the buffer has 10 elements\)/,
    );
  });
});

describe.skipIf(!findNvcc())('kernel language through nvcc', () => {
  it.each(BUILD_ARCHS.map((a) => [a]))('%s: compiles with zero spills', (arch) => {
    const variants = [...compileText(src, 'language.ts').values()].flatMap((a) => a.cuda);
    const r = compileCuda({ source: combinedSource(variants.map((v) => v.source)), arch, name: `language-${arch}` });
    for (const v of variants) {
      const k = r.reports.find((x) => x.name === v.entry);
      expect(k, v.entry).toBeDefined();
      expect(k!.spillStoreBytes, v.entry).toBe(0);
    }
  });
});
