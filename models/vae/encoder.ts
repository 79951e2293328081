// The Wan2.1 VAE encoder, streaming: pixels -> normalised latents, for image-to-video (one frame ->
// one latent frame) and video-to-video / extension. As in the reference, the video goes in as its
// first frame and then groups of 4 frames, each group giving one latent frame; every causal
// convolution keeps the last frames of its input, so encoding chunk by chunk equals encoding the
// whole video, with memory independent of its length.
//
// Downsampling: a stride-2 3x3 convolution (zero row and column at the bottom and right) runs as a
// stride-1 2x2 convolution over a space-to-depth buffer (models/kernels/vae.ts s2dPad), so it uses
// the same GEMMs as every other convolution; the temporal stride-2 convolution of `downsample3d`
// sees [the previous group's last frame, the group's frames], the very first frame passing through.
// The output is the posterior's mean after the 1x1x1 `conv1`, normalised per channel ((mu - mean) /
// std, folded into that convolution's weights).
import { convPitch } from '../../dsl/artifact.js';
import { bf16, f32 } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import type { CheckpointTensor } from '../../runtime/checkpoint/state-dict.js';
import type { Device } from '../../runtime/device.js';
import { runConvGemm } from '../../runtime/gemm.js';
import { launch } from '../../runtime/kernels.js';
import { Tensor } from '../../runtime/tensor.js';
import {
  VaeModel,
  VaeStream,
  attentionParams,
  checkParams,
  convParams,
  gemm,
  readF32,
  residualParams,
  shiftedGemms,
  whole,
  type VaeKernels,
  type VaeParamList,
} from './common.js';
import { WAN_LATENT_MEAN, WAN_LATENT_STD, decoderLayout, type VaeModule, type WanVaeShape } from './decoder.js';

/** The encoder's modules in order, under the checkpoint's names. */
export function encoderLayout(s: WanVaeShape): VaeModule[] {
  const dims = [1, ...s.dim_mult].map((m) => m * s.base_dim);
  const mods: VaeModule[] = [{ name: 'encoder.conv1', kind: 'conv', cin: 3, cout: dims[0]! }];
  let idx = 0;
  for (let i = 0; i < dims.length - 1; i++) {
    let cin = dims[i]!;
    const cout = dims[i + 1]!;
    for (let r = 0; r < s.num_res_blocks; r++) {
      mods.push({ name: `encoder.downsamples.${idx++}`, kind: 'res', cin, cout });
      cin = cout;
    }
    if (i !== s.dim_mult.length - 1)
      mods.push({
        name: `encoder.downsamples.${idx++}`,
        kind: s.temporal_downsample[i] ? 'down3d' : 'down2d',
        cin: cout,
        cout,
      });
  }
  const c = dims[dims.length - 1]!;
  mods.push(
    { name: 'encoder.middle.0', kind: 'res', cin: c, cout: c },
    { name: 'encoder.middle.1', kind: 'attn', cin: c, cout: c },
    { name: 'encoder.middle.2', kind: 'res', cin: c, cout: c },
    { name: 'encoder.head', kind: 'head', cin: c, cout: 2 * s.z_dim },
  );
  return mods;
}

/** Every encoder parameter (the `encoder.*` modules and the 1x1x1 `conv1` after them). */
export function encoderParams(s: WanVaeShape): VaeParamList {
  const z = s.z_dim;
  const p: VaeParamList = [];
  convParams(p, 'conv1', 2 * z, 2 * z, [1, 1, 1]);
  for (const m of encoderLayout(s)) {
    if (m.kind === 'conv') convParams(p, m.name, m.cout, m.cin, [3, 3, 3]);
    else if (m.kind === 'res') residualParams(p, m.name, m.cin, m.cout);
    else if (m.kind === 'attn') attentionParams(p, m.name, m.cin);
    else if (m.kind === 'down3d' || m.kind === 'down2d') {
      convParams(p, `${m.name}.resample.1`, m.cout, m.cin, [3, 3]);
      if (m.kind === 'down3d') convParams(p, `${m.name}.time_conv`, m.cout, m.cin, [3, 1, 1]);
    } else if (m.kind === 'head') {
      p.push({ name: `${m.name}.0.gamma`, shape: [m.cin, 1, 1, 1] });
      convParams(p, `${m.name}.2`, m.cout, m.cin, [3, 3, 3]);
    }
  }
  return p;
}

