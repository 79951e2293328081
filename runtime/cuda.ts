// The CUDA device: memory through the caching allocator, one default stream per device, events,
// kernels compiled by NVRTC (or precompiled by nvcc) through the on-disk kernel cache, launches with
// typed argument packing, CUDA graphs, and the cuBLASLt matmul used as baseline and fallback.
import { SfcError } from '../dsl/errors.js';
import { CachingAllocator, type Block } from './allocator.js';
import { checkRange, type Device, type MemoryStats, type Storage } from './device.js';
import { KernelCache, keyOf } from './kernel-cache.js';
import { packArgs, type ArgType } from './launch.js';
import type { DeviceInfo, FunctionAttributes, GemmArgs, NativeAddon } from './native/api.js';
import { requireCuda } from './native/load.js';

export class CudaStorage implements Storage {
  constructor(
    readonly device: CudaDevice,
    readonly block: Block,
    readonly bytes: number,
  ) {}
  disposed = false;
  get ptr(): number {
    return this.block.ptr;
  }
}

export interface KernelSource {
  /** CUDA C++ source with `extern "C" __global__` entry points */
  source: string;
  /** entry point name */
  entry: string;
  /** parameter types, in order (checked against the driver's parameter size) */
  params: readonly ArgType[];
  /** extra NVRTC options (architecture is added) */
  options?: readonly string[];
  /** a name for logs and errors, e.g. "models/kernels/norm.ts:rmsNorm" */
  label?: string;
  /**
   * The architecture the source was written for, when older than the device's (e.g. an sm_80
   * template instantiation on an H100): compiled to PTX for that virtual architecture, which the
   * driver JIT-compiles for the device. Default: the device's own.
   */
  arch?: string;
}

export interface CudaKernel {
  readonly name: string;
  readonly fn: number;
  readonly params: readonly ArgType[];
  readonly attributes: FunctionAttributes;
  /** true when this process compiled it; false when it came from the disk cache */
  readonly compiled: boolean;
  /** [offset, size] per parameter from the driver (null where it cannot tell) */
  readonly layout?: [number, number][] | null;
}

export interface LaunchConfig {
  grid: [number, number, number] | number;
  block: [number, number, number] | number;
  sharedBytes?: number;
  stream?: number;
}

const dim3 = (d: [number, number, number] | number): [number, number, number] =>
  typeof d === 'number' ? [d, 1, 1] : d;

/** The NVRTC options (and so the cache-key options) of a kernel built for `arch`. */
export function kernelCompileOptions(arch: string, extra: readonly string[] = []): string[] {
  return ['--std=c++17', `--gpu-architecture=${arch}`, ...extra];
}

/** The compute capability of an `sm_XY[a]` name as the number XY (sm_90a: 90). */
function archNumber(arch: string): number {
  const m = /^sm_(\d+)a?$/.exec(arch);
  if (!m) throw new SfcError(`not a CUDA architecture name: '${arch}'`);
  return Number(m[1]);
}

/**
 * Whether code built for `target` runs on a device of `device`: the same architecture, or an older
 * one without arch-specific features (sm_80, sm_89: through PTX, JIT-compiled by the driver).
 */
export function archRunsOn(target: string, device: string): boolean {
  return target === device || (!target.endsWith('a') && archNumber(target) <= archNumber(device));
}

/**
 * What code written for `written` (default: the device's own) compiles to on a device of `device`:
 * the device's architecture where the major version is the same (sm_80 code on sm_89: a cubin, as
 * `sfc build` makes it), else PTX for the older virtual architecture (compute_80 on Hopper), which the
 * driver JIT-compiles.
 */
export function compileTarget(written: string | undefined, device: string): string {
  if (written === undefined || written === device) return device;
  const major = (a: string) => Math.floor(archNumber(a) / 10);
  return major(written) === major(device) ? device : written.replace('sm_', 'compute_');
}

/** sm_XY for a compute capability; Hopper gets sm_90a (wgmma, setmaxnreg). */
export function archOf(cc: readonly [number, number]): string {
  const [major, minor] = cc;
  return major === 9 && minor === 0 ? 'sm_90a' : `sm_${major}${minor}`;
}

export class CudaDevice implements Device {
  readonly kind = 'cuda' as const;
  readonly name: string;
  readonly info: DeviceInfo;
  readonly arch: string;
  /** the device's default stream (created, non-blocking) */
  readonly stream: number;
  readonly allocator: CachingAllocator;
  readonly cache: KernelCache;
  private readonly kernels = new Map<string, CudaKernel>();
  /** source -> entry -> kernel, for kernel() without compile options */
  private readonly bySource = new Map<string, Map<string, CudaKernel>>();
  /** template instantiations' kernels (GEMM, attention) by artifact: one WeakMap lookup per launch */
  private readonly byArtifact = new WeakMap<object, CudaKernel>();
  private readonly modules: number[] = [];
  private workspace: { storage: CudaStorage; bytes: number } | undefined;
  private readonly nvrtcVersion: string;

