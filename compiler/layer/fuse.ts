// Fusion: maximal groups of element-wise ops and last-axis reductions that share one row space
// become one generated kernel (one program per row of the group's last dim); matmuls are library
// steps; reshapes are views. A group's value that is needed outside the group (or is a layer output)
// is stored; everything else stays in registers.
import type { Dim, GNode, LayerGraph } from './graph.js';
import { isElementwise } from './graph.js';

export interface FusionGroup {
  id: number;
  nodes: GNode[];
  /** the leading dims every program iterates over, and the last (column) dim */
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
  | { kind: 'view'; node: GNode };

const isLastAxisReduce = (n: GNode) => n.op === 'reduce' && n.axis === n.inputs[0]!.type.shape.length - 1;

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

function rowSpace(n: GNode): { rows: Dim[]; cols: Dim } | undefined {
  const s = n.op === 'reduce' ? n.inputs[0]!.type.shape : n.type.shape;
  if (!s.length) return undefined;
  return { rows: s.slice(0, -1), cols: s[s.length - 1]! };
}

export function fuse(g: LayerGraph): PlanNode[] {
  const groupOf = new Map<number, FusionGroup>();
  const groups: FusionGroup[] = [];
  const order: PlanNode[] = [];
  let nextId = 0;
  for (const n of g.nodes) {
    if (n.op === 'input' || n.op === 'const' || n.op === 'dim') continue;
    if (n.op === 'matmul' || n.op === 'attention') {
      order.push(n.op === 'matmul' ? { kind: 'matmul', node: n } : { kind: 'attention', node: n });
      continue;
    }
    if (n.op === 'reshape') {
      order.push({ kind: 'view', node: n });
      continue;
    }
    if (!(isElementwise(n) || isLastAxisReduce(n))) {
      throw new Error(
        `${n.op}${n.op === 'reduce' ? ` over axis ${n.axis}` : ''} cannot be planned yet (supported: element-wise ops, last-axis reductions, matmul, reshape)`,
      );
    }
    const space = rowSpace(n);
    // try to join the groups of this node's producers (all of them, or a new group)
    const producerGroups = [...new Set(n.inputs.map((i) => groupOf.get(i.id)).filter((x): x is FusionGroup => !!x))];
    let target: FusionGroup | undefined;
    if (space && producerGroups.length) {
      let rows: Dim[] | undefined = space.rows;
      const cols = producerGroups[0]!.cols;
      const compatible = producerGroups.every((pg) => {
        if (pg.cols !== cols || (space.cols !== cols && space.cols !== 1)) return false;
        rows = rows && mergeRows(rows, pg.rows);
        return !!rows;
      });
      // a group must stay acyclic: every producer group must come after... merging producer groups is
      // safe only when no node between them depends on one and feeds the other (checked below)
      if (compatible && rows && !dependsThroughOutside(producerGroups, n, groupOf)) {
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
      const ready = b.group.nodes.every((n) =>
        n.inputs.every((x) => inside.has(x.id) || position(x) < i || groupOf.get(x.id) === a.group),
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
