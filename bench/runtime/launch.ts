// Launch overhead of the runtime: (1) host time per kernel launch issued from JS (argument packing,
// N-API call, cuLaunchKernel), target <= 5 us; (2) per-kernel time of a 300-kernel step replayed as
// a CUDA graph, target <= 1 us; (3) the same launches from C++ in a loop, to separate our JS/N-API
// cost from the driver's. The kernels are empty-ish (one store), so only overhead is measured.
import { performance } from 'node:perf_hooks';
import { f32 } from '../../dsl/dtypes.js';
import { CudaDevice } from '../../runtime/cuda.js';
import { Tensor } from '../../runtime/tensor.js';
import { median, stamp, writeResult } from '../harness.js';

const src = `extern "C" __global__ void touch(float* p, int n, float v) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}`;

export function benchLaunch(dev: CudaDevice) {
  const t = Tensor.zeros(dev, f32, [1024]);
  const k = dev.kernel({ source: src, entry: 'touch', params: ['ptr', 'i32', 'f32'], label: 'touch' });
  const ptr = dev.ptrOf(t.storage);
  const launch = (i: number) => dev.launch(k, { grid: 4, block: 256 }, [ptr, 1024, i]);
  for (let i = 0; i < 2000; i++) launch(i);
  dev.synchronize();

  // (1) JS launches: host wall time per launch, batches of 1000 (kept below the launch queue depth)
  const hostUs: number[] = [];
  for (let rep = 0; rep < 30; rep++) {
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) launch(i);
    hostUs.push(((performance.now() - t0) * 1000) / 1000);
    dev.synchronize();
  }
  // (3) native loop: the same launch 1000 times from C++
  const params = new Uint8Array(16);
  new DataView(params.buffer).setBigInt64(0, BigInt(ptr), true);
  new DataView(params.buffer).setInt32(8, 1024, true);
  const nativeUs: number[] = [];
  for (let rep = 0; rep < 30; rep++) {
    const t0 = performance.now();
    dev.native.launchRepeated(k.fn, [4, 1, 1], [256, 1, 1], 0, dev.stream, params, 1000);
    nativeUs.push(((performance.now() - t0) * 1000) / 1000);
    dev.synchronize();
  }
  // (2) a 300-kernel graph: device time per kernel (CUDA events around replays)
  const graph = dev.capture(() => {
    for (let i = 0; i < 300; i++) launch(i);
  });
  for (let i = 0; i < 20; i++) graph.replay();
  const graphUs: number[] = [];
  for (let rep = 0; rep < 30; rep++) {
    const ms = dev.time(() => {
      for (let i = 0; i < 10; i++) graph.replay();
    });
    graphUs.push((ms * 1000) / 3000);
  }
  // stream launches timed on the device: what 300 separate launches cost back to back
  const streamUs: number[] = [];
  for (let rep = 0; rep < 30; rep++) {
    const ms = dev.time(() => {
      for (let i = 0; i < 300; i++) launch(i);
    });
    streamUs.push((ms * 1000) / 300);
  }
  graph.destroy();
  t.dispose();
  return {
    jsLaunchHostUs: median(hostUs),
    nativeLaunchHostUs: median(nativeUs),
    graphPerKernelDeviceUs: median(graphUs),
    streamPerKernelDeviceUs: median(streamUs),
    targets: { jsLaunchHostUs: 5, graphPerKernelDeviceUs: 1 },
    samples: { hostUs, nativeUs, graphUs, streamUs },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dev = CudaDevice.open(0);
  const r = benchLaunch(dev);
  const path = writeResult(`runtime-launch-${dev.info.name.replace(/\W+/g, '_')}`, { ...stamp(dev), ...r });
  console.log(
    `launch from JS ${r.jsLaunchHostUs.toFixed(2)} us (native loop ${r.nativeLaunchHostUs.toFixed(2)} us); ` +
      `graph ${r.graphPerKernelDeviceUs.toFixed(3)} us/kernel; stream ${r.streamPerKernelDeviceUs.toFixed(3)} us/kernel -> ${path}`,
  );
  dev.dispose();
}
