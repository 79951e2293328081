// GEMM epilogue fusion: a matmul (a Linear, B = [N, K]) whose only consumer is one element-wise
// fusion group producing a single tensor of the matmul's shape becomes one GEMM launch, with the
// group's ops generated as the GEMM's per-element epilogue (C++ over the f32 accumulator, the row and
// the column). The group is the layer DSL's own code: bias adds, activations, gates, residuals, casts
// — whatever the layer wrote — compiled with the same op table and rounding rules as the group
// kernel it replaces (the matmul result is first rounded to the matmul's dtype, as the unfused plan
// stores it). Other tensors the group reads are loaded with broadcast indexing from (row, col).
import type { GemmArgType, GemmEpilogue } from '../../dsl/artifact.js';
import { cType, elementwiseExpr, fromStorage, lit, roundTo, storageType } from '../backend-cuda.js';
import { isFloat } from '../ir.js';
import { colDimCount, type FusionGroup, type PlanNode } from './fuse.js';
import type { Dim, GNode, LayerGraph } from './graph.js';

export interface EpilogueFusion {
  /** the value the GEMM stores (the group's one output) */
  output: GNode;
  epilogue: Required<Pick<GemmEpilogue, 'custom'>>;
  /** values of the custom parameters, in order: a tensor (node) or a dim's run-time value */
  args: ({ node: GNode } | { dims: Dim[] })[];
}

const MAX_LEADING = 4;

/**
 * Tile widths whose clusters cover a row of N columns exactly (N / bn CTAs, at most 8): the GEMM
 * tiles a row-sum epilogue (a reduction over the matmul's row, e.g. an RMSNorm) can run on.
 */
export function rowSumTiles(N: number | string): number[] {
  if (typeof N !== 'number') return [];
  return [256, 192, 128, 64].filter((bn) => N % bn === 0 && N / bn <= 8);
}

/** The group's one reduction, when it sums over the matmul's whole row (see fuseEpilogue). */
function rowReduction(mm: GNode, grp: FusionGroup): GNode | undefined {
  const reds = grp.nodes.filter((n) => n.op === 'reduce');
  const r = reds[0];
  const N = mm.type.shape[mm.type.shape.length - 1]!;
  if (reds.length !== 1 || r?.op !== 'reduce' || r.fn !== 'sum') return undefined;
  const x = r.inputs[0]!.type.shape;
  return r.axis === x.length - 1 && x[x.length - 1] === N && rowSumTiles(N).length ? r : undefined;
}

/** Why `mm` + `grp` cannot fuse, or undefined when they can. */
export function epilogueObstacle(mm: GNode, grp: FusionGroup, usedOutside: boolean): string | undefined {
  if (mm.op !== 'matmul' || !mm.transB) return 'not a Linear (B must be [N, K])';
  const [a, b] = mm.inputs as [GNode, GNode];
  if (a.type.dtype !== b.type.dtype || !['bf16', 'f16', 'e4m3'].includes(a.type.dtype))
    return 'inputs are not bf16/f16/e4m3';
  if (usedOutside) return 'the matmul result is needed outside the group';
  if (grp.outputs.length !== 1) return 'the group stores more than one tensor';
  const out = grp.outputs[0]!;
  const N = mm.type.shape[mm.type.shape.length - 1]!;
  const k = colDimCount(out.type.shape, N);
  if (k === undefined || out.type.shape.slice(0, -k).join() !== mm.type.shape.slice(0, -1).join())
    return "the group's output is not the matmul's shape";
  if (!['bf16', 'f16', 'f32'].includes(out.type.dtype)) return `a ${out.type.dtype} output`;
  if (mm.type.shape.length - 1 > MAX_LEADING) return 'too many leading dims';
  for (const n of grp.nodes) {
    if (n.op === 'reduce' && !rowReduction(mm, grp))
      return 'a reduction other than one sum over the whole row in clusters of at most 8 tiles';
    if (n.op === 'swapPairs') return 'swapPairs reads a neighbouring column';
    if (n.op === 'slice' || n.op === 'concat') return `a ${n.op} reads other columns`;
    // the epilogue indexes by (row, col) of the matmul: a reshape of its row into several dims may
    // only be the group's last step
    if (
      n.op !== 'reshape' &&
      n.type.shape[n.type.shape.length - 1] !== N &&
      n.type.shape[n.type.shape.length - 1] !== 1
    )
      return 'a row seen as several dims';
  }
  return undefined;
}

