// TAEHV, the tiny video decoder (`taew2_1.pth` for Wan2.1 latents), streaming: a chain of 3x3
// convolutions and MemBlocks (each sees its input frame and the previous one), with nearest 2x
// upsampling and TGrow (a 1x1 convolution whose channel groups become consecutive frames) between
// its four stages. T latent frames give 4 T video frames; the first 3 frames of a video are dropped,
// so a whole video of F latent frames has 1 + 4 (F - 1), as the Wan VAE gives.
//
// Layout and convolutions follow the Wan VAE decoder (models/vae/decoder.ts): channels-last f32
// activations, zero-padded bf16 buffers, convolutions as implicit GEMMs on sm_90a (cuBLASLt per-tap
// GEMMs elsewhere, a JS loop on the CPU) whose f32 outputs live on the padded grid. A MemBlock's
// first convolution over cat[x, past] is a causal temporal convolution with two taps over x's
// stream: its buffer holds [previous frame, T frames], the last one kept between calls. TGrow runs
// before the upsampling (a 1x1 convolution commutes with nearest upsampling: 4x fewer FLOPs), and
// the upsampling kernel interleaves its channel groups into frames. Every GEMM computes each output
// row independently of the others, so decoding chunk by chunk gives the frames of a whole decode.
import { convPitch, type GemmArtifact, type KernelArtifact } from '../../dsl/artifact.js';
import { bf16, f32 } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import type { CheckpointTensor } from '../../runtime/checkpoint/state-dict.js';
import type { Device } from '../../runtime/device.js';
import { runConvGemm } from '../../runtime/gemm.js';
import { launch } from '../../runtime/kernels.js';
import { Tensor, fmtShape } from '../../runtime/tensor.js';
import { VaeModel, latentDims, readF32, shiftedGemms, type Conv } from './common.js';

/** A streaming video decoder's state: feed it latent chunks in order (WanVaeDecoder's VaeDecodeStream fits). */
export interface VideoDecodeStream {
  /** video frames produced so far */
  frames: number;
  /** latents [Z, F, h, w] (f32) -> video [3, frames, H, W] (f32 in [-1, 1]) */
  decode(z: Tensor): Tensor;
  dispose(): void;
}

/** What a pipeline needs of a latent-to-video decoder: WanVaeDecoder and TaehvDecoder both fit. */
export interface VideoDecoder {
  readonly device: Device;
  stream(): VideoDecodeStream;
  decode(z: Tensor): Tensor;
  toRgb(video: Tensor): Uint8Array[];
  dispose(): void;
}

/** The decoder's widths: `nf` the channels of its four stages, `latent` the latent channels. */
export interface TaehvShape {
  nf: readonly number[];
  latent: number;
}

/** taew2_1.pth (TAEHV for Wan2.1) */
export const TAEW2_1: TaehvShape = { nf: [256, 128, 64, 64], latent: 16 };

/** Kernel artifacts of compiler/bundle.ts buildTaehvKernels. */
export interface TaehvKernels {
  kernels: Record<string, KernelArtifact>;
  convGemms: Record<string, GemmArtifact>;
}

/** Temporal strides of the three TGrow blocks (indices 7, 13, 19), as in taew2_1. */
const STRIDES = [1, 2, 2];
/** Video frames dropped at the start of a video: 2^(temporal upsamplings) - 1. */
const TRIM = 3;

/** The decoder.{i} indices of each stage's MemBlocks, TGrow and following convolution. */
function stages(): { mem: number[]; tgrow: number; conv: number }[] {
  return [0, 1, 2].map((s) => ({ mem: [3, 4, 5].map((i) => i + 6 * s), tgrow: 7 + 6 * s, conv: 8 + 6 * s }));
}

interface Param {
  name: string;
  shape: number[];
  /** TGrow: a weight with more output channels is cut to its last shape[0] */
  tgrow?: boolean;
}

