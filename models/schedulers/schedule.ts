// The sampling schedules of Wan2.1's bidirectional pipelines (wan/text2video.py and friends), which
// both multistep solvers step through. Both build the sigmas in double precision (numpy), shift them,
// hand the model integer timesteps (1000 * sigma truncated toward zero) and keep the sigmas, with a
// final 0, as float32:
//   UniPC  (set_timesteps(steps, shift)): linspace(sigma_max, 0, steps + 1)[:-1] with sigma_max =
//          float32(1 - 1/1000) = 0.999..., the largest sigma of the solver's 1000-step training table;
//   DPM++  (get_sampling_sigmas + retrieve_timesteps(sigmas=...)): linspace(1, 0, steps + 1)[:steps],
//          so the first step starts from pure noise at sigma 1.
import { SfcError } from '../../dsl/errors.js';

export type WanSolverName = 'unipc' | 'dpm++';

export interface SamplingSchedule {
  /** steps + 1 float32 values: the sigma of each model evaluation, then 0 */
  sigmas: number[];
  /** the timestep the model sees at each step */
  timesteps: number[];
}

/** numpy.linspace(start, stop, num) in double precision: i * step + start, the last point exactly stop. */
export function linspaceF64(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out = Array.from({ length: num }, (_, i) => i * step + start);
  out[num - 1] = stop;
  return out;
}

/** sigma' = shift * sigma / (1 + (shift - 1) * sigma), as numpy evaluates it */
export function shiftSigma(sigma: number, shift: number): number {
  return (shift * sigma) / (1 + (shift - 1) * sigma);
}

/** Wan's schedule for `steps` model evaluations with `shift` (its `--sample_shift`). */
export function wanSchedule(
  solver: WanSolverName,
  steps: number,
  shift: number,
  numTrainTimesteps = 1000,
): SamplingSchedule {
  if (!Number.isInteger(steps) || steps < 1) throw new SfcError(`sampling steps must be >= 1, got ${steps}`);
  if (!(shift > 0) || !Number.isFinite(shift)) throw new SfcError(`the sampling shift must be positive, got ${shift}`);
  let start: number;
  if (solver === 'unipc') start = Math.fround(1 - 1 / numTrainTimesteps);
  else if (solver === 'dpm++') start = 1;
  else throw new SfcError(`unknown solver '${String(solver)}' (known: unipc, dpm++)`);
  const sigmas = linspaceF64(start, 0, steps + 1)
    .slice(0, steps)
    .map((s) => shiftSigma(s, shift));
  return {
    sigmas: [...sigmas.map((s) => Math.fround(s)), 0],
    timesteps: sigmas.map((s) => Math.trunc(s * numTrainTimesteps)),
  };
}
