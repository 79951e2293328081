// The Device interface: one per backend (`cpu`, `cuda`). Storage is an untyped byte range owned by a
// device; Tensor (tensor.ts) adds dtype, shape, strides and offset on top. Copies between host
// memory and storage go through these methods, so tensors never see pointers or ArrayBuffers.

export interface Storage {
  readonly device: Device;
  readonly bytes: number;
  readonly disposed: boolean;
}

export interface MemoryStats {
  inUse: number;
  cached: number;
  reserved: number;
  peakInUse: number;
}

export interface Device {
  readonly kind: 'cpu' | 'cuda';
  /** `cpu` or `cuda:N` */
  readonly name: string;
  allocate(bytes: number): Storage;
  /** returns the storage's memory to the device (idempotent) */
  release(storage: Storage): void;
  /** host bytes -> storage[byteOffset ...] */
  write(storage: Storage, byteOffset: number, src: Uint8Array): void;
  /** storage[byteOffset ...] -> host bytes (waits for pending device work) */
  read(storage: Storage, byteOffset: number, dst: Uint8Array): void;
  /**
   * Fills storage[byteOffset, byteOffset + bytes) from a producer that writes into the buffers it is
   * given (`fill(dst, position)` must fill all of dst with the bytes at `position`): the CPU hands
   * out the storage itself; CUDA hands out pinned staging buffers and overlaps reading with copying.
   * This is how checkpoints go from disk to a device without an intermediate copy.
   */
  writeFrom(
    storage: Storage,
    byteOffset: number,
    bytes: number,
    fill: (dst: Uint8Array, position: number) => void,
  ): void;
  copy(dst: Storage, dstOffset: number, src: Storage, srcOffset: number, bytes: number): void;
  fill(storage: Storage, byteOffset: number, bytes: number, byte: number): void;
  synchronize(): void;
  memoryStats(): MemoryStats;
  /** Starts the peak (`memoryStats().peakInUse`) over from what is in use now. */
  resetPeakMemory(): void;
}

export function checkRange(storage: Storage, byteOffset: number, bytes: number, what: string): void {
  if (storage.disposed) throw new RangeError(`${what}: storage was released`);
  if (!Number.isInteger(byteOffset) || !Number.isInteger(bytes) || byteOffset < 0 || bytes < 0) {
    throw new RangeError(`${what}: offset and size must be non-negative integers`);
  }
  if (byteOffset + bytes > storage.bytes) {
    throw new RangeError(
      `${what}: bytes ${byteOffset}..${byteOffset + bytes} out of range of a ${storage.bytes}-byte storage`,
    );
  }
}
