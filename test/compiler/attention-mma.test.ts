// The mma.sync flash-attention template (sm_80 / sm_89): instantiations compile with nvcc for both
// architectures without spills or stack, both products run on the tensor cores (HMMA in the SASS),
// bad specs are rejected, and the runtime picks the instantiation a GPU runs. Numerics are checked on
// the GPU (test/gpu/attention-mma.test.ts).
import { describe, expect, it } from 'vitest';
import type { AttentionSpec } from '../../dsl/artifact.js';
import { attentionMma, defaultAttentionMmaSpec } from '../../compiler/templates/attention-mma.js';
import { attentionSm90 } from '../../compiler/templates/attention.js';
import { compileCudaAsync, findNvcc } from '../../compiler/nvcc.js';
import { countOpcodes, SM80_OPCODES } from '../../compiler/sass.js';
import { attentionFor } from '../../runtime/attention.js';
import { compileTarget } from '../../runtime/cuda.js';

const nvcc = findNvcc();

describe('flash-attention template (mma.sync, sm_80 / sm_89)', () => {
  const specs: AttentionSpec[] = [
    defaultAttentionMmaSpec('bf16', 128),
    defaultAttentionMmaSpec('bf16', 64),
    { input: 'bf16', headDim: 128, bc: 64, stages: 2, bm: 128 },
    { input: 'f16', headDim: 64, bc: 128, stages: 2 },
  ];
  it.skipIf(!nvcc)(
    'compiles for sm_80 and sm_89 with no spills or stack, both products on HMMA',
    async () => {
      const jobs = specs.flatMap((s) =>
        (['sm_80', 'sm_89'] as const).map(async (arch) => {
          const art = attentionMma(s);
          const r = await compileCudaAsync({ source: art.source, arch, name: `${art.entry}.cu` });
          return { art, arch, r };
        }),
      );
      for (const { art, arch, r } of await Promise.all(jobs)) {
        const rep = r.reports[0]!;
        const what = `${art.entry} ${arch}`;
        expect(rep.name).toBe(art.entry);
        expect(rep.spillStoreBytes + rep.spillLoadBytes + rep.stackBytes, what).toBe(0);
        const { headDim: D, bc } = art.spec;
        const ops = countOpcodes(r.cubin, art.entry, SM80_OPCODES);
        // one m16n8k16 per (16 columns of D, 8 keys) for S and per (16 keys, 8 columns of D) for O
        expect(ops.HMMA, what).toBe(((D / 16) * bc) / 8 + ((bc / 16) * D) / 8);
        // Q once, K and V per 16 x 16 block
        expect(ops.LDSM, what).toBe(D / 16 + (2 * ((D / 16) * bc)) / 16);
        expect(ops.LDGSTS, what).toBeGreaterThanOrEqual(3);
      }
    },
    240_000,
  );

  it('rejects specs it cannot instantiate', () => {
    const ok: AttentionSpec = { input: 'bf16', headDim: 128, bc: 64, stages: 2 };
    expect(attentionMma(ok).spec.bm).toBe(64);
    expect(() => attentionMma({ ...ok, headDim: 96 as 64 })).toThrow(/head dim/);
    expect(() => attentionMma({ ...ok, bc: 96 })).toThrow(/KV tile/);
    expect(() => attentionMma({ ...ok, bc: 128 })).toThrow(/registers/);
    expect(() => attentionMma({ ...ok, bm: 32 as 64 })).toThrow(/query tile/);
    expect(() => attentionMma({ ...ok, stages: 3 })).toThrow(/shared memory/);
    expect(() => attentionMma({ ...ok, stages: 1 })).toThrow(/stages/);
  });

  it('runtime picks the instantiation of the GPU', () => {
    const sm90 = attentionSm90({ input: 'bf16', headDim: 128, bc: 128, stages: 3 });
    const mma = attentionMma(defaultAttentionMmaSpec('bf16', 128));
    expect(attentionFor('sm_90a', [sm90, mma])).toBe(sm90);
    expect(attentionFor('sm_89', [sm90, mma])).toBe(mma);
    expect(attentionFor('sm_80', [sm90, mma])).toBe(mma);
    expect(attentionFor('sm_90a', [mma])).toBe(mma); // through PTX
    expect(attentionFor('sm_75', [sm90, mma])).toBeUndefined();
    expect(attentionFor('sm_80', [sm90, undefined])).toBeUndefined();
    // sm_80 code: a cubin of the device's own architecture within the major version, else PTX
    expect(compileTarget('sm_80', 'sm_89')).toBe('sm_89');
    expect(compileTarget('sm_80', 'sm_90a')).toBe('compute_80');
    expect(compileTarget(undefined, 'sm_90a')).toBe('sm_90a');
  });
});
