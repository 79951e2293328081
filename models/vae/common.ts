// What the Wan VAE's encoder and decoder (and the TAEHV decoder) share: convolutions as GEMMs over
// zero-padded channels-last buffers (one cuBLASLt GEMM per kernel tap, the sm_90a implicit-GEMM
// template, or a CPU loop), weights kept per tap in bf16, and the streaming state of causal
// convolutions (the last input frames of each, so chunked runs equal whole-video runs).
//
// Activations are channels-last f32 ([T, H, W, C]). A convolution with a 3x3 spatial kernel reads a
// zero-padded bf16 buffer [history + T, H + 2, W + 2, C] and its output lives on the padded grid:
// pixel (t, y, x) at row (t (H + 2) + y) (W + 2) + x; the next kernel reads the valid pixels
// (models/kernels/vae.ts fuses bias, residual, RMS norm, SiLU and resampling there).
import { convPitch, convTile, type GemmArtifact, type KernelArtifact } from '../../dsl/artifact.js';
import { bf16, f32, u8 } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import type { CheckpointTensor } from '../../runtime/checkpoint/state-dict.js';
import { decode, rawArray } from '../../runtime/convert.js';
import { CudaDevice } from '../../runtime/cuda.js';
import type { Device } from '../../runtime/device.js';
import { gemm, shiftedGemms, whole } from '../../runtime/conv.js';
import { runConvGemm } from '../../runtime/gemm.js';
import { launch } from '../../runtime/kernels.js';
import { Tensor, fmtShape } from '../../runtime/tensor.js';

/**
 * Kernel artifacts of models/kernels/vae.ts per channel count (`${name}:${C}`, and `${name}:${C}p${CP}`
 * writing buffers padded to CP channels), and the sm_90a convolution GEMMs per output tile width.
 */
export interface VaeKernels {
  kernels: Record<string, KernelArtifact>;
  convGemms: Record<string, GemmArtifact>;
}

// the GEMMs over row-major views (gemm, shiftedGemms) live in runtime/conv.ts, shared with the
// layer DSL's convolution steps
export { gemm, shiftedGemms, whole, type MatView } from '../../runtime/conv.js';

// ---- weights ---------------------------------------------------------------------------------------

export interface Conv {
  /** [taps, cout, cin] bf16, taps ordered (kt, ky, kx) */
  taps: Tensor;
  /** for the sm_90a convolution GEMM: [cout, taps * CP] bf16, channels padded to CP with zeros */
  packed?: Tensor;
  bias: Tensor;
  kt: number;
  ky: number;
  kx: number;
  cin: number;
  cout: number;
}

/** The latent frames a decoder takes, z f32 [Z, F, h, w] (channels first, as the DiT writes them): [F, h, w]. */
export function latentDims(z: Tensor, Z: number): [number, number, number] {
  if (z.rank !== 4 || z.shape[0] !== Z || z.dtype !== f32)
    throw new SfcError(`the latents must be f32 [${Z}, F, h, w], got ${z.toString()}`);
  return z.shape.slice(1) as [number, number, number];
}

export function readF32(t: CheckpointTensor, name: string): Float32Array {
  if (!t.dtype || !t.dtype.isFloat)
    throw new SfcError(`'${name}' is ${t.fileDtype}; a floating-point tensor is needed`);
  let bytes = t.read();
  if (bytes.byteOffset % t.dtype.bytes !== 0) bytes = bytes.slice();
  const n = t.shape.reduce((x, y) => x * y, 1);
  return decode(t.dtype, rawArray(t.dtype, bytes.buffer, bytes.byteOffset, n)) as Float32Array;
}

/** A VAE module's parameters under the checkpoint's names (shared by the encoder and the decoder). */
export type VaeParamList = { name: string; shape: number[] }[];

