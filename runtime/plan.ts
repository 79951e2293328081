// Executes a launch plan (dsl/plan.ts) on the CPU or a CUDA device: binds symbolic dims from the
// input tensors, allocates outputs and temporaries (temps share memory as the plan's reuse map
// says), and runs the steps: generated kernels through `launch`, matmuls with cuBLASLt on CUDA and a
// float32-accumulating loop on the CPU, fused GEMMs (GEMM template + generated epilogue, tile tuned on
// first use) where the device has their instantiation and their unfused fallback elsewhere.
import type { GemmArtifact } from '../dsl/artifact.js';
import type { LaunchPlan, PlanDim, PlanStep } from '../dsl/plan.js';
import { dtypeOf } from '../dsl/dtypes.js';
import { SfcError } from '../dsl/errors.js';
import { decode, encodeInto, rawArray } from './convert.js';
import { CpuDevice } from './cpu.js';
import { CudaDevice, type CudaGraph } from './cuda.js';
import type { Device } from './device.js';
import { attentionFor, runAttention } from './attention.js';
import { gemmCandidatesFor, runGemm, tuneGemm, type GemmOperands } from './gemm.js';
import { runConvPlanStep } from './conv.js';
import { launch } from './kernels.js';
import { CudaDataType } from './native/api.js';
import { Tensor, fmtShape } from './tensor.js';

/**
 * A Linear weight quantised for an FP8 plan (compiler/layer/fp8.ts): e4m3 values [N, K] and per
 * output channel scales, f32 [N], so that w ~ q * scale. Passed where the bf16 plan takes the weight.
 */
export interface Fp8Weight {
  readonly q: Tensor;
  readonly scale: Tensor;
}

export class PlanRunner {
  /** the tuned GEMM instantiation per fused step and M */
  private readonly gemmChoice = new Map<string, GemmArtifact>();

  constructor(readonly plan: LaunchPlan) {}

  private chooseGemm(
    dev: CudaDevice,
    s: Extract<PlanStep, { kind: 'gemm' }>,
    op: GemmOperands,
    M: number,
  ): GemmArtifact {
    const key = `${this.plan.steps.indexOf(s)}:${M}`;
    let art = this.gemmChoice.get(key);
    if (!art) {
      const candidates = gemmCandidatesFor(dev.arch, s.candidates);
      art = candidates.length === 1 ? candidates[0]! : tuneGemm(dev, candidates, op).chosen;
      this.gemmChoice.set(key, art);
    }
    return art;
  }

  /**
   * Runs the plan; returns its outputs: new tensors on the inputs' device, or where `into[i]` is
   * given, that (contiguous) tensor, written in place (e.g. a slice of a KV cache).
   */
  run(given: readonly (Tensor | Fp8Weight)[], into: readonly (Tensor | undefined)[] = []): Tensor[] {
    const b = this.bind(given, into);
    b.exec();
    const outs = b.outputs();
    for (const t of b.temps) if (!outs.some((o) => o.storage === t.storage)) t.dispose();
    return outs;
  }

  /**
   * Records the plan for these exact tensors (shapes, dims and addresses fixed) so that `replay()`
   * reruns it: on CUDA one graph launch (cuStreamBeginCapture ... cuGraphLaunch) instead of a host
   * launch per step, on the CPU the same steps again. Write new values into the inputs, replay, read
   * the outputs. The plan runs once eagerly first (kernels load, GEMM tiles are tuned, the buffers are
   * made: nothing that synchronises or allocates may happen while capturing), and the captured plan
   * owns its temporaries — a pool of its own, never handed to other work between replays — until
   * `dispose()`.
   */
  capture(given: readonly (Tensor | Fp8Weight)[], into: readonly (Tensor | undefined)[] = []): CapturedPlan {
    for (const [i, x] of given.entries())
      for (const t of x instanceof Tensor ? [x] : [x.q, x.scale])
        if (!t.isContiguous())
          throw new SfcError(
            `${this.plan.name}: a captured plan reads its inputs in place; input ${i} (${t.toString()}) is not contiguous`,
          );
    if (this.plan.steps.some((s) => s.kind === 'conv'))
      throw new SfcError(
        `${this.plan.name}: plans with convolutions make their padded buffers per run and cannot be captured yet`,
      );
    const b = this.bind(given, into);
    // the eager run makes every buffer the device's steps use (not the unused fallbacks'), so the
    // capture allocates nothing
    b.exec();
    if (!(b.device instanceof CudaDevice)) return new CapturedPlan(b.outputs(), b.temps, b.exec);
    const graph = b.device.capture(b.exec);
    return new CapturedPlan(b.outputs(), b.temps, () => graph.replay(), graph);
  }

