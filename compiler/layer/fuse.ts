// Fusion: maximal groups of element-wise ops and last-axis reductions that share one row space
// become one generated kernel (one program per row; a row is one tile of the group's `cols`
// elements); matmuls are library steps; reshapes are views. A group's value that is needed outside
// the group (or is a layer output) is stored; everything else stays in registers.
//
// A row may be seen through several shapes: a token's [DIM] row and its [HEADS, HEAD_DIM] heads are
// the same `cols` elements. A node joins a group when some trailing dims of its shape multiply to the
// group's `cols` (static) and the rest fit its rows, so an RMSNorm over the token and a RoPE over
// the heads that follows it (tables [..., 1, HEAD_DIM] broadcast over the heads) are one kernel; a
// reshape that only regroups those trailing dims joins as a no-op. A reshape to the same shape stays
// a view: passes use it as a fusion barrier (the value is stored, the next ops start a new kernel).
// A slice or concat along the last axis of values in memory (q, k, v out of one fused Linear) is a
// load of column ranges and starts a group that element-wise ops then join.
import type { Dim, GNode, LayerGraph } from './graph.js';
import { isElementwise } from './graph.js';

export interface FusionGroup {
  id: number;
  nodes: GNode[];
  /** the leading dims every program iterates over, and the number of columns of a row */
  rows: Dim[];
  cols: Dim;
  /** values produced outside and read inside */
  inputs: GNode[];
  /** values produced inside and read outside (or returned) */
  outputs: GNode[];
}

export type PlanNode =
  | { kind: 'group'; group: FusionGroup }
  | { kind: 'matmul'; node: GNode }
  | { kind: 'attention'; node: GNode }
  | { kind: 'conv'; node: GNode }
  | { kind: 'view'; node: GNode };

const isLastAxisReduce = (n: GNode) => n.op === 'reduce' && n.axis === n.inputs[0]!.type.shape.length - 1;
/** slices and concats along the last axis: loads of their inputs' column ranges from memory */
const readsColumns = (n: GNode) => (n.op === 'slice' || n.op === 'concat') && n.axis === n.type.shape.length - 1;

/** Dims of `s` broadcast into `rows` (trailing alignment); undefined when they do not fit. */
function fitsRows(s: readonly Dim[], rows: readonly Dim[]): boolean {
  if (s.length > rows.length) return false;
  const off = rows.length - s.length;
  return s.every((d, i) => d === 1 || d === rows[off + i]);
}

/** The larger of two row spaces when one broadcasts into the other, else undefined. */
function mergeRows(a: readonly Dim[], b: readonly Dim[]): Dim[] | undefined {
  if (fitsRows(a, b)) return [...b];
  if (fitsRows(b, a)) return [...a];
  return undefined;
}

/**
 * How many trailing dims of `shape` make up a row of `cols` elements: 1 when the last dim is `cols`,
 * k > 1 when the last k dims are static and multiply to it; undefined when none do.
 */
export function colDimCount(shape: readonly Dim[], cols: Dim): number | undefined {
  if (!shape.length) return undefined;
  if (shape[shape.length - 1] === cols) return 1;
  if (typeof cols !== 'number') return undefined;
  let p = 1;
  for (let k = 1; k <= shape.length; k++) {
    const d = shape[shape.length - k]!;
    if (typeof d !== 'number') return undefined;
    p *= d;
    if (p === cols) return k > 1 ? k : undefined;
    if (p > cols) return undefined;
  }
  return undefined;
}

function rowSpace(n: GNode): { rows: Dim[]; cols: Dim } | undefined {
  const s = n.op === 'reduce' ? n.inputs[0]!.type.shape : n.type.shape;
  if (!s.length) return undefined;
  return { rows: s.slice(0, -1), cols: s[s.length - 1]! };
}

/** The rows of `n` in a group of `cols` columns (its shape split by colDimCount), if it can join. */
function rowsIn(n: GNode, cols: Dim): Dim[] | undefined {
  const s = n.op === 'reduce' ? n.inputs[0]!.type.shape : n.type.shape;
  // a reduction must span the whole row: over the last dim, which is the row
  if (n.op === 'reduce') return s[s.length - 1] === cols ? s.slice(0, -1) : undefined;
  const k = colDimCount(s, cols);
  return k === undefined ? undefined : s.slice(0, s.length - k);
}

