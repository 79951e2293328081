// The layer front end: graphs from layer source (composites decomposed into primitives), each op
// run against an independent float64 reference, and shape/dtype diagnostics at the layer line.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { programFromText } from '../../compiler/frontend.js';
import { graphToDot, printGraph, type LayerGraph } from '../../compiler/layer/graph.js';
import { lowerLayer } from '../../compiler/layer/frontend.js';
import { runGraph, type HostTensor } from '../../compiler/layer/interp.js';
import { mulberry32 } from '../helpers.js';
import { virtualDir } from './dsl.js';

const header = `import {
  layer, layerNorm, rmsNorm, softmax, silu, geluTanh, linear, matmul, sum, mean, max, cast, reshape, permute, slice,
  transpose, unsqueeze, exp, rsqrt, where, rope, attention, type Tensor, type bf16, type f32,
} from '../../../dsl/layer.js';
`;

function compile(body: string, file = 'layers.ts'): Map<string, LayerGraph> {
  const path = join(virtualDir, file);
  const p = programFromText(path, header + body);
  return new Map(p.layers(path).map((r) => [r.name, lowerLayer(p, r)]));
}

function diagnose(body: string): string {
  try {
    compile(body, 'bad-layer.ts');
  } catch (e) {
    return (e as Error).message.split('\n')[0]!.replace(/^test\/compiler\/virtual\//, '');
  }
  throw new Error('expected a diagnostic');
}

const rand = mulberry32(7);
const tensor = (shape: number[], scale = 1): HostTensor => ({
  shape,
  data: Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (rand() * 2 - 1) * scale),
});

const src = `
export const norms = layer((x: Tensor<f32, ['L', 16]>, w: Tensor<f32, [16]>, b: Tensor<f32, [16]>) => [
  layerNorm(x, 1e-6),
  layerNorm(x, 1e-6, w, b),
  rmsNorm(x, w, 1e-6),
  softmax(x),
]);

export const acts = layer((x: Tensor<f32, ['L', 8]>) => [silu(x), geluTanh(x), exp(x), rsqrt(x * x + 1)]);

/** the DiT's modulation: per-frame shift/scale broadcast over the frame's tokens */
export const modulate = layer((x: Tensor<f32, ['F', 'T', 8]>, shift: Tensor<f32, ['F', 1, 8]>, scale: Tensor<f32, ['F', 1, 8]>) =>
  layerNorm(x, 1e-6) * (1 + scale) + shift);

export const lin = layer((x: Tensor<f32, ['L', 6]>, w: Tensor<f32, [4, 6]>, b: Tensor<f32, [4]>, m: Tensor<f32, [4, 3]>) => [
  linear(x, w, b),
  matmul(linear(x, w), m),
]);

export const views = layer((x: Tensor<f32, ['L', 2, 3]>) => [
  reshape(x, ['L', 6]),
  permute(x, [2, 0, 1]),
  transpose(x, 1, 2),
  sum(x, 1),
  mean(x, -1, true),
  max(x, 0),
  unsqueeze(x, 0),
]);

export const rot = layer((x: Tensor<f32, ['L', 2, 8]>, cos: Tensor<f32, ['L', 1, 8]>, sin: Tensor<f32, ['L', 1, 8]>) => rope(x, cos, sin));

export const bf = layer((x: Tensor<bf16, ['L', 4]>) => x * 3 + 1);
`;

const ref = {
  rowMap(x: HostTensor, f: (row: number[]) => number[]): number[] {
    const n = x.shape[x.shape.length - 1]!;
    const out: number[] = [];
    for (let r = 0; r < x.data.length / n; r++) out.push(...f(Array.from(x.data.subarray(r * n, r * n + n))));
    return out;
  },
  ln: (row: number[]) => {
    const m = row.reduce((a, b) => a + b, 0) / row.length;
    const v = row.reduce((a, b) => a + (b - m) ** 2, 0) / row.length;
    return row.map((x) => (x - m) / Math.sqrt(v + 1e-6));
  },
};

function close(got: HostTensor, want: number[], tol = 1e-12) {
  expect(got.data.length).toBe(want.length);
  let num = 0;
  let den = 0;
  want.forEach((w, i) => {
    num += (got.data[i]! - w) ** 2;
    den += w * w;
  });
  expect(Math.sqrt(num / den)).toBeLessThan(tol);
}

