// Convolutions as GEMMs over zero-padded channels-last buffers, shared by the Wan VAE / TAEHV
// (models/vae) and the layer DSL's convolution steps (compiler/layer/conv.ts): strided bf16 GEMMs
// (cuBLASLt on CUDA, a loop on the CPU), a convolution as one such GEMM per kernel tap over shifted
// rows, and the launch-plan step that pads, convolves (the sm_90a implicit-GEMM template where it is
// built, per-tap GEMMs elsewhere) and crops.
import type { PlanDim, PlanStep } from '../dsl/plan.js';
import { bf16, f32 } from '../dsl/dtypes.js';
import { SfcError } from '../dsl/errors.js';
import { encodeInto, rawArray } from './convert.js';
import { CpuDevice } from './cpu.js';
import { CudaDevice } from './cuda.js';
import { runConvGemm } from './gemm.js';
import { launch } from './kernels.js';
import { CudaDataType } from './native/api.js';
import { Tensor } from './tensor.js';

export interface MatView {
  t: Tensor;
  /** element offset into t */
  off: number;
  ld: number;
}

/** c (f32) [m, n] = a (bf16) [m, k] . op(b) (+ c when accumulate); op(b) = b^T for b [n, k], else b [k, n] */
export function gemm(
  a: MatView,
  b: MatView,
  transB: boolean,
  c: MatView,
  m: number,
  n: number,
  k: number,
  accumulate: boolean,
): void {
  const dev = a.t.device;
  if (dev instanceof CudaDevice) {
    const ptr = (v: MatView) => dev.ptrOf(v.t.storage) + v.t.byteOffset + v.off * v.t.dtype.bytes;
    dev.gemm({
      m,
      n,
      k,
      a: ptr(a),
      b: ptr(b),
      c: ptr(c),
      d: ptr(c),
      typeA: CudaDataType.bf16,
      typeB: CudaDataType.bf16,
      typeC: CudaDataType.f32,
      typeD: CudaDataType.f32,
      lda: a.ld,
      ldb: b.ld,
      ldc: c.ld,
      ldd: c.ld,
      transA: false,
      transB,
      alpha: 1,
      beta: accumulate ? 1 : 0,
      aScale: 0,
      bScale: 0,
    });
    return;
  }
  if (!(dev instanceof CpuDevice)) throw new SfcError(`VAE: unsupported device ${dev.name}`);
  const av = a.t.toF32();
  const bv = b.t.toF32();
  const cv = c.t.toF32();
  for (let i = 0; i < m; i++) {
    const ar = a.off + i * a.ld;
    const cr = c.off + i * c.ld;
    for (let j = 0; j < n; j++) {
      let s = 0;
      if (transB) {
        const br = b.off + j * b.ld;
        for (let p = 0; p < k; p++) s += av[ar + p]! * bv[br + p]!;
      } else for (let p = 0; p < k; p++) s += av[ar + p]! * bv[b.off + p * b.ld + j]!;
      cv[cr + j] = accumulate ? cv[cr + j]! + s : s;
    }
  }
  const raw = rawArray(f32, new ArrayBuffer(cv.length * 4), 0, cv.length);
  encodeInto(f32, cv, raw);
  dev.write(c.t.storage, c.t.byteOffset, new Uint8Array(raw.buffer));
}

export const whole = (t: Tensor, ld: number, off = 0): MatView => ({ t, off, ld });

/**
 * Where the taps' weights and the buffer's rows lie: buffer rows of `pitch` >= cin channels (default
 * cin); tap i's [cout, cin] matrix at element i * tapStride, its rows ldw apart (default: taps
 * [taps, cout, cin], the VAE's layout; the layer DSL's [cout, taps, cin] has tapStride cin and ldw
 * taps * cin).
 */
export interface TapLayout {
  pitch?: number;
  tapStride?: number;
  ldw?: number;
}

/**
 * out (f32 [M, cout]) = sum over taps i of buf[offsets[i] + row] (bf16, rows of cin) . taps[i]^T:
 * a convolution as shifted GEMMs (one cuBLASLt call per tap on CUDA; one pass on the CPU).
 */
export function shiftedGemms(
  buf: Tensor,
  taps: Tensor,
  offsets: readonly number[],
  out: Tensor,
  M: number,
  cout: number,
  cin: number,
  layout: TapLayout = {},
): void {
  const dev = buf.device;
  const lda = layout.pitch ?? cin;
  const ldw = layout.ldw ?? cin;
  const tapStride = layout.tapStride ?? cout * cin;
  if (dev instanceof CudaDevice) {
    offsets.forEach((off, i) =>
      gemm(whole(buf, lda, off * lda), whole(taps, ldw, i * tapStride), true, whole(out, cout), M, cout, cin, i > 0),
    );
    return;
  }
  const a = buf.toF32();
  const w = taps.toF32();
  const rows = a.length / lda;
  const acc = new Float32Array(M * cout);
  offsets.forEach((off, t) => {
    // rows past the buffer read as zeros (as the implicit GEMM's TMA loads do)
    for (let r = 0; r < M && off + r < rows; r++) {
      const ar = (off + r) * lda;
      for (let o = 0; o < cout; o++) {
        const wr = t * tapStride + o * ldw;
        let s = 0;
        for (let p = 0; p < cin; p++) s += a[ar + p]! * w[wr + p]!;
        acc[r * cout + o]! += s;
      }
    }
  });
  dev.write(out.storage, out.byteOffset, new Uint8Array(acc.buffer));
}

