// Schedulers and solvers (models/schedulers): the Self-Forcing flow-matching schedule to exact float32
// values, add_noise / step / x0 <-> flow round trips, Wan's sampling schedules, and UniPC / DPM++
// against an independent float64 implementation written here in the reference's own terms (model
// output lists, D1s, R rho = b), then on a problem with a known answer: Gaussian data, whose exact
// flow and ODE solution are closed-form, where the error must shrink at second order.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileFiles } from '../../compiler/compile.js';
import { f32 } from '../../dsl/dtypes.js';
import { packageRoot } from '../../dsl/paths.js';
import { CpuDevice } from '../../runtime/cpu.js';
import { Tensor } from '../../runtime/tensor.js';
import { DpmSolver } from '../../models/schedulers/dpm.js';
import { FlowMatchScheduler, linspaceF32 } from '../../models/schedulers/flow-match.js';
import {
  SolverRunner,
  combineInto,
  combineKernelsFrom,
  float32Backend,
  tensorBackend,
  type CombineKernels,
  type MultistepSolver,
} from '../../models/schedulers/linear.js';
import { wanSchedule, type SamplingSchedule } from '../../models/schedulers/schedule.js';
import { UniPCSolver } from '../../models/schedulers/unipc.js';

const f = Math.fround;

function combineKernels(): CombineKernels {
  const file = join(packageRoot(import.meta.url), 'models', 'kernels', 'combine.ts');
  return combineKernelsFrom(Object.fromEntries(compileFiles([file]).map((a) => [a.name, a])));
}