describe('layer graphs (float64 against independent references)', () => {
  const g = compile(src);

  it('norms and softmax', () => {
    const x = tensor([5, 16]);
    const w = tensor([16]);
    const b = tensor([16]);
    const [ln, lna, rms, sm] = runGraph(g.get('norms')!, [x, w, b], { exact: true });
    close(ln!, ref.rowMap(x, ref.ln));
    close(
      lna!,
      ref.rowMap(x, (r) => ref.ln(r).map((v, i) => v * w.data[i]! + b.data[i]!)),
    );
    close(
      rms!,
      ref.rowMap(x, (r) => {
        const s = 1 / Math.sqrt(r.reduce((a, v) => a + v * v, 0) / r.length + 1e-6);
        return r.map((v, i) => v * s * w.data[i]!);
      }),
    );
    close(
      sm!,
      ref.rowMap(x, (r) => {
        const m = Math.max(...r);
        const e = r.map((v) => Math.exp(v - m));
        const s = e.reduce((a, v) => a + v, 0);
        return e.map((v) => v / s);
      }),
    );
  });

  it('activations', () => {
    const x = tensor([3, 8], 3);
    const [si, ge, ex, rs] = runGraph(g.get('acts')!, [x], { exact: true });
    const xs = Array.from(x.data);
    close(
      si!,
      xs.map((v) => v / (1 + Math.exp(-v))),
    );
    // the GELU constants are float32 literals, as in the kernels
    close(
      ge!,
      xs.map((v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))),
      1e-7,
    );
    close(ex!, xs.map(Math.exp));
    close(
      rs!,
      xs.map((v) => 1 / Math.sqrt(v * v + 1)),
    );
  });

  it('per-frame modulation broadcasts over symbolic dims', () => {
    const [F, T, D] = [2, 3, 8];
    const x = tensor([F, T, D]);
    const sh = tensor([F, 1, D]);
    const sc = tensor([F, 1, D]);
    const [y] = runGraph(g.get('modulate')!, [x, sh, sc], { exact: true });
    const want = ref.rowMap(x, ref.ln).map((v, i) => {
      const f = Math.floor(i / (T * D));
      const d = i % D;
      return v * (1 + sc.data[f * D + d]!) + sh.data[f * D + d]!;
    });
    close(y!, want);
  });

  it('linear (PyTorch weight layout) and matmul', () => {
    const [x, w, b, m] = [tensor([3, 6]), tensor([4, 6]), tensor([4]), tensor([4, 3])];
    const [y, z] = runGraph(g.get('lin')!, [x, w, b, m], { exact: true });
    const lin = (r: number, j: number) =>
      [...Array(6).keys()].reduce((s, k) => s + x.data[r * 6 + k]! * w.data[j * 6 + k]!, 0);
    close(
      y!,
      [...Array(12).keys()].map((i) => lin(Math.floor(i / 4), i % 4) + b.data[i % 4]!),
    );
    close(
      z!,
      [...Array(9).keys()].map((i) =>
        [...Array(4).keys()].reduce((s, j) => s + lin(Math.floor(i / 3), j) * m.data[j * 3 + (i % 3)]!, 0),
      ),
    );
  });

  it('views and reductions', () => {
    const x = tensor([4, 2, 3]);
    const [r, p, t, s, mn, mx, u] = runGraph(g.get('views')!, [x], { exact: true });
    const at = (l: number, i: number, j: number) => x.data[l * 6 + i * 3 + j]!;
    expect(r!.shape).toEqual([4, 6]);
    close(r!, Array.from(x.data));
    expect(p!.shape).toEqual([3, 4, 2]);
    close(
      p!,
      [...Array(24).keys()].map((q) => at(Math.floor(q / 2) % 4, q % 2, Math.floor(q / 8))),
    );
    close(
      t!,
      [...Array(24).keys()].map((q) => at(Math.floor(q / 6), q % 2, Math.floor(q / 2) % 3)),
    );
    close(
      s!,
      [...Array(12).keys()].map((q) => at(Math.floor(q / 3), 0, q % 3) + at(Math.floor(q / 3), 1, q % 3)),
    );
    expect(mn!.shape).toEqual([4, 2, 1]);
    close(
      mn!,
      [...Array(8).keys()].map(
        (q) =>
          (at(Math.floor(q / 2), q % 2, 0) + at(Math.floor(q / 2), q % 2, 1) + at(Math.floor(q / 2), q % 2, 2)) / 3,
      ),
    );
    close(
      mx!,
      [...Array(6).keys()].map((q) => Math.max(...[0, 1, 2, 3].map((l) => at(l, Math.floor(q / 3), q % 3)))),
    );
    expect(u!.shape).toEqual([1, 4, 2, 3]);
  });

  it('rope rotates interleaved pairs by per-token angles', () => {
    const L = 3;
    const x = tensor([L, 2, 8]);
    const angles = Array.from({ length: L * 4 }, () => rand() * 6);
    const cos: HostTensor = {
      shape: [L, 1, 8],
      data: Float64Array.from({ length: L * 8 }, (_, i) => Math.cos(angles[i >> 1]!)),
    };
    const sin: HostTensor = {
      shape: [L, 1, 8],
      data: Float64Array.from({ length: L * 8 }, (_, i) => (i & 1 ? 1 : -1) * Math.sin(angles[i >> 1]!)),
    };
    const [y] = runGraph(g.get('rot')!, [x, cos, sin], { exact: true });
    const want: number[] = [];
    for (let l = 0; l < L; l++)
      for (let h = 0; h < 2; h++)
        for (let p = 0; p < 4; p++) {
          const a = angles[l * 4 + p]!;
          const [re, im] = [x.data[(l * 2 + h) * 8 + 2 * p]!, x.data[(l * 2 + h) * 8 + 2 * p + 1]!];
          want.push(re * Math.cos(a) - im * Math.sin(a), re * Math.sin(a) + im * Math.cos(a));
        }
    close(y!, want);
  });

  it('rounds like the kernels when not exact (bf16 after each op)', () => {
    const [y] = runGraph(g.get('bf')!, [{ shape: [1, 4], data: Float64Array.of(1.0078125, 257, -3, 0.1) }]);
    expect(Array.from(y!.data)).toEqual([4.03125, 768, -8, 1.296875]);
  });

  it('prints the graph and a DOT dump', () => {
    const m = g.get('modulate')!;
    expect(printGraph(m)).toMatchInlineSnapshot(`
      "layer modulate(x: f32[F, T, 8], shift: f32[F, 1, 8], scale: f32[F, 1, 8])
        %5 = reduce.sum x axis=2 keepdim : f32[F, T, 1]
        %6 = div %5, 8:f32 : f32[F, T, 1]
        %7 = sub x, %6 : f32[F, T, 8]
        %8 = mul %7, %7 : f32[F, T, 8]
        %9 = reduce.sum %8 axis=2 keepdim : f32[F, T, 1]
        %10 = div %9, 8:f32 : f32[F, T, 1]
        %12 = add %10, 9.999999974752427e-7:f32 : f32[F, T, 1]
        %13 = rsqrt %12 : f32[F, T, 1]
        %14 = mul %7, %13 : f32[F, T, 8]
        %17 = add 1:f32, scale : f32[F, 1, 8]
        %18 = mul %14, %17 : f32[F, T, 8]
        %19 = add %18, shift : f32[F, T, 8]
        return %19
      "
    `);
    expect(graphToDot(m)).toContain('digraph "modulate"');
  });
});

