// The JavaScript surface of the native addon (runtime/native/src/*.cc). Deliberately thin: handles
// are plain numbers (device pointers, CUstream, CUevent, CUmodule, CUfunction, graph handles; all
// below 2^53 on x86-64), every CUDA/NVRTC/cuBLASLt failure throws a NativeCudaError-shaped Error,
// and argument mistakes throw TypeError/RangeError instead of crashing the process.
// Only runtime/ talks to this interface; everything else uses Device / Tensor.

/** Why a library could not be used, or where it was loaded from. */
export interface LibraryStatus {
  loaded: boolean;
  /** the soname or path that was dlopen'ed, when loaded */
  path?: string;
  /** dlerror() / init failure, when not loaded */
  error?: string;
  /** library version (driver: CUDA version as 12080; NVRTC: [major, minor]; cuBLASLt: 130000...) */
  version?: number | number[];
}

export interface NativeStatus {
  cuda: LibraryStatus & { deviceCount?: number };
  nvrtc: LibraryStatus;
  cublasLt: LibraryStatus;
  nccl: LibraryStatus;
}

export interface DeviceInfo {
  ordinal: number;
  name: string;
  computeCapability: [number, number];
  multiprocessors: number;
  totalMemory: number;
  l2CacheBytes: number;
  maxSharedMemoryPerBlockOptin: number;
  maxSharedMemoryPerMultiprocessor: number;
  clockKHz: number;
  memoryClockKHz: number;
  memoryBusWidthBits: number;
  pciBusId: string;
}

export interface FunctionAttributes {
  registers: number;
  staticSharedBytes: number;
  localBytes: number;
  maxThreadsPerBlock: number;
  /** byte size of the kernel's parameter block when the driver can tell (CUDA >= 12.4), else -1 */
  paramBytes: number;
}

export interface NvrtcResult {
  ok: boolean;
  log: string;
  /** cubin when compiled for a real architecture (sm_XX), else PTX text bytes */
  binary?: Uint8Array;
  ptx?: string;
}

/** cudaDataType_t codes accepted by gemm() */
export const CudaDataType = { f32: 0, f16: 2, bf16: 14, e4m3: 28, e5m2: 29 } as const;

export interface GemmArgs {
  /** D[m, n] = alpha * op(A) op(B) + beta * C, row-major, op = transpose when transA/transB */
  m: number;
  n: number;
  k: number;
  a: number;
  b: number;
  c: number;
  d: number;
  typeA: number;
  typeB: number;
  typeC: number;
  typeD: number;
  lda: number;
  ldb: number;
  ldc: number;
  ldd: number;
  transA: boolean;
  transB: boolean;
  alpha: number;
  beta: number;
  /** device pointers to f32 per-tensor scales (FP8 only); 0 = none */
  aScale: number;
  bScale: number;
  stream: number;
  workspace: number;
  workspaceBytes: number;
}

export interface NativeAddon {
  status(): NativeStatus;
  /** cuInit + primary context of every device; throws when CUDA is unavailable */
  init(): void;
  deviceCount(): number;
  deviceInfo(ordinal: number): DeviceInfo;
  /** makes the device's primary context current for the calls that follow */
  setDevice(ordinal: number): void;
  memInfo(): { free: number; total: number };

  malloc(bytes: number): number;
  free(ptr: number): void;
  /** pinned host memory, exposed as an ArrayBuffer that frees it when collected */
  mallocHost(bytes: number): ArrayBuffer;
  /** copies host bytes (from a typed array view) to device memory; ordered on `stream` */
  copyHtoD(dst: number, src: ArrayBufferView, stream: number): void;
  copyDtoH(dst: ArrayBufferView, src: number, stream: number): void;
  copyDtoD(dst: number, src: number, bytes: number, stream: number): void;
  memsetD8(dst: number, value: number, bytes: number, stream: number): void;
  memsetD32(dst: number, value: number, count: number, stream: number): void;

  streamCreate(): number;
  streamDestroy(stream: number): void;
  streamSynchronize(stream: number): void;
  eventCreate(timing: boolean): number;
  eventDestroy(event: number): void;
  eventRecord(event: number, stream: number): void;
  eventSynchronize(event: number): void;
  eventElapsedMs(start: number, end: number): number;
  streamWaitEvent(stream: number, event: number): void;
  synchronize(): void;

  moduleLoad(image: Uint8Array): number;
  moduleUnload(module: number): void;
  moduleGetFunction(module: number, name: string): number;
  functionAttributes(fn: number): FunctionAttributes;
  setMaxDynamicShared(fn: number, bytes: number): void;
  /** launches `fn` with its parameters packed (C ABI layout) into `params` */
  launch(
    fn: number,
    grid: [number, number, number],
    block: [number, number, number],
    sharedBytes: number,
    stream: number,
    params: Uint8Array,
  ): void;
  /** launches the same kernel `count` times (benchmarks launch overhead without JS in the loop) */
  launchRepeated(
    fn: number,
    grid: [number, number, number],
    block: [number, number, number],
    sharedBytes: number,
    stream: number,
    params: Uint8Array,
    count: number,
  ): void;

  captureBegin(stream: number): void;
  /** ends capture and instantiates; returns an executable graph */
  captureEnd(stream: number): number;
  graphLaunch(graph: number, stream: number): void;
  graphDestroy(graph: number): void;

  nvrtcCompile(source: string, name: string, options: string[], wantCubin: boolean): NvrtcResult;

  gemm(args: GemmArgs): void;

  /** [offset, size] of each kernel parameter as the driver lays them out; null without cuFuncGetParamInfo */
  functionParams(fn: number): [number, number][] | null;

  /**
   * cuTensorMapEncodeTiled: the 128-byte TMA descriptor of a `dims` tensor (innermost first) with
   * `strides` in bytes (rank - 1 entries), copied in `box` tiles; out-of-bounds elements read as zero.
   */
  tensorMapEncodeTiled(
    dataType: number,
    address: number,
    dims: number[],
    strides: number[],
    box: number[],
    swizzle: number,
    l2Promotion: number,
  ): Uint8Array;
  /** one communicator per device ordinal, all in this process (ncclCommInitAll) */
  ncclCommInitAll(devices: number[]): number[];
  /** a 128-byte id for ncclCommInitRank (multi-process) */
  ncclGetUniqueId(): Uint8Array;
  ncclCommInitRank(nranks: number, id: Uint8Array, rank: number): number;
  ncclCommDestroy(comm: number): void;
  /**
   * All-reduce (opOrRoot = ncclRedOp) or broadcast (opOrRoot = root rank) of `count` elements, one
   * send/receive buffer and stream per communicator, enqueued in one NCCL group.
   */
  ncclCollective(
    comms: number[],
    sends: number[],
    recvs: number[],
    count: number,
    dataType: number,
    opOrRoot: number,
    streams: number[],
    broadcast: boolean,
  ): void;
}