  constructor(
    readonly native: NativeAddon,
    readonly ordinal: number,
    cache?: KernelCache,
  ) {
    native.setDevice(ordinal);
    this.info = native.deviceInfo(ordinal);
    this.name = `cuda:${ordinal}`;
    this.arch = archOf(this.info.computeCapability);
    this.stream = native.streamCreate();
    this.cache = cache ?? new KernelCache();
    this.allocator = new CachingAllocator({
      malloc: (bytes) => (this.activate(), native.malloc(bytes)),
      free: (ptr) => (this.activate(), native.free(ptr)),
      memInfo: () => (this.activate(), native.memInfo()),
      isOutOfMemory: (e) => (e as { cudaError?: string }).cudaError === 'CUDA_ERROR_OUT_OF_MEMORY',
    });
    const nv = native.status().nvrtc;
    this.nvrtcVersion = Array.isArray(nv.version) ? nv.version.join('.') : 'none';
  }

  /** Opens device `ordinal` (initialising CUDA; a clear error when there is none). */
  static open(ordinal = 0, cache?: KernelCache): CudaDevice {
    const native = requireCuda();
    const count = native.deviceCount();
    if (ordinal >= count)
      throw new SfcError(`cuda:${ordinal} does not exist (this machine has ${count} CUDA device(s))`);
    return new CudaDevice(native, ordinal, cache);
  }

  activate(): void {
    this.native.setDevice(this.ordinal);
  }

  // ---- memory ------------------------------------------------------------------------------
  allocate(bytes: number): CudaStorage {
    const block = this.allocator.allocate(Math.max(bytes, 1), this.stream);
    return new CudaStorage(this, block, bytes);
  }

  release(storage: Storage): void {
    const s = this.own(storage, true);
    if (s.disposed) return;
    s.disposed = true;
    this.allocator.release(s.block);
  }

  write(storage: Storage, byteOffset: number, src: Uint8Array): void {
    checkRange(storage, byteOffset, src.byteLength, 'write');
    this.activate();
    this.native.copyHtoD(this.own(storage).ptr + byteOffset, src, this.stream);
  }

  /** 16 MiB pinned staging buffers, two so that filling one overlaps the DMA of the other */
  private staging: { buffers: Uint8Array[]; events: number[] } | undefined;

  writeFrom(
    storage: Storage,
    byteOffset: number,
    bytes: number,
    fill: (dst: Uint8Array, position: number) => void,
  ): void {
    checkRange(storage, byteOffset, bytes, 'writeFrom');
    this.activate();
    const CHUNK = 16 << 20;
    if (!this.staging) {
      this.staging = {
        buffers: [0, 1].map(() => new Uint8Array(this.native.mallocHost(CHUNK))),
        events: [0, 1].map(() => this.native.eventCreate(false)),
      };
    }
    const { buffers, events } = this.staging;
    const base = this.own(storage).ptr + byteOffset;
    for (let pos = 0, i = 0; pos < bytes; pos += CHUNK, i++) {
      const k = i % 2;
      this.native.eventSynchronize(events[k]!); // the previous copy out of this buffer is done
      const chunk = buffers[k]!.subarray(0, Math.min(CHUNK, bytes - pos));
      fill(chunk, pos);
      this.native.copyHtoD(base + pos, chunk, this.stream); // pinned source: a true async DMA
      this.native.eventRecord(events[k]!, this.stream);
    }
  }

  read(storage: Storage, byteOffset: number, dst: Uint8Array): void {
    checkRange(storage, byteOffset, dst.byteLength, 'read');
    this.activate();
    this.native.copyDtoH(dst, this.own(storage).ptr + byteOffset, this.stream);
  }

  copy(dst: Storage, dstOffset: number, src: Storage, srcOffset: number, bytes: number): void {
    checkRange(dst, dstOffset, bytes, 'copy dst');
    checkRange(src, srcOffset, bytes, 'copy src');
    this.activate();
    this.native.copyDtoD(this.own(dst).ptr + dstOffset, this.own(src).ptr + srcOffset, bytes, this.stream);
  }

  fill(storage: Storage, byteOffset: number, bytes: number, byte: number): void {
    checkRange(storage, byteOffset, bytes, 'fill');
    this.activate();
    this.native.memsetD8(this.own(storage).ptr + byteOffset, byte & 0xff, bytes, this.stream);
  }