/** Every decoder parameter the decoder reads, with its shape (`encoder.*` keys are not read). */
export function taehvParams(s: TaehvShape): Param[] {
  const nf = s.nf;
  const p: Param[] = [];
  const conv = (i: number | string, cout: number, cin: number, bias: boolean) => {
    p.push({ name: `decoder.${i}.weight`, shape: [cout, cin, 3, 3] });
    if (bias) p.push({ name: `decoder.${i}.bias`, shape: [cout] });
  };
  conv(1, nf[0]!, s.latent, true);
  stages().forEach((st, k) => {
    const n = nf[k]!;
    for (const m of st.mem) {
      conv(`${m}.conv.0`, n, 2 * n, true);
      conv(`${m}.conv.2`, n, n, true);
      conv(`${m}.conv.4`, n, n, true);
    }
    p.push({ name: `decoder.${st.tgrow}.conv.weight`, shape: [n * STRIDES[k]!, n, 1, 1], tgrow: true });
    conv(st.conv, nf[k + 1]!, n, false);
  });
  conv(22, 3, nf[3]!, true);
  return p;
}

export class TaehvDecoder extends VaeModel implements VideoDecoder {
  private constructor(
    device: Device,
    readonly shape: TaehvShape,
    kernels: TaehvKernels,
  ) {
    super(device, kernels, 16);
  }

  /** Loads the decoder's weights (reference names, e.g. from `taew2_1.pth`); checks them all first. */
  static load(
    device: Device,
    kernels: TaehvKernels,
    tensors: ReadonlyMap<string, CheckpointTensor>,
    shape: TaehvShape = TAEW2_1,
  ): TaehvDecoder {
    const params = taehvParams(shape);
    const bad: string[] = [];
    for (const p of params) {
      const t = tensors.get(p.name);
      const fits =
        t &&
        (p.tgrow
          ? t.shape.length === 4 && t.shape[0]! >= p.shape[0]! && t.shape.slice(1).join() === p.shape.slice(1).join()
          : t.shape.join() === p.shape.join());
      if (!t) bad.push(`missing '${p.name}'`);
      else if (!fits)
        bad.push(
          `'${p.name}' is ${fmtShape(t.shape)}, the decoder needs ${fmtShape(p.shape)}${p.tgrow ? ' (or more output channels)' : ''}`,
        );
    }
    if (bad.length)
      throw new SfcError(
        `the TAEHV checkpoint does not fit the decoder (${bad.length} problems): ${bad.slice(0, 4).join('; ')}${bad.length > 4 ? '; ...' : ''}`,
        { hint: 'TaehvDecoder reads the decoder.* tensors of taew2_1.pth (TAEHV for Wan2.1 latents)' },
      );
    const d = new TaehvDecoder(device, shape, kernels);
    const read = (name: string) => readF32(tensors.get(name)!, name);
    try {
      for (const p of params) {
        if (!p.name.endsWith('weight')) continue;
        const base = p.name.slice(0, -'.weight'.length);
        const [cout, cin] = p.shape as [number, number];
        let w = read(p.name);
        const bias = tensors.has(`${base}.bias`) ? read(`${base}.bias`) : undefined;
        if (p.tgrow) w = w.subarray(w.length - cout * cin); // the last output channels, as the reference
        if (base === 'decoder.22') {
          // to RGB: a 1x1 GEMM with a row per (tap, channel), 27 of 32 (models/kernels/taehv.ts taehvToVideo)
          const w32 = new Float32Array(32 * cin);
          for (let o = 0; o < 3; o++)
            for (let i = 0; i < cin; i++)
              for (let k = 0; k < 9; k++) w32[(k * 3 + o) * cin + i] = w[(o * cin + i) * 9 + k]!;
          const b32 = new Float32Array(32);
          if (bias) b32.set(bias);
          d.convs.set(base, d.convFrom(w32, [32, cin, 1], b32, true));
        } else if (base.endsWith('.conv.0')) {
          // cat[x, past]: tap t = 0 (the previous frame) takes w[:, n:], t = 1 (this frame) w[:, :n]
          const n = cout;
          const w2 = new Float32Array(n * n * 18);
          for (let o = 0; o < n; o++)
            for (let i = 0; i < n; i++)
              for (let k = 0; k < 9; k++) {
                w2[(o * n + i) * 18 + k] = w[(o * 2 * n + n + i) * 9 + k]!;
                w2[(o * n + i) * 18 + 9 + k] = w[(o * 2 * n + i) * 9 + k]!;
              }
          d.convs.set(base, d.convFrom(w2, [n, n, 18], bias ?? new Float32Array(n), true));
        } else d.convs.set(base, d.convFrom(w, [cout, cin, p.tgrow ? 1 : 9], bias ?? new Float32Array(cout), true));
      }
    } catch (e) {
      d.dispose();
      throw e;
    }
    return d;
  }