/** What the VAE's kernels are specialised for (encoder and decoder), for compiler/bundle.ts. */
export function vaeKernelNeeds(s: WanVaeShape): { channels: number[]; convOutputs: number[]; downsample: number[] } {
  const channels = new Set<number>([s.z_dim, 3, 2 * s.z_dim]);
  const outs = new Set<number>();
  const down = new Set<number>();
  for (const m of [...decoderLayout(s), ...encoderLayout(s)]) {
    channels.add(m.cin).add(m.cout);
    if (m.kind === 'attn') channels.add(3 * m.cin);
    if (m.kind === 'conv' || m.kind === 'res' || m.kind === 'head' || m.kind === 'up3d' || m.kind === 'up2d')
      outs.add(m.cout);
    if (m.kind === 'up3d') outs.add(2 * m.cin);
    if (m.kind === 'down3d' || m.kind === 'down2d') {
      outs.add(m.cout);
      down.add(m.cin);
    }
  }
  const sorted = (x: Set<number>) => [...x].sort((a, b) => a - b);
  return { channels: sorted(channels), convOutputs: sorted(outs), downsample: sorted(down) };
}

export class WanVaeEncoder extends VaeModel {
  readonly layout: VaeModule[];

  private constructor(
    device: Device,
    readonly shape: WanVaeShape,
    kernels: VaeKernels,
  ) {
    // the first convolution has 3 input channels: padded to the GEMM's K-slice it still beats 27
    // skinny per-tap GEMMs
    super(device, kernels, 1);
    this.layout = encoderLayout(shape);
  }

  /** Loads the encoder's weights (reference names, e.g. from `Wan2.1_VAE.pth`); checks them all first. */
  static load(
    device: Device,
    shape: WanVaeShape,
    kernels: VaeKernels,
    tensors: ReadonlyMap<string, CheckpointTensor>,
  ): WanVaeEncoder {
    const params = encoderParams(shape);
    checkParams(params, tensors, 'VAE', 'encoder');
    const e = new WanVaeEncoder(device, shape, kernels);
    const special = (n: string) => n.startsWith('conv1.') || /\.resample\.1\.(weight|bias)$/.test(n);
    e.loadParams(
      params.filter((p) => !special(p.name)),
      tensors,
    );
    try {
      e.loadOutput(tensors);
      for (const m of e.layout)
        if (m.kind === 'down3d' || m.kind === 'down2d') e.loadDownsample(`${m.name}.resample.1`, m.cin, tensors);
    } catch (err) {
      e.dispose();
      throw err;
    }
    return e;
  }

  /** `conv1` with the latent normalisation folded in: rows c < Z give (mu_c - mean_c) / std_c. */
  private loadOutput(tensors: ReadonlyMap<string, CheckpointTensor>): void {
    const z = this.shape.z_dim;
    if (z !== WAN_LATENT_MEAN.length)
      throw new SfcError(`the encoder's latent statistics are Wan2.1's (16 channels); the preset has ${z}`);
    const w = readF32(tensors.get('conv1.weight')!, 'conv1.weight');
    const b = readF32(tensors.get('conv1.bias')!, 'conv1.bias');
    for (let c = 0; c < z; c++) {
      const s = 1 / WAN_LATENT_STD[c]!;
      for (let i = 0; i < 2 * z; i++) w[c * 2 * z + i]! *= s;
      b[c] = (b[c]! - WAN_LATENT_MEAN[c]!) * s;
    }
    this.convs.set('conv1', this.convFrom(w, [2 * z, 2 * z, 1, 1, 1], b));
  }