/** Parameters of a causal residual block (RMS norm, SiLU, 3x3x3 convolution, twice; 1x1x1 shortcut). */
export function residualParams(p: VaeParamList, name: string, cin: number, cout: number): void {
  p.push({ name: `${name}.residual.0.gamma`, shape: [cin, 1, 1, 1] });
  convParams(p, `${name}.residual.2`, cout, cin, [3, 3, 3]);
  p.push({ name: `${name}.residual.3.gamma`, shape: [cout, 1, 1, 1] });
  convParams(p, `${name}.residual.6`, cout, cout, [3, 3, 3]);
  if (cin !== cout) convParams(p, `${name}.shortcut`, cout, cin, [1, 1, 1]);
}

/** Parameters of the middle attention block (per-frame single-head attention over pixels). */
export function attentionParams(p: VaeParamList, name: string, c: number): void {
  p.push({ name: `${name}.norm.gamma`, shape: [c, 1, 1] });
  convParams(p, `${name}.to_qkv`, 3 * c, c, [1, 1]);
  convParams(p, `${name}.proj`, c, c, [1, 1]);
}

export function convParams(p: VaeParamList, name: string, cout: number, cin: number, k: number[]): void {
  p.push({ name: `${name}.weight`, shape: [cout, cin, ...k] }, { name: `${name}.bias`, shape: [cout] });
}

/** Checks every parameter's presence and shape first, so a wrong file fails before any upload. */
export function checkParams(
  params: VaeParamList,
  tensors: ReadonlyMap<string, CheckpointTensor>,
  file: string,
  part: string,
): void {
  const bad: string[] = [];
  for (const p of params) {
    const t = tensors.get(p.name);
    if (!t) bad.push(`missing '${p.name}'`);
    else if (t.shape.join() !== p.shape.join())
      bad.push(`'${p.name}' is ${fmtShape(t.shape)}, the ${part} needs ${fmtShape(p.shape)}`);
  }
  if (bad.length)
    throw new SfcError(
      `the ${file} checkpoint does not fit the ${part} (${bad.length} problems): ${bad.slice(0, 4).join('; ')}${bad.length > 4 ? '; ...' : ''}`,
    );
}

/** Weights of a VAE half on a device: convolutions per tap (bf16), norms' gammas, the kernels. */
export abstract class VaeModel {
  protected readonly convs = new Map<string, Conv>();
  protected readonly vecs = new Map<string, Tensor>();
  private readonly zeros = new Map<number, Tensor>();

  protected constructor(
    readonly device: Device,
    readonly kernels: VaeKernels,
    /** convolutions with fewer input channels run as per-tap GEMMs even where the implicit GEMM runs */
    private readonly minImplicitChannels: number,
  ) {}

