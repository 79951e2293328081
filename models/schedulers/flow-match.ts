// The flow-matching scheduler of Self-Forcing (its utils/scheduler.py FlowMatchScheduler, built by the
// Wan wrapper with sigma_min 0 and extra_one_step over 1000 training timesteps). Noise level sigma in
// [0, 1]: x_sigma = (1 - sigma) * x0 + sigma * noise, the network predicts the flow noise - x0, and the
// timestep the network sees is 1000 * sigma after the shift sigma' = shift * sigma / (1 + (shift - 1)
// * sigma). The reference builds its tables in float32 torch arithmetic; so does this file (Math.fround
// after every operation), so the timesteps the model sees and the sigmas the steps use carry the same
// float32 values. Every per-element operation is a linear combination: the methods return its
// coefficients and linear.ts applies them.
import { SfcError } from '../../dsl/errors.js';

const f = Math.fround;

/**
 * torch.linspace(start, end, steps) in float32 as PyTorch defines it: start and end rounded to
 * float32, step = (end - start) / (steps - 1) in float32, the first half counted up from start and
 * the second half down from end. (PyTorch's vectorised CPU kernel counts within each SIMD vector from
 * the vector's first element instead, which moves a few entries by one float32 ulp, e.g. 0.49999994
 * instead of 0.5 at the middle of linspace(1, 0, 1001); no shifted timestep of the Self-Forcing
 * schedule changes by it.)
 */
