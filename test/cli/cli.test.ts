import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileFiles } from '../../compiler/compile.js';
import { findNvcc } from '../../compiler/nvcc.js';
import { kernelCompileOptions } from '../../runtime/cuda.js';
import { KernelCache, keyOf } from '../../runtime/kernel-cache.js';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../dsl/paths.js';
import { run } from '../../cli/main.js';

const root = packageRoot(import.meta.url);

async function sfc(...argv: string[]) {
  let out = '';
  let err = '';
  const code = await run(argv, { stdout: (s) => void (out += s), stderr: (s) => void (err += s) });
  return { code, out, err };
}

describe('sfc CLI', () => {
  it('--help lists the commands that exist and exits 0', async () => {
    const r = await sfc('--help');
    expect(r.code).toBe(0);
    const commands = [...r.out.matchAll(/^ {2}(\w+)/gm)].map((m) => m[1]);
    expect(commands).toEqual(['bench', 'build', 'config', 'convert', 'demo', 'doctor', 'infer', 'help']);
  });

  it('--version prints the package version', async () => {
    const r = await sfc('--version');
    expect(r.code).toBe(0);
    expect(r.out.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('usage errors exit 2', async () => {
    expect((await sfc('no-such-command')).code).toBe(2);
    expect((await sfc('config', '--no-such-flag')).code).toBe(2);
    expect((await sfc('config', '--format', 'xml')).code).toBe(2);
  });

  it('user errors are one line, no stack trace, exit 1', async () => {
    const r = await sfc('config', '--set', 'lr_critc=1');
    expect(r.code).toBe(1);
    expect(r.err).toBe("sfc: error: --set lr_critc=1: unknown key 'lr_critc' (did you mean 'lr_critic'?)\n");
    expect(r.out).toBe('');
  });

  it('config prints the merged config as YAML or JSON', async () => {
    const cfg = join(root, 'configs', 'self_forcing_dmd.yaml');
    const y = await sfc('config', '-c', cfg, '--set', 'seed=7');
    expect(y.code).toBe(0);
    expect(y.out).toContain('seed: 7\n');
    const j = await sfc('config', '-c', cfg, '--format', 'json');
    expect(JSON.parse(j.out)).toMatchObject({ num_frame_per_block: 3, timestep_shift: 5 });
    const k = await sfc('config', '--keys');
    expect(k.out).toContain('model_kwargs.local_attn_size');
  });

  it('the installed executable runs (dist built by npm run build)', () => {
    const out = execFileSync(process.execPath, [join(root, 'cli', 'sfc.js'), '--version'], { encoding: 'utf8' });
    expect(out.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const bad = spawnSync(process.execPath, [join(root, 'cli', 'sfc.js'), 'config', '--set', 'seed=x'], {
      encoding: 'utf8',
    });
    expect(bad.status).toBe(1);
    expect(bad.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });
});

describe('sfc doctor', () => {
  it('reports what it found and exits 0 even without a GPU', async () => {
    const r = await sfc('doctor');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^sfc +\d+\.\d+\.\d+$/m);
    expect(r.out).toMatch(/^addon +ok/m);
    expect(r.out).toMatch(/^cuda +/m);
    expect(r.out).toMatch(/^cache +/m);
    const j = await sfc('doctor', '--json');
    expect(JSON.parse(j.out)).toMatchObject({ addon: { loaded: true }, cuda: { available: expect.any(Boolean) } });
  });
});

describe.skipIf(!findNvcc())('sfc build', () => {
  it('compiles a kernel for all three architectures into the cache, then finds it there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfc-build-'));
    const saved = process.env.SFC_CACHE_DIR;
    process.env.SFC_CACHE_DIR = dir;
    try {
      const r = await sfc('build', '--kernel', 'rmsNorm', '--no-progress', '--dump', 'ir');
      expect(r.code).toBe(0);
      expect(r.out).toContain('kernel rmsNorm(x: ptr<bf16>');
      for (const arch of ['sm_80', 'sm_89', 'sm_90a'])
        expect(r.out).toMatch(new RegExp(`rmsNorm__aligned +${arch} +\\d+`));
      expect(r.out).toMatch(/\b0 of \d+ kernels spill/);
      const cache = new KernelCache(dir);
      const a = compileFiles([join(root, 'models', 'kernels', 'norm.ts')]).find((x) => x.name === 'rmsNorm')!;
      const v = a.cuda[0]!;
      const hit = cache.get(keyOf({ source: v.source, options: kernelCompileOptions('sm_90a'), arch: 'sm_90a' }));
      expect(hit?.toolchain).toMatch(/^nvcc-\d+\.\d+$/);
    } finally {
      if (saved === undefined) delete process.env.SFC_CACHE_DIR;
      else process.env.SFC_CACHE_DIR = saved;
    }
  });

  it('reports malformed DSL source at file:line:col', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfc-build-dsl-'));
    const file = join(dir, 'bad.ts');
    writeFileSync(file, `export const x = 1;\nconst y: number = 'oops';\n`);
    const r = await sfc('build', '--file', file, '--no-progress');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^sfc: error: .*bad\.ts:2:7: TypeScript: Type 'string' is not assignable to type 'number'\./);
  });
});

describe('sfc build --graph', () => {
  it('prints a layer graph as DOT with its fused kernels as clusters', async () => {
    const dir = mkdtempSync(join(root, 'test', 'compiler', 'virtual-'));
    const file = join(dir, 'ffn.ts');
    writeFileSync(
      file,
      `import { layer, layerNorm, linear, geluTanh, type Tensor, type bf16 } from '../../../dsl/layer.js';
export const ffn = layer((x: Tensor<bf16, ['L', 64]>, w1: Tensor<bf16, [128, 64]>, w2: Tensor<bf16, [64, 128]>) =>
  linear(geluTanh(linear(layerNorm(x, 1e-6), w1)), w2));
`,
    );
    try {
      const r = await sfc('build', '--file', file, '--graph', 'ffn');
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^digraph "ffn" \{/);
      expect(r.out.match(/subgraph cluster_/g)).toHaveLength(2);
      const bad = await sfc('build', '--file', file, '--graph', 'nope');
      expect(bad.err).toBe("sfc: error: no layer named 'nope' (layers: ffn)\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
