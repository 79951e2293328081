// The layer graph IR: a dataflow graph over tensors whose shapes mix static sizes and symbolic dims
// (names bound when a plan runs). Composite ops are already decomposed into these primitives, so
// fusion only has to reason about element-wise ops, reductions, matmuls and views. Printable as text
// (tests snapshot it) and as Graphviz DOT (`sfc build --graph NAME`), with fused groups as clusters.
import type { BinaryOp, ElemType, Span, UnaryOp } from '../ir.js';

export type Dim = number | string;

/** The attention op's masks, each a static size or a dim bound at run time. */
export interface AttentionMaskDims {
  blockTokens?: Dim;
  windowTokens?: Dim;
  sinkTokens?: Dim;
}

export interface TType {
  dtype: ElemType;
  shape: Dim[];
}

export type GraphOp =
  | { op: 'input'; index: number; name: string }
  | { op: 'const'; value: number; weak: boolean }
  | { op: 'dim'; name: string }
  | { op: 'binary'; fn: BinaryOp }
  | { op: 'unary'; fn: UnaryOp }
  | { op: 'cast' }
  | { op: 'where' }
  | { op: 'swapPairs' }
  | { op: 'reduce'; fn: 'sum' | 'max'; axis: number; keepdim: boolean }
  | { op: 'matmul'; transB: boolean }
  | {
      op: 'attention';
      scale: number;
      /**
       * Masks over a KV cache (q are the last Lq of the Lk keys' positions): chunk-causal blocks of
       * blockTokens, a local window of windowTokens back from the end of the query's block, and
       * sinkTokens at the start that stay visible (runtime/attention.ts AttentionMask).
       */
      mask?: AttentionMaskDims;
    }
  | {
      /** x [T, H, W, Cin] * w [Cout, kt, ky, kx, Cin] -> f32 [T', H', W', Cout] (compiler/layer/conv.ts) */
      op: 'conv';
      kernel: [number, number, number];
      stride: [number, number, number];
      /** zeros (before, after) per dim t, y, x */
      pad: [[number, number], [number, number], [number, number]];
    }
  | { op: 'reshape' }
  | { op: 'slice'; axis: number; start: number }
  | { op: 'concat'; axis: number }
  | { op: 'permute'; perm: number[] };

export type GNode = GraphOp & {
  id: number;
  inputs: GNode[];
  type: TType;
  span: Span;
};

export interface LayerGraph {
  name: string;
  file: string;
  span: Span;
  inputs: GNode[];
  outputs: GNode[];
  /** every node, in a topological (definition) order */
  nodes: GNode[];
}

export const fmtDim = (d: Dim): string => String(d);
export const fmtShape = (s: readonly Dim[]): string => `[${s.map(fmtDim).join(', ')}]`;
export const fmtTType = (t: TType): string => (t.shape.length ? `${t.dtype}${fmtShape(t.shape)}` : t.dtype);

export const isElementwise = (n: GNode): boolean =>
  n.op === 'binary' || n.op === 'unary' || n.op === 'cast' || n.op === 'where' || n.op === 'swapPairs';

function ref(n: GNode): string {
  if (n.op === 'const') return `${n.value}:${n.type.dtype}`;
  if (n.op === 'input') return n.name;
  if (n.op === 'dim') return `dim(${n.name})`;
  return `%${n.id}`;
}

function describe(n: GNode): string {
  const a = n.inputs.map(ref).join(', ');
  switch (n.op) {
    case 'binary':
    case 'unary':
      return `${n.fn} ${a}`;
    case 'reduce':
      return `reduce.${n.fn} ${a} axis=${n.axis}${n.keepdim ? ' keepdim' : ''}`;
    case 'matmul':
      return `matmul${n.transB ? '.t' : ''} ${a}`;
    case 'attention':
      return `attention ${a} scale=${n.scale}${
        n.mask
          ? ` ${Object.entries(n.mask)
              .map(([k, v]) => `${k}=${String(v)}`)
              .join(' ')}`
          : ''
      }`;
    case 'conv':
      return `conv ${a} k=${n.kernel.join('x')} stride=${n.stride.join('x')} pad=${n.pad.map((p) => p.join(':')).join(',')}`;
    case 'permute':
      return `permute ${a} [${n.perm.join(', ')}]`;
    case 'concat':
      return `concat ${a} axis=${n.axis}`;
    case 'slice':
      return `slice ${a} axis=${n.axis} [${n.start}, ${n.start + Number(n.type.shape[n.axis])})`;
    default:
      return `${n.op} ${a}`;
  }
}

export function printGraph(g: LayerGraph): string {
  const lines = [`layer ${g.name}(${g.inputs.map((i) => `${ref(i)}: ${fmtTType(i.type)}`).join(', ')})`];
  for (const n of g.nodes) {
    if (n.op === 'input' || n.op === 'const' || n.op === 'dim') continue;
    lines.push(`  %${n.id} = ${describe(n)} : ${fmtTType(n.type)}`);
  }
  lines.push(`  return ${g.outputs.map(ref).join(', ')}`);
  return lines.join('\n') + '\n';
}

/** Graphviz DOT; `groups` (node id -> group name) draws fused kernels as clusters. */
export function graphToDot(g: LayerGraph, groups: ReadonlyMap<number, string> = new Map()): string {
  const q = (s: string) => `"${s.replace(/"/g, '\\"')}"`;
  const lines = [`digraph ${q(g.name)} {`, '  rankdir=TB; node [shape=box, fontname="monospace", fontsize=10];'];
  const byGroup = new Map<string, GNode[]>();
  for (const n of g.nodes) {
    if (n.op === 'const' || n.op === 'dim') continue;
    const grp = groups.get(n.id);
    if (grp) byGroup.set(grp, [...(byGroup.get(grp) ?? []), n]);
  }
  const label = (n: GNode) => `${n.op === 'input' ? n.name : describe(n).split(' ')[0]}\\n${fmtTType(n.type)}`;
  let c = 0;
  for (const [grp, ns] of byGroup) {
    lines.push(`  subgraph cluster_${c++} { label=${q(grp)}; style=rounded; color=blue;`);
    for (const n of ns) lines.push(`    n${n.id} [label=${q(label(n))}];`);
    lines.push('  }');
  }
  for (const n of g.nodes) {
    if (n.op === 'const' || n.op === 'dim' || groups.has(n.id)) continue;
    const shape =
      n.op === 'input' ? 'ellipse' : n.op === 'matmul' || n.op === 'attention' || n.op === 'conv' ? 'box3d' : 'box';
    lines.push(`  n${n.id} [label=${q(label(n))}, shape=${shape}];`);
  }
  for (const n of g.nodes) {
    for (const i of n.inputs) if (i.op !== 'const' && i.op !== 'dim') lines.push(`  n${i.id} -> n${n.id};`);
  }
  g.outputs.forEach((o, i) => {
    lines.push(`  out${i} [label="output ${i}", shape=ellipse]; n${o.id} -> out${i};`);
  });
  lines.push('}');
  return lines.join('\n') + '\n';
}