export function linspaceF32(start: number, end: number, steps: number): Float32Array {
  if (!Number.isInteger(steps) || steps < 0) throw new SfcError(`linspace needs a whole number of steps, got ${steps}`);
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const s = f(start);
  const e = f(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < half ? f(s + f(step * i)) : f(e - f(step * (steps - i - 1)));
  return out;
}

export interface FlowMatchOptions {
  /** default 100 */
  numInferenceSteps?: number;
  /** default 1000 */
  numTrainTimesteps?: number;
  /** default 3 */
  shift?: number;
  /** default 1 */
  sigmaMax?: number;
  /** default 0.003 / 1.002 */
  sigmaMin?: number;
  /** sigmas from low to high noise; default false */
  inverseTimesteps?: boolean;
  /** linspace over steps + 1 points without the last (so sigma_min is never reached); default false */
  extraOneStep?: boolean;
  /** sigma -> 1 - sigma after the shift; default false */
  reverseSigmas?: boolean;
}

/** Coefficients of x_sigma = clean * x0 + noise * noise. */
export interface NoiseCoefs {
  clean: number;
  noise: number;
}

/** Coefficients of an update from a sample and a model output: sample * x + output * model_output. */
export interface UpdateCoefs {
  sample: number;
  output: number;
}

export class FlowMatchScheduler {
  readonly numTrainTimesteps: number;
  readonly shift: number;
  readonly sigmaMax: number;
  readonly sigmaMin: number;
  readonly inverseTimesteps: boolean;
  readonly extraOneStep: boolean;
  readonly reverseSigmas: boolean;
  /** float32 values, one per inference step */
  sigmas: Float32Array = new Float32Array(0);
  /** float32 values, 1000 * sigma */
  timesteps: Float32Array = new Float32Array(0);
  /** the training loss weight of each timestep (after `setTimesteps(n, { training: true })`) */
  trainingWeights: Float32Array | undefined;

  constructor(o: FlowMatchOptions = {}) {
    this.numTrainTimesteps = o.numTrainTimesteps ?? 1000;
    this.shift = o.shift ?? 3;
    this.sigmaMax = o.sigmaMax ?? 1;
    this.sigmaMin = o.sigmaMin ?? 0.003 / 1.002;
    this.inverseTimesteps = o.inverseTimesteps ?? false;
    this.extraOneStep = o.extraOneStep ?? false;
    this.reverseSigmas = o.reverseSigmas ?? false;
    if (!(this.shift > 0)) throw new SfcError(`the scheduler's shift must be positive, got ${this.shift}`);
    if (!Number.isInteger(this.numTrainTimesteps) || this.numTrainTimesteps < 1)
      throw new SfcError(`numTrainTimesteps must be a positive whole number, got ${this.numTrainTimesteps}`);
    this.setTimesteps(o.numInferenceSteps ?? 100);
  }

  /**
   * The scheduler Self-Forcing's generator uses (WanDiffusionWrapper): sigma_min 0, extra_one_step,
   * 1000 steps with training weights, so timesteps[i] = 1000 * shifted(1 - i / 1000).
   */
  static selfForcing(shift: number): FlowMatchScheduler {
    const s = new FlowMatchScheduler({ shift, sigmaMin: 0, extraOneStep: true });
    s.setTimesteps(1000, { training: true });
    return s;
  }

  setTimesteps(numInferenceSteps: number, o: { denoisingStrength?: number; training?: boolean } = {}): void {
    const n = numInferenceSteps;
    if (!Number.isInteger(n) || n < 1) throw new SfcError(`the number of inference steps must be >= 1, got ${n}`);
    const strength = o.denoisingStrength ?? 1;
    if (!(strength >= 0 && strength <= 1)) throw new SfcError(`denoising strength must be in [0, 1], got ${strength}`);
    const start = this.sigmaMin + (this.sigmaMax - this.sigmaMin) * strength;
    let sigmas = this.extraOneStep
      ? linspaceF32(start, this.sigmaMin, n + 1).slice(0, n)
      : linspaceF32(start, this.sigmaMin, n);
    if (this.inverseTimesteps) sigmas = sigmas.reverse();
    const shift = f(this.shift);
    sigmas = sigmas.map((s) => f(f(shift * s) / f(1 + f(f(shift - 1) * s))));
    if (this.reverseSigmas) sigmas = sigmas.map((s) => f(1 - s));
    this.sigmas = sigmas;
    this.timesteps = sigmas.map((s) => f(s * this.numTrainTimesteps));
    this.trainingWeights = o.training ? trainingWeights(this.timesteps, n) : undefined;
  }

  /**
   * The index of the scheduler timestep nearest to `t` (|timesteps - t| in float32, the first of
   * equals), as every method of the reference looks a timestep up.
   */
  index(t: number): number {
    if (!Number.isFinite(t)) throw new SfcError(`timestep ${t} is not a finite number`);
    const q = f(t);
    let best = 0;
    let bestD = Infinity;
    for (let i = 0; i < this.timesteps.length; i++) {
      const d = Math.abs(f(this.timesteps[i]! - q));
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    }
    return best;
  }

  /** sigma at timestep t (nearest scheduler timestep) */
  sigma(t: number): number {
    return this.sigmas[this.index(t)]!;
  }

  /** Per-frame sigmas for per-frame timesteps (the sigma table the flow kernels take). */
  sigmasFor(timesteps: readonly number[]): Float32Array {
    return Float32Array.from(timesteps, (t) => this.sigma(t));
  }

  /** add_noise: x_t = (1 - sigma) * clean + sigma * noise. */
  addNoise(t: number): NoiseCoefs {
    const s = this.sigma(t);
    return { clean: f(1 - s), noise: s };
  }

  /**
   * step: one Euler step of the flow ODE to the next scheduler sigma (or to the end: sigma 0, or 1
   * for inverted / reversed schedules, when `toFinal` or at the last timestep):
   * x_next = x + (sigma_next - sigma) * flow.
   */
  step(t: number, toFinal = false): UpdateCoefs {
    const i = this.index(t);
    const s = this.sigmas[i]!;
    const next =
      toFinal || i + 1 >= this.sigmas.length
        ? this.inverseTimesteps || this.reverseSigmas
          ? 1
          : 0
        : this.sigmas[i + 1]!;
    return { sample: 1, output: f(next - s) };
  }

  /** The flow prediction as an x0 prediction: x0 = x_t - sigma * flow. */
  flowToX0(t: number): UpdateCoefs {
    return { sample: 1, output: -this.sigma(t) };
  }

  /**
   * An x0 prediction as a flow prediction: flow = (x_t - x0) / sigma. Returned as coefficients of
   * x_t (`sample`) and x0 (`output`); sigma must not be 0.
   */
  x0ToFlow(t: number): UpdateCoefs {
    const s = this.sigma(t);
    if (s === 0) throw new SfcError(`x0 -> flow is undefined at sigma 0 (timestep ${t})`);
    return { sample: 1 / s, output: -1 / s };
  }

  /** The training target of a flow model: noise - x0 (coefficients of noise and x0). */
  trainingTarget(): NoiseCoefs {
    return { clean: -1, noise: 1 };
  }

  /** The loss weight at timestep t (needs `setTimesteps(n, { training: true })`). */
  trainingWeight(t: number): number {
    if (!this.trainingWeights)
      throw new SfcError('this scheduler has no training weights (call setTimesteps with training: true)');
    return this.trainingWeights[this.index(t)]!;
  }

  /**
   * The causal pipeline's warp_denoising_step: each step t of the configured denoising_step_list
   * (whole numbers in [0, 1000]) becomes [...timesteps, 0][1000 - t], the scheduler timestep whose
   * unshifted sigma is t / 1000 (for the 1000-step Self-Forcing scheduler).
   */
  warpDenoisingSteps(list: readonly number[]): number[] {
    const table = [...this.timesteps, 0];
    return list.map((t) => {
      const i = this.numTrainTimesteps - t;
      if (!Number.isInteger(t) || i < 0 || i >= table.length)
        throw new SfcError(
          `denoising step ${t} cannot be warped: steps must be whole numbers from ${this.numTrainTimesteps - table.length + 1} to ${this.numTrainTimesteps}`,
        );
      return table[i]!;
    });
  }
}

/**
 * The reference's bell-shaped weights over the timesteps: y = exp(-2 ((t - n/2) / n)^2), shifted so
 * the smallest is 0 and scaled to sum to n (float32 elementwise; the sum in double precision).
 */
function trainingWeights(timesteps: Float32Array, n: number): Float32Array {
  const y = timesteps.map((t) => {
    const u = f(f(t - n / 2) / n);
    return f(Math.exp(f(-2 * f(u * u))));
  });
  let min = Infinity;
  for (const v of y) min = Math.min(min, v);
  const shifted = y.map((v) => f(v - min));
  let sum = 0;
  for (const v of shifted) sum += v;
  if (!(sum > 0)) throw new SfcError('the training weights are all zero (a one-step schedule has no weights)');
  const scale = f(n / f(sum));
  return shifted.map((v) => f(v * scale));
}