describe('layer diagnostics', () => {
  it.each([
    [
      'shape mismatch',
      "export const a = layer((x: Tensor<f32, ['L', 8]>, y: Tensor<f32, ['L', 4]>) => x + y);",
      'bad-layer.ts:5:80: shape mismatch: [L, 8] and [L, 4] cannot be broadcast together',
    ],
    [
      'matmul inner dims',
      "export const a = layer((x: Tensor<f32, ['L', 8]>, w: Tensor<f32, [4, 6]>) => linear(x, w));",
      'bad-layer.ts:5:78: matmul inner dims differ: [L, 8] x [4, 6]^T (8 vs 6)',
    ],
    [
      'matmul dtypes',
      "export const a = layer((x: Tensor<bf16, ['L', 8]>, w: Tensor<f32, [4, 8]>) => linear(x, w));",
      'bad-layer.ts:5:79: matmul operands must have one dtype, got bf16 and f32 (cast one)',
    ],
    [
      'reshape count',
      "export const a = layer((x: Tensor<f32, ['L', 8]>) => reshape(x, ['L', 3]));",
      'bad-layer.ts:5:54: reshape: [L, 8] cannot become [L, 3] (element counts differ)',
    ],
    [
      'slice range',
      "export const a = layer((x: Tensor<f32, ['L', 8]>) => slice(x, -1, 6, 10));",
      'bad-layer.ts:5:54: slice: [6, 10) is not a non-empty range inside axis -1 of f32[L, 8]',
    ],
    [
      'slice of a symbolic dim',
      "export const a = layer((x: Tensor<f32, ['L', 8]>) => slice(x, 0, 0, 2));",
      'bad-layer.ts:5:54: slice: axis 0 of f32[L, 8] is not static',
    ],
    [
      'attention option',
      "export const a = layer((q: Tensor<bf16, ['L', 2, 64]>) => attention(q, q, q, { causal: true }));",
      "bad-layer.ts:5:80: TypeScript: Object literal may only specify known properties, and 'causal' does not exist in type '{ scale?: number | undefined; blockTokens?: Dim | undefined; window?: Dim | undefined; sink?: Dim | undefined; }'.",
    ],
    [
      'untyped parameter',
      'export const a = layer((x: number) => x);',
      "bad-layer.ts:5:28: parameter 'x' needs a type: Tensor<dtype, [dims]> or a dtype such as f32",
    ],
    [
      'kernel op in a layer',
      "import { programId } from '../../../dsl/kernel.js';\nexport const a = layer((x: Tensor<f32, ['L']>) => x + programId(0));",
      "bad-layer.ts:6:55: 'programId' is a kernel intrinsic; layers use the ops of dsl/layer.ts",
    ],
  ])('%s', (_name, body, want) => {
    expect(diagnose(body)).toBe(want);
  });
});
