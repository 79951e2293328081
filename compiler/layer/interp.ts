// Runs a layer graph node by node on the CPU, each node's result materialised and rounded to its
// dtype exactly as the kernels round (float32 arithmetic, bf16/f16/FP8 rounding per op). This is
// the unfused execution that fused plans are checked against, and with `exact` it computes in
// float64 without rounding: the reference of the op-level tests.
import { roundToDtype } from '../builder.js';
import { binaryRules } from '../ops.js';
import type { Dim, GNode, LayerGraph } from './graph.js';

export interface HostTensor {
  shape: number[];
  /** row-major values */
  data: Float64Array;
}

function numel(s: readonly number[]): number {
  return s.reduce((a, b) => a * b, 1);
}

/** Binds symbolic dims from the inputs' shapes; throws on a mismatch. */
export function bindDims(g: LayerGraph, inputs: readonly HostTensor[]): Map<string, number> {
  const dims = new Map<string, number>();
  if (inputs.length !== g.inputs.length)
    throw new Error(`${g.name} takes ${g.inputs.length} inputs, got ${inputs.length}`);
  g.inputs.forEach((inp, i) => {
    const got = inputs[i]!.shape;
    const want = inp.type.shape;
    if (got.length !== want.length)
      throw new Error(
        `${g.name}: input '${inp.op === 'input' ? inp.name : i}' has rank ${got.length}, expected ${want.length}`,
      );
    want.forEach((d, j) => {
      const n = got[j]!;
      if (typeof d === 'number') {
        if (d !== n) throw new Error(`${g.name}: input ${i} dim ${j} is ${n}, expected ${d}`);
      } else if (dims.has(d) && dims.get(d) !== n) {
        throw new Error(`${g.name}: dim '${d}' is ${dims.get(d)} and ${n} in different inputs`);
      } else dims.set(d, n);
    });
  });
  return dims;
}

export function resolveShape(shape: readonly Dim[], dims: ReadonlyMap<string, number>): number[] {
  return shape.map((d) => {
    if (typeof d === 'number') return d;
    const v = dims.get(d);
    if (v === undefined) throw new Error(`dim '${d}' is not bound by any input`);
    return v;
  });
}

/** Index into a tensor of shape `src` broadcast to `dst`, for flat index i of dst. */
function broadcastIndex(src: readonly number[], dst: readonly number[]): (i: number) => number {
  const r = dst.length;
  const s = [...new Array<number>(r - src.length).fill(1), ...src];
  if (s.every((d, k) => d === dst[k])) return (i) => i;
  const dstStrides = dst.map((_, k) => numel(dst.slice(k + 1)));
  const srcStrides = s.map((d, k) => (d === 1 ? 0 : numel(s.slice(k + 1))));
  return (i) => {
    let o = 0;
    for (let k = 0; k < r; k++) o += (Math.floor(i / dstStrides[k]!) % dst[k]!) * srcStrides[k]!;
    return o;
  };
}

const unaryJs: Record<string, (x: number) => number> = {
  neg: (x) => -x,
  exp: Math.exp,
  tanh: Math.tanh,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  abs: Math.abs,
};

