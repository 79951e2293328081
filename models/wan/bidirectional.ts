// The bidirectional Wan2.1 DiT (Wan's own WanModel): the teacher and critic of Self-Forcing's
// training and the model of the bidirectional samplers. Same parameters, presets and layers as the
// causal model; one forward covers the whole latent video [16, F, h, w] with full (unmasked)
// attention over all F x h/2 x w/2 tokens, RoPE frame positions from 0, and one timestep for the whole
// video (per-frame timesteps are accepted too; the two agree when the frames' timesteps are equal).
//
// That is exactly the causal model's forward of the whole video as ONE chunk at frame 0 on an empty
// cache (inside a chunk attention is unmasked), so this class runs CausalWanModel.forward on a scratch
// KV cache holding the video once, with one k/v buffer shared by all blocks: each block's attention
// consumes its own k/v before the next block writes, so the memory is one block's k/v, not
// num_layers'. The scratch cache is kept between forwards of the same size.
import type { ModelBundle } from '../../dsl/artifact.js';
import { SfcError } from '../../dsl/errors.js';
import type { CheckpointTensor } from '../../runtime/checkpoint/state-dict.js';
import type { Device } from '../../runtime/device.js';
import type { Tensor } from '../../runtime/tensor.js';
import { CausalWanModel, type KvCache, type TextContext, type WanDitShape } from './model.js';

export class WanModel {
  private scratch: KvCache | undefined;

  private constructor(
    /** the causal model whose weights and layers this one runs */
    readonly net: CausalWanModel,
    private readonly owns: boolean,
  ) {}

  /** Builds the model from checkpoint tensors (canonical names), as CausalWanModel.load. */
  static load(
    device: Device,
    shape: WanDitShape,
    bundle: ModelBundle,
    tensors: ReadonlyMap<string, CheckpointTensor>,
  ): WanModel {
    return new WanModel(CausalWanModel.load(device, shape, bundle, tensors), true);
  }

  /** Builds the model from tensors already on the device; takes ownership, as CausalWanModel.fromWeights. */
  static fromWeights(device: Device, shape: WanDitShape, bundle: ModelBundle, w: Map<string, Tensor>): WanModel {
    return new WanModel(CausalWanModel.fromWeights(device, shape, bundle, w), true);
  }

  /** The bidirectional forward over a causal model's weights; `dispose` leaves `net` to its owner. */
  static sharing(net: CausalWanModel): WanModel {
    return new WanModel(net, false);
  }

  get device(): Device {
    return this.net.device;
  }

  get shape(): WanDitShape {
    return this.net.shape;
  }

  /** The text context [S, text_dim] -> per-block cross-attention k/v (as the causal model). */
  encodeContext(context: Tensor): TextContext {
    return this.net.encodeContext(context);
  }

  /**
   * One denoising pass over the whole video: latent [C, F, H, W] (f32) at `timestep` (one value for
   * every frame, or one per frame) -> the predicted flow [C, F, H, W] (f32).
   */
  forward(latent: Tensor, timestep: number | readonly number[], text: TextContext): Tensor {
    const s = this.net.shape;
    if (latent.rank !== 4 || latent.shape[0] !== s.in_dim)
      throw new SfcError(`the latent must be f32 [${s.in_dim}, F, H, W], got ${latent.toString()}`);
    const [, F, H, W] = latent.shape as [number, number, number, number];
    if (H % 2 || W % 2) throw new SfcError(`latent height and width must be even, got ${H} x ${W}`);
    if (typeof timestep === 'number' && !Number.isFinite(timestep))
      throw new SfcError(`the timestep must be a finite number, got ${timestep}`);
    const ts = typeof timestep === 'number' ? new Array<number>(F).fill(timestep) : timestep;
    const cache = this.scratchFor(F, (H / 2) * (W / 2));
    cache.reset();
    return this.net.forward(latent, ts, 0, text, cache);
  }

  /** Frees the scratch k/v (the next forward makes it again). */
  releaseScratch(): void {
    this.scratch?.dispose();
    this.scratch = undefined;
  }

  dispose(): void {
    this.releaseScratch();
    if (this.owns) this.net.dispose();
  }

  private scratchFor(frames: number, frameTokens: number): KvCache {
    const c = this.scratch;
    if (c && c.opts.frameTokens === frameTokens && c.capacity >= frames * frameTokens) return c;
    this.releaseScratch();
    this.scratch = this.net.newCache({ frameTokens, maxFrames: frames, shareLayers: true });
    return this.scratch;
  }
}
