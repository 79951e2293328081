// Running the flash-attention templates (compiler/templates/attention.ts for sm_90a, attention-mma.ts
// for sm_80 / sm_89 and, through its PTX, newer GPUs): operand checks, TMA tensor
// maps and launch on CUDA; the JS twin (float64 softmax, one rounding of the output) on the CPU
// device. Layout: Q and O [B, Lq, H, D], K and V [B, capacity, H, D] of which the first kvLen tokens
// are used (a KV cache), each token's H x D values contiguous; LSE [B, H, Lq] f32 (natural log).
// FP8 (input 'e4m3'): Q, K e4m3 as above, V e4m3 transposed [B, H, D, capV], O bf16, with scales;
// see runtime/attention-fp8.ts.
import type { AttentionArtifact } from '../dsl/artifact.js';
import { SfcError } from '../dsl/errors.js';
import { checkFp8V, untransposeV, type AttentionScales } from './attention-fp8.js';
import { decode, encodeInto, rawArray } from './convert.js';
import { CpuDevice } from './cpu.js';
import { archRunsOn, CudaDevice } from './cuda.js';
import { ShapeError, Tensor } from './tensor.js';

export interface AttentionMask {
  /** chunk-wise causal: a query sees keys below the end of its block of this many tokens (0: off) */
  blockTokens?: number;
  /** absolute position of query 0 among the keys (the chunk's start in the cache) */
  qOffset?: number;
  /** local window in tokens, counted back from the end of the query's block (0: off) */
  windowTokens?: number;
  /** tokens at the start that stay visible outside the window (attention sink) */
  sinkTokens?: number;
}

export interface AttentionOperands {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  /** keys in use (default: all of k's second dim) */
  kvLen?: number;
  /** [B, H, Lq] f32 log-sum-exp per row, written when given */
  lse?: Tensor;
  /** softmax scale (default 1 / sqrt(D)) */
  scale?: number;
  mask?: AttentionMask;
  /** FP8 artifacts: the per-tensor scales of q, k and v (default 1) */
  scales?: AttentionScales;
}

interface Dims {
  B: number;
  Lq: number;
  H: number;
  D: number;
  kvLen: number;
  qRows: number;
  kvRows: number;
  /** FP8: the key capacity of the transposed V */
  capV?: number;
}

function check(art: AttentionArtifact, op: AttentionOperands): Dims {
  const name = art.name;
  const t4 = (t: Tensor | undefined, what: string): Tensor => {
    if (!(t instanceof Tensor)) throw new SfcError(`${name}: '${what}' must be a tensor`);
    if (t.rank !== 4) throw new ShapeError(`${name}: '${what}' must be [B, L, H, D], got [${t.shape.join(', ')}]`);
    const want = art.spec.input === 'e4m3' && what === 'o' ? 'bf16' : art.spec.input;
    if (t.dtype.name !== want) throw new SfcError(`${name}: '${what}' must be ${want}, got ${t.dtype.name}`);
    const [, , H, D] = t.shape as [number, number, number, number];
    if (t.strides[3] !== 1 || t.strides[2] !== D || t.strides[1] !== H * D || t.strides[0]! % (H * D) !== 0)
      throw new ShapeError(`${name}: '${what}' needs each token's H x D values contiguous and whole tokens per batch`);
    if (t.device !== op.q.device)
      throw new SfcError(`${name}: '${what}' is on ${t.device.name}, q on ${op.q.device.name}`);
    return t;
  };
  const q = t4(op.q, 'q');
  const k = t4(op.k, 'k');
  const fp8 = art.spec.input === 'e4m3';
  const v = fp8 ? k : t4(op.v, 'v'); // FP8 V is transposed: checked below
  const o = t4(op.o, 'o');
  const [B, Lq, H, D] = q.shape as [number, number, number, number];
  if (D !== art.spec.headDim) throw new ShapeError(`${name} is built for head dim ${art.spec.headDim}, q has ${D}`);
  for (const [t, what] of [
    [k, 'k'],
    [v, 'v'],
  ] as const)
    if (t.shape[0] !== B || t.shape[2] !== H || t.shape[3] !== D)
      throw new ShapeError(`${name}: '${what}' must be [${B}, *, ${H}, ${D}], got [${t.shape.join(', ')}]`);
  if (v.shape[1] !== k.shape[1] || v.strides[0] !== k.strides[0])
    throw new ShapeError(`${name}: k and v must have the same capacity and layout`);
  if (o.shape.join() !== q.shape.join() || o.strides[0] !== q.strides[0])
    throw new ShapeError(`${name}: o must have q's shape and layout [${q.shape.join(', ')}]`);
  const kvLen = op.kvLen ?? k.shape[1]!;
  if (!Number.isInteger(kvLen) || kvLen < 1 || kvLen > k.shape[1]!)
    throw new ShapeError(`${name}: kvLen must be in [1, ${k.shape[1]}], got ${kvLen}`);
  if (op.lse) {
    const l = op.lse;
    if (l.dtype.name !== 'f32' || l.shape.join() !== [B, H, Lq].join() || !l.isContiguous())
      throw new ShapeError(`${name}: lse must be a contiguous f32 [${B}, ${H}, ${Lq}] tensor`);
  }
  if (op.scale !== undefined && !(op.scale > 0 && Number.isFinite(op.scale)))
    throw new SfcError(`${name}: the softmax scale must be a positive number, got ${op.scale}`);
  const m = op.mask ?? {};
  for (const key of ['blockTokens', 'qOffset', 'windowTokens', 'sinkTokens'] as const) {
    const x = m[key];
    if (x !== undefined && (!Number.isInteger(x) || x < 0))
      throw new SfcError(`${name}: mask.${key} must be a non-negative integer, got ${x}`);
  }
  const sc = op.scales;
  if (sc && ![sc.q, sc.k, sc.v].every((x) => x > 0 && Number.isFinite(x)))
    throw new SfcError(`${name}: scales must be positive numbers, got ${JSON.stringify(sc)}`);
  if (sc && !fp8) throw new SfcError(`${name}: scales are for FP8 attention; this kernel takes ${art.spec.input}`);
  const capV = fp8 ? checkFp8V(name, op.v, B, H, D, kvLen) : undefined;
  return { B, Lq, H, D, kvLen, qRows: q.strides[0]! / (H * D), kvRows: k.strides[0]! / (H * D), capV };
}