function lcg(seed: number) {
  let s = seed >>> 0 || 1;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return {
    uniform: (lo: number, hi: number) => lo + (hi - lo) * u(),
    normal: () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()),
  };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('FlowMatchScheduler (Self-Forcing)', () => {
  it('linspace in float32 as torch defines it', () => {
    expect([...linspaceF32(1, 0, 5)]).toEqual([1, 0.75, 0.5, 0.25, 0]);
    expect([...linspaceF32(2, 3, 1)]).toEqual([2]);
    const l = linspaceF32(1, 0, 1001);
    expect(l[0]).toBe(1);
    expect(l[500]).toBe(0.5);
    expect(l[1000]).toBe(0);
    // step = float32(-1/1000); entry 1 = 1 + step
    expect(l[1]).toBe(f(1 + f(-1 / 1000)));
  });

  it('shift 5: the warped denoising list [1000, 750, 500, 250] and its sigmas', () => {
    const s = FlowMatchScheduler.selfForcing(5);
    expect(s.timesteps.length).toBe(1000);
    expect(s.timesteps[0]).toBe(1000);
    const warped = s.warpDenoisingSteps([1000, 750, 500, 250]);
    // sigma' = 5 s / (1 + 4 s) for s = 1, 0.75, 0.5, 0.25, times 1000, in float32
    expect(warped).toEqual([1000, 937.5, f(f(2.5 / 3) * 1000), 625]);
    expect(warped[2]).toBe(833.33331298828125); // the float32 nearest 2500 / 3
    expect(warped.map((t) => s.sigma(t))).toEqual([1, 0.9375, f(2.5 / 3), 0.625]);
    // a trailing 0 warps to 0 (the appended entry)
    expect(s.warpDenoisingSteps([0])).toEqual([0]);
    expect(() => s.warpDenoisingSteps([1001])).toThrow(/cannot be warped/);
    expect(() => s.warpDenoisingSteps([250.5])).toThrow(/whole numbers/);
  });

  it('shift 3: the same list warps to 1000, 900, 750, 500', () => {
    const s = FlowMatchScheduler.selfForcing(3);
    expect(s.warpDenoisingSteps([1000, 750, 500, 250])).toEqual([1000, 900, 750, 500]);
  });

  it('the 1000-step table: shifted, decreasing, never reaching sigma_min = 0', () => {
    const s = FlowMatchScheduler.selfForcing(5);
    for (let i = 0; i < 1000; i++) {
      const lin = 1 - i / 1000;
      expect(Math.abs(s.sigmas[i]! - (5 * lin) / (1 + 4 * lin))).toBeLessThan(2e-7);
      expect(s.timesteps[i]).toBe(f(s.sigmas[i]! * 1000));
      if (i > 0) expect(s.sigmas[i]!).toBeLessThan(s.sigmas[i - 1]!);
    }
    expect(s.sigmas[999]).toBe(f(f(5 * f(0.001)) / f(1 + f(4 * f(0.001)))));
  });

  it('default construction: 100 steps from 1 to sigma_min 0.003/1.002 with shift 3', () => {
    const s = new FlowMatchScheduler();
    expect(s.sigmas.length).toBe(100);
    expect(s.sigmas[0]).toBe(1);
    const min = 0.003 / 1.002;
    expect(s.sigmas[99]).toBeCloseTo((3 * min) / (1 + 2 * min), 7);
    const inv = new FlowMatchScheduler({ inverseTimesteps: true, numInferenceSteps: 10 });
    const fwd = new FlowMatchScheduler({ numInferenceSteps: 10 });
    expect([...inv.sigmas]).toEqual([...fwd.sigmas].reverse());
    const rev = new FlowMatchScheduler({ reverseSigmas: true, numInferenceSteps: 10 });
    expect([...rev.sigmas]).toEqual([...fwd.sigmas].map((v) => f(1 - v)));
    const half = new FlowMatchScheduler({ numInferenceSteps: 10, sigmaMin: 0, shift: 1 });
    half.setTimesteps(4, { denoisingStrength: 0.5 });
    expect(half.sigmas.length).toBe(4);
    [0.5, 1 / 3, 1 / 6, 0].forEach((v, i) => expect(half.sigmas[i]).toBeCloseTo(v, 7));
  });

  it('timestep lookup: nearest scheduler timestep, first of equals', () => {
    const s = FlowMatchScheduler.selfForcing(5);
    expect(s.index(937.5)).toBe(250);
    expect(s.index(937.45)).toBe(250);
    expect(s.index(2000)).toBe(0);
    expect(s.index(-5)).toBe(999);
    const a = new FlowMatchScheduler({ numInferenceSteps: 3, sigmaMin: 0, shift: 1 }); // 1000, 500, 0
    expect([...a.timesteps]).toEqual([1000, 500, 0]);
    expect(a.index(750)).toBe(0);
    expect(() => s.index(NaN)).toThrow(/not a finite number/);
    expect([...s.sigmasFor([1000, 625, 625])]).toEqual([1, 0.625, 0.625]);
  });

  it('training weights: bell-shaped over the timesteps, min 0, summing to n', () => {
    const s = FlowMatchScheduler.selfForcing(5);
    const w = s.trainingWeights!;
    let sum = 0;
    for (const v of w) sum += v;
    expect(sum).toBeCloseTo(1000, 2);
    expect(Math.min(...w)).toBe(0);
    // the largest weight sits at the timestep nearest 500 (n / 2)
    const iMax = w.indexOf(Math.max(...w));
    expect(Math.abs(s.timesteps[iMax]! - 500)).toBeLessThan(1);
    const y = (t: number) => Math.exp(-2 * ((t - 500) / 1000) ** 2);
    const ys = [...s.timesteps].map(y);
    const yMin = Math.min(...ys);
    const sumY = ys.reduce((a, v) => a + v - yMin, 0);
    expect(s.trainingWeight(500)).toBeCloseTo(((y(s.timesteps[iMax]!) - yMin) * 1000) / sumY, 4);
    expect(() => new FlowMatchScheduler().trainingWeight(500)).toThrow(/no training weights/);
  });

  it('step: Euler to the next sigma, or to 0 at the end / with toFinal', () => {
    const s = new FlowMatchScheduler({ numInferenceSteps: 4, sigmaMin: 0, shift: 1, extraOneStep: true });
    expect([...s.sigmas]).toEqual([1, 0.75, 0.5, 0.25]);
    expect(s.step(750)).toEqual({ sample: 1, output: -0.25 });
    expect(s.step(750, true)).toEqual({ sample: 1, output: -0.75 });
    expect(s.step(250)).toEqual({ sample: 1, output: -0.25 });
    const inv = new FlowMatchScheduler({ numInferenceSteps: 4, sigmaMin: 0, shift: 1, inverseTimesteps: true });
    expect(inv.step(inv.timesteps[3]!)).toEqual({ sample: 1, output: 0 }); // last: to sigma 1 (already there)
  });

  describe.each([
    ['float32 JS loop', 'js'],
    ['combine kernels on the CPU device', 'kernel'],
  ])('round trips (%s)', (_label, how) => {
    const n = 3001;
    const g = lcg(7);
    const x0 = Float32Array.from({ length: n }, g.normal);
    const noise = Float32Array.from({ length: n }, g.normal);
    const dev = new CpuDevice();
    const kernels = how === 'kernel' ? combineKernels() : undefined;
    // one combination through the chosen backend, as Float32Arrays in and out
    const apply = (terms: [number, Float32Array][]): Float32Array => {
      if (!kernels) {
        const out = new Float32Array(n);
        combineInto(float32Backend, out, terms);
        return out;
      }
      const b = tensorBackend(kernels);
      const ts = terms.map(([c, a]) => [c, Tensor.from(dev, f32, [n], a)] as [number, Tensor]);
      const out = Tensor.empty(dev, f32, [n]);
      combineInto(b, out, ts);
      return out.toF32();
    };
    const s = FlowMatchScheduler.selfForcing(5);

    it.each([1000, 937.5, 625, 12])('add_noise, flow target, step to final and x0 <-> flow at t = %s', (t) => {
      const sigma = s.sigma(t);
      const an = s.addNoise(t);
      const xt = apply([
        [an.clean, x0],
        [an.noise, noise],
      ]);
      const ref = Float64Array.from(x0, (v, i) => (1 - sigma) * v + sigma * noise[i]!);
      expect(maxAbsDiff(xt, ref)).toBeLessThan(1e-6);
      const tt = s.trainingTarget();
      const flow = apply([
        [tt.clean, x0],
        [tt.noise, noise],
      ]);
      // x0 from the flow, then the flow back from x0
      const c = s.flowToX0(t);
      const back = apply([
        [c.sample, xt],
        [c.output, flow],
      ]);
      expect(maxAbsDiff(back, x0)).toBeLessThan(1e-5);
      const st = s.step(t, true);
      const final = apply([
        [st.sample, xt],
        [st.output, flow],
      ]);
      expect(maxAbsDiff(final, x0)).toBeLessThan(1e-5);
      const r = s.x0ToFlow(t);
      const flow2 = apply([
        [r.sample, xt],
        [r.output, x0],
      ]);
      // (x_t - x0) / sigma loses float32 precision as sigma -> 0
      expect(maxAbsDiff(flow2, flow)).toBeLessThan(1e-5 / sigma);
    });

    it('a Self-Forcing few-step chain: denoise to x0, re-noise to the next warped step', () => {
      // with an oracle x0 the chain returns x0 whatever the steps
      let xt: Float32Array = noise;
      const steps = s.warpDenoisingSteps([1000, 750, 500, 250]);
      steps.forEach((t, k) => {
        const c = s.flowToX0(t);
        const sigma = s.sigma(t);
        const flow = Float32Array.from(xt, (v, i) => (v - x0[i]!) / sigma);
        const x0Pred = apply([
          [c.sample, xt],
          [c.output, flow],
        ]);
        expect(maxAbsDiff(x0Pred, x0)).toBeLessThan(1e-5);
        if (k + 1 < steps.length) {
          const an = s.addNoise(steps[k + 1]!);
          xt = apply([
            [an.clean, x0Pred],
            [an.noise, noise],
          ]);
        }
      });
    });
  });

  it('x0 -> flow at sigma 0 is an error', () => {
    const s = new FlowMatchScheduler({ numInferenceSteps: 3, sigmaMin: 0, shift: 1 });
    expect(() => s.x0ToFlow(0)).toThrow(/undefined at sigma 0/);
  });
});

