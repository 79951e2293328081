// UniPC for flow matching, as Wan2.1 samples with it (wan/utils/fm_solvers_unipc.py,
// FlowUniPCMultistepScheduler, itself diffusers' UniPCMultistepScheduler with alpha = 1 - sigma):
// data prediction (x0 = x - sigma * flow), B(h) = e^h - 1 ("bh2"), solver order 2, lower-order
// warm-up and final steps, and the UniC corrector on every step after the first. Step i:
//   1. x0_i = sample - sigma_i * flow                                     (the model's data prediction)
//   2. corrector (i > 0): the sample the previous predictor produced is recomputed from x_{i-1}
//      and x0_{i-1}, x0_{i-2}, ... with x0_i included (UniC-p, p = the previous step's order)
//   3. predictor: UniP-p from the corrected sample and x0_i, x0_{i-1}, ... to sigma_{i+1}
// Each is one linear combination; the coefficients come from lambda = log((1 - sigma) / sigma).
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

/** log(alpha) - log(sigma) of flow matching (alpha = 1 - sigma): -inf at sigma 1, +inf at sigma 0 */
export function flowLambda(sigma: number): number {
  return Math.log(1 - sigma) - Math.log(sigma);
}

/** Solves A x = b (n x n, row-major arrays) by Gaussian elimination with partial pivoting. */
export function solveLinear(a: readonly (readonly number[])[], b: readonly number[]): number[] {
  const n = b.length;
  const m = a.map((row, r) => [...row, b[r]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[p]![c]!)) p = r;
    if (m[p]![c] === 0) throw new SfcError('UniPC: the order conditions are singular (repeated sigmas?)');
    [m[c], m[p]] = [m[p]!, m[c]!];
    for (let r = c + 1; r < n; r++) {
      const k = m[r]![c]! / m[c]![c]!;
      for (let j = c; j <= n; j++) m[r]![j]! -= k * m[c]![j]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = m[r]![n]!;
    for (let j = r + 1; j < n; j++) s -= m[r]![j]! * x[j]!;
    x[r] = s / m[r]![r]!;
  }
  return x;
}

export interface UniPCOptions {
  /** default 2 (Wan's setting); 1 to 3 are sensible */
  order?: number;
  /** use lower orders for the final steps (default true) */
  lowerOrderFinal?: boolean;
  /** 'bh2' (B(h) = e^h - 1, the default) or 'bh1' (B(h) = h) */
  solverType?: 'bh1' | 'bh2';
  /** steps i whose corrector (applied at step i + 1) is skipped; default none */
  disableCorrector?: readonly number[];
}

const x0Name = (i: number) => `x0@${i}`;
const lastName = (i: number) => `last@${i}`;

/**
 * The shared algebra of UniP and UniC in data-prediction form. From x at sigma_s0 with x0
 * predictions m0 (at s0) and mk (at earlier sigmas), to sigma_t:
 *   x_t = (sigma_t / sigma_s0) x - alpha_t (e^{-h} - 1) m0 - alpha_t B(h) sum_k rho_k D_k,
 *   D_k = (m_k - m0) / r_k,   r_k = (lambda_k - lambda_s0) / h,   h = lambda_t - lambda_s0,
 * rho from the order conditions R rho = b (R[i][k] = r_k^i, b_i = i! phi_{i+1}(-h) (-h)^{i+1} / B(h)).
 */
function uniCoefficients(
  sigmaT: number,
  sigmaS0: number,
  earlier: readonly number[],
  solverType: 'bh1' | 'bh2',
): { h: number; alphaT: number; hPhi1: number; bH: number; rks: number[]; b: number[] } {
  const lambdaT = flowLambda(sigmaT);
  const lambdaS0 = flowLambda(sigmaS0);
  const h = lambdaT - lambdaS0;
  const rks = [...earlier.map((s) => (flowLambda(s) - lambdaS0) / h), 1];
  const hh = -h;
  const hPhi1 = Math.expm1(hh);
  const bH = solverType === 'bh1' ? hh : Math.expm1(hh);
  const b: number[] = [];
  let hPhiK = hPhi1 / hh - 1;
  let factorial = 1;
  for (let i = 1; i <= rks.length; i++) {
    b.push((hPhiK * factorial) / bH);
    factorial *= i + 1;
    hPhiK = hPhiK / hh - 1 / factorial;
  }
  return { h, alphaT: 1 - sigmaT, hPhi1, bH, rks, b };
}

function powRows(rks: readonly number[], n: number): number[][] {
  return Array.from({ length: n }, (_, i) => rks.slice(0, n).map((r) => r ** i));
}

export class UniPCSolver implements MultistepSolver {
  readonly sigmas: readonly number[];
  readonly timesteps: readonly number[];
  readonly order: number;
  readonly lowerOrderFinal: boolean;
  readonly solverType: 'bh1' | 'bh2';
  readonly disableCorrector: ReadonlySet<number>;
  private index = 0;
  private lowerOrderNums = 0;
  /** the order the previous predictor used (the corrector's order) */
  private lastOrder = 0;

