// NCCL through the runtime's own bindings on two GPUs of one process: all-reduce (sum, f32 and bf16)
// and broadcast, checked against the host. Skipped with fewer than two GPUs.
import { describe, expect, it } from 'vitest';
import { bf16, f32 } from '../../dsl/dtypes.js';
import { CudaDevice } from '../../runtime/cuda.js';
import { KernelCache } from '../../runtime/kernel-cache.js';
import { loadNative } from '../../runtime/native/load.js';
import { Collective } from '../../runtime/nccl.js';
import { Tensor } from '../../runtime/tensor.js';
import { noGpuReason, randn } from './gpu.js';

function gpuCount(): number {
  if (noGpuReason) return 0;
  const n = loadNative()!;
  n.init();
  return n.deviceCount();
}
const gpus = gpuCount();

describe.skipIf(gpus < 2)('NCCL collectives on two GPUs', () => {
  it('all-reduce sums and broadcast copies across cuda:0 and cuda:1', () => {
    const devs = [CudaDevice.open(0, new KernelCache()), CudaDevice.open(1, new KernelCache())];
    const c = Collective.create(devs);
    try {
      for (const dtype of [f32, bf16]) {
        const n = 1 << 20;
        const host = devs.map((_, i) => randn(n, 7 + i));
        const ts = devs.map((d, i) => Tensor.from(d, dtype, [n], host[i]!));
        const rounded = ts.map((t) => t.toF32());
        c.allReduce(ts, 'sum');
        const want = rounded[0]!.map((v, j) => v + rounded[1]![j]!);
        for (const t of ts) {
          const got = t.toF32();
          let worst = 0;
          for (let j = 0; j < n; j++)
            worst = Math.max(worst, Math.abs(got[j]! - want[j]!) / (Math.abs(want[j]!) + 1e-3));
          expect(worst, `${dtype.name} all-reduce on ${t.device.name}`).toBeLessThan(dtype === f32 ? 1e-6 : 1e-2);
        }
        const fresh = devs.map((d, i) => Tensor.from(d, dtype, [n], randn(n, 11 + i)));
        const root = fresh[1]!.toF32();
        c.broadcast(fresh, 1);
        expect(fresh[0]!.toF32()).toEqual(root);
      }
    } finally {
      c.dispose();
    }
  });
});