/** A reshape that keeps the leading (row) dims of its input and regroups only the row's columns. */
function regroupsColumns(n: GNode, cols: Dim): boolean {
  const x = n.inputs[0]!;
  const [si, so] = [x.type.shape, n.type.shape];
  if (si.join() === so.join()) return false; // same shape: a fusion barrier
  const [ki, ko] = [colDimCount(si, cols), colDimCount(so, cols)];
  return (
    ki !== undefined && ko !== undefined && si.slice(0, si.length - ki).join() === so.slice(0, so.length - ko).join()
  );
}

export function fuse(g: LayerGraph): PlanNode[] {
  const groupOf = new Map<number, FusionGroup>();
  const groups: FusionGroup[] = [];
  const order: PlanNode[] = [];
  let nextId = 0;
  for (const n of g.nodes) {
    if (n.op === 'input' || n.op === 'const' || n.op === 'dim') continue;
    if (n.op === 'conv') {
      order.push({ kind: 'conv', node: n });
      continue;
    }
    if (n.op === 'matmul' || n.op === 'attention') {
      order.push(n.op === 'matmul' ? { kind: 'matmul', node: n } : { kind: 'attention', node: n });
      continue;
    }
    const inGroup = groupOf.get(n.inputs[0]?.id ?? -1);
    if (n.op === 'reshape' && !(inGroup && regroupsColumns(n, inGroup.cols))) {
      order.push({ kind: 'view', node: n });
      continue;
    }
    if (!(isElementwise(n) || isLastAxisReduce(n) || readsColumns(n) || n.op === 'reshape')) {
      throw new Error(
        `${n.op}${n.op === 'reduce' || n.op === 'slice' || n.op === 'concat' ? ` over axis ${n.axis}` : ''} cannot be planned yet (supported: element-wise ops, last-axis reductions, slices and concats, matmul, reshape)`,
      );
    }
    const space = rowSpace(n);
    // try to join the groups of this node's producers (all of them, or a new group); a slice or
    // concat reads its inputs from memory, so it starts a group of its own
    const producerGroups = readsColumns(n)
      ? []
      : [...new Set(n.inputs.map((i) => groupOf.get(i.id)).filter((x): x is FusionGroup => !!x))];
    let target: FusionGroup | undefined;
    if (space && producerGroups.length) {
      const cols = producerGroups[0]!.cols;
      let rows: Dim[] | undefined = rowsIn(n, cols) ?? (space.cols === 1 ? space.rows : undefined);
      const compatible =
        !!rows &&
        producerGroups.every((pg) => {
          if (pg.cols !== cols) return false;
          rows = rows && mergeRows(rows, pg.rows);
          return !!rows;
        });
      // a group must stay acyclic: every producer group must come after... merging producer groups is
      // safe only when no node between them depends on one and feeds the other (checked below)
      if (
        compatible &&
        rows &&
        !dependsThroughOutside(producerGroups, n, groupOf) &&
        !readsLater(producerGroups, n, groupOf, order)
      ) {
        target = producerGroups[0]!;
        target.rows = rows;
        for (const other of producerGroups.slice(1)) {
          for (const m of other.nodes) {
            target.nodes.push(m);
            groupOf.set(m.id, target);
          }
          groups.splice(groups.indexOf(other), 1);
          const idx = order.findIndex((o) => o.kind === 'group' && o.group === other);
          order.splice(idx, 1);
        }
      }
    }
    if (!target) {
      if (!space) throw new Error(`a scalar ${n.op} cannot be planned on its own`);
      target = { id: nextId++, nodes: [], rows: space.rows, cols: space.cols, inputs: [], outputs: [] };
      groups.push(target);
      order.push({ kind: 'group', group: target });
    }
    target.nodes.push(n);
    groupOf.set(n.id, target);
  }
  mergeSiblings(order, groupOf);
  // inputs and outputs of each group; nodes in definition order
  const consumers = new Map<number, GNode[]>();
  for (const n of g.nodes) for (const i of n.inputs) consumers.set(i.id, [...(consumers.get(i.id) ?? []), n]);
  const outputs = new Set(g.outputs.map((o) => o.id));
  for (const grp of order.flatMap((o) => (o.kind === 'group' ? [o.group] : []))) {
    const inside = new Set(grp.nodes.map((n) => n.id));
    grp.nodes.sort((a, b) => a.id - b.id);
    const ins = new Map<number, GNode>();
    for (const n of grp.nodes) {
      for (const i of n.inputs) {
        if (!inside.has(i.id) && i.op !== 'const' && i.op !== 'dim') ins.set(i.id, i);
      }
    }
    grp.inputs = [...ins.values()];
    grp.outputs = grp.nodes.filter(
      (n) => outputs.has(n.id) || (consumers.get(n.id) ?? []).some((c) => !inside.has(c.id)),
    );
  }
  return order;
}