  /** Checks and binds the arguments; `exec` runs the steps on them (temporaries made on first use). */
  private bind(given: readonly (Tensor | Fp8Weight)[], into: readonly (Tensor | undefined)[]): BoundPlan {
    const p = this.plan;
    // an FP8 plan's quantised weight arrives as one Fp8Weight and is its two arguments (values, scales)
    const inputs: Tensor[] = [];
    for (const x of given) {
      if (x instanceof Tensor) inputs.push(x);
      else {
        if (!p.fp8Weights?.includes(inputs.length))
          throw new SfcError(
            `${p.name}: argument ${inputs.length} is an FP8 weight, but the plan takes ${p.fp8Weights ? 'a bf16 tensor there' : 'no FP8 weights (it was compiled for bf16)'}`,
          );
        inputs.push(x.q, x.scale);
      }
    }
    if (inputs.length !== p.inputs.length)
      throw new SfcError(`${p.name} takes ${p.inputs.length} tensors, got ${inputs.length}`);
    for (const i of p.fp8Weights ?? [])
      if (inputs[i]?.dtype.name !== 'e4m3')
        throw new SfcError(
          `${p.name}: '${p.buffers[p.inputs[i]!]!.name ?? `input ${i}`}' is an FP8 Linear weight: pass it quantised (an Fp8Weight), got ${inputs[i]?.toString()}`,
        );
    const device = inputs[0]!.device;
    const dims = new Map<string, number>();
    p.inputs.forEach((bid, i) => {
      const b = p.buffers[bid]!;
      const t = inputs[i]!;
      const name = b.name ?? `input ${i}`;
      if (t.device !== device)
        throw new SfcError(`${p.name}: '${name}' is on ${t.device.name}, the others on ${device.name}`);
      if (t.dtype.name !== b.dtype) throw new SfcError(`${p.name}: '${name}' must be ${b.dtype}, got ${t.dtype.name}`);
      if (t.shape.length !== b.shape.length) {
        throw new SfcError(
          `${p.name}: '${name}' must have shape ${fmtShape(b.shape as number[])}, got ${fmtShape(t.shape)}`,
        );
      }
      b.shape.forEach((d, j) => {
        const n = t.shape[j]!;
        if (typeof d === 'number' ? d !== n : dims.has(d) && dims.get(d) !== n) {
          throw new SfcError(
            `${p.name}: '${name}' dim ${j} is ${n}, expected ${typeof d === 'number' ? d : `${d} = ${dims.get(d)}`}`,
          );
        }
        if (typeof d === 'string') dims.set(d, n);
      });
    });
    const size = (ds: readonly PlanDim[]) =>
      ds.reduce<number>((acc, d) => {
        if (typeof d === 'number') return acc * d;
        const v = dims.get(d);
        if (v === undefined) throw new SfcError(`${p.name}: dim '${d}' is not bound by any input`);
        return acc * v;
      }, 1);
    const tensors = new Map<number, Tensor>();
    p.inputs.forEach((bid, i) => tensors.set(bid, inputs[i]!.contiguous()));
    p.outputs.forEach((bid, i) => {
      const t = into[i];
      if (!t) return;
      const b = p.buffers[bid]!;
      const want = b.shape.map((d) => size([d]));
      if (t.device !== device || t.dtype.name !== b.dtype || !t.isContiguous() || t.numel !== size(b.shape))
        throw new SfcError(
          `${p.name}: output ${i} must be a contiguous ${b.dtype} tensor of ${fmtShape(want)} on ${device.name}, got ${t.toString()}`,
        );
      // a view's memory is its base buffer's: place the base there too
      let base = bid;
      while (p.buffers[base]!.kind === 'view') base = p.buffers[base]!.of!;
      if (p.buffers[base]!.kind === 'input')
        throw new SfcError(`${p.name}: output ${i} is a view of an input and cannot be written in place`);
      tensors.set(base, t.reshape(p.buffers[base]!.shape.map((d) => size([d]))));
      tensors.set(bid, t.reshape(want));
    });
    const temps: Tensor[] = [];
    const tensorOf = (bid: number): Tensor => {
      const have = tensors.get(bid);
      if (have) return have;
      const b = p.buffers[bid]!;
      const shape = b.shape.map((d) => size([d]));
      let t: Tensor;
      if (b.kind === 'view') t = tensorOf(b.of!).reshape(shape);
      else if (b.kind === 'temp' && p.reuse[bid] !== undefined) t = tensorOf(p.reuse[bid]!).reshape(shape);
      else {
        t = Tensor.empty(device, dtypeOf(b.dtype === 'bool' ? 'u8' : b.dtype)!, shape);
        if (b.kind === 'temp') temps.push(t);
      }
      tensors.set(bid, t);
      return t;
    };
    const exec = (s: PlanStep): void => {
      if (s.kind === 'kernel') {
        const args = s.args.map((a) => ('buffer' in a ? tensorOf(a.buffer) : 'dims' in a ? size(a.dims) : a.value));
        // CudaDevice.kernel finds the compiled kernel by its source string: no per-launch hashing
        launch(s.artifact, s.grid.map(size), args);
      } else if (s.kind === 'matmul') {
        matmul(device, tensorOf(s.a), tensorOf(s.b), tensorOf(s.out), s.transB, size(s.m), size(s.n), size(s.k));
      } else if (s.kind === 'conv') {
        runConvPlanStep(s, tensorOf, size);
      } else if (s.kind === 'attention') {
        // the sm_90a template on Hopper, the mma.sync one on sm_80 / sm_89; a masked step on the
        // CPU: the templates' JS twin (runAttention on a CpuDevice)
        const art =
          device instanceof CudaDevice ? attentionFor(device.arch, s.candidates) : s.mask ? s.candidates[0] : undefined;
        if (s.mask && !art)
          throw new SfcError(`${p.name}: masked attention needs a flash-attention template for ${device.name}`);
        if (art) {
          const [Lq, Lk, H] = [size(s.lq), size(s.lk), size(s.heads)];
          const as4 = (t: Tensor, L: number) => t.reshape([1, L, H, s.headDim]);
          const m = s.mask;
          const dimOf = (d: PlanDim[] | undefined) => (d ? size(d) : 0);
          runAttention(art, {
            q: as4(tensorOf(s.q), Lq),
            k: as4(tensorOf(s.k), Lk),
            v: as4(tensorOf(s.v), Lk),
            o: as4(tensorOf(s.out), Lq),
            scale: s.scale,
            // over a KV cache: the queries are the last Lq of the Lk positions
            ...(m
              ? {
                  mask: {
                    qOffset: Lk - Lq,
                    blockTokens: dimOf(m.blockTokens),
                    windowTokens: dimOf(m.windowTokens),
                    sinkTokens: dimOf(m.sinkTokens),
                  },
                }
              : {}),
          });
        } else for (const f of s.fallback) exec(f);
      } else if (device instanceof CudaDevice && gemmCandidatesFor(device.arch, s.candidates).length > 0) {
        const [M, N, K] = [size(s.m), size(s.n), size(s.k)];
        const extra: Record<string, Tensor | number> = {};
        const params = s.candidates[0]!.spec.epilogue.custom?.params ?? [];
        s.extra.forEach((a, i) => {
          extra[params[i]!.name] = 'buffer' in a ? tensorOf(a.buffer) : 'dims' in a ? size(a.dims) : a.value;
        });
        const op: GemmOperands = {
          a: tensorOf(s.a).reshape([M, K]),
          b: tensorOf(s.b),
          c: tensorOf(s.out).reshape([M, N]),
          extra,
        };
        runGemm(this.chooseGemm(device, s, op, M), op);
      } else {
        for (const f of s.fallback) exec(f);
      }
    };
    return {
      device,
      temps,
      exec: () => {
        for (const s of p.steps) exec(s);
      },
      outputs: () => p.outputs.map((bid) => tensorOf(bid)),
    };
  }
}