type ConvStep = Extract<PlanStep, { kind: 'conv' }>;

/**
 * Runs a plan's 'conv' step (with its prologue and epilogue steps, see dsl/plan.ts) given the
 * executor's buffers (`tensorOf`) and dim products (`size`); `over` replaces buffers by tensors (the
 * padded buffer or the grid where a fused kernel reads or writes them).
 */
export function runConvPlanStep(
  s: ConvStep,
  tensorOf: (buffer: number) => Tensor,
  size: (dims: readonly PlanDim[]) => number,
  over: ReadonlyMap<number, Tensor> = new Map(),
): void {
  const t = (id: number) => over.get(id) ?? tensorOf(id);
  const plus = (id: number, v: Tensor) => new Map([...over, [id, v]]);
  const kernel = (k: Extract<PlanStep, { kind: 'kernel' }>, o: ReadonlyMap<number, Tensor>) =>
    launch(
      k.artifact,
      k.grid.map(size),
      k.args.map((a) =>
        'buffer' in a ? (o.get(a.buffer) ?? tensorOf(a.buffer)) : 'dims' in a ? size(a.dims) : a.value,
      ),
    );
  const pro = s.prologue;
  const epi = s.epilogue;
  runConvStep(
    s,
    pro
      ? (buf) =>
          pro.kind === 'conv' ? runConvPlanStep(pro, tensorOf, size, plus(s.x, buf)) : kernel(pro, plus(s.x, buf))
      : t(s.x),
    t(s.w),
    epi ? (grid) => kernel(epi, plus(s.out, grid)) : t(s.out),
    s.dims.map((d) => size(d)),
    s.outDims.map((d) => size(d)),
  );
}

/**
 * A convolution: x (bf16 [T, H, W, cin]) into a padded buffer (or `x(buf)` writes it there, the
 * buffer zeroed first), the GEMMs on its padded grid, then the valid pixels into `out` (f32 [T', H',
 * W', cout]), or `out(grid)` reads them. `dims` and `outDims` are the bound T, H, W.
 */
export function runConvStep(
  s: ConvStep,
  x: Tensor | ((buf: Tensor) => void),
  w: Tensor,
  out: Tensor | ((grid: Tensor) => void),
  dims: readonly number[],
  outDims: readonly number[],
): void {
  const dev = w.device;
  const [T, H, W] = dims as [number, number, number];
  const [To, Ho, Wo] = outDims as [number, number, number];
  const [kt, ky, kx] = s.kernel;
  const [pt, py, px] = s.pad;
  const [Tp, Hp, Wp] = [pt[0] + T + pt[1], py[0] + H + py[1], px[0] + W + px[1]];
  const frame = Hp * Wp;
  // one grid row per window start: the stride-1 convolution at every buffer row of the first Tp - kt + 1
  // frames; the buffer's slack rows keep the last window's reads inside it
  const M = (Tp - kt + 1) * frame;
  const rows = Tp * frame + (ky - 1) * Wp + (kx - 1);
  const taps = kt * ky * kx;
  const buf = x instanceof Tensor ? Tensor.empty(dev, bf16, [rows, s.pitch]) : Tensor.zeros(dev, bf16, [rows, s.pitch]);
  const grid = Tensor.empty(dev, f32, [M, s.cout]);
  try {
    if (x instanceof Tensor) launch(s.padKernel, [rows], [x, buf, T, H, W, Hp, Wp, pt[0], py[0], px[0]]);
    else x(buf);
    const art = s.candidates[0];
    if (dev instanceof CudaDevice && art && art.arch === dev.arch && s.pitch === s.cin) {
      const wk = w.reshape([s.cout, taps * s.cin]);
      runConvGemm(art, { buf, w: wk, out: grid, taps: { x: kx, y: ky, t: kt, py: Wp, pt: frame } });
    } else {
      const offsets: number[] = [];
      for (let dt = 0; dt < kt; dt++)
        for (let dy = 0; dy < ky; dy++) for (let dx = 0; dx < kx; dx++) offsets.push((dt * Hp + dy) * Wp + dx);
      shiftedGemms(buf, w, offsets, grid, M, s.cout, s.cin, {
        pitch: s.pitch,
        tapStride: s.cin,
        ldw: taps * s.cin,
      });
    }
    const [st, sy, sx] = s.stride;
    if (out instanceof Tensor) launch(s.cropKernel, [To * Ho * Wo], [grid, out, Ho, Wo, Hp, Wp, st, sy, sx]);
    else out(grid);
  } finally {
    buf.dispose();
    grid.dispose();
  }
}
