// Layer graph -> launch plan: fuse, generate a kernel artifact per fusion group, turn matmuls into
// library steps and reshapes into views, give every value a buffer, and let temporaries that are
// dead reuse the memory of earlier ones of the same dtype and shape.
import type { LaunchPlan, PlanArg, PlanBuffer, PlanStep } from '../../dsl/plan.js';
import { artifactOf } from '../compile.js';
import { join } from 'node:path';
import { packageRoot } from '../../dsl/paths.js';
import type { KernelArtifact } from '../../dsl/artifact.js';
import { compileFiles } from '../compile.js';
import type { Dim, GNode, LayerGraph } from './graph.js';
import { groupKernel } from './codegen.js';
import { absorbEpilogues, fuseEpilogue, rowSumTiles } from './epilogue.js';
import { absorbConvs, convStep, gridReads, padWrites, prologueGroups } from './conv.js';
import { rewriteFp8 } from './fp8.js';
import { fuse, type FusionGroup } from './fuse.js';
import { gemmCooperativeCandidates, gemmPingpongCandidates, gemmSm90, maxStages } from '../templates/gemm.js';
import { attentionSm90 } from '../templates/attention.js';
import { attentionMma, defaultAttentionMmaSpec } from '../templates/attention-mma.js';
import { gemmMmaCandidates } from '../templates/gemm-mma.js';

export interface PlanOptions {
  /**
   * Fuse a Linear with the element-wise group that consumes it into one GEMM-template launch
   * (sm_90a, sm_80 and sm_89 instantiations; other devices run the unfused fallback). Default true.
   */
  fuseGemmEpilogues?: boolean;
  /**
   * FP8 mode (compiler/layer/fp8.ts): every Linear whose weight is a layer input becomes an e4m3 GEMM
   * with per-output-channel weight scales (the weight input becomes e4m3 and its scale, f32 [N], the
   * next input; `LaunchPlan.fp8Weights` lists them) and per-row activation scales, the activation
   * quantised in the kernel that produces it and the scales applied in the GEMM's epilogue.
   */
  fp8?: boolean;
}

/**
 * Tile widths the plan offers the GEMM autotuner (one CTA per tile; all validated on the H100/H200);
 * 224 fits N = 1536 in 7 column tiles (259 tiles of 128 rows at M = 4680: 2 full waves of 132 SMs).
 */
const GEMM_TILES = [128, 192, 224, 256];