/**
 * The GEMM epilogues of a fused graph: each matmul whose result is read by one element-wise group
 * only (and that group can be its epilogue, see epilogueObstacle) -> that group.
 */
export function absorbEpilogues(g: LayerGraph, order: readonly PlanNode[]): Map<FusionGroup, GNode> {
  const consumers = new Map<number, GNode[]>();
  for (const n of g.nodes) for (const i of n.inputs) consumers.set(i.id, [...(consumers.get(i.id) ?? []), n]);
  const graphOutputs = new Set(g.outputs.map((o) => o.id));
  const absorbs = new Map<FusionGroup, GNode>();
  const groupOfNode = new Map<number, FusionGroup>();
  for (const o of order) if (o.kind === 'group') for (const n of o.group.nodes) groupOfNode.set(n.id, o.group);
  for (const o of order) {
    if (o.kind !== 'matmul') continue;
    const mm = o.node;
    const users = consumers.get(mm.id) ?? [];
    const grp = users.length ? groupOfNode.get(users[0]!.id) : undefined;
    if (!grp || absorbs.has(grp)) continue;
    const outside = graphOutputs.has(mm.id) || users.some((u) => groupOfNode.get(u.id) !== grp);
    if (epilogueObstacle(mm, grp, outside) !== undefined) continue;
    absorbs.set(grp, mm);
  }
  return absorbs;
}

