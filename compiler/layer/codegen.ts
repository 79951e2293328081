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
import { colDimCount, type FusionGroup } from './fuse.js';

export interface GroupKernel {
  ir: KernelIR;
  /** kernel arguments in order: a graph node (tensor) or a product of dims (i32) */
  args: ({ node: GNode } | { dims: Dim[] })[];
  /** grid: one program per row (product of the row dims) */
  grid: Dim[];
}

/**
 * A tensor the group reads or writes in a convolution's padded layout (compiler/layer/conv.ts), a
 * row of N channels per padded pixel: the group's rows are pixels (t, y, x) and their row in the
 * padded frames (Hp = H + padSum[0], Wp = W + padSum[1]) is ((t st + ot) Hp + y sy + oy) Wp + x sx + ox.
 * A convolution's output on its grid: strides, no offset; its input buffer: stride 1, the padding before.
 */
export interface PaddedRows {
  hw: [Dim, Dim];
  padSum: [number, number];
  stride: [number, number, number];
  offset: [number, number, number];
}

export function groupKernel(
  grp: FusionGroup,
  name: string,
  file: string,
  span: Span,
  grids: ReadonlyMap<number, PaddedRows> = new Map(),
): GroupKernel {
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
  /** the dims of shape `s` that make up a row (colDimCount; a [..., 1] value has one, of size 1) */
  const colPart = (s: readonly Dim[]): Dim[] => s.slice(Math.max(0, s.length - (colDimCount(s, N) ?? 1)));
  const prod = (ds: readonly Dim[]) => ds.reduce<number>((p, d) => p * Number(d), 1);
  const i32 = (x: number) => b.constant(x, 'i32', span, true);

  /**
   * Offsets of this row's elements (a tile, or one offset for a value per row) in a tensor of shape
   * `s` read or written as a node of shape `as` sees it: `s` broadcasts into `as`, whose column dims
   * (colPart) index the row's N columns. Broadcasting over some column dims (RoPE tables
   * [..., 1, HEAD_DIM] read over [..., HEADS, HEAD_DIM]) splits the column index into its dims.
   */
  const offsetsIn = (s: readonly Dim[], as: readonly Dim[]): Value => {
    const uc = colPart(as);
    const k = uc.length;
    const sc = [...Array<Dim>(Math.max(0, k - s.length)).fill(1), ...s].slice(-k);
    const base = rowOffset([...s.slice(0, Math.max(0, s.length - k)), prod(sc)]);
    if (sc.every((d) => d === 1)) return base;
    if (sc.join() === uc.join()) return add(base, cols);
    let off = base;
    let inner = 1;
    let stride = 1;
    for (let j = k - 1; j >= 0; j--) {
      if (sc[j] !== 1) {
        const idx = b.binary('rem', b.binary('idiv', cols, i32(inner), span), i32(Number(uc[j])), span);
        off = add(off, mul(idx, i32(stride)));
      }
      inner *= Number(uc[j]);
      stride *= Number(sc[j]);
    }
    return off;
  };
  /** this row's elements in a tensor in a convolution's padded layout */
  const gridOffsets = (gr: PaddedRows): Value => {
    const [hp, wp] = [0, 1].map((i) => add(dimValue(gr.hw[i]!), i32(gr.padSum[i]!)));
    const [t, y, x] = rowIdx.map((r, i) => add(mul(r, i32(gr.stride[i]!)), i32(gr.offset[i]!)));
    return add(mul(add(mul(add(mul(t!, hp!), y!), wp!), x!), i32(N)), cols);
  };
  /** the shape a group node iterates over (a reduction: its input's) */
  const iterShape = (n: GNode) => (n.op === 'reduce' ? n.inputs[0]!.type.shape : n.type.shape);

  const vals = new Map<number, Value>();
  /** `n`'s value; an outside tensor is loaded as `user` (the group node reading it) sees it */
  const get = (n: GNode, user: GNode): Value => {
    if (n.op === 'const') return b.constant(n.value, n.type.dtype, span, n.weak);
    if (n.op === 'dim') return dimValue(n.name);
    const v = vals.get(n.id);
    if (v) return v;
    const p = ptrIndex.get(n.id);
    if (p === undefined) throw new Error(`internal: %${n.id} is neither in the group nor an input`);
    const shape = n.type.shape;
    const gr = grids.get(n.id);
    if (gr) {
      const v = b.load(p, n.type.dtype, gridOffsets(gr), null, null, span);
      vals.set(n.id, v);
      return v;
    }
    const loaded = b.load(p, n.type.dtype, shape.length ? offsetsIn(shape, iterShape(user)) : i32(0), null, null, span);
    vals.set(n.id, loaded);
    return loaded;
  };

  for (const n of grp.nodes) {
    if (n.op === 'concat') {
      // column c of the row comes from the input whose range holds it (masked loads, then a select)
      let v: Value | undefined;
      let start = 0;
      const parts = n.inputs.map((x) => {
        const p = ptrIndex.get(x.id);
        if (p === undefined) throw new Error(`internal: an input of concat %${n.id} is not in memory`);
        const w = Number(x.type.shape[x.type.shape.length - 1]);
        const part = { x, p, start, end: start + w };
        start += w;
        return part;
      });
      for (const { x, p, start: s0, end } of parts.reverse()) {
        const inRange = b.binary(
          'and',
          b.binary('ge', cols, i32(s0), span),
          b.binary('lt', cols, i32(end), span),
          span,
        );
        const off = add(rowOffset(x.type.shape), b.binary('sub', cols, i32(s0), span));
        const loaded = b.load(p, x.type.dtype, off, inRange, b.constant(0, x.type.dtype, span, true), span);
        v = v ? b.where(inRange, loaded, v, span) : loaded;
      }
      vals.set(n.id, v!);
      continue;
    }
    if (n.op === 'slice') {
      // columns [start, start + N) of each row of the input, read from memory
      const x = n.inputs[0]!;
      const p = ptrIndex.get(x.id);
      if (p === undefined) throw new Error(`internal: the input of slice %${n.id} is not in memory`);
      const off = add(add(rowOffset(x.type.shape), i32(n.start)), cols);
      vals.set(n.id, b.load(p, x.type.dtype, off, null, null, span));
      continue;
    }
    const a = n.inputs.map((x) => get(x, n));
    let v: Value;
    switch (n.op) {
      case 'reshape':
        v = a[0]!;
        break;
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
    const gw = grids.get(o.id);
    const offsets = gw ? gridOffsets(gw) : o.type.shape.length ? offsetsIn(o.type.shape, o.type.shape) : rowOffset([1]);
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
