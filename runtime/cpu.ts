// The CPU device: storage is an ArrayBuffer. It runs the JS artifacts the compiler emits (the exact,
// slow reference backend) and holds host copies of tensors.
import { CpuKernelRunner } from './cpu-kernels.js';
import { checkRange, type Device, type MemoryStats, type Storage } from './device.js';

export class CpuStorage implements Storage {
  disposed = false;
  constructor(
    readonly device: CpuDevice,
    readonly buffer: ArrayBuffer,
  ) {}
  get bytes(): number {
    return this.buffer.byteLength;
  }
}

export class CpuDevice implements Device {
  readonly kind = 'cpu' as const;
  readonly name = 'cpu';
  /** runs compiled kernels (JS backend) on this device's tensors */
  readonly kernels = new CpuKernelRunner();
  private stats: MemoryStats = { inUse: 0, cached: 0, reserved: 0, peakInUse: 0 };

  allocate(bytes: number): CpuStorage {
    if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`allocate: bytes must be a non-negative integer`);
    const s = new CpuStorage(this, new ArrayBuffer(bytes));
    this.stats.inUse += bytes;
    this.stats.reserved = this.stats.inUse;
    this.stats.peakInUse = Math.max(this.stats.peakInUse, this.stats.inUse);
    return s;
  }

  release(storage: Storage): void {
    const s = this.own(storage);
    if (s.disposed) return;
    s.disposed = true;
    this.stats.inUse -= s.bytes;
    this.stats.reserved = this.stats.inUse;
  }

  /** The storage's bytes (CPU kernels read and write them directly). */
  bytesOf(storage: Storage): Uint8Array {
    const s = this.own(storage);
    if (s.disposed) throw new RangeError('storage was released');
    return new Uint8Array(s.buffer);
  }

  write(storage: Storage, byteOffset: number, src: Uint8Array): void {
    checkRange(storage, byteOffset, src.byteLength, 'write');
    this.bytesOf(storage).set(src, byteOffset);
  }

  writeFrom(
    storage: Storage,
    byteOffset: number,
    bytes: number,
    fill: (dst: Uint8Array, position: number) => void,
  ): void {
    checkRange(storage, byteOffset, bytes, 'writeFrom');
    const CHUNK = 1 << 30;
    const all = this.bytesOf(storage);
    for (let pos = 0; pos < bytes; pos += CHUNK) {
      fill(all.subarray(byteOffset + pos, byteOffset + Math.min(bytes, pos + CHUNK)), pos);
    }
  }

  read(storage: Storage, byteOffset: number, dst: Uint8Array): void {
    checkRange(storage, byteOffset, dst.byteLength, 'read');
    dst.set(this.bytesOf(storage).subarray(byteOffset, byteOffset + dst.byteLength));
  }

  copy(dst: Storage, dstOffset: number, src: Storage, srcOffset: number, bytes: number): void {
    checkRange(dst, dstOffset, bytes, 'copy dst');
    checkRange(src, srcOffset, bytes, 'copy src');
    this.bytesOf(dst).set(this.bytesOf(src).subarray(srcOffset, srcOffset + bytes), dstOffset);
  }

  fill(storage: Storage, byteOffset: number, bytes: number, byte: number): void {
    checkRange(storage, byteOffset, bytes, 'fill');
    this.bytesOf(storage).fill(byte, byteOffset, byteOffset + bytes);
  }

  synchronize(): void {}

  memoryStats(): MemoryStats {
    return { ...this.stats };
  }

  resetPeakMemory(): void {
    this.stats.peakInUse = this.stats.inUse;
  }

  private own(storage: Storage): CpuStorage {
    if (!(storage instanceof CpuStorage) || storage.device !== this)
      throw new TypeError('storage belongs to another device');
    return storage;
  }
}
