// Flow-matching steps on latents (float32), one program per BLOCK elements. Each latent frame has its
// own sigma (a causal model denoises one timestep per frame); `frameSize` elements share one sigma.
// The re-noise step draws its Gaussian noise in the kernel (Philox: (seed, element) -> noise), so
// noise generation costs no extra pass and no noise tensor.
import {
  arange,
  bf16,
  cast,
  idiv,
  kernel,
  load,
  programId,
  randn,
  store,
  type Const,
  type f32,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';

/** x0 = x_t - sigma[f] * flow (the network predicts the flow) */
export const flowToX0 = kernel(
  (xt: Ptr<f32>, flow: Ptr<f32>, sigma: Ptr<f32>, x0: Ptr<f32>, n: i32, frameSize: i32, BLOCK: Const<1024>) => {
    const i = programId(0) * BLOCK + arange(0, BLOCK);
    const m = i < n;
    const s = load(sigma, idiv(i, frameSize), m, 0);
    store(x0, i, load(xt, i, m, 0) - s * load(flow, i, m, 0), m);
  },
);

/** x_t = (1 - sigma[f]) * x0 + sigma[f] * noise, noise = randn(seed, offset + i) */
export const renoise = kernel(
  (x0: Ptr<f32>, sigma: Ptr<f32>, xt: Ptr<f32>, n: i32, frameSize: i32, seed: i32, offset: i32, BLOCK: Const<1024>) => {
    const i = programId(0) * BLOCK + arange(0, BLOCK);
    const m = i < n;
    const s = load(sigma, idiv(i, frameSize), m, 0);
    store(xt, i, (1 - s) * load(x0, i, m, 0) + s * randn(seed, offset + i), m);
  },
);

/** out = randn(seed, offset + i): the initial noise of a chunk */
export const randnFill = kernel((out: Ptr<f32>, n: i32, seed: i32, offset: i32, BLOCK: Const<1024>) => {
  const i = programId(0) * BLOCK + arange(0, BLOCK);
  store(out, i, randn(seed, offset + i), i < n);
});

/** out = mean + std * randn(seed, offset + i) in bf16: random weights made on the device */
export const randnAffineBf16 = kernel(
  (out: Ptr<bf16>, n: i32, seed: i32, offset: i32, std: f32, mean: f32, BLOCK: Const<1024>) => {
    const i = programId(0) * BLOCK + arange(0, BLOCK);
    store(out, i, cast(mean + std * randn(seed, offset + i), bf16), i < n);
  },
);

/** out = mean + std * randn(seed, offset + i) in f32 */
export const randnAffineF32 = kernel(
  (out: Ptr<f32>, n: i32, seed: i32, offset: i32, std: f32, mean: f32, BLOCK: Const<1024>) => {
    const i = programId(0) * BLOCK + arange(0, BLOCK);
    store(out, i, mean + std * randn(seed, offset + i), i < n);
  },
);