describe("Wan's sampling schedules", () => {
  it('UniPC starts at sigma_max = float32(0.999); DPM++ at 1', () => {
    const u = wanSchedule('unipc', 4, 5);
    expect(u.timesteps).toEqual([999, 937, 833, 624]);
    expect(u.sigmas[0]).toBe(f((5 * f(0.999)) / (1 + 4 * f(0.999))));
    expect(u.sigmas[4]).toBe(0);
    const d = wanSchedule('dpm++', 4, 5);
    expect(d.timesteps).toEqual([1000, 937, 833, 625]);
    expect(d.sigmas).toEqual([1, 0.9375, f(2.5 / 3), 0.625, 0]);
  });

  it('50 steps at shift 5 (t2v defaults): float64 sigmas rounded to float32, truncated timesteps', () => {
    for (const [solver, start] of [
      ['unipc', f(0.999)],
      ['dpm++', 1],
    ] as const) {
      const s = wanSchedule(solver, 50, 5);
      expect(s.sigmas.length).toBe(51);
      for (let i = 0; i < 50; i++) {
        const lin = start - (i * start) / 50;
        const sh = (5 * lin) / (1 + 4 * lin);
        expect(Math.abs(s.sigmas[i]! - sh)).toBeLessThan(1e-7);
        // 1000 * sigma truncated
        expect(s.timesteps[i]).toBeLessThanOrEqual(sh * 1000 + 1e-9);
        expect(s.timesteps[i]).toBeGreaterThan(sh * 1000 - 1);
        expect(Number.isInteger(s.timesteps[i])).toBe(true);
      }
    }
  });

  it('bad schedules are clear errors', () => {
    expect(() => wanSchedule('unipc', 0, 5)).toThrow(/sampling steps must be >= 1/);
    expect(() => wanSchedule('dpm++', 10, -1)).toThrow(/shift must be positive/);
    expect(() => wanSchedule('euler' as 'unipc', 10, 5)).toThrow(/unknown solver 'euler'/);
    expect(() => new UniPCSolver(wanSchedule('dpm++', 10, 5))).toThrow(/first sigma below 1/);
    expect(() => new DpmSolver({ sigmas: [1, 0.5, 0.7, 0], timesteps: [1000, 500, 700] })).toThrow(/must decrease/);
    expect(() => new DpmSolver({ sigmas: [1, 0.5], timesteps: [1000, 500] })).toThrow(/one sigma per step/);
  });
});

