// The Wan2.1 VAE decoder, streaming: latents -> pixels one latent frame at a time (the first latent
// frame gives 1 video frame, each later one 4), each causal convolution keeping the last two frames
// of its input, so decoding chunk by chunk gives exactly the pixels of decoding the whole video and
// memory does not grow with its length.
// The convolution machinery (per-tap or implicit GEMMs over padded channels-last buffers, the causal
// histories) is shared with the encoder: models/vae/common.ts.
import { convPitch } from '../../dsl/artifact.js';
import { bf16, f32 } from '../../dsl/dtypes.js';
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
  latentDims,
  residualParams,
  shiftedGemms,
  whole,
  type VaeKernels,
  type VaeParamList,
} from './common.js';

export type { VaeKernels } from './common.js';

/** The preset fields the VAE reads (configs' `vae:` section). */
export interface WanVaeShape {
  z_dim: number;
  base_dim: number;
  dim_mult: readonly number[];
  num_res_blocks: number;
  temporal_downsample: readonly boolean[];
}

export type VaeModule =
  | { name: string; kind: 'conv'; cin: number; cout: number }
  | { name: string; kind: 'res'; cin: number; cout: number }
  | { name: string; kind: 'attn'; cin: number; cout: number }
  | { name: string; kind: 'up3d' | 'up2d'; cin: number; cout: number }
  | { name: string; kind: 'down3d' | 'down2d'; cin: number; cout: number }
  | { name: string; kind: 'head'; cin: number; cout: number };

/** The decoder's modules in order, under the checkpoint's names. */
export function decoderLayout(s: WanVaeShape): VaeModule[] {
  const mult = s.dim_mult;
  const dims = [mult[mult.length - 1]!, ...[...mult].reverse()].map((m) => m * s.base_dim);
  const up = [...s.temporal_downsample].reverse();
  const mods: VaeModule[] = [
    { name: 'decoder.conv1', kind: 'conv', cin: s.z_dim, cout: dims[0]! },
    { name: 'decoder.middle.0', kind: 'res', cin: dims[0]!, cout: dims[0]! },
    { name: 'decoder.middle.1', kind: 'attn', cin: dims[0]!, cout: dims[0]! },
    { name: 'decoder.middle.2', kind: 'res', cin: dims[0]!, cout: dims[0]! },
  ];
  let idx = 0;
  for (let i = 0; i < dims.length - 1; i++) {
    let cin = i > 0 ? dims[i]! / 2 : dims[i]!;
    const cout = dims[i + 1]!;
    for (let r = 0; r < s.num_res_blocks + 1; r++) {
      mods.push({ name: `decoder.upsamples.${idx++}`, kind: 'res', cin, cout });
      cin = cout;
    }
    if (i !== mult.length - 1)
      mods.push({ name: `decoder.upsamples.${idx++}`, kind: up[i] ? 'up3d' : 'up2d', cin: cout, cout: cout / 2 });
  }
  mods.push({ name: 'decoder.head', kind: 'head', cin: dims[dims.length - 1]!, cout: 3 });
  return mods;
}

/** Every decoder parameter: name and shape. */
export function decoderParams(s: WanVaeShape): VaeParamList {
  const z = s.z_dim;
  const p: VaeParamList = [];
  convParams(p, 'conv2', z, z, [1, 1, 1]);
  for (const m of decoderLayout(s)) {
    if (m.kind === 'conv') convParams(p, m.name, m.cout, m.cin, [3, 3, 3]);
    else if (m.kind === 'res') residualParams(p, m.name, m.cin, m.cout);
    else if (m.kind === 'attn') attentionParams(p, m.name, m.cin);
    else if (m.kind === 'up3d' || m.kind === 'up2d') {
      convParams(p, `${m.name}.resample.1`, m.cout, m.cin, [3, 3]);
      if (m.kind === 'up3d') convParams(p, `${m.name}.time_conv`, 2 * m.cin, m.cin, [3, 1, 1]);
    } else {
      p.push({ name: `${m.name}.0.gamma`, shape: [m.cin, 1, 1, 1] });
      convParams(p, `${m.name}.2`, m.cout, m.cin, [3, 3, 3]);
    }
  }
  return p;
}

/** The per-channel latent statistics of Wan2.1's VAE (decoding: z * std + mean). */
export const WAN_LATENT_MEAN = [
  -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632, -0.1922,
  -0.9497, 0.2503, -0.2921,
];
export const WAN_LATENT_STD = [
  2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253,
  2.8251, 1.916,
];

export class WanVaeDecoder extends VaeModel {
  readonly layout: VaeModule[];

  private constructor(
    device: Device,
    readonly shape: WanVaeShape,
    kernels: VaeKernels,
  ) {
    super(device, kernels, 16);
    this.layout = decoderLayout(shape);
  }

  /** Loads the decoder's weights (reference names, e.g. from `Wan2.1_VAE.pth`); checks them all first. */
  static load(
    device: Device,
    shape: WanVaeShape,
    kernels: VaeKernels,
    tensors: ReadonlyMap<string, CheckpointTensor>,
  ): WanVaeDecoder {
    const params = decoderParams(shape);
    checkParams(params, tensors, 'VAE', 'decoder');
    const d = new WanVaeDecoder(device, shape, kernels);
    d.loadParams(params, tensors);
    return d;
  }