  /** Fills with a 32-bit pattern (e.g. a NaN poison for f32 outputs). */
  fill32(storage: Storage, byteOffset: number, count: number, pattern: number): void {
    checkRange(storage, byteOffset, count * 4, 'fill32');
    this.activate();
    this.native.memsetD32(this.own(storage).ptr + byteOffset, pattern >>> 0, count, this.stream);
  }

  synchronize(): void {
    this.activate();
    this.native.streamSynchronize(this.stream);
  }

  resetPeakMemory(): void {
    this.allocator.resetPeak();
  }

  memoryStats(): MemoryStats {
    const s = this.allocator.stats();
    return { inUse: s.inUse, cached: s.cached, reserved: s.reserved, peakInUse: s.peakInUse };
  }

  ptrOf(storage: Storage): number {
    return this.own(storage).ptr;
  }

  // ---- kernels -----------------------------------------------------------------------------
  /**
   * The kernel of a template instantiation (a GEMM or attention artifact), compiled or loaded once per
   * artifact and device; an sm_80 / sm_89 instantiation on a newer GPU compiles as `compileTarget`
   * says (a cubin within the major version, else PTX).
   */
  artifactKernel(art: {
    source: string;
    entry: string;
    name: string;
    arch: string;
    params: readonly { type: ArgType }[];
  }): CudaKernel {
    let k = this.byArtifact.get(art);
    if (!k) {
      k = this.kernel({
        source: art.source,
        entry: art.entry,
        params: art.params.map((p) => p.type),
        label: art.name,
        ...(art.arch !== this.arch ? { arch: art.arch } : {}),
      });
      this.byArtifact.set(art, k);
    }
    return k;
  }

  /** Compiles (or loads from the cache) and returns a kernel. */
  kernel(k: KernelSource): CudaKernel {
    // the common case, by the source string itself (its hash is cached on the string): no SHA-256
    // of the source per launch
    const quick = k.options ? undefined : this.bySource.get(k.source)?.get(k.entry);
    if (quick) return quick;
    if (k.arch !== undefined && !archRunsOn(k.arch, this.arch))
      throw new SfcError(`${k.label ?? k.entry} is built for ${k.arch}; ${this.name} is ${this.arch}`);
    const target = compileTarget(k.arch, this.arch);
    const ptx = target.startsWith('compute_');
    const options = kernelCompileOptions(target, k.options);
    const key = keyOf({ source: k.source, options, arch: target });
    const memo = `${key}:${k.entry}`;
    const known = this.kernels.get(memo);
    if (known) return this.remember(k, known);
    this.activate();
    const toolchain = `nvrtc-${this.nvrtcVersion}`;
    let entry = this.cache.get(key, toolchain);
    let compiled = false;
    if (!entry) {
      const r = this.native.nvrtcCompile(k.source, `${k.label ?? k.entry}.cu`, options, !ptx);
      const binary = ptx && r.ptx !== undefined ? new TextEncoder().encode(r.ptx) : r.binary;
      if (!r.ok || !binary) {
        throw new SfcError(`NVRTC failed to compile ${k.label ?? k.entry} for ${target}:\n${r.log.trim()}`);
      }
      this.cache.put(key, target, toolchain, binary);
      entry = { binary, toolchain, meta: undefined as never };
      compiled = true;
    }
    const mod = this.native.moduleLoad(entry.binary);
    this.modules.push(mod);
    const fn = this.native.moduleGetFunction(mod, k.entry);
    const attributes = this.native.functionAttributes(fn);
    const layout = this.native.functionParams(fn);
    const kernel: CudaKernel = { name: k.label ?? k.entry, fn, params: k.params, attributes, compiled, layout };
    this.kernels.set(memo, kernel);
    return this.remember(k, kernel);
  }

  private remember(k: KernelSource, kernel: CudaKernel): CudaKernel {
    if (!k.options) {
      let bySrc = this.bySource.get(k.source);
      if (!bySrc) this.bySource.set(k.source, (bySrc = new Map()));
      bySrc.set(k.entry, kernel);
    }
    return kernel;
  }

  launch(kernel: CudaKernel, cfg: LaunchConfig, args: readonly (number | bigint | Uint8Array)[]): void {
    const params = packArgs(kernel.params, args, kernel.name, kernel.layout);
    const shared = cfg.sharedBytes ?? 0;
    if (shared > 48 * 1024) {
      if (shared > this.info.maxSharedMemoryPerBlockOptin) {
        throw new RangeError(
          `${kernel.name} needs ${shared} bytes of shared memory; ${this.info.name} allows ${this.info.maxSharedMemoryPerBlockOptin}`,
        );
      }
      this.native.setMaxDynamicShared(kernel.fn, shared);
    }
    this.activate();
    this.native.launch(kernel.fn, dim3(cfg.grid), dim3(cfg.block), shared, cfg.stream ?? this.stream, params);
  }

