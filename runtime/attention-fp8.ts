// FP8 attention operands (the 'e4m3' instantiation of compiler/templates/attention.ts): Q and K e4m3
// [B, L, H, D] like their bf16 forms, V e4m3 transposed to [B, H, D, capV] (capV: the cache capacity
// rounded up to 16) with its keys permuted within each 16 (attentionFp8KeySlot), each with a
// per-tensor f32 scale (value = scale * e4m3). quantizeForAttention writes them from bf16 tensors on
// CUDA (the artifact's kernels) and on the CPU device (the same rounding: nearest even, saturating).
import { attentionFp8KeySlot, type AttentionArtifact } from '../dsl/artifact.js';
import { bf16, e4m3 } from '../dsl/dtypes.js';
import { SfcError } from '../dsl/errors.js';
import { encodeInto } from './convert.js';
import { CpuDevice } from './cpu.js';
import { CudaDevice } from './cuda.js';
import { ShapeError, Tensor } from './tensor.js';

/** Per-tensor dequantisation scales of FP8 attention's inputs: x = scale * e4m3(x / scale). */
export interface AttentionScales {
  q: number;
  k: number;
  v: number;
}

/** The key capacity of FP8 attention's transposed V for a cache of `cap` tokens. */
export const fp8VCapacity = (cap: number): number => Math.ceil(cap / 16) * 16;

/** The per-tensor scale that maps an absolute maximum onto e4m3's largest value (448). */
export const e4m3ScaleOf = (amax: number): number => Math.max(amax / 448, 1e-12);

/** Checks FP8 attention's transposed V against B, H, D and the keys in use; returns its capacity. */
export function checkFp8V(name: string, v: Tensor, B: number, H: number, D: number, kvLen: number): number {
  if (!(v instanceof Tensor)) throw new SfcError(`${name}: 'v' must be a tensor`);
  if (v.dtype.name !== 'e4m3' || v.rank !== 4 || !v.isContiguous())
    throw new ShapeError(
      `${name}: FP8 'v' must be a contiguous e4m3 [${B}, ${H}, ${D}, capacity] tensor (transposed by quantizeForAttention), got ${v.dtype.name} [${v.shape.join(', ')}]`,
    );
  const [vb, vh, vd, capV] = v.shape as [number, number, number, number];
  if (vb !== B || vh !== H || vd !== D || capV % 16 !== 0 || capV < kvLen)
    throw new ShapeError(
      `${name}: FP8 'v' must be [${B}, ${H}, ${D}, capacity] with capacity a multiple of 16 and at least kvLen (${kvLen}), got [${v.shape.join(', ')}]`,
    );
  return capV;
}

/** FP8 V ([B, H, D, capV], key-permuted) back in [B, cap, H, D] order, as values (the JS twin's input). */
export function untransposeV(vt: ArrayLike<number>, B: number, H: number, D: number, capV: number, cap: number) {
  const out = new Float32Array(B * cap * H * D);
  const n = Math.min(cap, capV);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let x = 0; x < D; x++) {
        const row = ((b * H + h) * D + x) * capV;
        for (let j = 0; j < n; j++) out[((b * cap + j) * H + h) * D + x] = vt[row + attentionFp8KeySlot(j)]!;
      }
  return out;
}

export interface QuantizeOperands {
  /** bf16 [B, L, H, D], each token's H x D values contiguous */
  x: Tensor;
  /** e4m3: x's shape (contiguous) or, with `transpose`, [B, H, D, capV] (capV >= L, a multiple of 16) */
  out: Tensor;
  /** per-tensor scale: out = e4m3(x / scale) */
  scale: number;
  /** write V's transposed, key-permuted layout */
  transpose?: boolean;
}