  /** A decoding stream: feed it latent chunks in order. */
  stream(): VaeDecodeStream {
    return new VaeDecodeStream(this);
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

/** Streaming decode state: the two-frame histories of every causal convolution. */
export class VaeDecodeStream extends VaeStream {
  private readonly started = new Set<string>();
  private readonly mean: Tensor;
  private readonly std: Tensor;
  /** video frames produced so far */
  frames = 0;

  constructor(private readonly dec: WanVaeDecoder) {
    super(dec);
    this.mean = Tensor.from(dec.device, f32, [16], WAN_LATENT_MEAN);
    this.std = Tensor.from(dec.device, f32, [16], WAN_LATENT_STD);
  }

  override dispose(): void {
    super.dispose();
    this.mean.dispose();
    this.std.dispose();
  }

  /**
   * Decodes the next latent frames z [Z, F, h, w] (f32, normalised as the DiT produces them) ->
   * video [3, frames, 8h, 8w] (f32 in [-1, 1]): 1 + 4 (F - 1) frames for the first chunk of a
   * stream, 4 F after.
   */
  decode(z: Tensor): Tensor {
    const d = this.dec;
    const [F, h, w] = latentDims(z, d.shape.z_dim);
    const outFrames = (this.frames === 0 ? 1 : 4) + 4 * (F - 1);
    const video = Tensor.empty(d.device, f32, [3, outFrames, 8 * h, 8 * w]);
    const zc = z.contiguous();
    const ownZ = zc !== z;
    let t0 = 0;
    try {
      for (let f = 0; f < F; f++) {
        const x = this.frame(zc, F, h, w, f);
        const T = x.shape[0]!;
        const HW = x.shape[1]! * x.shape[2]!;
        launch(d.kernel('toVideo', 3), [Math.ceil((3 * T * HW) / 1024)], [x, video, HW, T, outFrames, t0]);
        t0 += T;
        this.release();
      }
    } catch (e) {
      video.dispose();
      throw e;
    } finally {
      if (ownZ) zc.dispose();
      this.release();
    }
    this.frames += outFrames;
    return video;
  }

  /** one latent frame -> f32 [T, H, W, 3] */
  private frame(z: Tensor, F: number, h: number, w: number, f: number): Tensor {
    const d = this.dec;
    const Z = d.shape.z_dim;
    const zin = this.tmp(bf16, [h * w, Z]);
    launch(d.kernel('latentIn', Z), [h * w], [z, this.mean, this.std, zin, F, h * w, f]);
    const c2 = d.conv('conv2');
    const y = this.tmp(f32, [h * w, Z]);
    gemm(whole(zin, Z), whole(c2.taps, Z), true, whole(y, Z), h * w, Z, Z, false);
    let x = this.tmp(f32, [1, h, w, Z]);
    launch(d.kernel('convBias', Z), [h * w], [y, c2.bias, x, h, w, 0]);
    for (const m of d.layout) {
      if (m.kind === 'conv') x = this.convOut(this.conv3(m.name, x, { norm: undefined, silu: false }));
      else if (m.kind === 'res') x = this.res(m.name, x, m.cin, m.cout);
      else if (m.kind === 'attn') x = this.attn(m.name, x);
      else if (m.kind === 'up3d' || m.kind === 'up2d') x = this.up(m.name, x, m.kind === 'up3d');
      else x = this.convOut(this.conv3(`${m.name}.2`, x, { norm: d.vec(`${m.name}.0.gamma`), silu: true }));
      // only the module's output lives on: memory is that of the largest module, not the sum
      this.release(x);
    }
    return x;
  }

  /** (temporal x2 where it applies, then) nearest x2 spatial upsampling and a 3x3 convolution */
  private up(name: string, x: Tensor, temporal: boolean): Tensor {
    const d = this.dec;
    const [T, H, W, C] = x.shape as [number, number, number, number];
    let src = x;
    let bias = d.zerosOf(C);
    let split = 1;
    if (temporal) {
      if (this.started.has(name)) {
        src = this.timeConv(`${name}.time_conv`, x);
        bias = d.conv(`${name}.time_conv`).bias;
        split = 2;
      } else this.started.add(name); // the first frame passes through, un-doubled
    }
    const T2 = T * split;
    const H2 = 2 * H;
    const W2 = 2 * W;
    const frame = (H2 + 2) * (W2 + 2);
    const slack = 2 * (W2 + 2) + 2;
    const fast = d.implicit(C);
    const CP = fast ? convPitch(C) : C;
    const buf = this.tmp(bf16, [T2 * frame + slack, CP]);
    launch(d.kernel('upsamplePad', C, CP), [T2 * frame], [src, bias, buf, H, W, split]);
    const c = d.conv(`${name}.resample.1`);
    const out = this.tmp(f32, [T2 * frame, c.cout]);
    if (fast)
      runConvGemm(d.convGemm(c.cout), { buf, w: c.packed!, out, taps: { x: 3, y: 3, t: 1, py: W2 + 2, pt: 0 } });
    else {
      const offsets: number[] = [];
      for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) offsets.push(ky * (W2 + 2) + kx);
      shiftedGemms(buf, c.taps, offsets, out, T2 * frame, c.cout, C);
    }
    return this.convOut({ out, T: T2, H: H2, W: W2, name: `${name}.resample.1` });
  }
}
