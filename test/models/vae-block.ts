// The Wan VAE's causal residual block two ways, for tests of the layer DSL's convolutions: the VAE's
// own implementation (models/vae/common.ts VaeStream.res, weights as the loaders keep them) and the
// same block written as a layer (conv3d in the VAE's channels-last layout).
import type { HostTensor } from '../../compiler/layer/interp.js';
import { f32 } from '../../dsl/dtypes.js';
import { VaeModel, VaeStream, type VaeKernels } from '../../models/vae/common.js';
import type { Device } from '../../runtime/device.js';
import { Tensor } from '../../runtime/tensor.js';

/**
 * The block as a layer from C to CO channels: x + conv(SiLU(RMS(conv(SiLU(RMS(x)))))), x through a
 * 1x1x1 convolution (the shortcut, inputs ws and bs) when CO != C.
 */
export function resBlockLayer(name: string, C: number, CO = C): string {
  const short = CO !== C;
  return `
export const ${name} = layer(
  (
    x: Tensor<f32, ['T', 'H', 'W', ${C}]>,
    g1: Tensor<f32, [${C}]>, w1: Tensor<bf16, [${CO}, 3, 3, 3, ${C}]>, b1: Tensor<f32, [${CO}]>,
    g2: Tensor<f32, [${CO}]>, w2: Tensor<bf16, [${CO}, 3, 3, 3, ${CO}]>, b2: Tensor<f32, [${CO}]>,${short ? `\n    ws: Tensor<bf16, [${CO}, 1, 1, 1, ${C}]>, bs: Tensor<f32, [${CO}]>,` : ''}
  ) => {
    const h = conv3d(cast(silu(rmsNorm(x, g1, 1e-12)), bf16), w1, b1, { padding: 1, causal: true });
    const y = conv3d(cast(silu(rmsNorm(h, g2, 1e-12)), bf16), w2, b2, { padding: 1, causal: true });
    return y + ${short ? 'conv3d(cast(x, bf16), ws, bs)' : 'x'};
  },
);
`;
}

/** Parameters of one block: x [T, H, W, C]; w1, w2 (ws) in PyTorch's layout [CO, C, 3, 3, 3]. */
export type BlockParams = Record<'x' | 'g1' | 'w1' | 'b1' | 'g2' | 'w2' | 'b2', HostTensor> &
  Partial<Record<'ws' | 'bs', HostTensor>>;

/** A VAE half holding one residual block ('blk'), set up as the checkpoint loaders do. */
export class OneBlock extends VaeModel {
  constructor(device: Device, kernels: VaeKernels, p: BlockParams, C: number, minImplicitChannels = 64) {
    super(device, kernels, minImplicitChannels);
    const f = (t: HostTensor) => Float32Array.from(t.data);
    const CO = p.w1.shape[0]!;
    this.convs.set('blk.residual.2', this.convFrom(f(p.w1), p.w1.shape, f(p.b1)));
    this.convs.set('blk.residual.6', this.convFrom(f(p.w2), p.w2.shape, f(p.b2)));
    if (p.ws && p.bs) this.convs.set('blk.shortcut', this.convFrom(f(p.ws), p.ws.shape, f(p.bs)));
    this.vecs.set('blk.residual.0.gamma', Tensor.from(device, f32, [C], f(p.g1)));
    this.vecs.set('blk.residual.3.gamma', Tensor.from(device, f32, [CO], f(p.g2)));
  }
}

export class BlockStream extends VaeStream {
  /** the block over x (f32 [T, H, W, C]) to CO channels; the result lives until dispose() */
  run(x: Tensor, C: number, CO = C): Tensor {
    return this.res('blk', x, C, CO);
  }
}

/** PyTorch's [Cout, Cin, kt, ky, kx] -> the layer's [Cout, kt, ky, kx, Cin] */
export function toLayerWeight(w: HostTensor): HostTensor {
  const [O, C, kt, ky, kx] = w.shape as [number, number, number, number, number];
  const taps = kt * ky * kx;
  const data = new Float64Array(w.data.length);
  for (let o = 0; o < O; o++)
    for (let c = 0; c < C; c++)
      for (let t = 0; t < taps; t++) data[(o * taps + t) * C + c] = w.data[(o * C + c) * taps + t]!;
  return { shape: [O, kt, ky, kx, C], data };
}

/** The layer's inputs in order. */
export const layerInputs = (p: BlockParams): HostTensor[] => [
  p.x,
  p.g1,
  toLayerWeight(p.w1),
  p.b1,
  p.g2,
  toLayerWeight(p.w2),
  p.b2,
  ...(p.ws && p.bs ? [toLayerWeight(p.ws), p.bs] : []),
];