// ---- an independent float64 implementation, in the reference's terms --------------------------------

type Vec = Float64Array;
const lam = (s: number) => Math.log((1 - s) / s);
const axpy = (terms: [number, Vec][]): Vec => {
  const out = new Float64Array(terms[0]![1].length);
  for (const [c, v] of terms) if (c !== 0) for (let i = 0; i < out.length; i++) out[i]! += c * v[i]!;
  return out;
};

/** solve a small dense system by Cramer's rule (orders up to 3) */
function cramer(a: number[][], b: number[]): number[] {
  const det = (m: number[][]): number =>
    m.length === 1
      ? m[0]![0]!
      : m[0]!.reduce(
          (s, v, j) => s + (j % 2 ? -1 : 1) * v * det(m.slice(1).map((r) => r.filter((_, k) => k !== j))),
          0,
        );
  const d = det(a);
  return b.map((_, j) => det(a.map((r, i) => r.map((v, k) => (k === j ? b[i]! : v)))) / d);
}

class RefUniPC {
  outputs: (Vec | null)[];
  lowerOrderNums = 0;
  lastSample: Vec | null = null;
  thisOrder = 0;
  stepIndex = 0;
  constructor(
    readonly sigmas: readonly number[],
    readonly order = 2,
  ) {
    this.outputs = new Array<Vec | null>(order).fill(null);
  }
  private bh(sT: number, sS0: number, prev: number[]) {
    const h = lam(sT) - lam(sS0);
    const rks = [...prev.map((s) => (lam(s) - lam(sS0)) / h), 1];
    const hh = -h;
    const hPhi1 = Math.expm1(hh);
    let hPhiK = hPhi1 / hh - 1;
    let fac = 1;
    const bH = Math.expm1(hh);
    const R: number[][] = [];
    const b: number[] = [];
    for (let i = 1; i <= rks.length; i++) {
      R.push(rks.map((r) => r ** (i - 1)));
      b.push((hPhiK * fac) / bH);
      fac *= i + 1;
      hPhiK = hPhiK / hh - 1 / fac;
    }
    return { rks, hPhi1, bH, R, b, alphaT: 1 - sT };
  }
  step(modelOutput: Vec, sample: Vec): Vec {
    const i = this.stepIndex;
    const sig = this.sigmas;
    const x0 = axpy([
      [1, sample],
      [-sig[i]!, modelOutput],
    ]);
    if (i > 0 && this.lastSample) {
      // UniC
      const p = this.thisOrder;
      const m0 = this.outputs[this.outputs.length - 1]!;
      const prev = Array.from({ length: p - 1 }, (_, k) => sig[i - 2 - k]!);
      const c = this.bh(sig[i]!, sig[i - 1]!, prev);
      const D1s = prev.map((_, k) =>
        axpy([
          [1 / c.rks[k]!, this.outputs[this.outputs.length - 2 - k]!],
          [-1 / c.rks[k]!, m0],
        ]),
      );
      const rhos = p === 1 ? [0.5] : cramer(c.R, c.b);
      const xt_ = axpy([
        [sig[i]! / sig[i - 1]!, this.lastSample],
        [-c.alphaT * c.hPhi1, m0],
      ]);
      const corr = axpy([[0, m0], ...D1s.map((d, k) => [rhos[k]!, d] as [number, Vec])]);
      const D1t = axpy([
        [1, x0],
        [-1, m0],
      ]);
      sample = axpy([
        [1, xt_],
        [-c.alphaT * c.bH, corr],
        [-c.alphaT * c.bH * rhos[p - 1]!, D1t],
      ]);
    }
    this.outputs = [...this.outputs.slice(1), x0];
    const n = sig.length - 1;
    this.thisOrder = Math.min(this.order, n - i, this.lowerOrderNums + 1);
    this.lastSample = sample;
    // UniP
    const p = this.thisOrder;
    const m0 = x0;
    const prev = Array.from({ length: p - 1 }, (_, k) => sig[i - 1 - k]!);
    const c = this.bh(sig[i + 1]!, sig[i]!, prev);
    const D1s = prev.map((_, k) =>
      axpy([
        [1 / c.rks[k]!, this.outputs[this.outputs.length - 2 - k]!],
        [-1 / c.rks[k]!, m0],
      ]),
    );
    const rhos =
      p === 1
        ? []
        : p === 2
          ? [0.5]
          : cramer(
              c.R.slice(0, -1).map((r) => r.slice(0, -1)),
              c.b.slice(0, -1),
            );
    const xt_ = axpy([
      [sig[i + 1]! / sig[i]!, sample],
      [-c.alphaT * c.hPhi1, m0],
    ]);
    const pred = axpy([[0, m0], ...D1s.map((d, k) => [rhos[k]!, d] as [number, Vec])]);
    const out = axpy([
      [1, xt_],
      [-c.alphaT * c.bH, pred],
    ]);
    this.lowerOrderNums = Math.min(this.lowerOrderNums + 1, this.order);
    this.stepIndex++;
    return out;
  }
}

