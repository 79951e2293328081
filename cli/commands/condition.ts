// Conditioning media for `sfc infer`: an image (i2v) or a video (extension, v2v) read, resized to the
// run's size and encoded into normalised latents by the VAE encoder. Videos stream: frames are read
// and encoded in the encoder's groups (the first frame, then 4 at a time), so only the latents (16
// channels at 1/8 the size, per 4 frames) accumulate, never the video.
import { f32 } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import { readMediaTensor, readVideo, resizeRgb, rgbToTensorData, type RgbImage } from '../../media/input.js';
import type { WanVaeEncoder } from '../../models/vae/encoder.js';
import { Tensor } from '../../runtime/tensor.js';

/** An image as one latent frame [16, 1, height / 8, width / 8] (stretched to the size, as the reference does). */
export async function imageLatent(enc: WanVaeEncoder, path: string, width: number, height: number): Promise<Tensor> {
  const m = await readMediaTensor(path, { width, height, maxFrames: 1 });
  const video = Tensor.from(enc.device, f32, [3, 1, height, width], m.data);
  try {
    return enc.encode(video);
  } finally {
    video.dispose();
  }
}

/**
 * The first `maxLatent` latent frames of a video (1 + 4 (F - 1) of its frames, fewer if it is
 * shorter) -> [16, F, height / 8, width / 8]. `onFrames` reports progress in video frames.
 */
export async function videoLatents(
  enc: WanVaeEncoder,
  path: string,
  width: number,
  height: number,
  maxLatent: number,
  onFrames?: (n: number) => void,
): Promise<Tensor> {
  const maxFrames = 1 + 4 * (maxLatent - 1);
  const stream = enc.stream();
  const parts: Float32Array[] = [];
  const Z = enc.shape.z_dim;
  const hw = (height / 8) * (width / 8);
  let group: RgbImage[] = [];
  let read = 0;
  const flush = () => {
    const data = rgbToTensorData(
      group.map((f) => ({ rgb: resizeRgb(f.rgb, f.width, f.height, width, height) })),
      width,
      height,
    );
    const video = Tensor.from(enc.device, f32, [3, group.length, height, width], data);
    try {
      const z = stream.encode(video);
      parts.push(z.toF32());
      z.dispose();
    } finally {
      video.dispose();
    }
    group = [];
  };
  try {
    for await (const frame of readVideo(path, { maxFrames })) {
      group.push(frame);
      read++;
      if (group.length === (parts.length === 0 ? 1 : 4)) {
        flush();
        onFrames?.(read);
      }
    }
  } finally {
    stream.dispose();
  }
  if (parts.length === 0) throw new SfcError(`${path} holds no frames`);
  // a trailing partial group (fewer than 4 frames) is dropped: it makes no whole latent frame
  const F = parts.length;
  const out = new Float32Array(Z * F * hw);
  parts.forEach((p, f) => {
    for (let c = 0; c < Z; c++) out.set(p.subarray(c * hw, (c + 1) * hw), (c * F + f) * hw);
  });
  return Tensor.from(enc.device, f32, [Z, F, height / 8, width / 8], out);
}