export function planLayer(graph: LayerGraph, options: PlanOptions = {}): LaunchPlan {
  let g = graph;
  let fp8Weights: number[] | undefined;
  if (options.fp8) {
    // decided on the graph as written: which activations and matmul results the bf16 plan fuses
    const r = rewriteFp8(g, options.fuseGemmEpilogues ?? true);
    g = r.graph;
    if (r.weights.length) fp8Weights = r.weights;
  }
  const order = fuse(g);
  // matmuls whose only consumer is one element-wise group: that group becomes the GEMM's epilogue
  const absorbs = (options.fuseGemmEpilogues ?? true) ? absorbEpilogues(g, order) : new Map<FusionGroup, GNode>();
  const deferred = new Set([...absorbs.values()].map((mm) => mm.id));
  // convolutions whose one consumer group reads their padded grid (no crop); they run at its place
  const convAbsorbs = absorbConvs(g, order, absorbs);
  const convDeferred = new Set([...convAbsorbs.values()].map((c) => c.id));
  // groups that write a conv's input into its padded buffer: they run inside the conv step
  const prologues = prologueGroups(g, order, absorbs);
  const prologueOf = new Map<number, PlanStep>();
  const buffers: PlanBuffer[] = [];
  const bufOf = new Map<number, number>();
  const outputs = new Set(g.outputs.map((o) => o.id));
  const newBuffer = (n: GNode, kind: PlanBuffer['kind'], extra: Partial<PlanBuffer> = {}): number => {
    const id = buffers.length;
    buffers.push({ id, dtype: n.type.dtype, shape: [...n.type.shape], kind, ...extra });
    bufOf.set(n.id, id);
    return id;
  };
  for (const i of g.inputs)
    newBuffer(i, 'input', { of: i.op === 'input' ? i.index : 0, name: i.op === 'input' ? i.name : undefined });
  const produce = (n: GNode) => bufOf.get(n.id) ?? newBuffer(n, outputs.has(n.id) ? 'output' : 'temp');

  const matmulStep = (n: GNode): PlanStep => {
    const [a, b] = n.inputs as [GNode, GNode];
    const out = produce(n);
    const as = a.type.shape;
    return {
      kind: 'matmul',
      a: bufOf.get(a.id)!,
      b: bufOf.get(b.id)!,
      out,
      transB: n.op === 'matmul' && n.transB,
      m: as.slice(0, -1),
      k: [as[as.length - 1]!],
      n: [n.type.shape[n.type.shape.length - 1]!],
      label: `matmul %${n.id}`,
    };
  };
  const steps: PlanStep[] = [];
  let k = 0;
  for (const item of order) {
    if (item.kind === 'view') {
      const src = bufOf.get(item.node.inputs[0]!.id)!;
      newBuffer(item.node, 'view', { of: src });
      continue;
    }
    if (item.kind === 'matmul') {
      if (!deferred.has(item.node.id)) steps.push(matmulStep(item.node));
      continue;
    }
    if (item.kind === 'conv') {
      const [x, w] = item.node.inputs as [GNode, GNode];
      if (!convDeferred.has(item.node.id)) {
        const pro = prologueOf.get(item.node.id);
        steps.push(convStep(item.node, bufOf.get(x.id)!, bufOf.get(w.id)!, produce(item.node), undefined, pro));
      }
      continue;
    }
    if (item.kind === 'attention') {
      const n = item.node;
      const [q, kk, v] = n.inputs as [GNode, GNode, GNode];
      const out = produce(n);
      const lse = buffers.length;
      buffers.push({ id: lse, dtype: 'f32', shape: q.type.shape.slice(0, 2), kind: 'temp' });
      const [Lq, H, D] = q.type.shape as [Dim, Dim, number];
      const kernelStep: PlanStep = {
        kind: 'kernel',
        artifact: attentionArtifact(D),
        grid: [[Lq], [H]],
        args: [
          { buffer: bufOf.get(q.id)! },
          { buffer: bufOf.get(kk.id)! },
          { buffer: bufOf.get(v.id)! },
          { buffer: out },
          { buffer: lse },
          { dims: [H] },
          { dims: [kk.type.shape[0]!] },
          { value: n.op === 'attention' ? n.scale : 1 },
        ],
        label: `attention %${n.id}`,
      };
      // the flash-attention templates (sm_90a; mma.sync for sm_80 / sm_89) where built for this head dim and dtype
      const dt = q.type.dtype;
      const mask = n.op === 'attention' ? n.mask : undefined;
      if (mask && !((D === 64 || D === 128) && (dt === 'bf16' || dt === 'f16')))
        throw new Error(`masked attention runs on the flash-attention templates: head dim 64 or 128, bf16 or f16`);
      if ((D === 64 || D === 128) && (dt === 'bf16' || dt === 'f16')) {
        steps.push({
          kind: 'attention',
          candidates: [
            attentionSm90(
              D === 128 ? { input: dt, headDim: D, bc: 128, stages: 3 } : { input: dt, headDim: D, bc: 64, stages: 4 },
            ),
            attentionMma(defaultAttentionMmaSpec(dt, D)),
          ],
          q: bufOf.get(q.id)!,
          k: bufOf.get(kk.id)!,
          v: bufOf.get(v.id)!,
          out,
          lq: [Lq],
          lk: [kk.type.shape[0]!],
          heads: [H],
          headDim: D,
          scale: n.op === 'attention' ? n.scale : 1,
          // masks: the templates' (and on the CPU their JS twin's); the DSL kernel computes none
          ...(mask
            ? {
                mask: Object.fromEntries(Object.entries(mask).map(([key, d]) => [key, [d]])),
              }
            : {}),
          fallback: mask ? [] : [kernelStep],
          label: `attention %${n.id}${mask ? ' (masked)' : ''}`,
        });
      } else steps.push(kernelStep);
      continue;
    }
    const grp = item.group;
    const name = `${g.name}_f${k++}`;
    const mm = absorbs.get(grp);
    // the unfused matmul (into a temp only the fallback uses) comes first when the group absorbs it
    const fallbackMatmul = mm ? matmulStep(mm) : undefined;
    const cv = convAbsorbs.get(grp);
    const feeds = prologues.get(grp);
    if (cv) produce(cv);
    const layouts = new Map([...(cv ? gridReads(cv) : []), ...(feeds ? padWrites(feeds) : [])]);
    const gk = groupKernel(grp, name, g.file, grp.nodes[0]!.span, layouts);
    for (const o of grp.outputs) produce(o);
    const args: PlanArg[] = gk.args.map((a) => ('node' in a ? { buffer: bufOf.get(a.node.id)! } : { dims: a.dims }));
    const kernelStep: PlanStep = {
      kind: 'kernel',
      artifact: artifactOf(gk.ir),
      grid: [gk.grid.length ? gk.grid : [1]],
      args,
      label: `${name}: ${grp.nodes.length} ops (${[...new Set(grp.nodes.map((x) => (x.op === 'binary' || x.op === 'unary' ? x.fn : x.op)))].join(', ')})`,
    };
    if (cv || feeds) {
      const [x, w] = (cv?.inputs ?? []) as [GNode, GNode];
      const step = cv
        ? convStep(cv, bufOf.get(x.id)!, bufOf.get(w.id)!, bufOf.get(cv.id)!, kernelStep, prologueOf.get(cv.id))
        : kernelStep;
      if (feeds) prologueOf.set(feeds.id, step);
      else steps.push(step);
      continue;
    }
    if (!mm || !fallbackMatmul) {
      steps.push(kernelStep);
      continue;
    }
    const fused = fuseEpilogue(mm, grp);
    const n0 = mm.type.shape[mm.type.shape.length - 1]!;
    const [a, b] = mm.inputs as [GNode, GNode];
    const input = a.type.dtype as 'bf16' | 'f16' | 'e4m3';
    const output = fused.output.type.dtype as 'bf16' | 'f16' | 'f32';
    steps.push({
      kind: 'gemm',
      candidates: fused.epilogue.custom.rowSum
        ? // a row reduction in the epilogue: the tiles of a row as one cluster (the staged schedule)
          rowSumTiles(n0).map((bn) =>
            gemmSm90({
              input,
              output,
              bn,
              stages: maxStages(bn),
              epilogue: { custom: { ...fused.epilogue.custom, rowCluster: Number(n0) / bn } },
            }),
          )
        : [
            ...GEMM_TILES.map((bn) => gemmSm90({ input, output, bn, stages: maxStages(bn), epilogue: fused.epilogue })),
            // the persistent ping-pong schedule (one consumer's epilogue under the other's mainloop)
            ...gemmPingpongCandidates({ input, output, epilogue: fused.epilogue }),
            // the persistent cooperative schedule (epilogue values stored out of ring slots with TMA by the producer warpgroup)
            ...gemmCooperativeCandidates({ input, output, epilogue: fused.epilogue }),
            // mma.sync for sm_80 / sm_89 (the runtime takes the candidates of the device's architecture)
            ...gemmMmaCandidates({ input, output, epilogue: fused.epilogue }),
          ],
      a: bufOf.get(a.id)!,
      b: bufOf.get(b.id)!,
      out: bufOf.get(fused.output.id)!,
      m: a.type.shape.slice(0, -1),
      k: [a.type.shape[a.type.shape.length - 1]!],
      n: [mm.type.shape[mm.type.shape.length - 1]!],
      extra: fused.args.map((x) => ('node' in x ? { buffer: bufOf.get(x.node.id)! } : { dims: x.dims })),
      fallback: [fallbackMatmul, kernelStep],
      label: `gemm %${mm.id} + ${kernelStep.label}`,
    });
  }
  // graph outputs that are inputs or views still need their own buffer ids in `outputs`
  const outIds = g.outputs.map((o) => bufOf.get(o.id)!);
  return {
    name: g.name,
    file: g.file,
    inputs: g.inputs.map((i) => bufOf.get(i.id)!),
    outputs: outIds,
    buffers,
    steps,
    reuse: planReuse(buffers, steps, outIds),
    ...(fp8Weights ? { fp8Weights } : {}),
  };
}