class RefDpm {
  outputs: Vec[] = [];
  lowerOrderNums = 0;
  stepIndex = 0;
  constructor(
    readonly sigmas: readonly number[],
    readonly order = 2,
  ) {}
  step(modelOutput: Vec, sample: Vec): Vec {
    const i = this.stepIndex;
    const sig = this.sigmas;
    const n = sig.length - 1;
    const m = axpy([
      [1, sample],
      [-sig[i]!, modelOutput],
    ]);
    this.outputs.push(m);
    const [sT, sS0] = [sig[i + 1]!, sig[i]!];
    const aT = 1 - sT;
    // sigma 0 / 1: lambda = +inf / -inf, as torch computes log(0)
    const L = (s: number) => Math.log(1 - s) - Math.log(s);
    const h = L(sT) - L(sS0);
    const e = Math.exp(-h) - 1;
    const lowerSecond = i === n - 2 && n < 15;
    let out: Vec;
    if (this.order === 1 || this.lowerOrderNums < 1 || i === n - 1) {
      out = axpy([
        [sT / sS0, sample],
        [-aT * e, m],
      ]);
    } else if (this.order === 2 || this.lowerOrderNums < 2 || lowerSecond) {
      const [m0, m1] = [this.outputs[this.outputs.length - 1]!, this.outputs[this.outputs.length - 2]!];
      const r0 = (L(sS0) - L(sig[i - 1]!)) / h;
      const D1 = axpy([
        [1 / r0, m0],
        [-1 / r0, m1],
      ]);
      out = axpy([
        [sT / sS0, sample],
        [-aT * e, m0],
        [-0.5 * aT * e, D1],
      ]);
    } else {
      const [m0, m1, m2] = this.outputs.slice(-3).reverse() as [Vec, Vec, Vec];
      const r0 = (L(sS0) - L(sig[i - 1]!)) / h;
      const r1 = (L(sig[i - 1]!) - L(sig[i - 2]!)) / h;
      const D10 = axpy([
        [1 / r0, m0],
        [-1 / r0, m1],
      ]);
      const D11 = axpy([
        [1 / r1, m1],
        [-1 / r1, m2],
      ]);
      const D1 = axpy([
        [1 + r0 / (r0 + r1), D10],
        [-r0 / (r0 + r1), D11],
      ]);
      const D2 = axpy([
        [1 / (r0 + r1), D10],
        [-1 / (r0 + r1), D11],
      ]);
      out = axpy([
        [sT / sS0, sample],
        [-aT * e, m0],
        [aT * (e / h + 1), D1],
        [-aT * ((e + h) / h ** 2 - 0.5), D2],
      ]);
    }
    this.lowerOrderNums = Math.min(this.lowerOrderNums + 1, this.order);
    this.stepIndex++;
    return out;
  }
}

