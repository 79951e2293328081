// Convolutions in the layer DSL, in the Wan VAE's layout: activations frames-first and channels-last
// (x [T, H, W, Cin]), weights [Cout, kt, ky, kx, Cin] (PyTorch's [Cout, Cin, kt, ky, kx] with the
// input channels moved last: each output channel's row is the implicit GEMM's B row, taps * Cin long).
//
// Shape rules here; the float64 reference is in interp.ts. A conv node plans as one 'conv' step
// (dsl/plan.ts, run by runtime/conv.ts) that works as the VAE's convolutions do: x is copied into a
// zero-padded bf16 buffer [T + pads, H + pads, W + pads, CP] (models/kernels/conv.ts convPad), the
// convolution runs as GEMMs over that buffer's rows, its output lives on the padded grid, and
// convCrop takes the valid (strided) pixels out of it. The GEMMs are the sm_90a implicit-GEMM
// convolution template where it is built (stride 1 in the buffer, Cin a multiple of 64) and per-tap
// shifted GEMMs (cuBLASLt on CUDA, a loop on the CPU) elsewhere. Fusion replaces both copies: the
// element-wise group that produces x can write it into the padded buffer (the step's prologue), and
// the group that consumes the output can read it off the grid (its epilogue), as the VAE's kernels do.
import { join } from 'node:path';
import { convPitch, convTile, type KernelArtifact } from '../../dsl/artifact.js';
import type { PlanStep } from '../../dsl/plan.js';
import { packageRoot } from '../../dsl/paths.js';
import { artifactOf, lowerKernel } from '../compile.js';
import { DslProgram } from '../frontend.js';
import { gemmSm90 } from '../templates/gemm.js';
import type { PaddedRows } from './codegen.js';
import type { FusionGroup, PlanNode } from './fuse.js';
import { fmtShape, fmtTType, type Dim, type GNode, type LayerGraph, type TType } from './graph.js';

export type Triple = [number, number, number];

export interface ConvGeometry {
  kernel: Triple;
  stride: Triple;
  pad: [[number, number], [number, number], [number, number]];
}

/** Output size of one dim, or an error message; symbolic dims must keep their size. */
function outDim(d: Dim, k: number, s: number, p: readonly [number, number], axis: string): Dim | Error {
  if (typeof d === 'number') {
    const o = Math.floor((d + p[0] + p[1] - k) / s) + 1;
    if (o >= 1) return o;
    return new Error(`a ${k}-tap kernel with padding ${p[0]}+${p[1]} leaves nothing of ${axis} = ${d}`);
  }
  if (s === 1 && p[0] + p[1] === k - 1) return d;
  return new Error(
    `${axis} is the symbolic dim '${d}': the output must keep its size (stride 1, padding k - 1 in all) or the dim must be static`,
  );
}

/**
 * The type of conv(x, w) with this geometry, or a message naming both shapes. x [T, H, W, Cin],
 * w [Cout, kt, ky, kx, Cin], both bf16; the result is f32 [T', H', W', Cout].
 */
export function convType(x: TType, w: TType, geom: ConvGeometry, op = 'conv3d'): TType | string {
  const ws = w.shape;
  const both = `x ${fmtShape(x.shape)} and w ${fmtShape(ws)}`;
  if (x.shape.length !== 4 || ws.length !== 5)
    return `${op} takes x [T, H, W, Cin] (channels last) and w [Cout, kt, ky, kx, Cin]; got ${both}`;
  if (ws.some((d) => typeof d !== 'number')) return `${op} needs a static weight shape, got w ${fmtShape(ws)}`;
  const [cout, kt, ky, kx, cin] = ws as number[];
  if (x.shape[3] !== cin) return `${op} input channels differ: ${both} (${x.shape[3]} vs ${cin})`;
  if (x.dtype !== 'bf16' || w.dtype !== 'bf16')
    return `${op} takes bf16 x and w (cast them), got x ${fmtTType(x)} and w ${fmtTType(w)}`;
  const k: Triple = [kt!, ky!, kx!];
  if (geom.kernel.join() !== k.join()) return `internal: ${op} kernel ${geom.kernel.join('x')} is not w's`;
  const shape: Dim[] = [];
  for (let i = 0; i < 3; i++) {
    const bad = (v: number, min: number) => !(v >= min) || !Number.isInteger(v);
    if (bad(geom.stride[i]!, 1) || geom.pad[i]!.some((p) => bad(p, 0)))
      return `${op}: strides must be >= 1 and paddings >= 0 (integers), got stride [${geom.stride.join(', ')}] and padding [${geom.pad.map((p) => p.join('+')).join(', ')}]`;
    const o = outDim(x.shape[i]!, k[i]!, geom.stride[i]!, geom.pad[i]!, `${'THW'[i]} of x ${fmtShape(x.shape)}`);
    if (o instanceof Error) return `${op} with w ${fmtShape(ws)}: ${o.message}`;
    shape.push(o);
  }
  return { dtype: 'f32', shape: [...shape, cout!] };
}

