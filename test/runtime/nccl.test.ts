// Collectives on simulated CPU devices (the same API the NCCL path has on GPUs): all-reduce with
// every op and broadcast, in place, and clear errors for mismatched tensors.
import { describe, expect, it } from 'vitest';
import { bf16, f32 } from '../../dsl/dtypes.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { Collective } from '../../runtime/nccl.js';
import { Tensor } from '../../runtime/tensor.js';

describe('collectives on simulated CPU devices', () => {
  const devs = [new CpuDevice(), new CpuDevice(), new CpuDevice()];
  const c = Collective.create(devs);
  const make = () =>
    devs.map((d, i) =>
      Tensor.from(
        d,
        f32,
        [2, 3],
        [1, -2, 3, 4, 5, -6].map((v) => v * (i + 1)),
      ),
    );

  it('all-reduces in place with sum, max, min, prod and avg', () => {
    const expect1 = (op: Parameters<Collective['allReduce']>[1], want: number[]) => {
      const ts = make();
      c.allReduce(ts, op);
      for (const t of ts) expect(Array.from(t.toF32())).toEqual(want);
    };
    expect1('sum', [6, -12, 18, 24, 30, -36]);
    expect1('max', [3, -2, 9, 12, 15, -6]);
    expect1('min', [1, -6, 3, 4, 5, -18]);
    expect1('prod', [6, -48, 162, 384, 750, -1296]);
    expect1('avg', [2, -4, 6, 8, 10, -12]);
  });

  it('broadcasts from any root', () => {
    const ts = make();
    c.broadcast(ts, 2);
    for (const t of ts) expect(Array.from(t.toF32())).toEqual([3, -6, 9, 12, 15, -18]);
  });

  it('rejects tensors that do not line up with the devices', () => {
    const ts = make();
    expect(() => c.allReduce(ts.slice(0, 2))).toThrow(/one tensor per device \(3\), got 2/);
    expect(() => c.allReduce([ts[0]!, ts[1]!, Tensor.zeros(devs[2]!, bf16, [2, 3])])).toThrow(
      /tensor 2 is bf16\[2, 3\], tensor 0 f32\[2, 3\]/,
    );
    expect(() => c.allReduce([ts[1]!, ts[0]!, ts[2]!])).toThrow(/tensor 0 is on cpu, not cpu|tensor 0 is on/);
    expect(() => c.broadcast(ts, 3)).toThrow(/root must be in \[0, 3\), got 3/);
  });
});
