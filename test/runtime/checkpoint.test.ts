// Checkpoints written by real PyTorch (test/reference/make_checkpoint_fixtures.py, run on the GPU
// machine): both formats read to the exact values PyTorch saved, Self-Forcing's nested state dicts
// and key prefixes, shared storages and views, conversion to safetensors bit for bit, and the strict
// state-dict check.
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dtypeOf } from '../../dsl/dtypes.js';
import { packageRoot } from '../../dsl/paths.js';
import { decode, rawArray } from '../../runtime/convert.js';
import {
  canonicalize,
  canonicalName,
  checkStateDict,
  openCheckpoint,
  type CheckpointTensor,
} from '../../runtime/checkpoint/state-dict.js';
import { run } from '../../cli/main.js';
import { errorOf } from '../helpers.js';

const dir = join(packageRoot(import.meta.url), 'test', 'fixtures', 'checkpoints');
const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Record<
  string,
  Record<string, { dtype: string; shape: number[]; values: number[] }>
>;
const torchToSfc: Record<string, string> = {
  bfloat16: 'bf16',
  float16: 'f16',
  float32: 'f32',
  int64: 'i64',
  bool: 'u8',
};

function values(t: CheckpointTensor): number[] {
  const bytes = new Uint8Array(t.read());
  const d = t.dtype!;
  const raw = rawArray(d, bytes.buffer, 0, bytes.byteLength / d.bytes);
  return Array.from(decode(d, raw) as ArrayLike<number | bigint>, Number);
}

function expectMatches(
  tensors: Map<string, CheckpointTensor>,
  want: (typeof expected)['generator'],
  rename = (n: string) => n,
) {
  expect(new Set([...tensors.keys()].map(rename))).toEqual(new Set(Object.keys(want).map(rename)));
  for (const [name, t] of tensors) {
    const e = want[name]!;
    expect(t.dtype?.name, name).toBe(torchToSfc[e.dtype]);
    expect(t.shape, name).toEqual(e.shape);
    expect(values(t), name).toEqual(e.values);
  }
}

describe('PyTorch checkpoints', () => {
  it('reads a Self-Forcing style checkpoint: nested dicts, bf16/f16/f32/i64/bool, views, shared storage', () => {
    const ck = openCheckpoint(join(dir, 'self_forcing_tiny.pt'), { key: 'generator' });
    expectMatches(ck.tensors, expected.generator!);
    ck.close();
    const ema = openCheckpoint(join(dir, 'self_forcing_tiny.pt'), { key: 'generator_ema' });
    expectMatches(ema.tensors, expected.generator_ema!);
    // FSDP-wrapped names and the wrapper's `model.` prefix canonicalise to the same parameter names
    expect([...canonicalize(ema).keys()].sort()).toEqual(Object.keys(expected.generator!).map(canonicalName).sort());
    ema.close();
  });

  it('asks which state dict to use when a file has several', () => {
    expect(errorOf(() => openCheckpoint(join(dir, 'self_forcing_tiny.pt')))).toMatch(
      /self_forcing_tiny\.pt holds several state dicts \(generator, generator_ema\); choose one with --key$/,
    );
    expect(errorOf(() => openCheckpoint(join(dir, 'self_forcing_tiny.pt'), { key: 'critic' }))).toMatch(
      /no top-level entry 'critic' \(entries: generator, generator_ema, step\)$/,
    );
  });

  it('reads a flat state dict and the same tensors from safetensors', () => {
    const pt = openCheckpoint(join(dir, 'state_dict_tiny.pt'));
    expectMatches(pt.tensors, expected.generator!);
    pt.close();
    const st = openCheckpoint(join(dir, 'state_dict_tiny.safetensors'));
    expectMatches(st.tensors, expected.generator!);
    st.close();
  });
});