  /** decoder.{i} (a MemBlock's convolutions: `${i}.conv.{0,2,4}`; TGrow: `${i}.conv`) */
  override conv(name: number | string): Conv {
    return super.conv(`decoder.${name}`);
  }

  /** The channel pitch of buffers that convolutions over `cin` channels read. */
  pitch(cin: number): number {
    return this.implicit(cin) ? convPitch(cin) : cin;
  }

  /** Launches a kernel of models/kernels/taehv.ts over frames of rows of `width` pixels (PIX per program). */
  launchRows(name: string, c: number, cp: number, [width, rows, frames]: number[], args: (Tensor | number)[]): void {
    const k = this.kernel(name, c, cp);
    const pix = k.params.find((p) => p.name === 'PIX')?.value ?? 1;
    launch(k, [Math.ceil(width! / pix), rows!, frames!], args);
  }

  /**
   * out (f32 [M, cout]) = sum over the convolution's taps of buf[row + offset(tap)] . w, the offsets
   * of taps (t, y, x) being t pt + y py + x: on sm_90a one implicit GEMM, else one GEMM per tap.
   */
  runConv(
    c: Conv,
    buf: Tensor,
    out: Tensor,
    M: number,
    taps: { x: number; y: number; t: number; py: number; pt: number },
  ): void {
    if (c.packed) return runConvGemm(this.convGemm(c.cout), { buf, w: c.packed, out, taps });
    const offsets: number[] = [];
    for (let t = 0; t < taps.t; t++)
      for (let y = 0; y < taps.y; y++) for (let x = 0; x < taps.x; x++) offsets.push(t * taps.pt + y * taps.py + x);
    shiftedGemms(buf, c.taps, offsets, out, M, c.cout, c.cin);
  }

  /** A decoding stream: feed it latent chunks in order. `chunk`: latent frames decoded at once. */
  stream(chunk = 3): TaehvDecodeStream {
    return new TaehvDecodeStream(this, chunk);
  }

  /** Decodes a whole latent video [Z, F, h, w] (f32) -> [3, 1 + 4 (F - 1), 8h, 8w] in [-1, 1]. */
  decode(z: Tensor): Tensor {
    const s = this.stream();
    try {
      return s.decode(z);
    } finally {
      s.dispose();
    }
  }
}

/** Streaming decode state: each MemBlock's last input frame (a padded bf16 frame). */
export class TaehvDecodeStream implements VideoDecodeStream {
  private readonly hist = new Map<number, Tensor>();
  /** latent frames decoded so far */
  private latents = 0;
  /** video frames produced so far */
  frames = 0;

  constructor(
    private readonly d: TaehvDecoder,
    private readonly chunk: number,
  ) {
    if (!Number.isInteger(chunk) || chunk < 1) throw new SfcError(`the decode chunk must be >= 1 frames, got ${chunk}`);
  }

  dispose(): void {
    for (const t of this.hist.values()) t.dispose();
    this.hist.clear();
  }