/** Every buffer a step touches (a fused GEMM: its operands and everything its fallback touches). */
export function stepBuffers(s: PlanStep): number[] {
  switch (s.kind) {
    case 'kernel':
      return s.args.flatMap((a) => ('buffer' in a ? [a.buffer] : []));
    case 'matmul':
      return [s.a, s.b, s.out];
    case 'conv':
      return [s.x, s.w, s.out, ...[s.epilogue, s.prologue].flatMap((p) => (p ? stepBuffers(p) : []))];
    case 'attention':
      return [s.q, s.k, s.v, s.out, ...s.fallback.flatMap(stepBuffers)];
    case 'gemm':
      return [
        s.a,
        s.b,
        s.out,
        ...s.extra.flatMap((a) => ('buffer' in a ? [a.buffer] : [])),
        ...s.fallback.flatMap(stepBuffers),
      ];
  }
}

/** Temps whose last use has passed lend their memory to later temps of the same dtype and shape. */
function planReuse(buffers: PlanBuffer[], steps: PlanStep[], outputs: number[]): Record<number, number> {
  const root = (id: number): number => (buffers[id]!.kind === 'view' ? root(buffers[id]!.of!) : id);
  const lastUse = new Map<number, number>();
  const firstDef = new Map<number, number>();
  steps.forEach((s, i) => {
    const reads = stepBuffers(s);
    for (const b of reads) {
      const r = root(b);
      lastUse.set(r, i);
      if (!firstDef.has(r)) firstDef.set(r, i);
    }
  });
  for (const o of outputs) lastUse.set(root(o), Infinity);
  const reuse: Record<number, number> = {};
  const free: number[] = [];
  steps.forEach((_, i) => {
    for (const b of buffers) {
      if (b.kind !== 'temp' || firstDef.get(b.id) !== i) continue;
      const key = `${b.dtype}:${b.shape.join(',')}`;
      const j = free.findIndex((f) => `${buffers[f]!.dtype}:${buffers[f]!.shape.join(',')}` === key);
      if (j >= 0) reuse[b.id] = free.splice(j, 1)[0]!;
    }
    for (const b of buffers) {
      if (b.kind === 'temp' && lastUse.get(b.id) === i) free.push(reuse[b.id] ?? b.id);
    }
  });
  return reuse;
}

/**
 * The attention kernel of the project's kernel library (models/kernels/attention.ts), specialised
 * for the head dim. The compiler reads it as DSL source, as `sfc build` does.
 */
function attentionArtifact(headDim: number): KernelArtifact {
  const file = join(packageRoot(import.meta.url), 'models', 'kernels', 'attention.ts');
  const a = compileFiles([file], { consts: { DH: headDim } }).find((x) => x.name === 'attentionFwd');
  if (!a) throw new Error('attentionFwd is missing from models/kernels/attention.ts');
  return a;
}