describe('sfc convert', () => {
  const sfc = async (...argv: string[]) => {
    let out = '';
    let err = '';
    const code = await run(argv, { stdout: (s) => void (out += s), stderr: (s) => void (err += s) });
    return { code, out, err };
  };

  it('.pt -> safetensors keeps every tensor bit for bit', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'sfc-convert-'));
    const out = join(tmp, 'gen.safetensors');
    const r = await sfc('convert', join(dir, 'self_forcing_tiny.pt'), out, '--key', 'generator', '--no-progress');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/wrote .*gen\.safetensors: 9 tensors/);
    const back = openCheckpoint(out);
    expectMatches(back.tensors, expected.generator!);
    back.close();
  });

  it('--dtype bf16 rounds floating-point tensors and keeps integers; --canonical-names strips prefixes', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'sfc-convert-'));
    const out = join(tmp, 'ema.safetensors');
    const r = await sfc(
      'convert',
      join(dir, 'self_forcing_tiny.pt'),
      out,
      '--key',
      'generator_ema',
      '--dtype',
      'bf16',
      '--canonical-names',
      '--no-progress',
    );
    expect(r.code).toBe(0);
    const back = openCheckpoint(out);
    expect(back.tensors.get('blocks.0.norm3.weight')?.dtype).toBe(dtypeOf('bf16'));
    expect(back.tensors.get('freqs_index')?.dtype).toBe(dtypeOf('i64'));
    expect(values(back.tensors.get('freqs_index')!)).toEqual(
      expected.generator_ema!['model._fsdp_wrapped_module.freqs_index']!.values,
    );
    back.close();
  });

  it('refuses to lose data and explains mistakes in one line', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'sfc-convert-'));
    const existing = join(tmp, 'exists.safetensors');
    copyFileSync(join(dir, 'state_dict_tiny.safetensors'), existing);
    const cases: [string[], number, RegExp][] = [
      [['convert', join(tmp, 'nope.pt'), join(tmp, 'o.safetensors')], 1, /checkpoint not found: .*nope\.pt/],
      [['convert', join(dir, 'state_dict_tiny.pt'), existing], 1, /exists \(use --force to replace it\)/],
      [['convert', join(dir, 'state_dict_tiny.pt'), join(tmp, 'o.bin')], 2, /the output must be a \.safetensors file/],
      [['convert', join(dir, 'self_forcing_tiny.pt'), join(tmp, 'o.safetensors')], 2, /choose one with --key/],
      [
        ['convert', join(dir, 'state_dict_tiny.pt'), join(tmp, 'o.safetensors'), '--dtype', 'i32'],
        2,
        /--dtype must be keep/,
      ],
    ];
    for (const [argv, code, msg] of cases) {
      const r = await sfc(...argv, '--no-progress');
      expect(r.code, argv.join(' ')).toBe(code);
      expect(r.err, argv.join(' ')).toMatch(msg);
      expect(r.err.trim().split('\n')[0]).toMatch(/^sfc: error: /);
    }
    expect(readFileSync(existing)).toEqual(readFileSync(join(dir, 'state_dict_tiny.safetensors')));
  });
});

describe('strict state-dict check', () => {
  it('names missing, unexpected and mis-shaped parameters', () => {
    const ck = openCheckpoint(join(dir, 'state_dict_tiny.safetensors'));
    const got = canonicalize(ck);
    const expectedParams = new Map(
      [...got]
        .filter(([n]) => n !== 'mask')
        .map(([n, t]) => [n, { shape: n === 'head.head.weight' ? [4, 2] : t.shape }]),
    );
    expectedParams.set('head.head.bias', { shape: [4] });
    expect(errorOf(() => checkStateDict('x.safetensors', expectedParams, got))).toBe(
      "x.safetensors does not match the model: 1 missing: head.head.bias (closest in the file: 'mask'); 1 unexpected: mask; 1 with the wrong shape: head.head.weight is [2, 4], the model needs [4, 2]",
    );
    ck.close();
  });
});
