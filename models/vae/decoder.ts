// The Wan2.1 VAE decoder, streaming: latents -> pixels one latent frame at a time (the first latent
// frame gives 1 video frame, each later one 4), each causal convolution keeping the last two frames
// of its input, so decoding chunk by chunk gives exactly the pixels of decoding the whole video and
// memory does not grow with its length.
//
// Activations are channels-last f32 ([T, H, W, C]). A convolution with a 3x3 spatial kernel reads a
// zero-padded bf16 buffer [2 + T, H + 2, W + 2, C] whose first two frames are its history, and runs
// as one GEMM per kernel tap over the buffer shifted by the tap's offset (cuBLASLt, accumulating in
// f32; a CPU loop on the CPU device); its output lives on the padded grid and the next kernel reads
// the valid pixels (models/kernels/vae.ts fuses bias, residual, RMS norm, SiLU and upsampling there).
import { convPitch, convTile, type GemmArtifact, type KernelArtifact } from '../../dsl/artifact.js';
import { bf16, f32, u8 } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import type { CheckpointTensor } from '../../runtime/checkpoint/state-dict.js';
import { decode, encodeInto, rawArray } from '../../runtime/convert.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { CudaDevice } from '../../runtime/cuda.js';
import type { Device } from '../../runtime/device.js';
import { runConvGemm } from '../../runtime/gemm.js';
import { launch } from '../../runtime/kernels.js';
import { CudaDataType } from '../../runtime/native/api.js';
import { Tensor, fmtShape } from '../../runtime/tensor.js';

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