/** Generates the epilogue of `mm` fused with `grp`; call epilogueObstacle first. */
export function fuseEpilogue(mm: GNode, grp: FusionGroup): EpilogueFusion {
  const out = grp.outputs[0]!;
  // (row, col) of the matmul's [..., N] result, which the output may only reshape (epilogueObstacle)
  const shape = mm.type.shape;
  const leading = shape.slice(0, -1);
  const params: { name: string; type: GemmArgType; ctype: string }[] = [];
  const args: EpilogueFusion['args'] = [];
  const dimNames = new Map<string, string>();
  const dimExpr = (d: Dim): string => {
    if (typeof d === 'number') return String(d);
    let name = dimNames.get(d);
    if (!name) {
      name = `d_${d.replace(/\W/g, '_')}`;
      dimNames.set(d, name);
      params.push({ name, type: 'i32', ctype: 'const int' });
      args.push({ dims: [d] });
    }
    return name;
  };
  const red = rowReduction(mm, grp);
  // nodes the reduction's input is computed from (a row-sum epilogue emits them twice: once per
  // element for the sum, once for the stored value)
  const feeds = new Set<number>();
  const mark = (n: GNode): void => {
    if (feeds.has(n.id) || !grp.nodes.includes(n)) return;
    feeds.add(n.id);
    n.inputs.forEach(mark);
  };
  if (red) mark(red.inputs[0]!);
  const known = new Set<string>();
  const param = (p: (typeof params)[number], a: EpilogueFusion['args'][number]) => {
    if (known.has(p.name)) return;
    known.add(p.name);
    params.push(p);
    args.push(a);
  };
  /** C++ statements for the group's nodes (`only`: just those), and the value of each node */
  const emit = (only?: Set<number>) => {
    const lines: string[] = [];
    // coordinates of `row` in the output's leading dims (the GEMM's M is their product)
    const coord: string[] = [];
    if (leading.length === 1) coord.push('row');
    else if (leading.length > 1) {
      lines.push('int r_ = row;');
      for (let d = leading.length - 1; d > 0; d--) {
        lines.push(
          `[[maybe_unused]] const int i${d} = r_ % ${dimExpr(leading[d]!)};`,
          `r_ /= ${dimExpr(leading[d]!)};`,
        );
        coord[d] = `i${d}`;
      }
      lines.push('[[maybe_unused]] const int i0 = r_;');
      coord[0] = 'i0';
    }
    const vals = new Map<number, { expr: string; dtype: GNode['type']['dtype'] }>();
    // the matmul result as the unfused plan stores it: rounded to its dtype
    vals.set(mm.id, { expr: 'm_', dtype: mm.type.dtype });
    lines.push(`const float m_ = ${roundTo(mm.type.dtype, 'y')};`);
    const inside = new Set(grp.nodes.map((n) => n.id));
    const valueOf = (n: GNode): string => {
      const have = vals.get(n.id);
      if (have) return have.expr;
      if (n.op === 'const') return lit(n.value, n.type.dtype);
      if (n.op === 'dim') return `(${dimExpr(n.name)})`;
      if (inside.has(n.id)) throw new Error(`internal: epilogue node %${n.id} used before it is defined`);
      // an outside tensor: load with broadcast indexing against the output's shape
      const s = n.type.shape;
      const off = shape.length - s.length;
      const terms: string[] = [];
      let stride = '1';
      for (let d = s.length - 1; d >= 0; d--) {
        const od = d + off;
        if (s[d] !== 1) {
          const c = od === shape.length - 1 ? 'col' : coord[od]!;
          terms.push(stride === '1' ? `(long long)${c}` : `(long long)${c} * ${stride}`);
        }
        stride = stride === '1' ? dimExpr(s[d]!) : `${stride} * ${dimExpr(s[d]!)}`;
      }
      const pname = `t${n.id}`;
      param({ name: pname, type: 'ptr', ctype: `const ${storageType[n.type.dtype]}* __restrict__` }, { node: n });
      const v = `v${n.id}`;
      lines.push(
        `const ${cType[n.type.dtype]} ${v} = ${fromStorage(n.type.dtype, `${pname}[${terms.join(' + ') || '0'}]`)};`,
      );
      vals.set(n.id, { expr: v, dtype: n.type.dtype });
      return v;
    };
    for (const n of grp.nodes) {
      if (only && !only.has(n.id)) continue;
      if (n.op === 'reshape') {
        vals.set(n.id, { expr: valueOf(n.inputs[0]!), dtype: n.type.dtype });
        continue;
      }
      if (n === red) {
        // the row's sum of the reduction's input, from the cluster (a float, the reduce's dtype)
        vals.set(n.id, { expr: 'rowsum', dtype: n.type.dtype });
        continue;
      }
      const a = (i: number) => valueOf(n.inputs[i]!);
      const d = n.type.dtype;
      const e = elementwiseExpr(n, a, n.inputs[0]!.type.dtype, d);
      if (e === undefined) throw new Error(`internal: ${n.op} in a GEMM epilogue`);
      const v = `v${n.id}`;
      lines.push(`const ${cType[d]} ${v} = ${e};`);
      vals.set(n.id, { expr: v, dtype: d });
    }
    return { lines, valueOf };
  };
  const main = emit();
  const result = main.valueOf(out);
  const lines = [...main.lines, `y = ${isFloat(out.type.dtype) ? result : `(float)(${result})`};`];
  let rowSum: string | undefined;
  if (red) {
    const pre = emit(feeds);
    rowSum = [...pre.lines, `s = (float)(${pre.valueOf(red.inputs[0]!)});`].join('\n    ');
  }
  return {
    output: out,
    epilogue: { custom: { params, body: lines.join('\n    '), ...(rowSum ? { rowSum } : {}) } },
    args,
  };
}