  constructor(schedule: SamplingSchedule, o: UniPCOptions = {}) {
    this.sigmas = schedule.sigmas;
    this.timesteps = schedule.timesteps;
    this.order = o.order ?? 2;
    this.lowerOrderFinal = o.lowerOrderFinal ?? true;
    this.solverType = o.solverType ?? 'bh2';
    this.disableCorrector = new Set(o.disableCorrector ?? []);
    if (!Number.isInteger(this.order) || this.order < 1)
      throw new SfcError(`UniPC order must be >= 1, got ${this.order}`);
    if (this.solverType !== 'bh1' && this.solverType !== 'bh2')
      throw new SfcError(`UniPC solver type must be bh1 or bh2, got '${String(this.solverType)}'`);
    checkSchedule(schedule, 'UniPC');
    if (schedule.sigmas[0] === 1)
      throw new SfcError('UniPC needs a first sigma below 1 (its ratios of lambda are undefined at sigma 1)', {
        hint: "Wan's UniPC schedule starts at 0.999: wanSchedule('unipc', steps, shift)",
      });
  }

  get stepIndex(): number {
    return this.index;
  }

  next(): StepPlan {
    const i = this.index;
    const n = this.timesteps.length;
    if (i >= n) throw new SfcError(`UniPC: all ${n} steps are done`);
    const sig = this.sigmas;
    const ops: LinearOp[] = [{ out: x0Name(i), terms: [term(1, SAMPLE), term(-sig[i]!, OUTPUT)] }];

    // UniC: recompute the previous predictor's result with this step's x0 prediction included
    if (i > 0 && !this.disableCorrector.has(i - 1)) {
      const p = this.lastOrder;
      const earlier = Array.from({ length: p - 1 }, (_, k) => sig[i - 2 - k]!);
      const c = uniCoefficients(sig[i]!, sig[i - 1]!, earlier, this.solverType);
      const rhos = p === 1 ? [0.5] : solveLinear(powRows(c.rks, p), c.b);
      const k = c.alphaT * c.bH;
      const terms: Term[] = [term(sig[i]! / sig[i - 1]!, lastName(i - 1))];
      let m0 = -c.alphaT * c.hPhi1 + k * rhos[p - 1]!;
      for (let j = 0; j < p - 1; j++) {
        const w = (k * rhos[j]!) / c.rks[j]!;
        m0 += w;
        terms.push(term(-w, x0Name(i - 2 - j)));
      }
      terms.push(term(m0, x0Name(i - 1)), term(-k * rhos[p - 1]!, x0Name(i)));
      ops.push({ out: lastName(i), terms });
    } else {
      ops.push({ out: lastName(i), terms: [term(1, SAMPLE)] });
    }

    // UniP from the (corrected) sample
    let p = this.lowerOrderFinal ? Math.min(this.order, n - i) : this.order;
    p = Math.min(p, this.lowerOrderNums + 1);
    const earlier = Array.from({ length: p - 1 }, (_, k) => sig[i - 1 - k]!);
    const c = uniCoefficients(sig[i + 1]!, sig[i]!, earlier, this.solverType);
    const rhos = p === 1 ? [] : p === 2 ? [0.5] : solveLinear(powRows(c.rks, p - 1), c.b.slice(0, p - 1));
    const k = c.alphaT * c.bH;
    const terms: Term[] = [term(sig[i + 1]! / sig[i]!, lastName(i))];
    let m0 = -c.alphaT * c.hPhi1;
    for (let j = 0; j < p - 1; j++) {
      const w = (k * rhos[j]!) / c.rks[j]!;
      m0 += w;
      terms.push(term(-w, x0Name(i - 1 - j)));
    }
    terms.push(term(m0, x0Name(i)));
    ops.push({ out: RESULT, terms: terms.filter((x) => x.coef !== 0) });

    this.lastOrder = p;
    this.lowerOrderNums = Math.min(this.lowerOrderNums + 1, this.order);
    this.index++;
    // the next corrector reads last@i and x0@i .. x0@(i - order + 1)
    return { index: i, ops, release: [lastName(i - 1), x0Name(i - this.order)] };
  }
}

/** sigmas: one per step plus the final one, decreasing, in [0, 1]. */
export function checkSchedule(s: SamplingSchedule, who: string): void {
  if (s.timesteps.length < 1 || s.sigmas.length !== s.timesteps.length + 1)
    throw new SfcError(
      `${who}: a schedule needs one sigma per step plus the final one (${s.timesteps.length} steps, ${s.sigmas.length} sigmas)`,
    );
  for (let i = 0; i < s.sigmas.length; i++) {
    const v = s.sigmas[i]!;
    if (!(v >= 0 && v <= 1)) throw new SfcError(`${who}: sigma ${i} is ${v}, outside [0, 1]`);
    if (i > 0 && !(v < s.sigmas[i - 1]!))
      throw new SfcError(`${who}: sigmas must decrease (sigma ${i} = ${v} after ${s.sigmas[i - 1]})`);
  }
  if (s.sigmas.slice(1, -1).some((v) => v === 0) || s.sigmas.slice(1).some((v) => v === 1))
    throw new SfcError(`${who}: only the first sigma may be 1 and only the last may be 0`);
}