export function runAttention(art: AttentionArtifact, op: AttentionOperands): void {
  const d = check(art, op);
  const dev = op.q.device;
  if (dev instanceof CudaDevice) return runCuda(dev, art, op, d);
  if (dev instanceof CpuDevice) return attentionCpu(op, d);
  throw new SfcError(`${art.name}: unsupported device ${dev.name}`);
}

function runCuda(dev: CudaDevice, art: AttentionArtifact, op: AttentionOperands, d: Dims): void {
  if (!archRunsOn(art.arch, dev.arch))
    throw new SfcError(`${art.name} is built for ${art.arch}; ${dev.name} is ${dev.arch}`);
  const kernel = dev.artifactKernel(art);
  const addr = (t: Tensor) => dev.ptrOf(t.storage) + t.byteOffset;
  // TMA and cp.async both read 16-byte aligned rows
  for (const [t, what] of [
    [op.q, 'q'],
    [op.k, 'k'],
    [op.v, 'v'],
  ] as const)
    if (addr(t) % 16 !== 0) throw new ShapeError(`${art.name}: '${what}' must start at a 16-byte aligned address`);
  const eb = art.spec.input === 'e4m3' ? 1 : 2;
  const map = (t: Tensor, rows: number, boxRows: number) =>
    dev.tensorMap2d({
      address: addr(t),
      elementBytes: eb,
      rows,
      cols: d.H * d.D,
      pitchBytes: d.H * d.D * eb,
      boxRows,
      boxCols: 128 / eb,
      swizzle: '128B',
    });
  // FP8 V: [B H D rows][capV keys], a D x bc box per tile
  const mapVt = (t: Tensor) =>
    dev.tensorMap2d({
      address: addr(t),
      elementBytes: 1,
      rows: d.B * d.H * d.D,
      cols: d.capV!,
      pitchBytes: d.capV!,
      boxRows: d.D,
      boxCols: art.spec.bc,
      swizzle: '128B',
    });
  const sc = op.scales ?? { q: 1, k: 1, v: 1 };
  const m = op.mask ?? {};
  const scale = op.scale ?? 1 / Math.sqrt(d.D);
  // sm_90a: Q, K, V as TMA maps; sm_80 (mma.sync): as pointers
  const operands: Record<string, number | Uint8Array> =
    art.arch === 'sm_90a'
      ? {
          tmQ: map(op.q, d.B * d.qRows, art.bm),
          tmK: map(op.k, d.B * d.kvRows, art.spec.bc),
          tmV: d.capV ? mapVt(op.v) : map(op.v, d.B * d.kvRows, art.spec.bc),
        }
      : { Q: addr(op.q), K: addr(op.k), V: addr(op.v) };
  const values: Record<string, number | Uint8Array> = {
    ...operands,
    O: addr(op.o),
    lse: op.lse ? addr(op.lse) : 0,
    Lq: d.Lq,
    Lkv: d.kvLen,
    H: d.H,
    qRows: d.qRows,
    kvRows: d.kvRows,
    ldo: d.H * d.D,
    scaleLog2: scale * sc.q * sc.k * Math.LOG2E,
    vScale: sc.v,
    blockTokens: m.blockTokens ?? 0,
    qOffset: m.qOffset ?? 0,
    windowTokens: m.windowTokens ?? 0,
    sinkTokens: m.sinkTokens ?? 0,
  };
  if (d.B > 65535 || d.H > 65535) throw new ShapeError(`${art.name}: at most 65535 heads and batches`);
  dev.launch(
    kernel,
    { grid: [Math.ceil(d.Lq / art.bm), d.H, d.B], block: [art.threads, 1, 1], sharedBytes: art.sharedBytes },
    art.params.map((p) => values[p.name]!),
  );
}