/**
 * True when `n` or a node of the later `groups` reads a value produced after the first group's place
 * in `order` (a matmul or convolution planned later): the merged group runs at that place.
 */
function readsLater(groups: FusionGroup[], n: GNode, groupOf: Map<number, FusionGroup>, order: PlanNode[]): boolean {
  const at = order.findIndex((o) => o.kind === 'group' && o.group === groups[0]);
  const members = new Set(groups);
  return [n, ...groups.slice(1).flatMap((grp) => grp.nodes)].some((m) =>
    m.inputs.some((i) => {
      if (i.op === 'input' || i.op === 'const' || i.op === 'dim' || members.has(groupOf.get(i.id)!)) return false;
      const gi = groupOf.get(i.id);
      return order.findIndex((o) => (o.kind === 'group' ? o.group === gi : o.node === i)) > at;
    }),
  );
}

/**
 * True when merging `groups` (plus `n`) would reorder work wrongly: some member reads, through at
 * least one node outside the members (a matmul, another group), a value of another member.
 */
function dependsThroughOutside(groups: FusionGroup[], n: GNode, groupOf: Map<number, FusionGroup>): boolean {
  const members = new Set(groups);
  const starts: GNode[] = [n, ...groups.flatMap((grp) => grp.nodes)];
  const stack: { node: GNode; viaOutside: boolean }[] = [];
  for (const x of starts)
    for (const i of x.inputs) if (!members.has(groupOf.get(i.id)!)) stack.push({ node: i, viaOutside: true });
  const seen = new Set<number>();
  while (stack.length) {
    const { node } = stack.pop()!;
    if (seen.has(node.id)) continue;
    seen.add(node.id);
    for (const i of node.inputs) {
      const gi = groupOf.get(i.id);
      if (gi && members.has(gi)) return true;
      stack.push({ node: i, viaOutside: true });
    }
  }
  return false;
}

/**
 * Horizontal fusion: a later group over the same rows and columns joins an earlier one when all it
 * reads is ready at the earlier group's position (q/k norms, several row ops of one tensor).
 */
function mergeSiblings(order: PlanNode[], groupOf: Map<number, FusionGroup>): void {
  const position = (n: GNode): number => {
    if (n.op === 'input' || n.op === 'const' || n.op === 'dim') return -1;
    return order.findIndex((o) => (o.kind === 'group' ? o.group === groupOf.get(n.id) : o.node === n));
  };
  for (let i = 0; i < order.length; i++) {
    const a = order[i]!;
    if (a.kind !== 'group') continue;
    for (let j = i + 1; j < order.length; j++) {
      const b = order[j]!;
      if (b.kind !== 'group' || b.group.cols !== a.group.cols || b.group.rows.join() !== a.group.rows.join()) continue;
      const inside = new Set(b.group.nodes.map((n) => n.id));
      // a slice or concat loads its inputs from memory: not values the merged kernel computes
      const ready = b.group.nodes.every((n) =>
        n.inputs.every(
          (x) => inside.has(x.id) || position(x) < i || (groupOf.get(x.id) === a.group && !readsColumns(n)),
        ),
      );
      if (!ready) continue;
      for (const n of b.group.nodes) {
        a.group.nodes.push(n);
        groupOf.set(n.id, a.group);
      }
      order.splice(j, 1);
      j--;
    }
  }
}