  /**
   * A stride-2 3x3 convolution [C, C, 3, 3] as a stride-1 2x2 convolution over space-to-depth input
   * (4C channels, block q = 2 dy + dx): tap (a, b), channel q C + i holds w[:, i, 2a + dy, 2b + dx]
   * (zero where that is past the kernel).
   */
  private loadDownsample(name: string, C: number, tensors: ReadonlyMap<string, CheckpointTensor>): void {
    const w = readF32(tensors.get(`${name}.weight`)!, `${name}.weight`);
    const out = new Float32Array(C * 4 * C * 4);
    for (let o = 0; o < C; o++)
      for (let q = 0; q < 4; q++)
        for (let i = 0; i < C; i++)
          for (let a = 0; a < 2; a++)
            for (let b = 0; b < 2; b++) {
              const ky = 2 * a + (q >> 1);
              const kx = 2 * b + (q & 1);
              if (ky < 3 && kx < 3)
                out[((o * 4 * C + q * C + i) * 2 + a) * 2 + b] = w[((o * C + i) * 3 + ky) * 3 + kx]!;
            }
    this.convs.set(name, this.convFrom(out, [C, 4 * C, 2, 2], readF32(tensors.get(`${name}.bias`)!, `${name}.bias`)));
  }

  /** An encoding stream: feed it the video's frames in order (1 + 4k frames first, then 4k at a time). */
  stream(): VaeEncodeStream {
    return new VaeEncodeStream(this);
  }

  /** Encodes a whole video [3, 1 + 4k, H, W] (f32 in [-1, 1]) -> latents [Z, 1 + k, H / 8, W / 8]. */
  encode(video: Tensor): Tensor {
    const s = this.stream();
    try {
      return s.encode(video);
    } finally {
      s.dispose();
    }
  }
}

/** Streaming encode state: the histories of every causal convolution. */
export class VaeEncodeStream extends VaeStream {
  private readonly started = new Set<string>();
  /** video frames consumed so far */
  frames = 0;

  constructor(private readonly enc: WanVaeEncoder) {
    super(enc);
  }

  /**
   * Encodes the next frames of the video, f32 [3, T, H, W] in [-1, 1] (T = 1 + 4k for the first
   * call, 4k after) -> normalised latents [Z, frames, H / 8, W / 8] (1 + k, then k).
   */
  encode(video: Tensor): Tensor {
    const e = this.enc;
    if (video.rank !== 4 || video.shape[0] !== 3 || video.dtype !== f32)
      throw new SfcError(`a video to encode is f32 [3, T, H, W], got ${video.toString()}`);
    const [, T, H, W] = video.shape as [number, number, number, number];
    if (H % 8 || W % 8) throw new SfcError(`the encoder needs a height and width divisible by 8, got ${H} x ${W}`);
    const first = this.frames === 0;
    if (first ? (T - 1) % 4 !== 0 : T % 4 !== 0)
      throw new SfcError(
        `the encoder takes ${first ? '1 + 4k frames first' : '4k frames after the first call'}, got ${T}`,
        { hint: 'the reference encodes the first frame alone, then groups of 4' },
      );
    const groups: [number, number][] = [];
    for (let t = 0; t < T;) {
      const n = first && t === 0 ? 1 : 4;
      groups.push([t, n]);
      t += n;
    }
    const Z = e.shape.z_dim;
    const h = H / 8;
    const w = W / 8;
    const out = Tensor.empty(e.device, f32, [Z, groups.length, h, w]);
    const vc = video.contiguous();
    const ownV = vc !== video;
    try {
      for (const [g, [t0, n]] of groups.entries()) {
        const x = this.group(vc, t0, n, T, H, W);
        if (x.shape[0] !== 1) throw new Error(`internal: a group of ${n} frames gave ${x.shape[0]} latent frames`);
        // conv1 (normalisation folded in) and the channels-first latents
        const c1 = e.conv('conv1');
        const xb = this.tmp(bf16, [h * w, 2 * Z]);
        const zero = e.zerosOf(2 * Z);
        launch(e.kernel('castPad', 2 * Z), [h * w], [x, zero, zero, xb, h, w, 0, 0]);
        const y = this.tmp(f32, [h * w, 2 * Z]);
        gemm(whole(xb, 2 * Z), whole(c1.taps, 2 * Z), true, whole(y, 2 * Z), h * w, 2 * Z, 2 * Z, false);
        launch(e.kernel('latentOut', Z), [h * w], [y, c1.bias, out, groups.length, h * w, g]);
        this.release();
      }
    } catch (err) {
      out.dispose();
      throw err;
    } finally {
      if (ownV) vc.dispose();
      this.release();
    }
    this.frames += T;
    return out;
  }