  /** Uploads `params` (checked first with checkParams): weights + biases as convolutions, gammas as vectors. */
  protected loadParams(params: VaeParamList, tensors: ReadonlyMap<string, CheckpointTensor>): void {
    try {
      for (const p of params) {
        const t = tensors.get(p.name)!;
        if (p.name.endsWith('.weight'))
          this.convs.set(
            p.name.slice(0, -'.weight'.length),
            this.convFrom(
              readF32(t, p.name),
              p.shape,
              readF32(tensors.get(p.name.replace(/weight$/, 'bias'))!, p.name),
            ),
          );
        else if (p.name.endsWith('.gamma'))
          this.vecs.set(p.name, Tensor.from(this.device, f32, [p.shape[0]!], readF32(t, p.name)));
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /**
   * A convolution from PyTorch's layout [cout, cin, (kt,) ky, kx] (or [cout, cin, ky, kx]; [cout, cin,
   * taps] counts the taps as ky). `pack`: also keep the implicit GEMM's packed weights where it runs
   * (default for more than one tap; 1x1 convolutions otherwise run as one cuBLASLt GEMM).
   */
  protected convFrom(w: Float32Array, shape: readonly number[], bias: Float32Array, pack?: boolean): Conv {
    const [cout, cin] = shape as [number, number];
    const k = shape.slice(2);
    const [kt, ky, kx] = k.length === 3 ? (k as [number, number, number]) : [1, k[0] ?? 1, k[1] ?? 1];
    const taps = kt * ky * kx;
    const out = new Float32Array(w.length);
    for (let o = 0; o < cout; o++)
      for (let i = 0; i < cin; i++)
        for (let t = 0; t < taps; t++) out[(t * cout + o) * cin + i] = w[(o * cin + i) * taps + t]!;
    return {
      taps: Tensor.from(this.device, bf16, [taps, cout, cin], out),
      packed: (pack ?? taps > 1) && this.implicit(cin) ? this.packed(out, taps, cout, cin) : undefined,
      bias: Tensor.from(this.device, f32, [cout], bias),
      kt,
      ky,
      kx,
      cin,
      cout,
    };
  }

  /** [taps, cout, cin] -> [cout, taps * CP] with zero channels past cin */
  private packed(taps: Float32Array, n: number, cout: number, cin: number): Tensor {
    const cp = convPitch(cin);
    const out = new Float32Array(cout * n * cp);
    for (let t = 0; t < n; t++)
      for (let o = 0; o < cout; o++)
        for (let i = 0; i < cin; i++) out[(o * n + t) * cp + i] = taps[(t * cout + o) * cin + i]!;
    return Tensor.from(this.device, bf16, [cout, n * cp], out);
  }

  dispose(): void {
    for (const c of this.convs.values()) {
      c.packed?.dispose();
      c.taps.dispose();
      c.bias.dispose();
    }
    for (const t of [...this.vecs.values(), ...this.zeros.values()]) t.dispose();
    this.convs.clear();
    this.vecs.clear();
    this.zeros.clear();
  }

  conv(name: string): Conv {
    const c = this.convs.get(name);
    if (!c) throw new Error(`internal: VAE conv ${name} not loaded`);
    return c;
  }

  vec(name: string): Tensor {
    const v = this.vecs.get(name);
    if (!v) throw new Error(`internal: VAE parameter ${name} not loaded`);
    return v;
  }

  zerosOf(c: number): Tensor {
    let z = this.zeros.get(c);
    if (!z) this.zeros.set(c, (z = Tensor.zeros(this.device, f32, [c])));
    return z;
  }

  /** Whether convolutions over `cin` input channels run as implicit GEMMs on this device. */
  implicit(cin: number): boolean {
    return (
      this.device instanceof CudaDevice &&
      this.device.arch === 'sm_90a' &&
      Object.keys(this.kernels.convGemms).length > 0 &&
      cin >= this.minImplicitChannels
    );
  }

  convGemm(cout: number): GemmArtifact {
    const g = this.kernels.convGemms[convTile(cout)];
    if (!g) throw new SfcError(`the VAE kernels have no convolution GEMM for ${cout} output channels`);
    return g;
  }

  kernel(name: string, c: number, cp = c): KernelArtifact {
    const k = this.kernels.kernels[cp === c ? `${name}:${c}` : `${name}:${c}p${cp}`];
    if (!k) throw new SfcError(`the VAE kernels were not built for ${c} channels (${name})`);
    return k;
  }

  /**
   * A decoded video [3, T, H, W] (f32 in [-1, 1]) as RGB bytes, T frames of H * W * 3 (converted on
   * the device: a quarter of the bytes to read back), as the file writers take them.
   */
  toRgb(video: Tensor): Uint8Array[] {
    if (video.rank !== 4 || video.shape[0] !== 3 || video.dtype !== f32)
      throw new SfcError(`a video is f32 [3, T, H, W], got ${video.toString()}`);
    const [, T, H, W] = video.shape as [number, number, number, number];
    const rgb = Tensor.empty(this.device, u8, [T, H * W, 3]);
    try {
      launch(this.kernel('toRgb8', 3), [Math.ceil((3 * T * H * W) / 1024)], [video.contiguous(), rgb, T * H * W]);
      const bytes = rgb.toArray() as Uint8Array;
      return Array.from({ length: T }, (_, t) => bytes.subarray(t * H * W * 3, (t + 1) * H * W * 3));
    } finally {
      rgb.dispose();
    }
  }
}

/** A convolution's output on its grid, before bias: f32 [T * gridH * gridW, cout]. */
export interface ConvOut {
  out: Tensor;
  T: number;
  H: number;
  W: number;
  name: string;
}

/**
 * Streaming state of a VAE half: the histories of its causal convolutions and the temporaries of the
 * module being run. Subclasses run their module lists with these building blocks.
 */
export class VaeStream {
  private readonly hist = new Map<string, Tensor>();
  protected temps: Tensor[] = [];

  constructor(protected readonly d: VaeModel) {}

  dispose(): void {
    for (const t of [...this.hist.values(), ...this.temps]) t.dispose();
    this.hist.clear();
    this.temps = [];
  }

  protected tmp(dtype: typeof f32 | typeof bf16, shape: number[]): Tensor {
    const t = Tensor.empty(this.d.device, dtype, shape);
    this.temps.push(t);
    return t;
  }

  /** Frees every temporary except `keep` (a module's output outlives the module). */
  protected release(keep?: Tensor): void {
    for (const t of this.temps) if (t !== keep) t.dispose();
    this.temps = keep ? [keep] : [];
  }

  /**
   * A causal 3x3x3 convolution of act(src) over the stream: returns its output on the padded grid
   * (f32 [T (H + 2) (W + 2), cout]) with the shape of src. src is f32 [T, H, W, cin], or a previous
   * convolution's padded-grid output (with `grid`, plus that convolution's bias before act).
   */
  protected conv3(
    name: string,
    src: Tensor,
    act: { norm: Tensor | undefined; silu: boolean; bias?: Tensor },
    grid?: { T: number; H: number; W: number },
  ): ConvOut {
    const d = this.d;
    const c = d.conv(name);
    const [T, H, W] = grid ? [grid.T, grid.H, grid.W] : (src.shape.slice(0, 3) as [number, number, number]);
    const k = act.norm ? (act.silu ? 'normActPad' : 'normPad') : act.silu ? 'siluPad' : 'castPad';
    return this.padConv(name, T, H, W, (buf, CP) =>
      launch(
        d.kernel(k, c.cin, CP),
        [buf.shape[0]!],
        [src, act.bias ?? d.zerosOf(c.cin), act.norm ?? d.zerosOf(c.cin), buf, H, W, grid ? 1 : 0, 1],
      ),
    );
  }

  /**
   * A causal 3x3x3 convolution over T frames of H x W: `fill(buf, CP)` writes the T new padded frames
   * (bf16 [T (H + 2) (W + 2), CP]); the two history frames come before them, the last two frames of
   * the buffer become the new history. Output on the padded grid, before bias.
   */
  protected padConv(name: string, T: number, H: number, W: number, fill: (buf: Tensor, CP: number) => void): ConvOut {
    const d = this.d;
    const c = d.conv(name);
    const Hp = H + 2;
    const Wp = W + 2;
    const frame = Hp * Wp;
    const slack = 2 * Wp + 2;
    const fast = d.implicit(c.cin);
    const CP = fast ? convPitch(c.cin) : c.cin;
    const buf = this.tmp(bf16, [(T + 2) * frame + slack, CP]);
    const hist = this.history(name, 2 * frame, CP);
    d.device.copy(buf.storage, buf.byteOffset, hist.storage, hist.byteOffset, hist.nbytes);
    fill(buf.narrow(0, 2 * frame, T * frame), CP);
    d.device.copy(hist.storage, hist.byteOffset, buf.storage, buf.byteOffset + T * frame * CP * 2, hist.nbytes);
    const out = this.tmp(f32, [T * frame, c.cout]);
    if (fast)
      runConvGemm(d.convGemm(c.cout), { buf, w: c.packed!, out, taps: { x: 3, y: 3, t: 3, py: Wp, pt: frame } });
    else {
      const offsets: number[] = [];
      for (let kt = 0; kt < 3; kt++)
        for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) offsets.push((kt * Hp + ky) * Wp + kx);
      shiftedGemms(buf, c.taps, offsets, out, T * frame, c.cout, c.cin);
    }
    return { out, T, H, W, name };
  }

  /** A convolution's padded-grid output + bias -> f32 [T, H, W, cout] */
  protected convOut(o: ConvOut, gridPad = 2): Tensor {
    const c = this.d.conv(o.name);
    const x = this.tmp(f32, [o.T, o.H, o.W, c.cout]);
    launch(this.d.kernel('convBias', c.cout), [o.T * o.H * o.W], [o.out, c.bias, x, o.H, o.W, gridPad]);
    return x;
  }

  /** A causal residual block: x + conv(SiLU(RMS(conv(SiLU(RMS(x)))))) (x through a 1x1 shortcut when cin != cout). */
  protected res(name: string, x: Tensor, cin: number, cout: number): Tensor {
    const d = this.d;
    const [T, H, W] = x.shape as [number, number, number, number];
    const o1 = this.conv3(`${name}.residual.2`, x, { norm: d.vec(`${name}.residual.0.gamma`), silu: true });
    const o2 = this.conv3(
      `${name}.residual.6`,
      o1.out,
      { norm: d.vec(`${name}.residual.3.gamma`), silu: true, bias: d.conv(`${name}.residual.2`).bias },
      { T, H, W },
    );
    const out = this.tmp(f32, [T, H, W, cout]);
    const c2 = d.conv(`${name}.residual.6`);
    let res = x;
    let resBias = d.zerosOf(cout);
    if (cin !== cout) {
      const sc = d.conv(`${name}.shortcut`);
      const xb = this.tmp(bf16, [T * H * W, cin]);
      launch(d.kernel('castPad', cin), [T * H * W], [x, d.zerosOf(cin), d.zerosOf(cin), xb, H, W, 0, 0]);
      res = this.tmp(f32, [T, H, W, cout]);
      gemm(whole(xb, cin), whole(sc.taps, cin), true, whole(res, cout), T * H * W, cout, cin, false);
      resBias = sc.bias;
    }
    launch(d.kernel('convResidual', cout), [T * H * W], [o2.out, c2.bias, res, resBias, out, H, W, 2]);
    return out;
  }

  /** The middle attention block: per frame, single-head attention over its pixels, plus x. */
  protected attn(name: string, x: Tensor): Tensor {
    const d = this.d;
    const [T, H, W, C] = x.shape as [number, number, number, number];
    const L = H * W;
    const qkvW = d.conv(`${name}.to_qkv`);
    const proj = d.conv(`${name}.proj`);
    const out = this.tmp(f32, [T, H, W, C]);
    for (let f = 0; f < T; f++) {
      const xf = x.narrow(0, f, 1);
      const hb = this.tmp(bf16, [L, C]);
      launch(d.kernel('normPad', C), [L], [xf, d.zerosOf(C), d.vec(`${name}.norm.gamma`), hb, H, W, 0, 0]);
      const qkv = this.tmp(f32, [L, 3 * C]);
      gemm(whole(hb, C), whole(qkvW.taps, C), true, whole(qkv, 3 * C), L, 3 * C, C, false);
      const qkvb = this.tmp(bf16, [L, 3 * C]);
      launch(d.kernel('biasCast', 3 * C), [L], [qkv, qkvW.bias, qkvb]);
      const s = this.tmp(f32, [L, L]);
      gemm(whole(qkvb, 3 * C), whole(qkvb, 3 * C, C), true, whole(s, L), L, L, C, false);
      const p = this.tmp(bf16, [L, L]);
      launch(d.kernel('softmaxRows', 3), [L], [s, p, L, 1 / Math.sqrt(C)]);
      const o = this.tmp(f32, [L, C]);
      gemm(whole(p, L), whole(qkvb, 3 * C, 2 * C), false, whole(o, C), L, C, L, false);
      const ob = this.tmp(bf16, [L, C]);
      launch(d.kernel('biasCast', C), [L], [o, d.zerosOf(C), ob]);
      const y = this.tmp(f32, [L, C]);
      gemm(whole(ob, C), whole(proj.taps, C), true, whole(y, C), L, C, C, false);
      launch(d.kernel('convResidual', C), [L], [y, proj.bias, xf, d.zerosOf(C), out.narrow(0, f, 1), H, W, 0]);
      // the frame's temporaries are dead once its output is written
      for (const t of [hb, qkv, qkvb, s, p, o, ob, y]) t.dispose();
      this.temps = this.temps.filter((t) => ![hb, qkv, qkvb, s, p, o, ob, y].includes(t));
    }
    return out;
  }

  /**
   * The (3, 1, 1) temporal convolution over `frames` new frames of x (f32 [T, H, W, C]) as one stream:
   * output frame j sees stream frames (j - 2, j - 1, j) ... with `stride` 2 only every other window.
   * Returns f32 [outputs, H, W, cout] before bias.
   */
  protected timeConv(name: string, x: Tensor, stride = 1): Tensor {
    const d = this.d;
    const c = d.conv(name);
    const [T, H, W] = x.shape as [number, number, number, number];
    const frame = H * W;
    const fast = d.implicit(c.cin);
    const CP = fast ? convPitch(c.cin) : c.cin;
    const keep = stride === 1 ? 2 : 1;
    const buf = this.tmp(bf16, [(T + keep) * frame, CP]);
    const hist = this.history(name, keep * frame, CP);
    d.device.copy(buf.storage, buf.byteOffset, hist.storage, hist.byteOffset, hist.nbytes);
    const z = d.zerosOf(c.cin);
    launch(d.kernel('castPad', c.cin, CP), [T * frame], [x, z, z, buf.narrow(0, keep * frame, T * frame), H, W, 0, 0]);
    d.device.copy(hist.storage, hist.byteOffset, buf.storage, buf.byteOffset + T * frame * CP * 2, hist.nbytes);
    // windows of 3 frames starting at 0, stride, 2 stride, ... within [history, new frames]
    const outs = Math.floor((T + keep - 3) / stride) + 1;
    const out = this.tmp(f32, [outs * frame, c.cout]);
    if (stride === 1 && fast)
      runConvGemm(d.convGemm(c.cout), { buf, w: c.packed!, out, taps: { x: 1, y: 1, t: 3, py: 0, pt: frame } });
    else
      for (let j = 0; j < outs; j++) {
        const win = buf.narrow(0, j * stride * frame, 3 * frame);
        const o = out.narrow(0, j * frame, frame);
        if (fast)
          runConvGemm(d.convGemm(c.cout), {
            buf: win,
            w: c.packed!,
            out: o,
            taps: { x: 1, y: 1, t: 3, py: 0, pt: frame },
          });
        else shiftedGemms(win, c.taps, [0, frame, 2 * frame], o, frame, c.cout, c.cin);
      }
    return out.reshape([outs, H, W, c.cout]);
  }

  /** Makes the last `keep` frames of x (f32 [T, H, W, cin]) the history of the convolution `name`. */
  protected remember(name: string, x: Tensor, keep: number): void {
    const d = this.d;
    const c = d.conv(name);
    const [T, H, W] = x.shape as [number, number, number, number];
    const CP = d.implicit(c.cin) ? convPitch(c.cin) : c.cin;
    const hist = this.history(name, keep * H * W, CP);
    const z = d.zerosOf(c.cin);
    launch(d.kernel('castPad', c.cin, CP), [keep * H * W], [x.narrow(0, T - keep, keep), z, z, hist, H, W, 0, 0]);
  }

  /** The last input frames of a causal convolution ([rows, CP] bf16, zeros at the start). */
  protected history(name: string, rows: number, cp: number): Tensor {
    let hist = this.hist.get(name);
    if (!hist || hist.shape[0] !== rows || hist.shape[1] !== cp) {
      hist?.dispose();
      hist = Tensor.zeros(this.d.device, bf16, [rows, cp]);
      this.hist.set(name, hist);
    }
    return hist;
  }
}