export function runGraph(g: LayerGraph, inputs: readonly HostTensor[], opts: { exact?: boolean } = {}): HostTensor[] {
  const dims = bindDims(g, inputs);
  const vals = new Map<number, HostTensor>();
  const round = (x: number, n: GNode) => (opts.exact ? x : roundToDtype(x, n.type.dtype));
  for (const n of g.nodes) {
    const shape = resolveShape(n.type.shape, dims);
    const size = numel(shape);
    const out = new Float64Array(size);
    const arg = (k: number) => vals.get(n.inputs[k]!.id)!;
    const at = (k: number) => {
      const t = arg(k);
      const idx = broadcastIndex(t.shape, shape);
      return (i: number) => t.data[idx(i)]!;
    };
    switch (n.op) {
      case 'input': {
        const t = inputs[n.index]!;
        for (let i = 0; i < size; i++) out[i] = round(t.data[i]!, n);
        break;
      }
      case 'const':
        out[0] = n.value;
        break;
      case 'dim':
        out[0] = dims.get(n.name)!;
        break;
      case 'cast':
      case 'binary':
      case 'unary':
      case 'where': {
        const fs = n.inputs.map((_, k) => at(k));
        const f =
          n.op === 'cast'
            ? (i: number) => fs[0]!(i)
            : n.op === 'where'
              ? (i: number) => (fs[0]!(i) ? fs[1]!(i) : fs[2]!(i))
              : n.op === 'unary'
                ? (
                    (u) => (i: number) =>
                      u(fs[0]!(i))
                  )(unaryJs[n.fn]!)
                : (
                    (b) => (i: number) =>
                      b(fs[0]!(i), fs[1]!(i))
                  )(binaryRules[n.fn].fold);
        for (let i = 0; i < size; i++) out[i] = round(f(i), n);
        break;
      }
      case 'reduce': {
        const x = arg(0);
        const len = x.shape[n.axis]!;
        const inner = numel(x.shape.slice(n.axis + 1));
        for (let o = 0; o < size; o++) {
          const base = Math.floor(o / inner) * len * inner + (o % inner);
          let acc = n.fn === 'sum' ? 0 : -Infinity;
          for (let k = 0; k < len; k++) {
            const v = x.data[base + k * inner]!;
            acc = n.fn === 'sum' ? acc + v : Math.max(acc, v);
          }
          out[o] = round(acc, n);
        }
        break;
      }
      case 'matmul': {
        const a = arg(0);
        const b = arg(1);
        const K = a.shape[a.shape.length - 1]!;
        const N = shape[shape.length - 1]!;
        const M = size / N;
        for (let m = 0; m < M; m++)
          for (let j = 0; j < N; j++) {
            let acc = 0;
            for (let k = 0; k < K; k++)
              acc += a.data[m * K + k]! * (n.transB ? b.data[j * K + k]! : b.data[k * N + j]!);
            out[m * N + j] = round(acc, n);
          }
        break;
      }
      case 'attention': {
        const [q, k, v] = [arg(0), arg(1), arg(2)];
        const [Lq, H, D] = q.shape as [number, number, number];
        const Lk = k.shape[0]!;
        // masks over a KV cache: query i sits at position Lk - Lq + i
        const m = n.mask ?? {};
        const dim = (d: Dim | undefined) => (d === undefined ? 0 : typeof d === 'number' ? d : dims.get(d)!);
        const [bt, win, sink] = [dim(m.blockTokens), dim(m.windowTokens), dim(m.sinkTokens)];
        for (let i = 0; i < Lq; i++)
          for (let h = 0; h < H; h++) {
            const p = Lk - Lq + i;
            const hi = bt > 0 ? Math.min(Lk, (Math.floor(p / bt) + 1) * bt) : Lk;
            const lo = win > 0 ? Math.max(0, hi - win) : 0;
            const s = new Float64Array(Lk);
            let mx = -Infinity;
            for (let j = 0; j < Lk; j++) {
              if (j >= hi || (j < lo && j >= sink)) {
                s[j] = -Infinity;
                continue;
              }
              let dot = 0;
              for (let d = 0; d < D; d++) dot += q.data[(i * H + h) * D + d]! * k.data[(j * H + h) * D + d]!;
              s[j] = dot * n.scale;
              mx = Math.max(mx, s[j]!);
            }
            let z = 0;
            for (let j = 0; j < Lk; j++) z += s[j] = mx === -Infinity ? 0 : Math.exp(s[j]! - mx);
            z = z || 1; // no visible key: a zero row, as the kernels give
            for (let d = 0; d < D; d++) {
              let acc = 0;
              for (let j = 0; j < Lk; j++) acc += s[j]! * v.data[(j * H + h) * D + d]!;
              out[(i * H + h) * D + d] = round(acc / z, n);
            }
          }
        break;
      }
      case 'conv': {
        // the reference: a direct loop over output pixels, taps and channels
        const [x, w] = [arg(0), arg(1)];
        const [T, H, W, C] = x.shape as [number, number, number, number];
        const [To, Ho, Wo, Co] = shape as [number, number, number, number];
        const [kt, ky, kx] = n.kernel;
        const [st, sy, sx] = n.stride;
        const [pt, py, px] = n.pad.map((p) => p[0]);
        for (let t = 0; t < To; t++)
          for (let y = 0; y < Ho; y++)
            for (let xo = 0; xo < Wo; xo++)
              for (let o = 0; o < Co; o++) {
                let acc = 0;
                for (let dt = 0; dt < kt; dt++) {
                  const ti = t * st + dt - pt!;
                  if (ti < 0 || ti >= T) continue;
                  for (let dy = 0; dy < ky; dy++) {
                    const yi = y * sy + dy - py!;
                    if (yi < 0 || yi >= H) continue;
                    for (let dx = 0; dx < kx; dx++) {
                      const xi = xo * sx + dx - px!;
                      if (xi < 0 || xi >= W) continue;
                      const xb = ((ti * H + yi) * W + xi) * C;
                      const wb = (((o * kt + dt) * ky + dy) * kx + dx) * C;
                      for (let c = 0; c < C; c++) acc += x.data[xb + c]! * w.data[wb + c]!;
                    }
                  }
                }
                out[((t * Ho + y) * Wo + xo) * Co + o] = round(acc, n);
              }
        break;
      }
      case 'swapPairs': {
        const x = arg(0);
        for (let i = 0; i < size; i++) out[i] = x.data[i ^ 1]!;
        break;
      }
      case 'reshape':
        out.set(arg(0).data);
        break;
      case 'concat': {
        const inner = numel(shape.slice(n.axis + 1));
        const outer = size / (shape[n.axis]! * inner);
        let at = 0;
        for (let k = 0; k < n.inputs.length; k++) {
          const x = arg(k);
          const len = x.shape[n.axis]! * inner;
          for (let o = 0; o < outer; o++)
            for (let j = 0; j < len; j++) out[o * shape[n.axis]! * inner + at + j] = x.data[o * len + j]!;
          at += len;
        }
        break;
      }
      case 'slice': {
        const x = arg(0);
        const inner = numel(x.shape.slice(n.axis + 1));
        const len = shape[n.axis]!;
        const outer = size / (len * inner);
        const src = x.shape[n.axis]!;
        for (let o = 0; o < outer; o++)
          for (let j = 0; j < len * inner; j++) out[o * len * inner + j] = x.data[(o * src + n.start) * inner + j]!;
        break;
      }
      case 'permute': {
        const x = arg(0);
        const srcStrides = x.shape.map((_, k) => numel(x.shape.slice(k + 1)));
        const dstStrides = shape.map((_, k) => numel(shape.slice(k + 1)));
        for (let i = 0; i < size; i++) {
          let o = 0;
          for (let k = 0; k < shape.length; k++)
            o += (Math.floor(i / dstStrides[k]!) % shape[k]!) * srcStrides[n.perm[k]!]!;
          out[i] = x.data[o]!;
        }
        break;
      }
    }
    vals.set(n.id, { shape, data: out });
  }
  return g.outputs.map((o) => vals.get(o.id)!);
}