  /**
   * Decodes the next latent frames z [Z, F, h, w] (f32, as the DiT produces them) -> video [3,
   * frames, 8h, 8w] (f32 in [-1, 1]): 4 F frames, less the first 3 of the video.
   */
  decode(z: Tensor): Tensor {
    const d = this.d;
    const [F, h, w] = latentDims(z, d.shape.latent);
    const skip = Math.max(0, TRIM - 4 * this.latents);
    const outFrames = Math.max(0, 4 * F - skip);
    const video = Tensor.empty(d.device, f32, [3, outFrames, 8 * h, 8 * w]);
    const zc = z.contiguous();
    try {
      let t0 = 0;
      for (let f0 = 0; f0 < F; f0 += this.chunk) {
        const T = Math.min(this.chunk, F - f0);
        const s0 = Math.max(0, TRIM - 4 * this.latents);
        const out = this.body(zc, F, f0, T, h, w);
        const n = Math.max(0, 4 * T - s0);
        // ReLU and the last convolution, into frames t0 .. t0 + n of the video
        const [H, W] = [8 * h, 8 * w];
        const c = d.conv(22);
        const y = this.reluConv(out, d.zerosOf(c.cin), c, 4 * T, H, W, 1);
        const args = [y, c.bias, video, H, W, outFrames, t0, s0];
        if (n > 0) d.launchRows('taehvToVideo', 3, 3, [W, H, n], args);
        y.dispose();
        t0 += n;
        this.latents += T;
      }
    } catch (e) {
      video.dispose();
      throw e;
    } finally {
      if (zc !== z) zc.dispose();
    }
    this.frames += outFrames;
    return video;
  }

  /** latent frames f0 .. f0 + T -> decoder.20's output (f32 [4 T (8h + 2) (8w + 2), nf3], padded grid) */
  private body(z: Tensor, F: number, f0: number, T: number, h: number, w: number): Tensor {
    const d = this.d;
    const dev = d.device;
    const nf = d.shape.nf;
    const Z = d.shape.latent;
    let H = h;
    let W = w;
    let frame = (H + 2) * (W + 2);
    const CPz = d.pitch(Z);
    let buf = Tensor.empty(dev, bf16, [T * frame + 2 * W + 6, CPz]);
    d.launchRows('taehvLatentPad', Z, CPz, [W + 2, H + 2, T], [z, buf, F, f0, H, W]);
    let out = this.conv3(d.conv(1), buf, T, H, W);
    buf.dispose();
    let bias = d.conv(1).bias;
    let relu = 1;
    for (const [k, st] of stages().entries()) {
      const n = nf[k]!;
      const CP = d.pitch(n);
      const frameBytes = frame * CP * 2;
      // the stage's input: x (f32, the first MemBlock's residual) and the first MemBlock's buffer
      let x = Tensor.empty(dev, f32, [T, H, W, n]);
      let mbuf = this.memBuffer(st.mem[0]!, T, H, W, CP);
      const args = [out, bias, mbuf.narrow(0, frame, T * frame), x, H, W, relu, 1];
      d.launchRows('taehvActPad', n, CP, [W + 2, H + 2, T], args);
      out.dispose();
      let xb: Tensor | undefined;
      for (const [j, m] of st.mem.entries()) {
        const last = j === st.mem.length - 1;
        // conv 0 over [past, x]: two temporal taps on the buffer [history, T frames]
        const c0 = d.conv(`${m}.conv.0`);
        const hist = this.hist.get(m)!;
        dev.copy(hist.storage, hist.byteOffset, mbuf.storage, mbuf.byteOffset + T * frameBytes, frameBytes);
        const o0 = Tensor.empty(dev, f32, [T * frame, n]);
        d.runConv(c0, mbuf, o0, T * frame, { x: 3, y: 3, t: 2, py: W + 2, pt: frame });
        mbuf.dispose();
        const o1 = this.reluConv(o0, c0.bias, d.conv(`${m}.conv.2`), T, H, W);
        const o2 = this.reluConv(o1, d.conv(`${m}.conv.2`).bias, d.conv(`${m}.conv.4`), T, H, W);
        // relu(conv + x) into the next MemBlock's buffer (and x), or, last, TGrow's unpadded input
        const next = last ? undefined : Tensor.empty(dev, f32, [T, H, W, n]);
        const dst = last
          ? (xb = Tensor.empty(dev, bf16, [T * H * W, CP]))
          : this.memBuffer(st.mem[j + 1]!, T, H, W, CP);
        const rows = last ? T * H * W : T * frame;
        const into = last ? dst : dst.narrow(0, frame, rows);
        const keep = last ? 0 : 1;
        const args = [o2, d.conv(`${m}.conv.4`).bias, x, into, next ?? d.zerosOf(1), H, W, keep, keep];
        d.launchRows('taehvResidualPad', n, CP, [W + 2 * keep, H + 2 * keep, T], args);
        o2.dispose();
        x.dispose();
        if (next) x = next;
        mbuf = dst;
      }
      // TGrow (1x1, n -> s n) before the 2x upsampling, whose kernel makes each channel group a frame
      const s = STRIDES[k]!;
      const tg = d.conv(`${st.tgrow}.conv`);
      const g = Tensor.empty(dev, f32, [T * H * W, s * n]);
      d.runConv(tg, xb!, g, T * H * W, { x: 1, y: 1, t: 1, py: 0, pt: 0 });
      xb!.dispose();
      T *= s;
      const [H1, W1] = [H, W];
      H *= 2;
      W *= 2;
      frame = (H + 2) * (W + 2);
      buf = Tensor.empty(dev, bf16, [T * frame + 2 * W + 6, CP]);
      d.launchRows('taehvUpsamplePad', n, CP, [W + 2, H + 2, T], [g, buf, H1, W1, s]);
      g.dispose();
      out = this.conv3(d.conv(st.conv), buf, T, H, W);
      buf.dispose();
      bias = d.zerosOf(nf[k + 1]!);
      relu = 0;
    }
    return out;
  }