/** Every decoder parameter: name, shape, and whether it is a conv weight (kept per tap in bf16). */
export function decoderParams(s: WanVaeShape): { name: string; shape: number[] }[] {
  const z = s.z_dim;
  const p: { name: string; shape: number[] }[] = [
    { name: 'conv2.weight', shape: [z, z, 1, 1, 1] },
    { name: 'conv2.bias', shape: [z] },
  ];
  const conv = (name: string, cout: number, cin: number, k: number[]) => {
    p.push({ name: `${name}.weight`, shape: [cout, cin, ...k] }, { name: `${name}.bias`, shape: [cout] });
  };
  for (const m of decoderLayout(s)) {
    if (m.kind === 'conv') conv(m.name, m.cout, m.cin, [3, 3, 3]);
    else if (m.kind === 'res') {
      p.push({ name: `${m.name}.residual.0.gamma`, shape: [m.cin, 1, 1, 1] });
      conv(`${m.name}.residual.2`, m.cout, m.cin, [3, 3, 3]);
      p.push({ name: `${m.name}.residual.3.gamma`, shape: [m.cout, 1, 1, 1] });
      conv(`${m.name}.residual.6`, m.cout, m.cout, [3, 3, 3]);
      if (m.cin !== m.cout) conv(`${m.name}.shortcut`, m.cout, m.cin, [1, 1, 1]);
    } else if (m.kind === 'attn') {
      p.push({ name: `${m.name}.norm.gamma`, shape: [m.cin, 1, 1] });
      conv(`${m.name}.to_qkv`, 3 * m.cin, m.cin, [1, 1]);
      conv(`${m.name}.proj`, m.cin, m.cin, [1, 1]);
    } else if (m.kind === 'up3d' || m.kind === 'up2d') {
      conv(`${m.name}.resample.1`, m.cout, m.cin, [3, 3]);
      if (m.kind === 'up3d') conv(`${m.name}.time_conv`, 2 * m.cin, m.cin, [3, 1, 1]);
    } else {
      p.push({ name: `${m.name}.0.gamma`, shape: [m.cin, 1, 1, 1] });
      conv(`${m.name}.2`, m.cout, m.cin, [3, 3, 3]);
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

/**
 * Kernel artifacts of models/kernels/vae.ts per channel count (`${name}:${C}`, and `${name}:${C}p${CP}`
 * writing buffers padded to CP channels), and the sm_90a convolution GEMMs per output tile width.
 */
export interface VaeKernels {
  kernels: Record<string, KernelArtifact>;
  convGemms: Record<string, GemmArtifact>;
}

/** Output channel counts of the decoder's 3x3 (and temporal) convolutions. */
export function vaeConvOutputs(s: WanVaeShape): number[] {
  const cs = new Set<number>();
  for (const m of decoderLayout(s)) {
    if (m.kind === 'conv' || m.kind === 'res' || m.kind === 'head') cs.add(m.cout);
    if (m.kind === 'up3d' || m.kind === 'up2d') cs.add(m.cout);
    if (m.kind === 'up3d') cs.add(2 * m.cin);
  }
  return [...cs].sort((a, b) => a - b);
}

/** The channel counts the decoder's kernels are specialised for. */
export function vaeChannelCounts(s: WanVaeShape): number[] {
  const cs = new Set<number>([s.z_dim, 3]);
  for (const m of decoderLayout(s)) {
    cs.add(m.cin).add(m.cout);
    if (m.kind === 'attn') cs.add(3 * m.cin);
  }
  return [...cs].sort((a, b) => a - b);
}

// ---- GEMMs over row-major views -----------------------------------------------------------------

interface MatView {
  t: Tensor;
  /** element offset into t */
  off: number;
  ld: number;
}

/** c (f32) [m, n] = a (bf16) [m, k] . op(b) (+ c when accumulate); op(b) = b^T for b [n, k], else b [k, n] */
function gemm(
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

const whole = (t: Tensor, ld: number, off = 0): MatView => ({ t, off, ld });

/**
 * out (f32 [M, cout]) = sum over taps i of buf[offsets[i] + row] (bf16, rows of cin) . taps[i]^T:
 * a convolution as shifted GEMMs (one cuBLASLt call per tap on CUDA; one pass on the CPU).
 */
function shiftedGemms(
  buf: Tensor,
  taps: Tensor,
  offsets: readonly number[],
  out: Tensor,
  M: number,
  cout: number,
  cin: number,
): void {
  const dev = buf.device;
  if (dev instanceof CudaDevice) {
    offsets.forEach((off, i) =>
      gemm(whole(buf, cin, off * cin), whole(taps, cin, i * cout * cin), true, whole(out, cout), M, cout, cin, i > 0),
    );
    return;
  }
  const a = buf.toF32();
  const w = taps.toF32();
  const acc = new Float32Array(M * cout);
  offsets.forEach((off, t) => {
    for (let r = 0; r < M; r++) {
      const ar = (off + r) * cin;
      for (let o = 0; o < cout; o++) {
        const wr = (t * cout + o) * cin;
        let s = 0;
        for (let p = 0; p < cin; p++) s += a[ar + p]! * w[wr + p]!;
        acc[r * cout + o]! += s;
      }
    }
  });
  dev.write(out.storage, out.byteOffset, new Uint8Array(acc.buffer));
}

// ---- weights ---------------------------------------------------------------------------------------

interface Conv {
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

function readF32(t: CheckpointTensor, name: string): Float32Array {
  if (!t.dtype || !t.dtype.isFloat)
    throw new SfcError(`'${name}' is ${t.fileDtype}; a floating-point tensor is needed`);
  let bytes = t.read();
  if (bytes.byteOffset % t.dtype.bytes !== 0) bytes = bytes.slice();
  const n = t.shape.reduce((x, y) => x * y, 1);
  return decode(t.dtype, rawArray(t.dtype, bytes.buffer, bytes.byteOffset, n)) as Float32Array;
}

export class WanVaeDecoder {
  private readonly convs = new Map<string, Conv>();
  private readonly vecs = new Map<string, Tensor>();
  private readonly zeros = new Map<number, Tensor>();
  readonly layout: VaeModule[];

  private constructor(
    readonly device: Device,
    readonly shape: WanVaeShape,
    readonly kernels: VaeKernels,
  ) {
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
    const bad: string[] = [];
    for (const p of params) {
      const t = tensors.get(p.name);
      if (!t) bad.push(`missing '${p.name}'`);
      else if (t.shape.join() !== p.shape.join())
        bad.push(`'${p.name}' is ${fmtShape(t.shape)}, the decoder needs ${fmtShape(p.shape)}`);
    }
    if (bad.length)
      throw new SfcError(
        `the VAE checkpoint does not fit the decoder (${bad.length} problems): ${bad.slice(0, 4).join('; ')}${bad.length > 4 ? '; ...' : ''}`,
      );
    const d = new WanVaeDecoder(device, shape, kernels);
    try {
      for (const p of params) {
        const t = tensors.get(p.name)!;
        const v = readF32(t, p.name);
        if (p.name.endsWith('.weight'))
          d.convs.set(
            p.name.slice(0, -'.weight'.length),
            d.convFrom(v, p.shape, readF32(tensors.get(p.name.replace(/weight$/, 'bias'))!, p.name)),
          );
        else if (p.name.endsWith('.gamma')) d.vecs.set(p.name, Tensor.from(device, f32, [p.shape[0]!], v));
      }
    } catch (e) {
      d.dispose();
      throw e;
    }
    return d;
  }

  private convFrom(w: Float32Array, shape: number[], bias: Float32Array): Conv {
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
      packed: taps > 1 && this.implicit(cin) ? this.packed(out, taps, cout, cin) : undefined,
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
      cin >= 16
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
export class VaeDecodeStream {
  private readonly hist = new Map<string, Tensor>();
  private readonly started = new Set<string>();
  private temps: Tensor[] = [];
  private readonly mean: Tensor;
  private readonly std: Tensor;
  /** video frames produced so far */
  frames = 0;

  constructor(private readonly d: WanVaeDecoder) {
    this.mean = Tensor.from(d.device, f32, [16], WAN_LATENT_MEAN);
    this.std = Tensor.from(d.device, f32, [16], WAN_LATENT_STD);
  }

  dispose(): void {
    for (const t of [...this.hist.values(), this.mean, this.std]) t.dispose();
    this.hist.clear();
  }

  private tmp(dtype: typeof f32 | typeof bf16, shape: number[]): Tensor {
    const t = Tensor.empty(this.d.device, dtype, shape);
    this.temps.push(t);
    return t;
  }

  /**
   * Decodes the next latent frames z [Z, F, h, w] (f32, normalised as the DiT produces them) ->
   * video [3, frames, 8h, 8w] (f32 in [-1, 1]): 1 + 4 (F - 1) frames for the first chunk of a
   * stream, 4 F after.
   */
  decode(z: Tensor): Tensor {
    const d = this.d;
    const Z = d.shape.z_dim;
    if (z.rank !== 4 || z.shape[0] !== Z || z.dtype !== f32)
      throw new SfcError(`the latents must be f32 [${Z}, F, h, w], got ${z.toString()}`);
    const [, F, h, w] = z.shape as [number, number, number, number];
    const outFrames = (this.frames === 0 ? 1 : 4) + 4 * (F - 1);
    const video = Tensor.empty(d.device, f32, [3, outFrames, 8 * h, 8 * w]);
    const zc = z.contiguous();
    let t0 = 0;
    try {
      for (let f = 0; f < F; f++) {
        const x = this.frame(zc, F, h, w, f);
        const T = x.shape[0]!;
        const HW = x.shape[1]! * x.shape[2]!;
        launch(d.kernel('toVideo', 3), [Math.ceil((3 * T * HW) / 1024)], [x, video, HW, T, outFrames, t0]);
        t0 += T;
        for (const t of this.temps) t.dispose();
        this.temps = [];
      }
    } catch (e) {
      video.dispose();
      throw e;
    } finally {
      for (const t of this.temps) t.dispose();
      this.temps = [];
    }
    this.frames += outFrames;
    return video;
  }

  /** one latent frame -> f32 [T, H, W, 3] */
  private frame(z: Tensor, F: number, h: number, w: number, f: number): Tensor {
    const d = this.d;
    const Z = d.shape.z_dim;
    const zin = this.tmp(bf16, [h * w, Z]);
    launch(d.kernel('latentIn', Z), [h * w], [z, this.mean, this.std, zin, F, h * w, f]);
    const c2 = d.conv('conv2');
    const y = this.tmp(f32, [h * w, Z]);
    gemm(whole(zin, Z), whole(c2.taps, Z), true, whole(y, Z), h * w, Z, Z, false);
    let x = this.tmp(f32, [1, h, w, Z]);
    launch(d.kernel('convBias', Z), [h * w], [y, c2.bias, x, h, w, 0]);
    for (const m of d.layout) {
      if (m.kind === 'conv') x = this.convOut(m.name, this.conv3(m.name, x, { norm: undefined, silu: false }));
      else if (m.kind === 'res') x = this.res(m.name, x, m.cin, m.cout);
      else if (m.kind === 'attn') x = this.attn(m.name, x);
      else if (m.kind === 'up3d' || m.kind === 'up2d') x = this.up(m.name, x, m.kind === 'up3d');
      else
        x = this.convOut(`${m.name}.2`, this.conv3(`${m.name}.2`, x, { norm: d.vec(`${m.name}.0.gamma`), silu: true }));
      // only the module's output lives on: memory is that of the largest module, not the sum
      for (const t of this.temps) if (t !== x) t.dispose();
      this.temps = [x];
    }
    return x;
  }

  /**
   * A causal 3x3x3 convolution of act(src) over the stream: returns its output on the padded grid
   * (f32 [T (H + 2) (W + 2), cout]) with the shape of src. src is f32 [T, H, W, cin], or a previous
   * convolution's padded-grid output (with `grid`, plus that convolution's bias before act).
   */
  private conv3(
    name: string,
    src: Tensor,
    act: { norm: Tensor | undefined; silu: boolean; bias?: Tensor },
    grid?: { T: number; H: number; W: number },
  ): { out: Tensor; T: number; H: number; W: number; name: string } {
    const d = this.d;
    const c = d.conv(name);
    const [T, H, W] = grid ? [grid.T, grid.H, grid.W] : (src.shape.slice(0, 3) as [number, number, number]);
    const Hp = H + 2;
    const Wp = W + 2;
    const frame = Hp * Wp;
    const slack = 2 * Wp + 2;
    const fast = d.implicit(c.cin);
    const CP = fast ? convPitch(c.cin) : c.cin;
    const buf = this.tmp(bf16, [(T + 2) * frame + slack, CP]);
    const hist = this.history(name, 2 * frame, CP);
    d.device.copy(buf.storage, buf.byteOffset, hist.storage, hist.byteOffset, hist.nbytes);
    const k = act.norm ? (act.silu ? 'normActPad' : 'normPad') : act.silu ? 'siluPad' : 'castPad';
    launch(
      d.kernel(k, c.cin, CP),
      [T * frame],
      [
        src,
        act.bias ?? d.zerosOf(c.cin),
        act.norm ?? d.zerosOf(c.cin),
        buf.narrow(0, 2 * frame, T * frame),
        H,
        W,
        grid ? 1 : 0,
        1,
      ],
    );
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

  private convOut(name: string, o: { out: Tensor; T: number; H: number; W: number }): Tensor {
    const c = this.d.conv(name);
    const x = this.tmp(f32, [o.T, o.H, o.W, c.cout]);
    launch(this.d.kernel('convBias', c.cout), [o.T * o.H * o.W], [o.out, c.bias, x, o.H, o.W, 2]);
    return x;
  }

  private res(name: string, x: Tensor, cin: number, cout: number): Tensor {
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

  private attn(name: string, x: Tensor): Tensor {
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
    }
    return out;
  }

  /** (temporal x2 where it applies, then) nearest x2 spatial upsampling and a 3x3 convolution */
  private up(name: string, x: Tensor, temporal: boolean): Tensor {
    const d = this.d;
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
    return this.convOut(`${name}.resample.1`, { out, T: T2, H: H2, W: W2 });
  }

  /** the (3, 1, 1) temporal convolution over the stream (from its second frame on): f32 [T, H, W, 2C] */
  private timeConv(name: string, x: Tensor): Tensor {
    const d = this.d;
    const c = d.conv(name);
    const [T, H, W] = x.shape as [number, number, number, number];
    const frame = H * W;
    const fast = d.implicit(c.cin);
    const CP = fast ? convPitch(c.cin) : c.cin;
    const buf = this.tmp(bf16, [(T + 2) * frame, CP]);
    const hist = this.history(name, 2 * frame, CP);
    d.device.copy(buf.storage, buf.byteOffset, hist.storage, hist.byteOffset, hist.nbytes);
    const z = d.zerosOf(c.cin);
    launch(d.kernel('castPad', c.cin, CP), [T * frame], [x, z, z, buf.narrow(0, 2 * frame, T * frame), H, W, 0, 0]);
    d.device.copy(hist.storage, hist.byteOffset, buf.storage, buf.byteOffset + T * frame * CP * 2, hist.nbytes);
    const out = this.tmp(f32, [T * frame, c.cout]);
    if (fast) runConvGemm(d.convGemm(c.cout), { buf, w: c.packed!, out, taps: { x: 1, y: 1, t: 3, py: 0, pt: frame } });
    else shiftedGemms(buf, c.taps, [0, frame, 2 * frame], out, T * frame, c.cout, c.cin);
    return out.reshape([T, H, W, c.cout]);
  }

  /** The two-frame history of a causal convolution ([2 * frame, CP] bf16, zeros at the start). */
  private history(name: string, rows: number, cp: number): Tensor {
    let hist = this.hist.get(name);
    if (!hist || hist.shape[0] !== rows || hist.shape[1] !== cp) {
      hist?.dispose();
      hist = Tensor.zeros(this.d.device, bf16, [rows, cp]);
      this.hist.set(name, hist);
    }
    return hist;
  }
}
