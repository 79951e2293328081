// Launching compiled kernel artifacts on whichever device holds the tensors: the CPU device runs the
// JS backend; a CUDA device compiles (or loads from the kernel cache) the most specialised CUDA
// variant whose assumptions the arguments satisfy (16-byte-aligned pointers, multiple-of-16 integers)
// and launches it. Argument count, dtypes and devices are checked with clear errors.
import type { CudaVariant, KernelArtifact } from '../dsl/artifact.js';
import { SfcError } from '../dsl/errors.js';
import { CpuDevice } from './cpu.js';
import { CudaDevice } from './cuda.js';
import type { Device } from './device.js';
import { Tensor } from './tensor.js';

export type KernelArg = Tensor | number;

function checkArgs(a: KernelArtifact, args: readonly KernelArg[]): Device {
  const params = a.params.filter((p) => p.kind !== 'const');
  if (args.length !== params.length) {
    throw new SfcError(
      `${a.name} takes ${params.length} arguments (${params.map((p) => p.name).join(', ')}), got ${args.length}`,
    );
  }
  let device: Device | undefined;
  params.forEach((p, i) => {
    const arg = args[i]!;
    if (p.kind === 'ptr') {
      if (!(arg instanceof Tensor)) throw new SfcError(`${a.name}: argument '${p.name}' must be a ${p.dtype} tensor`);
      if (arg.dtype.name !== p.dtype)
        throw new SfcError(`${a.name}: '${p.name}' expects ${p.dtype}, got a ${arg.dtype.name} tensor`);
      if (device && arg.device !== device) {
        throw new SfcError(
          `${a.name}: '${p.name}' is on ${arg.device.name} but earlier arguments are on ${device.name}`,
        );
      }
      device = arg.device;
    } else if (typeof arg !== 'number' || !Number.isFinite(arg)) {
      throw new SfcError(`${a.name}: argument '${p.name}' must be a finite number`);
    }
  });
  if (!device) throw new SfcError(`${a.name} has no tensor arguments to say which device runs it`);
  return device;
}

/** The CUDA variant for these arguments. */
export function pickVariant(a: KernelArtifact, args: readonly KernelArg[], device: CudaDevice): CudaVariant {
  const params = a.params.filter((p) => p.kind !== 'const');
  const holds = (name: string): boolean => {
    const i = params.findIndex((p) => p.name === name);
    const arg = args[i];
    if (arg instanceof Tensor) return (device.ptrOf(arg.storage) + arg.byteOffset) % 16 === 0;
    return typeof arg === 'number' && arg % 16 === 0;
  };
  const v = a.cuda.find((c) => Object.keys(c.assumes).every(holds));
  if (!v) throw new SfcError(`${a.name}: no CUDA variant matches these arguments`);
  return v;
}

/** Launches `a` on a grid of programs (up to 3 dims). */
export function launch(a: KernelArtifact, grid: readonly number[], args: readonly KernelArg[]): void {
  if (grid.length < 1 || grid.length > 3 || grid.some((g) => !Number.isInteger(g) || g < 0)) {
    throw new SfcError(`${a.name}: grid must be 1 to 3 non-negative integers, got [${grid.join(', ')}]`);
  }
  const device = checkArgs(a, args);
  if (grid.some((g) => g === 0)) return;
  if (device instanceof CpuDevice) {
    device.kernels.launch(a, grid, args);
    return;
  }
  if (!(device instanceof CudaDevice)) throw new SfcError(`${a.name}: unsupported device ${device.name}`);
  const v = pickVariant(a, args, device);
  const k = device.kernel({ source: v.source, entry: v.entry, params: v.argTypes, label: `${a.file}:${a.name}` });
  const values = args.map((arg) => (arg instanceof Tensor ? device.ptrOf(arg.storage) + arg.byteOffset : arg));
  const g: [number, number, number] = [grid[0]!, grid[1] ?? 1, grid[2] ?? 1];
  device.launch(k, { grid: g, block: v.threads, sharedBytes: v.sharedBytes }, values);
}
