// A fusion group -> a kernel IR, built with the kernel language's own builder, so it goes through
// the same passes and backends (CUDA and JS) as hand-written DSL kernels. One program per row of
// the group's row space; a row's columns are one tile (BLOCK = the static column count); values
// whose last dim is 1 (per-row statistics, broadcast rows) are scalars. Inputs and outputs may
// broadcast over any leading dim: their row offsets are computed from the program index and the
// (symbolic) dims, which become i32 kernel arguments.
import { Builder } from '../builder.js';
import type { KernelIR, KernelParam, Span, Value } from '../ir.js';
import { cse } from '../passes.js';
import { autoWarps, eliminateDeadCode } from '../frontend.js';
import type { Dim, GNode } from './graph.js';
import type { FusionGroup } from './fuse.js';

export interface GroupKernel {
  ir: KernelIR;
  /** kernel arguments in order: a graph node (tensor) or a product of dims (i32) */
  args: ({ node: GNode } | { dims: Dim[] })[];
  /** grid: one program per row (product of the row dims) */
  grid: Dim[];
}

export function groupKernel(grp: FusionGroup, name: string, file: string, span: Span): GroupKernel {
  if (typeof grp.cols !== 'number') {
    throw new Error(`${name}: the last dim of a fused group must be static (got '${grp.cols}')`);
  }
  const b = new Builder();
  const params: KernelParam[] = [];
  const args: GroupKernel['args'] = [];
  const N = grp.cols;
  const ptrIndex = new Map<number, number>();
  const dimParams = new Map<string, Value>();

  for (const n of [...grp.inputs, ...grp.outputs]) {
    if (ptrIndex.has(n.id)) continue;
    ptrIndex.set(n.id, params.length);
    params.push({ name: `t${n.id}`, kind: 'ptr', dtype: n.type.dtype });
    args.push({ node: n });
  }
  /** a dim's value inside the kernel: a constant, or an i32 parameter */
  const dimValue = (d: Dim): Value => {
    if (typeof d === 'number') return b.constant(d, 'i32', span, true);
    let v = dimParams.get(d);
    if (!v) {
      v = b.param(params.length, 'i32', span);
      params.push({ name: d, kind: 'scalar', dtype: 'i32' });
      args.push({ dims: [d] });
      dimParams.set(d, v);
    }
    return v;
  };
  const mul = (x: Value, y: Value) => b.binary('mul', x, y, span);
  const add = (x: Value, y: Value) => b.binary('add', x, y, span);

  b.block = [];
  const row = b.programId(0, span);
  const cols = b.arange(0, N, span);
  // per-row-dim indices of this program: idx_j = (row / prod(rows[j+1:])) % rows[j]
  const rowIdx: Value[] = [];
  {
    let suffix: Value = b.constant(1, 'i32', span, true);
    for (let j = grp.rows.length - 1; j >= 0; j--) {
      const q = b.binary('idiv', row, suffix, span);
      rowIdx[j] = j === 0 ? q : b.binary('rem', q, dimValue(grp.rows[j]!), span);
      suffix = mul(suffix, dimValue(grp.rows[j]!));
    }
  }
  /** element offset of this row in a tensor of shape s (broadcast into [rows..., cols]) */
  const rowOffset = (s: readonly Dim[]): Value => {
    const lead = s.slice(0, -1);
    const off = grp.rows.length - lead.length;
    let o: Value = b.constant(0, 'i32', span, true);
    let stride: Value = dimValue(s[s.length - 1]!);
    for (let j = lead.length - 1; j >= 0; j--) {
      if (lead[j] !== 1) o = add(o, mul(rowIdx[off + j]!, stride));
      stride = mul(stride, dimValue(lead[j]!));
    }
    return o;
  };
  const isRowValue = (n: GNode) => n.type.shape.length > 0 && n.type.shape[n.type.shape.length - 1] !== 1;

  const vals = new Map<number, Value>();
  const get = (n: GNode): Value => {
    if (n.op === 'const') return b.constant(n.value, n.type.dtype, span, n.weak);
    if (n.op === 'dim') return dimValue(n.name);
    const v = vals.get(n.id);
    if (v) return v;
    // an external input: load this row (a tile, or one value for [..., 1] tensors)
    const p = ptrIndex.get(n.id);
    if (p === undefined) throw new Error(`internal: %${n.id} is neither in the group nor an input`);
    const shape = n.type.shape;
    const loaded = !shape.length
      ? b.load(p, n.type.dtype, b.constant(0, 'i32', span, true), null, null, span)
      : isRowValue(n)
        ? b.load(p, n.type.dtype, add(rowOffset(shape), cols), null, null, span)
        : b.load(p, n.type.dtype, rowOffset(shape), null, null, span);
    vals.set(n.id, loaded);
    return loaded;
  };

  for (const n of grp.nodes) {
    const a = n.inputs.map(get);
    let v: Value;
    switch (n.op) {
      case 'binary':
        v = b.binary(n.fn, a[0]!, a[1]!, span);
        break;
      case 'unary':
        v = b.unary(n.fn, a[0]!, span);
        break;
      case 'cast':
        v = b.cast(a[0]!, n.type.dtype, span);
        break;
      case 'where':
        v = b.where(a[0]!, a[1]!, a[2]!, span);
        break;
      case 'swapPairs':
        if (!a[0]!.type.shape.length) throw new Error(`${name}: swapPairs of a per-row value`);
        v = b.swapPairs(a[0]!, span);
        break;
      case 'reduce': {
        // columns past a row's end (BLOCK = cols, so none today) would need masking: keep the
        // reduction over the whole tile, which is exactly the row
        const x = a[0]!;
        v = x.type.shape.length ? b.reduce(n.fn, x, null, span) : x;
        v = b.cast(v, n.type.dtype, span);
        break;
      }
      default:
        throw new Error(`internal: ${n.op} in a fused group`);
    }
    vals.set(n.id, v);
  }
  for (const o of grp.outputs) {
    const v = b.cast(vals.get(o.id)!, o.type.dtype, span);
    const p = ptrIndex.get(o.id)!;
    const offsets = isRowValue(o)
      ? add(rowOffset(o.type.shape), cols)
      : rowOffset(o.type.shape.length ? o.type.shape : [1]);
    b.block.push({
      kind: 'store',
      fn: 'store',
      param: p,
      offsets: b.broadcastTo(offsets, v.type.shape.length ? [N] : offsets.type.shape, span),
      value: v,
      mask: null,
      span,
    });
  }
  const body = eliminateDeadCode(b.block);
  const ir: KernelIR = { name, file, span, params, body, warps: autoWarps(body) };
  return { ir: cse(ir), args, grid: grp.rows };
}