// ---- planning -------------------------------------------------------------------------------------

let program: DslProgram | undefined;
const kernels = new Map<string, KernelArtifact>();

/** convPad / convCrop of models/kernels/conv.ts for C channels (buffer pitch CP), compiled once. */
export function convKernel(name: 'convPad' | 'convCrop', consts: Record<string, number>): KernelArtifact {
  const key = `${name}:${Object.values(consts).join('p')}`;
  let a = kernels.get(key);
  if (!a) {
    const file = join(packageRoot(import.meta.url), 'models', 'kernels', 'conv.ts');
    program ??= new DslProgram([file]);
    const art = artifactOf(lowerKernel(program, file, name, { consts }));
    a = { ...art, name: `${name}_${key.split(':')[1]}` };
    kernels.set(key, a);
  }
  return a;
}

/**
 * The element-wise groups that read a convolution's output straight off its padded grid, skipping
 * the crop kernel and the cropped f32 tensor: a conv whose only consumer is one group over exactly
 * its pixels and channels (bias, activation, residual, cast ...), which is not a layer output and
 * not a GEMM epilogue. The conv then runs at the group's place in the plan, the group as its epilogue.
 */
export function absorbConvs(
  g: LayerGraph,
  order: readonly PlanNode[],
  taken: ReadonlyMap<FusionGroup, GNode>,
): Map<FusionGroup, GNode> {
  const groupOf = new Map<number, FusionGroup>();
  for (const o of order) if (o.kind === 'group') for (const n of o.group.nodes) groupOf.set(n.id, o.group);
  const users = new Map<number, GNode[]>();
  for (const n of g.nodes) for (const i of n.inputs) users.set(i.id, [...(users.get(i.id) ?? []), n]);
  const out = new Map<FusionGroup, GNode>();
  for (const o of order) {
    if (o.kind !== 'conv' || g.outputs.includes(o.node)) continue;
    const us = users.get(o.node.id) ?? [];
    const grp = us.length ? groupOf.get(us[0]!.id) : undefined;
    if (!grp || taken.has(grp) || out.has(grp) || us.some((u) => groupOf.get(u.id) !== grp)) continue;
    if (grp.rows.join() !== o.node.type.shape.slice(0, 3).join() || grp.cols !== o.node.type.shape[3]) continue;
    out.set(grp, o.node);
  }
  return out;
}

/**
 * The element-wise groups that write a convolution's input straight into its zero-padded buffer,
 * skipping the pad kernel (RMS norm + SiLU + cast before a VAE convolution): a group whose one
 * stored value is the conv's x, over exactly its pixels and channels, read by the conv only. The
 * group then runs inside the conv step (its prologue), after the buffer is zeroed.
 */