interface BoundPlan {
  device: Device;
  /** temporaries made so far (the plan's own memory) */
  temps: Tensor[];
  exec(): void;
  outputs(): Tensor[];
}

/** A plan recorded for fixed tensors (PlanRunner.capture). */
export class CapturedPlan {
  private disposed = false;
  constructor(
    /** the plan's outputs, rewritten by every replay */
    readonly outputs: readonly Tensor[],
    private readonly temps: Tensor[],
    private readonly rerun: () => void,
    private readonly graph?: CudaGraph,
  ) {}

  /** true when replays are one CUDA graph launch */
  get isGraph(): boolean {
    return this.graph !== undefined;
  }

  replay(): void {
    if (this.disposed) throw new SfcError('this captured plan was disposed');
    this.rerun();
  }

  /** Frees the graph and the temporaries (outputs the plan allocated stay the caller's). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.graph?.destroy();
    for (const t of this.temps) if (!this.outputs.some((o) => o.storage === t.storage)) t.dispose();
  }
}

const gemmTypes: Record<string, number | undefined> = {
  bf16: CudaDataType.bf16,
  f16: CudaDataType.f16,
  f32: CudaDataType.f32,
};

/** out[m, n] = a[m, k] @ (transB ? b[n, k]^T : b[k, n]), accumulated in float32. */
function matmul(
  device: Device,
  a: Tensor,
  b: Tensor,
  out: Tensor,
  transB: boolean,
  m: number,
  n: number,
  k: number,
): void {
  if (device instanceof CudaDevice) {
    const t = gemmTypes[a.dtype.name];
    if (t === undefined) throw new SfcError(`matmul of ${a.dtype.name} tensors is not supported on CUDA yet`);
    device.gemm({
      m,
      n,
      k,
      a: device.ptrOf(a.storage) + a.byteOffset,
      b: device.ptrOf(b.storage) + b.byteOffset,
      c: device.ptrOf(out.storage) + out.byteOffset,
      d: device.ptrOf(out.storage) + out.byteOffset,
      typeA: t,
      typeB: t,
      typeC: t,
      typeD: t,
      lda: k,
      ldb: transB ? k : n,
      ldc: n,
      ldd: n,
      transA: false,
      transB,
      alpha: 1,
      beta: 0,
      aScale: 0,
      bScale: 0,
    });
    return;
  }
  if (!(device instanceof CpuDevice)) throw new SfcError(`matmul: unsupported device ${device.name}`);
  const av = decode(a.dtype, a.toRaw()) as Float32Array;
  const bv = decode(b.dtype, b.toRaw()) as Float32Array;
  const acc = new Float32Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += av[i * k + p]! * (transB ? bv[j * k + p]! : bv[p * n + j]!);
      acc[i * n + j] = s;
    }
  const raw = rawArray(out.dtype, new ArrayBuffer(m * n * out.dtype.bytes), 0, m * n);
  encodeInto(out.dtype, acc, raw);
  device.write(out.storage, out.byteOffset, new Uint8Array(raw.buffer));
}