/** Quantises a bf16 Q, K or (with `transpose`) V for an FP8 attention artifact. */
export function quantizeForAttention(art: AttentionArtifact, op: QuantizeOperands): void {
  const name = `${art.name} quantize`;
  const qk = art.quantize;
  if (!qk) throw new SfcError(`${art.name} is not an FP8 attention kernel (input ${art.spec.input})`);
  const { x, out } = op;
  if (!(x instanceof Tensor) || !(out instanceof Tensor)) throw new SfcError(`${name}: x and out must be tensors`);
  if (x.dtype !== bf16 || x.rank !== 4) throw new ShapeError(`${name}: x must be bf16 [B, L, H, D]`);
  if (out.dtype !== e4m3) throw new ShapeError(`${name}: out must be e4m3, got ${out.dtype.name}`);
  if (!(op.scale > 0 && Number.isFinite(op.scale)))
    throw new SfcError(`${name}: the scale must be a positive number, got ${op.scale}`);
  if (out.device !== x.device) throw new SfcError(`${name}: x and out must be on the same device`);
  const [B, L, H, D] = x.shape as [number, number, number, number];
  const rows = x.strides[0]! / (H * D);
  if (x.strides[3] !== 1 || x.strides[2] !== D || x.strides[1] !== H * D || !Number.isInteger(rows))
    throw new ShapeError(`${name}: x needs each token's H x D values contiguous and whole tokens per batch`);
  if (op.transpose) {
    checkFp8V(name, out, B, H, D, L);
    if (D % 64 !== 0) throw new ShapeError(`${name}: head dim must be a multiple of 64, got ${D}`);
  } else if (out.shape.join() !== x.shape.join() || !out.isContiguous() || !x.isContiguous())
    throw new ShapeError(`${name}: x and out must be contiguous [${x.shape.join(', ')}]`);
  const capV = out.shape[3]!;
  const inv = Math.fround(1 / op.scale); // an f32 kernel argument
  const dev = x.device;
  if (dev instanceof CudaDevice) {
    const addr = (t: Tensor) => dev.ptrOf(t.storage) + t.byteOffset;
    const entry = op.transpose ? qk.vT : qk.tokens;
    const kernel = dev.kernel({
      source: qk.source,
      entry,
      params: op.transpose ? ['ptr', 'ptr', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32'] : ['ptr', 'ptr', 'i32', 'f32'],
      label: entry,
    });
    if (op.transpose)
      dev.launch(kernel, { grid: [Math.ceil(capV / 64), D / 64, B * H], block: [qk.threads, 1, 1] }, [
        addr(x),
        addr(out),
        L,
        capV,
        rows,
        H,
        D,
        inv,
      ]);
    else {
      const n8 = x.numel / 8;
      if (!Number.isInteger(n8) || x.byteOffset % 16 !== 0 || out.byteOffset % 8 !== 0)
        throw new ShapeError(`${name}: x needs a multiple of 8 elements, 16-byte aligned`);
      const grid = Math.min(Math.ceil(n8 / qk.threads), 4096);
      dev.launch(kernel, { grid: [grid, 1, 1], block: [qk.threads, 1, 1] }, [addr(x), addr(out), n8, inv]);
    }
    return;
  }
  if (!(dev instanceof CpuDevice)) throw new SfcError(`${name}: unsupported device ${dev.name}`);
  const vals = x.toArray() as Float32Array;
  const scaled = new Float32Array(op.transpose ? out.numel : vals.length);
  if (op.transpose) {
    for (let b = 0; b < B; b++)
      for (let j = 0; j < L; j++)
        for (let h = 0; h < H; h++)
          for (let d = 0; d < D; d++)
            scaled[((b * H + h) * D + d) * capV + attentionFp8KeySlot(j)] = vals[((b * L + j) * H + h) * D + d]! * inv;
  } else for (let i = 0; i < vals.length; i++) scaled[i] = vals[i]! * inv;
  const raw = new Uint8Array(scaled.length);
  encodeInto(e4m3, scaled, raw);
  dev.write(out.storage, out.byteOffset, raw);
}