export function prologueGroups(
  g: LayerGraph,
  order: readonly PlanNode[],
  taken: ReadonlyMap<FusionGroup, GNode>,
): Map<FusionGroup, GNode> {
  const users = new Map<number, GNode[]>();
  for (const n of g.nodes) for (const i of n.inputs) users.set(i.id, [...(users.get(i.id) ?? []), n]);
  const out = new Map<FusionGroup, GNode>();
  for (const o of order) {
    if (o.kind !== 'group' || taken.has(o.group) || o.group.outputs.length !== 1) continue;
    const x = o.group.outputs[0]!;
    const us = users.get(x.id) ?? [];
    const conv = us[0];
    if (us.length !== 1 || conv?.op !== 'conv' || conv.inputs[0] !== x || g.outputs.includes(x)) continue;
    if (o.group.rows.join() !== x.type.shape.slice(0, 3).join() || o.group.cols !== x.type.shape[3]) continue;
    out.set(o.group, conv);
  }
  return out;
}

const padSum = (n: Extract<GNode, { op: 'conv' }>): [number, number] => [
  n.pad[1][0] + n.pad[1][1],
  n.pad[2][0] + n.pad[2][1],
];

/** How the absorbing group's kernel reads conv node `n`'s output on its grid (see PaddedRows) */
export function gridReads(n: GNode): Map<number, PaddedRows> {
  if (n.op !== 'conv') throw new Error('internal: gridReads of a non-conv node');
  const x = n.inputs[0]!.type.shape;
  return new Map([[n.id, { hw: [x[1]!, x[2]!], padSum: padSum(n), stride: n.stride, offset: [0, 0, 0] }]]);
}

/** How a prologue group writes conv node `n`'s input into the padded buffer (see PaddedRows) */
export function padWrites(n: GNode): Map<number, PaddedRows> {
  if (n.op !== 'conv') throw new Error('internal: padWrites of a non-conv node');
  const x = n.inputs[0]!;
  const [H, W] = x.type.shape.slice(1, 3) as [Dim, Dim];
  const offset: Triple = [n.pad[0][0], n.pad[1][0], n.pad[2][0]];
  return new Map([[x.id, { hw: [H, W], padSum: padSum(n), stride: [1, 1, 1], offset }]]);
}

/**
 * The launch-plan step of a conv node (x, w and out are buffer ids); with `epilogue` (the kernel of
 * the group that absorbs it, reading buffer `out` as the padded grid) instead of the crop, with
 * `prologue` (the step that writes x into the padded buffer: a group's kernel, or a convolution
 * whose epilogue that group is) instead of the pad kernel.
 */
export function convStep(
  n: GNode,
  x: number,
  w: number,
  out: number,
  epilogue?: PlanStep,
  prologue?: PlanStep,
): Extract<PlanStep, { kind: 'conv' }> {
  if (n.op !== 'conv' || (epilogue && epilogue.kind !== 'kernel'))
    throw new Error('internal: convStep of a non-conv node or with a non-kernel epilogue');
  if (prologue && prologue.kind !== 'kernel' && prologue.kind !== 'conv')
    throw new Error('internal: a conv prologue is a kernel or a conv step');
  const [xn, wn] = n.inputs as [GNode, GNode];
  const [T, H, W, cin] = xn.type.shape as [Dim, Dim, Dim, number];
  const cout = wn.type.shape[0] as number;
  const CP = convPitch(cin);
  // the implicit GEMM reads whole 64-channel K-slices of the weights' rows: no repacking when Cin fits
  const implicit = cin % 64 === 0;
  return {
    kind: 'conv',
    x,
    w,
    out,
    dims: [[T], [H], [W]],
    outDims: (n.type.shape.slice(0, 3) as Dim[]).map((d) => [d]),
    cin,
    cout,
    kernel: n.kernel,
    stride: n.stride,
    pad: n.pad,
    pitch: implicit ? CP : cin,
    padKernel: convKernel('convPad', { C: cin, CP: implicit ? CP : cin }),
    cropKernel: convKernel('convCrop', { C: cout }),
    candidates: implicit ? [gemmSm90({ input: 'bf16', output: 'f32', bn: convTile(cout), stages: 4, conv: true })] : [],
    ...(epilogue ? { epilogue } : {}),
    ...(prologue ? { prologue } : {}),
    label: `${prologue ? `${prologue.label}; ` : ''}conv %${n.id} ${n.kernel.join('x')} stride ${n.stride.join('x')} ${cin}->${cout}${epilogue ? ` + ${epilogue.label}` : ''}`,
  };
}
