// Collectives across the devices of this process: NCCL communicators over CUDA devices (one per
// device, ncclCommInitAll), and the same operations on simulated CPU devices (a JS reduction), so
// code that shards work over devices can be tested on any machine. All-reduce and broadcast work in
// place on one tensor per device (same dtype and shape, contiguous).
import { SfcError } from '../dsl/errors.js';
import { decode, encodeInto, rawArray } from './convert.js';
import { CpuDevice } from './cpu.js';
import { CudaDevice } from './cuda.js';
import type { Device } from './device.js';
import { fmtShape, type Tensor } from './tensor.js';

export type ReduceOp = 'sum' | 'prod' | 'max' | 'min' | 'avg';

const NCCL_OPS: Record<ReduceOp, number> = { sum: 0, prod: 1, max: 2, min: 3, avg: 4 };
const NCCL_TYPES: Record<string, number | undefined> = { i32: 2, f16: 6, f32: 7, bf16: 9 };

export class Collective {
  private constructor(
    readonly devices: readonly Device[],
    private comms: number[] | undefined,
  ) {}

  /** A communicator over these devices: all CUDA (distinct GPUs of this process) or all CPU. */
  static create(devices: readonly Device[]): Collective {
    if (devices.length < 1) throw new SfcError('a collective needs at least one device');
    if (devices.every((d) => d instanceof CpuDevice)) return new Collective(devices, undefined);
    if (!devices.every((d) => d instanceof CudaDevice))
      throw new SfcError(
        `a collective's devices must all be CUDA or all CPU, got ${devices.map((d) => d.name).join(', ')}`,
      );
    const cuda = devices as CudaDevice[];
    const ords = cuda.map((d) => d.ordinal);
    if (new Set(ords).size !== ords.length)
      throw new SfcError(`a collective needs distinct GPUs, got ${ords.join(', ')}`);
    for (const d of cuda) d.synchronize();
    return new Collective(devices, cuda[0]!.native.ncclCommInitAll(ords));
  }

  dispose(): void {
    if (!this.comms) return;
    const n = (this.devices[0] as CudaDevice).native;
    for (const c of this.comms) n.ncclCommDestroy(c);
    this.comms = undefined;
  }

  private check(ts: readonly Tensor[], what: string): void {
    if (ts.length !== this.devices.length)
      throw new SfcError(`${what}: one tensor per device (${this.devices.length}), got ${ts.length}`);
    ts.forEach((t, i) => {
      if (t.device !== this.devices[i])
        throw new SfcError(`${what}: tensor ${i} is on ${t.device.name}, not ${this.devices[i]!.name}`);
      if (!t.isContiguous()) throw new SfcError(`${what}: tensor ${i} is not contiguous`);
      if (t.dtype !== ts[0]!.dtype || t.shape.join() !== ts[0]!.shape.join())
        throw new SfcError(
          `${what}: tensor ${i} is ${t.dtype.name}${fmtShape(t.shape)}, tensor 0 ${ts[0]!.dtype.name}${fmtShape(ts[0]!.shape)}`,
        );
    });
  }

  private nccl(ts: readonly Tensor[], opOrRoot: number, broadcast: boolean): void {
    const dt = NCCL_TYPES[ts[0]!.dtype.name];
    if (dt === undefined) throw new SfcError(`NCCL collectives of ${ts[0]!.dtype.name} tensors are not supported`);
    const cuda = this.devices as CudaDevice[];
    const ptrs = ts.map((t, i) => cuda[i]!.ptrOf(t.storage) + t.byteOffset);
    cuda[0]!.native.ncclCollective(
      this.comms!,
      ptrs,
      ptrs,
      ts[0]!.numel,
      dt,
      opOrRoot,
      cuda.map((d) => d.stream),
      broadcast,
    );
  }

  /** Every tensor becomes op over all of them (in place). */
  allReduce(ts: readonly Tensor[], op: ReduceOp = 'sum'): void {
    this.check(ts, 'allReduce');
    if (this.comms) return this.nccl(ts, NCCL_OPS[op], false);
    const vals = ts.map((t) => decode(t.dtype, t.toRaw()) as Float32Array);
    const n = vals[0]!.length;
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let acc = op === 'prod' ? 1 : op === 'max' ? -Infinity : op === 'min' ? Infinity : 0;
      for (const v of vals) {
        const x = v[i]!;
        acc = op === 'prod' ? acc * x : op === 'max' ? Math.max(acc, x) : op === 'min' ? Math.min(acc, x) : acc + x;
      }
      out[i] = op === 'avg' ? acc / vals.length : acc;
    }
    for (const t of ts) {
      const raw = rawArray(t.dtype, new ArrayBuffer(n * t.dtype.bytes), 0, n);
      encodeInto(t.dtype, out, raw);
      t.device.write(t.storage, t.byteOffset, new Uint8Array(raw.buffer));
    }
  }

  /** Every tensor becomes a copy of tensor `root` (in place). */
  broadcast(ts: readonly Tensor[], root = 0): void {
    this.check(ts, 'broadcast');
    if (!Number.isInteger(root) || root < 0 || root >= ts.length)
      throw new SfcError(`broadcast: root must be in [0, ${ts.length}), got ${root}`);
    if (this.comms) return this.nccl(ts, root, true);
    const raw = ts[root]!.toRaw();
    ts.forEach((t, i) => {
      if (i !== root)
        t.device.write(t.storage, t.byteOffset, new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));
    });
  }
}