  /**
   * A TMA tensor map over a row-major 2-D view: `rows` x `cols` elements of `elementBytes` with a row
   * pitch of `pitchBytes`, copied in `boxRows` x `boxCols` tiles with the given shared-memory swizzle.
   */
  tensorMap2d(m: {
    address: number;
    elementBytes: 1 | 2 | 4;
    rows: number;
    cols: number;
    pitchBytes: number;
    boxRows: number;
    boxCols: number;
    swizzle: 'none' | '32B' | '64B' | '128B';
  }): Uint8Array {
    if (m.address % 16 !== 0) throw new RangeError(`TMA needs a 16-byte-aligned address, got ${m.address}`);
    if (m.pitchBytes % 16 !== 0)
      throw new RangeError(`TMA needs a row pitch that is a multiple of 16 bytes, got ${m.pitchBytes}`);
    const dataType = { 1: 0, 2: 1, 4: 2 }[m.elementBytes]; // CU_TENSOR_MAP_DATA_TYPE_UINT8/16/32
    const swizzle = { none: 0, '32B': 1, '64B': 2, '128B': 3 }[m.swizzle];
    this.activate();
    return this.native.tensorMapEncodeTiled(
      dataType,
      m.address,
      [m.cols, m.rows],
      [m.pitchBytes],
      [m.boxCols, m.boxRows],
      swizzle,
      2, // L2 promotion 128B
    );
  }

  // ---- events and graphs ---------------------------------------------------------------------
  /** Times `fn` (device work it enqueues on the default stream) with CUDA events; milliseconds. */
  time(fn: () => void): number {
    this.activate();
    const a = this.native.eventCreate(true);
    const b = this.native.eventCreate(true);
    try {
      this.native.eventRecord(a, this.stream);
      fn();
      this.native.eventRecord(b, this.stream);
      this.native.eventSynchronize(b);
      return this.native.eventElapsedMs(a, b);
    } finally {
      this.native.eventDestroy(a);
      this.native.eventDestroy(b);
    }
  }

  /** Captures the work `fn` enqueues on the default stream into a replayable graph. */
  capture(fn: () => void): CudaGraph {
    this.activate();
    this.native.captureBegin(this.stream);
    try {
      fn();
    } catch (e) {
      try {
        this.native.graphDestroy(this.native.captureEnd(this.stream));
      } catch {
        // capture was already invalidated; the original error matters
      }
      throw e;
    }
    return new CudaGraph(this, this.native.captureEnd(this.stream));
  }

  // ---- cuBLASLt ------------------------------------------------------------------------------
  /** cuBLASLt matmul (row-major). Allocates a 32 MiB workspace on first use. */
  gemm(args: Omit<GemmArgs, 'stream' | 'workspace' | 'workspaceBytes'> & { stream?: number }): void {
    const bytes = 32 * 1024 * 1024;
    if (!this.workspace) this.workspace = { storage: this.allocate(bytes), bytes };
    this.activate();
    this.native.gemm({
      ...args,
      stream: args.stream ?? this.stream,
      workspace: this.workspace.storage.ptr,
      workspaceBytes: this.workspace.bytes,
    });
  }

  dispose(): void {
    this.activate();
    this.native.streamSynchronize(this.stream);
    for (const m of this.modules) this.native.moduleUnload(m);
    this.modules.length = 0;
    this.kernels.clear();
    this.bySource.clear();
    if (this.workspace) this.release(this.workspace.storage);
    if (this.staging) for (const e of this.staging.events) this.native.eventDestroy(e);
    this.allocator.dispose();
    this.native.streamDestroy(this.stream);
  }

  private own(storage: Storage, allowReleased = false): CudaStorage {
    if (!(storage instanceof CudaStorage) || storage.device !== this)
      throw new TypeError(`storage does not belong to ${this.name}`);
    if (storage.disposed && !allowReleased) throw new RangeError('storage was released');
    return storage;
  }
}

export class CudaGraph {
  private destroyed = false;
  constructor(
    readonly device: CudaDevice,
    readonly handle: number,
  ) {}
  replay(stream = this.device.stream): void {
    if (this.destroyed) throw new RangeError('graph was destroyed');
    this.device.activate();
    this.device.native.graphLaunch(this.handle, stream);
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.device.native.graphDestroy(this.handle);
  }
}
