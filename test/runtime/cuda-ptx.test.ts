// CudaDevice.kernel with KernelSource.arch: code for an older architecture is compiled by NVRTC to PTX
// for its virtual architecture (compute_XY) and handed to the driver, which JIT-compiles it; code for
// a newer or arch-specific target is refused. Checked against a stand-in for the native addon.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CudaDevice } from '../../runtime/cuda.js';
import { KernelCache } from '../../runtime/kernel-cache.js';
import type { NativeAddon } from '../../runtime/native/api.js';

/** A native addon that records NVRTC compiles and module loads (a device of compute capability cc). */
function fakeNative(cc: [number, number]) {
  const compiles: { options: string[]; wantCubin: boolean }[] = [];
  const loads: Uint8Array[] = [];
  const native = {
    setDevice: () => {},
    deviceInfo: () => ({ computeCapability: cc, name: 'fake', multiprocessors: 1 }),
    streamCreate: () => 1,
    status: () => ({ nvrtc: { version: [13, 0] } }),
    nvrtcCompile: (_src: string, _name: string, options: string[], wantCubin: boolean) => {
      compiles.push({ options, wantCubin });
      return wantCubin
        ? { ok: true, log: '', binary: new Uint8Array([0x7f, 0x45, 0x4c, 0x46]) }
        : { ok: true, log: '', ptx: '.version 9.0\n.target sm_80\n' };
    },
    moduleLoad: (image: Uint8Array) => (loads.push(image), loads.length),
    moduleGetFunction: () => 7,
    functionAttributes: () => ({
      registers: 32,
      staticSharedBytes: 0,
      localBytes: 0,
      maxThreadsPerBlock: 1024,
      paramBytes: -1,
    }),
    functionParams: () => null,
  };
  return { native: native as unknown as NativeAddon, compiles, loads };
}

const source = 'extern "C" __global__ void k() {}';

describe('CudaDevice.kernel for an older architecture', () => {
  it('compiles sm_80 code on an sm_90a device to compute_80 PTX and loads the PTX text', () => {
    const f = fakeNative([9, 0]);
    const dev = new CudaDevice(f.native, 0, new KernelCache(mkdtempSync(join(tmpdir(), 'sfc-ptx-'))));
    expect(dev.arch).toBe('sm_90a');
    dev.kernel({ source, entry: 'k', params: [], arch: 'sm_80' });
    expect(f.compiles).toEqual([{ options: ['--std=c++17', '--gpu-architecture=compute_80'], wantCubin: false }]);
    expect(new TextDecoder().decode(f.loads[0])).toContain('.target sm_80');
    // the device's own code: a cubin for sm_90a, as before
    dev.kernel({ source: `${source}\n`, entry: 'k', params: [] });
    expect(f.compiles[1]).toEqual({ options: ['--std=c++17', '--gpu-architecture=sm_90a'], wantCubin: true });
  });

  it('refuses code for a newer or arch-specific target', () => {
    const f = fakeNative([8, 6]);
    const dev = new CudaDevice(f.native, 0, new KernelCache(mkdtempSync(join(tmpdir(), 'sfc-ptx-'))));
    expect(() => dev.kernel({ source, entry: 'k', params: [], arch: 'sm_89' })).toThrow(
      /built for sm_89; cuda:0 is sm_86/,
    );
    expect(() => dev.kernel({ source, entry: 'k', params: [], arch: 'sm_90a' })).toThrow(/built for sm_90a/);
    expect(f.compiles).toHaveLength(0);
  });
});