  /** relu(src + bias) into a padded buffer, then a k x k convolution over it; src is disposed */
  private reluConv(src: Tensor, bias: Tensor, c: Conv, T: number, H: number, W: number, k = 3): Tensor {
    const d = this.d;
    const frame = (H + 2) * (W + 2);
    const CP = d.pitch(c.cin);
    const buf = Tensor.empty(d.device, bf16, [T * frame + 2 * W + 6, CP]);
    d.launchRows('taehvActPad', c.cin, CP, [W + 2, H + 2, T], [src, bias, buf, d.zerosOf(1), H, W, 1, 0]);
    src.dispose();
    const out = k === 3 ? this.conv3(c, buf, T, H, W) : Tensor.empty(d.device, f32, [T * frame, c.cout]);
    if (k === 1) d.runConv(c, buf, out, T * frame, { x: 1, y: 1, t: 1, py: 0, pt: 0 });
    buf.dispose();
    return out;
  }

  /** a 3x3 convolution over a padded buffer of T frames: f32 [T (H + 2) (W + 2), cout] */
  private conv3(c: Conv, buf: Tensor, T: number, H: number, W: number): Tensor {
    const frame = (H + 2) * (W + 2);
    const out = Tensor.empty(this.d.device, f32, [T * frame, c.cout]);
    this.d.runConv(c, buf, out, T * frame, { x: 3, y: 3, t: 1, py: W + 2, pt: 0 });
    return out;
  }

  /** a MemBlock's buffer [history, T frames] (bf16, padded), its history frame copied in */
  private memBuffer(m: number, T: number, H: number, W: number, CP: number): Tensor {
    const dev = this.d.device;
    const frame = (H + 2) * (W + 2);
    let hist = this.hist.get(m);
    if (!hist || hist.shape[0] !== frame || hist.shape[1] !== CP) {
      hist?.dispose();
      hist = Tensor.zeros(dev, bf16, [frame, CP]);
      this.hist.set(m, hist);
    }
    const buf = Tensor.empty(dev, bf16, [(T + 1) * frame + 2 * W + 6, CP]);
    dev.copy(buf.storage, buf.byteOffset, hist.storage, hist.byteOffset, hist.nbytes);
    return buf;
  }
}