  /** frames [t0, t0 + n) of the video through the encoder's modules -> f32 [T', h, w, 2Z] */
  private group(video: Tensor, t0: number, n: number, frames: number, H: number, W: number): Tensor {
    const e = this.enc;
    let x = this.convOut(
      this.padConv('encoder.conv1', n, H, W, (buf, CP) =>
        launch(e.kernel('videoInPad', 3, CP), [buf.shape[0]!], [video, buf, H, W, frames, t0]),
      ),
    );
    for (const m of e.layout) {
      if (m.kind === 'conv') continue; // encoder.conv1, above
      if (m.kind === 'res') x = this.res(m.name, x, m.cin, m.cout);
      else if (m.kind === 'attn') x = this.attn(m.name, x);
      else if (m.kind === 'down3d' || m.kind === 'down2d') x = this.down(m.name, x, m.kind === 'down3d');
      else if (m.kind === 'head')
        x = this.convOut(this.conv3(`${m.name}.2`, x, { norm: e.vec(`${m.name}.0.gamma`), silu: true }));
      this.release(x);
    }
    return x;
  }

  /** stride-2 3x3 convolution (space to depth, then 2x2) and, for `downsample3d`, the stride-2 temporal one */
  private down(name: string, x: Tensor, temporal: boolean): Tensor {
    const e = this.enc;
    const [T, H, W, C] = x.shape as [number, number, number, number];
    if (H % 2 || W % 2) throw new Error(`internal: downsampling an odd size ${H} x ${W}`);
    const H2 = H / 2;
    const W2 = W / 2;
    const Wp = W2 + 2;
    const frame = (H2 + 2) * Wp;
    const c = e.conv(`${name}.resample.1`);
    const fast = e.implicit(c.cin);
    const CP = fast ? convPitch(c.cin) : c.cin;
    const buf = this.tmp(bf16, [T * frame + Wp + 1, CP]);
    launch(e.kernel('s2dPad', C, CP), [T * frame], [x, buf, H, W]);
    const out = this.tmp(f32, [T * frame, C]);
    if (fast) runConvGemm(e.convGemm(C), { buf, w: c.packed!, out, taps: { x: 2, y: 2, t: 1, py: Wp, pt: 0 } });
    else shiftedGemms(buf, c.taps, [0, 1, Wp, Wp + 1], out, T * frame, C, c.cin);
    const y = this.convOut({ out, T, H: H2, W: W2, name: `${name}.resample.1` });
    if (!temporal) return y;
    const tc = `${name}.time_conv`;
    if (!this.started.has(name)) {
      // the very first frame passes through and starts the stride-2 windows
      this.started.add(name);
      this.remember(tc, y, 1);
      return y;
    }
    const t = this.timeConv(tc, y, 2);
    return this.convOut({ out: t, T: t.shape[0]!, H: H2, W: W2, name: tc }, 0);
  }
}