// ---- Gaussian data: the exact flow and the exact ODE solution -----------------------------------------

/** data x0 ~ N(mu, s^2) per element; x_sigma = (1 - sigma) x0 + sigma eps; v = E[eps - x0 | x_sigma] */
function gaussianFlow(mu: Vec, sd: Vec, x: ArrayLike<number>, sigma: number): Vec {
  const out = new Float64Array(mu.length);
  for (let i = 0; i < out.length; i++) {
    const a = 1 - sigma;
    const v = a * a * sd[i]! * sd[i]! + sigma * sigma;
    out[i] = -mu[i]! + ((sigma - a * sd[i]! * sd[i]!) / v) * (x[i]! - a * mu[i]!);
  }
  return out;
}

function problem(n: number, seed: number) {
  const g = lcg(seed);
  const mu = Float64Array.from({ length: n }, () => g.uniform(-1, 1));
  const sd = Float64Array.from({ length: n }, () => g.uniform(0.3, 1.2));
  const z = Float64Array.from({ length: n }, g.normal);
  return { mu, sd, z };
}

type Make = (s: SamplingSchedule) => MultistepSolver;
const solvers: [string, 'unipc' | 'dpm++', Make, (s: SamplingSchedule) => RefUniPC | RefDpm][] = [
  ['UniPC', 'unipc', (s) => new UniPCSolver(s), (s) => new RefUniPC(s.sigmas)],
  ['UniPC order 3', 'unipc', (s) => new UniPCSolver(s, { order: 3 }), (s) => new RefUniPC(s.sigmas, 3)],
  ['DPM++ 2M', 'dpm++', (s) => new DpmSolver(s), (s) => new RefDpm(s.sigmas)],
  ['DPM++ 3M', 'dpm++', (s) => new DpmSolver(s, { order: 3 }), (s) => new RefDpm(s.sigmas, 3)],
];

/** Runs a solver through a runner on the Gaussian problem from x at sigmas[0]; the final sample. */
function runFloat32(make: Make, schedule: SamplingSchedule, mu: Vec, sd: Vec, x: Vec): Float32Array {
  const runner = new SolverRunner(make(schedule), float32Backend);
  const sample = Float32Array.from(x);
  for (let i = 0; i < schedule.timesteps.length; i++) {
    const flow = Float32Array.from(gaussianFlow(mu, sd, sample, schedule.sigmas[i]!));
    runner.step(flow, sample, sample); // in place
  }
  runner.dispose();
  return sample;
}