/**
 * The instantiation among `candidates` for a device of `arch`: the one built for it, else one whose
 * code runs there (the sm_80 mma.sync template on sm_89, or through its PTX on newer GPUs).
 */
export function attentionFor(
  arch: string,
  candidates: readonly (AttentionArtifact | undefined)[],
): AttentionArtifact | undefined {
  const have = candidates.filter((c): c is AttentionArtifact => c !== undefined);
  return have.find((c) => c.arch === arch) ?? have.find((c) => archRunsOn(c.arch, arch));
}

/** Whether query q (row index) sees key k under the mask; the same rule as the kernel's. */
export function attentionVisible(m: AttentionMask, kvLen: number, q: number, k: number): boolean {
  const bt = m.blockTokens ?? 0;
  const hi = bt > 0 ? Math.min(kvLen, (Math.floor(((m.qOffset ?? 0) + q) / bt) + 1) * bt) : kvLen;
  const w = m.windowTokens ?? 0;
  const lo = w > 0 ? Math.max(0, hi - w) : 0;
  return k < hi && (k >= lo || k < (m.sinkTokens ?? 0));
}

/** The JS twin: float64 softmax over the visible keys; rows with none give zeros and lse -inf. */
export function attentionCpu(op: AttentionOperands, d: Dims): void {
  const vals = (t: Tensor) => decode(t.dtype, t.toRaw()) as Float32Array;
  // toRaw gives the viewed elements in row-major order of the view's shape
  const q = vals(op.q);
  const k = vals(op.k);
  const cap = op.k.shape[1]!;
  // FP8: decoded e4m3 times the scales (q's and k's fold into the softmax scale)
  const v = d.capV ? untransposeV(vals(op.v), d.B, d.H, d.D, d.capV, cap) : vals(op.v);
  const sc = op.scales ?? { q: 1, k: 1, v: 1 };
  const m = op.mask ?? {};
  const scale = (op.scale ?? 1 / Math.sqrt(d.D)) * sc.q * sc.k;
  const out = new Float32Array(d.B * d.Lq * d.H * d.D);
  const lse = new Float32Array(d.B * d.H * d.Lq);
  const s = new Float64Array(d.kvLen);
  for (let b = 0; b < d.B; b++)
    for (let h = 0; h < d.H; h++)
      for (let i = 0; i < d.Lq; i++) {
        const qo = ((b * d.Lq + i) * d.H + h) * d.D;
        let max = -Infinity;
        for (let j = 0; j < d.kvLen; j++) {
          if (!attentionVisible(m, d.kvLen, i, j)) {
            s[j] = -Infinity;
            continue;
          }
          const ko = ((b * cap + j) * d.H + h) * d.D;
          let acc = 0;
          for (let x = 0; x < d.D; x++) acc += q[qo + x]! * k[ko + x]!;
          s[j] = acc * scale;
          if (s[j]! > max) max = s[j]!;
        }
        let sum = 0;
        for (let j = 0; j < d.kvLen; j++) {
          s[j] = s[j] === -Infinity ? 0 : Math.exp(s[j]! - max);
          sum += s[j]!;
        }
        for (let x = 0; x < d.D; x++) {
          let acc = 0;
          for (let j = 0; j < d.kvLen; j++) if (s[j]) acc += s[j]! * v[((b * cap + j) * d.H + h) * d.D + x]!;
          out[qo + x] = sum > 0 ? (acc / sum) * sc.v : 0;
        }
        lse[(b * d.H + h) * d.Lq + i] = sum > 0 ? max + Math.log(sum) : -Infinity;
      }
  writeDense(op.o, out);
  if (op.lse) writeDense(op.lse, lse);
}

function writeDense(t: Tensor, values: Float32Array): void {
  const raw = rawArray(t.dtype, new ArrayBuffer(values.length * t.dtype.bytes), 0, values.length);
  encodeInto(t.dtype, values, raw);
  if (t.isContiguous()) {
    t.device.write(t.storage, t.byteOffset, new Uint8Array(raw.buffer));
    return;
  }
  // o with padded batches: write each batch's Lq tokens
  const [B] = t.shape as [number];
  const per = values.length / B;
  for (let b = 0; b < B; b++)
    t.device.write(
      t.storage,
      t.byteOffset + b * t.strides[0]! * t.dtype.bytes,
      new Uint8Array(raw.buffer, b * per * t.dtype.bytes, per * t.dtype.bytes),
    );
}
