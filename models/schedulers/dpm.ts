// DPM-Solver++ multistep for flow matching, as Wan2.1 samples with `--sample_solver dpm++`
// (wan/utils/fm_solvers.py, FlowDPMSolverMultistepScheduler: diffusers' DPMSolverMultistepScheduler
// with alpha = 1 - sigma). Data prediction x0 = x - sigma * flow; order 2 ("DPM++ 2M", midpoint) by
// default; the first step is first order (no history yet) and so is the last (final sigma 0, where
// the update is x0 itself). Per step two linear combinations: the x0 prediction, then the update
//   first order:  x_t = (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) m0
//   second order: ... - 0.5 alpha_t (e^{-h} - 1) D1 (midpoint) or + alpha_t ((e^{-h} - 1) / h + 1) D1
//                 (heun), D1 = (m0 - m1) / r0, r0 = h_prev / h
//   third order:  the reference's dpmsolver++ third-order formula with D1, D2.
// h = lambda_t - lambda_s with lambda = log((1 - sigma) / sigma). A first sigma of 1 (lambda = -inf)
// is fine: h and r0 become infinite and the terms they scale vanish, as in the reference.
import { SfcError } from '../../dsl/errors.js';
import {
  OUTPUT,
  RESULT,
  SAMPLE,
  type LinearOp,
  type MultistepSolver,
  type StepPlan,
  type Term,
  term,
} from './linear.js';
import type { SamplingSchedule } from './schedule.js';
import { checkSchedule, flowLambda } from './unipc.js';

export interface DpmSolverOptions {
  /** 1, 2 (Wan's setting, the default) or 3 */
  order?: number;
  /** lower orders for the last steps of short schedules (< 15 steps); default true */
  lowerOrderFinal?: boolean;
  /** first order at the final step whatever the schedule length; default false */
  eulerAtFinal?: boolean;
  /** the second-order formula: 'midpoint' (default) or 'heun' */
  solverType?: 'midpoint' | 'heun';
}

const x0Name = (i: number) => `x0@${i}`;

export class DpmSolver implements MultistepSolver {
  readonly sigmas: readonly number[];
  readonly timesteps: readonly number[];
  readonly order: number;
  readonly lowerOrderFinal: boolean;
  readonly eulerAtFinal: boolean;
  readonly solverType: 'midpoint' | 'heun';
  private index = 0;
  private lowerOrderNums = 0;

  constructor(schedule: SamplingSchedule, o: DpmSolverOptions = {}) {
    this.sigmas = schedule.sigmas;
    this.timesteps = schedule.timesteps;
    this.order = o.order ?? 2;
    this.lowerOrderFinal = o.lowerOrderFinal ?? true;
    this.eulerAtFinal = o.eulerAtFinal ?? false;
    this.solverType = o.solverType ?? 'midpoint';
    if (![1, 2, 3].includes(this.order)) throw new SfcError(`DPM++ order must be 1, 2 or 3, got ${this.order}`);
    if (this.solverType !== 'midpoint' && this.solverType !== 'heun')
      throw new SfcError(`DPM++ solver type must be midpoint or heun, got '${String(this.solverType)}'`);
    checkSchedule(schedule, 'DPM++');
    if (schedule.sigmas[schedule.sigmas.length - 1] !== 0)
      throw new SfcError('DPM++ (final sigma type "zero") needs a schedule that ends at sigma 0');
  }

  get stepIndex(): number {
    return this.index;
  }

  /** The order step i uses. */
  private stepOrder(i: number): number {
    const n = this.timesteps.length;
    // the reference's lower_order_final is always true at the last step when the final sigma is 0
    if (this.order === 1 || this.lowerOrderNums < 1 || i === n - 1) return 1;
    const lowerOrderSecond = i === n - 2 && this.lowerOrderFinal && n < 15;
    if (this.order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) return 2;
    return 3;
  }

  next(): StepPlan {
    const i = this.index;
    const n = this.timesteps.length;
    if (i >= n) throw new SfcError(`DPM++: all ${n} steps are done`);
    const sig = this.sigmas;
    const ops: LinearOp[] = [{ out: x0Name(i), terms: [term(1, SAMPLE), term(-sig[i]!, OUTPUT)] }];
    const p = this.stepOrder(i);
    const sigmaT = sig[i + 1]!;
    const alphaT = 1 - sigmaT;
    const lambdaT = flowLambda(sigmaT);
    const lambdaS0 = flowLambda(sig[i]!);
    const h = lambdaT - lambdaS0;
    const em1 = Math.expm1(-h); // e^{-h} - 1
    const terms: Term[] = [term(sigmaT / sig[i]!, SAMPLE)];
    // coefficients of D0 = m0, D1, D2 in the update
    const cD0 = -alphaT * em1;
    if (p === 1) {
      terms.push(term(cD0, x0Name(i)));
    } else if (p === 2) {
      const r0 = (lambdaS0 - flowLambda(sig[i - 1]!)) / h;
      const cD1 = this.solverType === 'midpoint' ? -0.5 * alphaT * em1 : alphaT * (em1 / h + 1);
      // D1 = (m0 - m1) / r0
      terms.push(term(cD0 + cD1 / r0, x0Name(i)), term(-cD1 / r0, x0Name(i - 1)));
    } else {
      const lambdaS1 = flowLambda(sig[i - 1]!);
      const r0 = (lambdaS0 - lambdaS1) / h;
      const r1 = (lambdaS1 - flowLambda(sig[i - 2]!)) / h;
      const cD1 = alphaT * (em1 / h + 1);
      const cD2 = -alphaT * ((em1 + h) / (h * h) - 0.5);
      // D1_0 = (m0 - m1) / r0, D1_1 = (m1 - m2) / r1,
      // D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1) / (r0 + r1)
      const a = cD1 * (1 + r0 / (r0 + r1)) + cD2 / (r0 + r1); // times (D1_0 - D1_1), plus cD1 * D1_1
      const b = a - cD1; // coefficient of -D1_1 overall: D1_1 * (cD1 - a)
      const m0 = cD0 + a / r0;
      const m1 = -a / r0 - b / r1;
      const m2 = b / r1;
      terms.push(term(m0, x0Name(i)), term(m1, x0Name(i - 1)), term(m2, x0Name(i - 2)));
    }
    ops.push({ out: RESULT, terms: terms.filter((x) => x.coef !== 0) });
    this.lowerOrderNums = Math.min(this.lowerOrderNums + 1, this.order);
    this.index++;
    return { index: i, ops, release: [x0Name(i + 1 - this.order)] };
  }
}