describe.each(solvers)('%s', (_name, kind, make, makeRef) => {
  const n = 2053;
  const { mu, sd, z } = problem(n, 3);

  it.each([5, 12, 50])('matches the float64 reference implementation over %s steps', (steps) => {
    const schedule = wanSchedule(kind, steps, 5);
    const ref = makeRef(schedule);
    let x: Vec = Float64Array.from(z, (v, i) => (1 - schedule.sigmas[0]!) * mu[i]! + schedule.sigmas[0]! * v);
    const x32 = Float32Array.from(x);
    const runner = new SolverRunner(make(schedule), float32Backend);
    for (let i = 0; i < steps; i++) {
      // both solvers see the same model output (computed from the float32 sample)
      const flow = gaussianFlow(mu, sd, x32, schedule.sigmas[i]!);
      x = ref.step(flow, Float64Array.from(x32));
      runner.step(Float32Array.from(flow), x32, x32);
      expect(maxAbsDiff(x32, x), `step ${i}`).toBeLessThan(2e-6);
    }
  });

  it('a Dirac data distribution lands exactly on the ODE path at every step', () => {
    const schedule = wanSchedule(kind, 8, 3);
    const zero = new Float64Array(n);
    const runner = new SolverRunner(make(schedule), float32Backend);
    const x = Float32Array.from(z, (v, i) => (1 - schedule.sigmas[0]!) * mu[i]! + schedule.sigmas[0]! * v);
    for (let i = 0; i < 8; i++) {
      const flow = Float32Array.from(gaussianFlow(mu, zero, x, schedule.sigmas[i]!));
      runner.step(flow, x, x);
      const s = schedule.sigmas[i + 1]!;
      // from x at sigma_i the exact path is (1 - sigma) mu + sigma * z' with z' fixed by x
      expect(
        maxAbsDiff(
          x,
          Float64Array.from(mu, (m, k) => (1 - s) * m + s * z[k]!),
        ),
        `step ${i}`,
      ).toBeLessThan(2e-6);
    }
  });

  it("on Wan's shift-5 schedule: close to the exact ODE end, closer with more steps", () => {
    const errs = [10, 20, 40, 80].map((steps) => {
      const schedule = wanSchedule(kind, steps, 5);
      const x0 = exactPath(mu, sd, z, schedule.sigmas[0]!);
      const out = runFloat32(make, schedule, mu, sd, x0);
      return maxAbsDiff(
        out,
        Float64Array.from(mu, (m, i) => m + sd[i]! * z[i]!),
      );
    });
    for (let k = 1; k < errs.length; k++) expect(errs[k], `errors ${errs.join(', ')}`).toBeLessThan(errs[k - 1]!);
    expect(errs[3]).toBeLessThan(2.5e-2);
  });
});

/** x on the exact ODE path at sigma: (1 - sigma) mu + std(sigma) z */
function exactPath(mu: Vec, sd: Vec, z: Vec, sigma: number): Vec {
  return Float64Array.from(mu, (m, i) => (1 - sigma) * m + Math.hypot((1 - sigma) * sd[i]!, sigma) * z[i]!);
}

/** E[x0 | x_sigma = x] for the Gaussian data */
function posteriorMean(mu: Vec, sd: Vec, x: Vec, sigma: number): Vec {
  return Float64Array.from(mu, (m, i) => {
    const a = 1 - sigma;
    return m + ((a * sd[i]! * sd[i]!) / (a * a * sd[i]! * sd[i]! + sigma * sigma)) * (x[i]! - a * m);
  });
}

describe('order of accuracy on a schedule uniform in lambda = log((1 - sigma) / sigma)', () => {
  // sigmas 0.95 .. 0.05 at equal lambda steps h, then 0. The final step returns the x0 prediction at
  // sigma 0.05, so the exact answer is the posterior mean of the exact path there; what remains is
  // the integration error over the fixed lambda range, O(h^order).
  const { mu, sd, z } = problem(400, 5);
  const lambdaSchedule = (steps: number): SamplingSchedule => {
    const la = Math.log(0.05 / 0.95);
    const sigmas = Array.from({ length: steps }, (_, i) => 1 / (1 + Math.exp(la - (2 * la * i) / (steps - 1))));
    return { sigmas: [...sigmas, 0], timesteps: sigmas.map((s) => Math.trunc(s * 1000)) };
  };
  type Pair = [(s: SamplingSchedule) => RefUniPC | RefDpm, (s: SamplingSchedule) => MultistepSolver];
  const pairs: Record<string, Pair> = {
    'DPM++ order 1 (DDIM)': [(s) => new RefDpm(s.sigmas, 1), (s) => new DpmSolver(s, { order: 1 })],
    'UniPC order 1 (UniP-1 + UniC-1)': [(s) => new RefUniPC(s.sigmas, 1), (s) => new UniPCSolver(s, { order: 1 })],
    'DPM++ 2M': [(s) => new RefDpm(s.sigmas, 2), (s) => new DpmSolver(s)],
    'UniPC order 2 (UniP-2 + UniC-2)': [(s) => new RefUniPC(s.sigmas, 2), (s) => new UniPCSolver(s)],
  };
  it.each([
    ['DPM++ order 1 (DDIM)', 1],
    ['UniPC order 1 (UniP-1 + UniC-1)', 2],
    ['DPM++ 2M', 2],
    ['UniPC order 2 (UniP-2 + UniC-2)', 3], // UniPC's order p + 1
  ] as const)('%s converges at order %i', (name, order) => {
    const [makeRef, make] = pairs[name]!;
    const errs: number[] = [];
    for (const steps of [16, 32, 64, 128]) {
      const schedule = lambdaSchedule(steps);
      const last = schedule.sigmas[steps - 1]!;
      const exact = posteriorMean(mu, sd, exactPath(mu, sd, z, last), last);
      const x0 = exactPath(mu, sd, z, schedule.sigmas[0]!);
      // float64 (float32 rounding would mask the order at 128 steps)
      const ref = makeRef(schedule);
      let x: Vec = x0;
      for (let i = 0; i < steps; i++) x = ref.step(gaussianFlow(mu, sd, x, schedule.sigmas[i]!), x);
      errs.push(maxAbsDiff(x, exact));
      // the solver under test agrees with the float64 run to float32 precision
      expect(maxAbsDiff(runFloat32(make, schedule, mu, sd, x0), x)).toBeLessThan(1e-5);
    }
    const observed = errs.slice(1).map((e, k) => Math.log2(errs[k]! / e));
    for (const p of observed.slice(1)) {
      expect(p, `errors ${errs.join(', ')}`).toBeGreaterThan(order - 0.15);
      expect(p, `errors ${errs.join(', ')}`).toBeLessThan(order + 0.3);
    }
  });
});

