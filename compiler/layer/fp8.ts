// FP8 rewriting of a layer graph (DESIGN.md section 3: weights e4m3 with scales, activations quantised
// in the producing kernel). Every Linear whose weight is a layer input (used only as Linear weights,
// bf16/f16, K a multiple of 16) becomes an e4m3 GEMM, D = (A_q * s_A) (W_q * s_W)^T with f32
// accumulation:
//
//   weight input w [N, K]   -> w (now e4m3 [N, K]) and the next input w_scale (f32 [N]): per output
//                              channel, quantised at load time, w_scale[n] = max(max|w[n, :]| / 448, 1e-12)
//   activation a [..., K]   -> s_a = max(max|a[row, :]| / 448, 1e-12) (f32 [..., 1]) and
//                              a_q = e4m3(a * (1 / s_a)): per row (token), once per activation, written as
//                              element-wise ops and a row reduction so they fuse into the kernel that
//                              produces a (the modulated LayerNorm, the residual + LayerNorm, ...)
//   matmul(a, w)            -> cast((matmul(a_q, w_q) * s_a) * w_scale, the old matmul's dtype): the
//                              scale multiplications are element-wise ops on the f32 accumulator, so
//                              they become the head of the GEMM's fused epilogue
//
// e4m3 rounds to nearest even and saturates at 448 (cvt.rn.satfinite on the GPU, dsl/numerics.ts on
// the CPU), so the CPU plan (JS backend) quantises exactly as the kernels do.
//
// Two fusion barriers (a view: the value is stored and the next ops start a new kernel) keep the bf16
// plan's GEMM epilogues intact; both are decided on the graph as written, with the bf16 plan's own
// fusion (fuse + absorbEpilogues):
//  - an activation computed in a GEMM's epilogue (the GELU output of fc1 feeding fc2) is quantised by
//    a row kernel of its own: its row spans several CTAs of that GEMM, so the absmax cannot be part of
//    the epilogue;
//  - a matmul whose result the bf16 plan did not fuse (its consumers reduce over the row: a bias +
//    RMSNorm, a residual + LayerNorm) stores its dequantised result, so the dequantisation alone is the
//    FP8 GEMM's epilogue and the row kernel after it is the bf16 plan's.
import { GraphBuilder } from './frontend.js';
import { absorbEpilogues } from './epilogue.js';
import { fuse } from './fuse.js';
import type { GNode, LayerGraph } from './graph.js';

/** e4m3's largest finite value: a row's (or weight row's) absmax maps onto it */
export const E4M3_MAX = 448;
/** the smallest scale (keeps an all-zero row finite), as models/kernels/fp8.ts */
export const FP8_MIN_SCALE = 1e-12;

export interface Fp8Rewrite {
  graph: LayerGraph;
  /** argument positions (in the new graph's inputs) of the quantised weights; each one's scale follows it */
  weights: number[];
}

/** The Linear weights of `g` that go FP8: layer inputs used only as the B of Linears. */
function fp8Weights(g: LayerGraph): Set<number> {
  const consumers = new Map<number, GNode[]>();
  for (const n of g.nodes) for (const i of n.inputs) consumers.set(i.id, [...(consumers.get(i.id) ?? []), n]);
  const out = new Set<number>();
  const returned = new Set(g.outputs.map((o) => o.id));
  for (const w of g.inputs) {
    const s = w.type.shape;
    const dt = w.type.dtype;
    if (s.length !== 2 || (dt !== 'bf16' && dt !== 'f16') || returned.has(w.id)) continue;
    const k = s[1];
    if (typeof k !== 'number' || k % 16 !== 0) continue; // TMA rows of 16-byte multiples
    const users = consumers.get(w.id) ?? [];
    const linear = (u: GNode) =>
      u.op === 'matmul' && u.transB && u.inputs[1] === w && u.inputs[0] !== w && u.inputs[0]!.type.dtype === dt;
    if (users.length && users.every(linear)) out.add(w.id);
  }
  return out;
}

/** Rewrites the Linears of `g` to FP8 (see above); `fuseEpilogues` as the plan's option. */
export function rewriteFp8(g: LayerGraph, fuseEpilogues = true): Fp8Rewrite {
  const quantWeights = fp8Weights(g);
  if (!quantWeights.size) return { graph: g, weights: [] };
  // the bf16 plan's fusion: which matmuls keep an epilogue, which values an epilogue computes
  const absorbs = fuseEpilogues ? absorbEpilogues(g, fuse(g)) : new Map();
  const fusedMatmuls = new Set([...absorbs.values()].map((m: GNode) => m.id));
  const inEpilogue = new Set<number>();
  for (const grp of absorbs.keys()) for (const n of grp.nodes) inEpilogue.add(n.id);

  const b = new GraphBuilder();
  const map = new Map<number, GNode>();
  const scaleOf = new Map<number, GNode>();
  const inputs: GNode[] = [];
  const weights: number[] = [];
  for (const w of g.inputs) {
    if (w.op !== 'input') throw new Error(`internal: layer input %${w.id} is a ${w.op}`);
    if (quantWeights.has(w.id)) {
      weights.push(inputs.length);
      const q = b.input(inputs.length, w.name, { dtype: 'e4m3', shape: [...w.type.shape] }, w.span);
      inputs.push(q);
      map.set(w.id, q);
      const s = b.input(inputs.length, `${w.name}_scale`, { dtype: 'f32', shape: [w.type.shape[0]!] }, w.span);
      inputs.push(s);
      scaleOf.set(w.id, s);
    } else {
      const c = b.input(inputs.length, w.name, { dtype: w.type.dtype, shape: [...w.type.shape] }, w.span);
      inputs.push(c);
      map.set(w.id, c);
    }
  }

  const quantised = new Map<number, { q: GNode; s: GNode }>();
  /** a [..., K] (old node) -> e4m3 values and per-row scales, built once per activation */
  const quantise = (a: GNode): { q: GNode; s: GNode } => {
    const known = quantised.get(a.id);
    if (known) return known;
    const span = a.span;
    let src = map.get(a.id)!;
    if (inEpilogue.has(a.id) || a.op === 'matmul') src = b.reshape(src, [...src.type.shape], span);
    const f = b.cast(src, 'f32', span);
    const amax = b.reduce('max', b.unary('abs', f, span), -1, true, span);
    const s = b.binary(
      'maximum',
      b.binary('div', amax, b.literal(E4M3_MAX, span), span),
      b.literal(FP8_MIN_SCALE, span, '1e-12'),
      span,
    );
    const q = b.cast(b.binary('mul', f, b.binary('div', b.literal(1, span), s, span), span), 'e4m3', span);
    const r = { q, s };
    quantised.set(a.id, r);
    return r;
  };

  for (const n of g.nodes) {
    if (n.op === 'input') continue;
    const w = n.inputs[1];
    if (n.op === 'matmul' && w && quantWeights.has(w.id)) {
      const span = n.span;
      const a = quantise(n.inputs[0]!);
      const acc = b.matmul(a.q, map.get(w.id)!, true, span);
      let y = b.cast(b.binary('mul', b.binary('mul', acc, a.s, span), scaleOf.get(w.id)!, span), n.type.dtype, span);
      if (!fusedMatmuls.has(n.id)) y = b.reshape(y, [...y.type.shape], span);
      map.set(n.id, y);
      continue;
    }
    map.set(
      n.id,
      b.copy(
        n,
        n.inputs.map((i) => map.get(i.id)!),
      ),
    );
  }
  return {
    graph: { ...g, inputs, outputs: g.outputs.map((o) => map.get(o.id)!), nodes: b.nodes },
    weights,
  };
}
