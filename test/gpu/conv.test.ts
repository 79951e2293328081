// The implicit-GEMM convolution (GEMM template with `conv`) on the GPU against a float64 reference:
// shifted reads of a channels-last buffer for every tap, with reads past the buffer as zeros; 3x3x3,
// 3x3 and 3x1x1 tap sets, odd row counts, output widths that are not a multiple of the tile.
import { describe, expect, it } from 'vitest';
import { gemmSm90 } from '../../compiler/templates/gemm.js';
import { bf16, f32 } from '../../dsl/dtypes.js';
import { runConvGemm } from '../../runtime/gemm.js';
import { Tensor } from '../../runtime/tensor.js';
import { noGpuReason, openDevice, randn, relErr } from './gpu.js';

describe.skipIf(noGpuReason)('implicit-GEMM convolution (sm_90a) on the GPU', () => {
  const dev = noGpuReason ? undefined : openDevice();
  const cases = [
    { C: 64, N: 96, bn: 96, rows: 701, M: 600, taps: { x: 3, y: 3, t: 3, py: 13, pt: 13 * 7 } },
    { C: 128, N: 192, bn: 192, rows: 333, M: 333, taps: { x: 3, y: 3, t: 1, py: 11, pt: 0 } },
    { C: 192, N: 80, bn: 64, rows: 250, M: 200, taps: { x: 1, y: 1, t: 3, py: 0, pt: 50 } },
  ];
  it.each(cases.map((c) => [`C ${c.C}, N ${c.N}, taps ${c.taps.x}x${c.taps.y}x${c.taps.t}`, c] as const))(
    '%s',
    (_n, c) => {
      const d = dev!;
      if (d.arch !== 'sm_90a') return;
      const n = c.taps.x * c.taps.y * c.taps.t;
      const buf = Tensor.from(d, bf16, [c.rows, c.C], randn(c.rows * c.C, 3));
      const w = Tensor.from(
        d,
        bf16,
        [c.N, n * c.C],
        randn(c.N * n * c.C, 4).map((v) => v / Math.sqrt(n * c.C)),
      );
      const out = Tensor.empty(d, f32, [c.M, c.N]);
      d.fill(out.storage, 0, out.storage.bytes, 0xff); // NaN: unwritten outputs fail
      runConvGemm(gemmSm90({ input: 'bf16', output: 'f32', bn: c.bn, stages: 4, conv: true }), {
        buf,
        w,
        out,
        taps: c.taps,
      });
      const a = buf.toF32();
      const b = w.toF32();
      const ref = new Float64Array(c.M * c.N);
      for (let r = 0; r < c.M; r++)
        for (let o = 0; o < c.N; o++) {
          let s = 0;
          for (let tap = 0; tap < n; tap++) {
            const tx = tap % c.taps.x;
            const ty = Math.floor(tap / c.taps.x) % c.taps.y;
            const tt = Math.floor(tap / (c.taps.x * c.taps.y));
            const row = r + tx + ty * c.taps.py + tt * c.taps.pt;
            if (row >= c.rows) continue;
            for (let ch = 0; ch < c.C; ch++) s += a[row * c.C + ch]! * b[o * n * c.C + tap * c.C + ch]!;
          }
          ref[r * c.N + o] = s;
        }
      expect(relErr(out.toF32(), ref)).toBeLessThan(1e-5);
    },
  );
});