describe('SolverRunner on device tensors (combine kernels, CPU device)', () => {
  const dev = new CpuDevice();
  const kernels = combineKernels();
  it.each(solvers)('%s: the same samples as the float32 JS loop', (_name, kind, make) => {
    const n = 1500;
    const { mu, sd, z } = problem(n, 11);
    const schedule = wanSchedule(kind, 10, 5);
    const x0 = Float64Array.from(z, (v, i) => (1 - schedule.sigmas[0]!) * mu[i]! + schedule.sigmas[0]! * v);
    const js = runFloat32(make, schedule, mu, sd, x0);
    const runner = new SolverRunner(make(schedule), tensorBackend(kernels));
    let x = Tensor.from(dev, f32, [3, n / 3], x0);
    for (let i = 0; i < schedule.timesteps.length; i++) {
      const flow = Tensor.from(dev, f32, [3, n / 3], gaussianFlow(mu, sd, x.toF32(), schedule.sigmas[i]!));
      const next = runner.step(flow, x); // a new buffer each step
      x.dispose();
      flow.dispose();
      x = next;
    }
    runner.dispose();
    expect(maxAbsDiff(x.toF32(), js)).toBeLessThan(1e-5);
  });

  it('rejects mismatched buffers and running past the schedule', () => {
    const schedule = wanSchedule('dpm++', 1, 5);
    const runner = new SolverRunner(new DpmSolver(schedule), tensorBackend(kernels));
    const a = Tensor.from(dev, f32, [4], [1, 2, 3, 4]);
    expect(() => runner.step(Tensor.zeros(dev, f32, [5]), a)).toThrow(/model output has 5 elements/);
    const bf = Tensor.zeros(dev, f32, [2, 2]).transpose(0, 1);
    expect(() => runner.step(bf, a)).toThrow(/must be contiguous/);
    const r = new SolverRunner(new DpmSolver(schedule), float32Backend);
    const out = r.step(new Float32Array([0, 0]), new Float32Array([1, 2]));
    expect([...out]).toEqual([1, 2]); // sigma 1 -> 0 with zero flow: x0 = x
    expect(() => r.step(new Float32Array(2), out)).toThrow(/steps are all done/);
  });

  it('names missing combine kernels', () => {
    const { combine1, combine3 } = kernels;
    expect(() => combineKernelsFrom({ combine1, combine3 })).toThrow(/lack combine2, combine4/);
  });

  it('splits sums of more than four terms', () => {
    const bufs = [1, 2, 3, 4, 5, 6].map((v) => new Float32Array([v, -v]));
    const out = new Float32Array(2);
    combineInto(
      float32Backend,
      out,
      bufs.map((b, i) => [i + 1, b] as [number, Float32Array]),
    );
    // sum k * k for k = 1..6 = 91
    expect([...out]).toEqual([91, -91]);
    expect(() => combineInto(float32Backend, out, [[NaN, bufs[0]!]])).toThrow(/non-finite coefficient/);
    expect(() => combineInto(float32Backend, out, [])).toThrow(/at least one term/);
  });
});
