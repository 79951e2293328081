import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mulberry32 } from '../helpers.js';
import { afterAll, describe, expect, it } from 'vitest';
import { bf16, e4m3, e5m2, f16, f32, i32, i64, u8 } from '../../dsl/dtypes.js';
import { CpuDevice } from '../../runtime/cpu.js';
import {
  openSafetensors,
  SAFETENSORS_DTYPES,
  SafetensorsError,
  SafetensorsFile,
  ShardedSafetensors,
  writeSafetensors,
  type SafetensorsDType,
  type TensorToWrite,
} from '../../runtime/checkpoint/safetensors.js';

const cpu = new CpuDevice();
const dir = mkdtempSync(join(tmpdir(), 'sfc-safetensors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const tmp = (name = 'model.safetensors') => join(dir, `${fileNo++}-${name}`);

function randomBytes(rand: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

const enc = new TextEncoder();

/** A file of [u64 length][header bytes][data], the header given as a string or an object. */
function build(header: unknown, data: Uint8Array = new Uint8Array(0), opts: { length?: bigint } = {}): Uint8Array {
  const h = enc.encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + h.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, opts.length ?? BigInt(h.byteLength), true);
  out.set(h, 8);
  out.set(data, 8 + h.byteLength);
  return out;
}

function save(bytes: Uint8Array, name?: string): string {
  const p = tmp(name);
  writeFileSync(p, bytes);
  return p;
}

/** Opens `path` and reads every tensor; returns the error thrown (which must be a SafetensorsError). */
function openError(
  path: string,
  open: (p: string) => { names(): string[]; readBytes(n: string): Uint8Array; close(): void } = SafetensorsFile.open,
): string {
  try {
    const f = open(path);
    try {
      for (const n of f.names()) f.readBytes(n);
    } finally {
      f.close();
    }
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError);
    return (e as Error).message;
  }
  throw new Error('expected a SafetensorsError, none was thrown');
}

const entry = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });

describe('safetensors round trip', () => {
  it('writes and reads back every dtype bit for bit, with metadata, zero-size and unicode names', () => {
    const rand = mulberry32(1);
    const dts: Array<TensorToWrite['dtype']> = [f32, f16, bf16, i64, i32, u8, e4m3, e5m2, 'F64', 'I16', 'I8', 'BOOL'];
    const tensors: (TensorToWrite & { data: Uint8Array })[] = dts.map((dtype, i) => {
      const shape = [i + 1, 3];
      const bytes = typeof dtype === 'string' ? SAFETENSORS_DTYPES[dtype].bytes : dtype.bytes;
      return {
        name: `t${i}.${typeof dtype === 'string' ? dtype : dtype.name}`,
        dtype,
        shape,
        data: randomBytes(rand, (i + 1) * 3 * bytes),
      };
    });
    tensors.push({ name: 'empty', dtype: f32, shape: [0, 4], data: new Uint8Array(0) });
    tensors.push({ name: 'scalar', dtype: i32, shape: [], data: randomBytes(rand, 4) });
    tensors.push({ name: 'blöcke.0.注意力.🙂', dtype: bf16, shape: [2], data: randomBytes(rand, 4) });
    tensors.push({ name: '__proto__', dtype: u8, shape: [1], data: new Uint8Array([7]) });
    const metadata = { format: 'pt', 'schlüssel ✓': 'wert "quoted"\n', __proto__x: '' };
    const p = tmp();
    writeSafetensors(p, tensors, metadata);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);

    const f = SafetensorsFile.open(p);
    try {
      expect(f.metadata).toEqual(metadata);
      expect(f.names()).toEqual(tensors.map((t) => t.name));
      expect(f.headerLength % 8).toBe(0);
      const file = readFileSync(p);
      const headerText = file.subarray(8, 8 + f.headerLength).toString('utf8');
      expect(headerText).toMatch(/^\{.*\} *$/);
      let expectedBegin = 8 + f.headerLength;
      for (const t of tensors) {
        const e = f.entry(t.name);
        const stName =
          typeof t.dtype === 'string'
            ? t.dtype
            : (
                {
                  f32: 'F32',
                  f16: 'F16',
                  bf16: 'BF16',
                  i64: 'I64',
                  i32: 'I32',
                  u8: 'U8',
                  e4m3: 'F8_E4M3',
                  e5m2: 'F8_E5M2',
                } as const
              )[t.dtype.name];
        expect(e.dtype).toBe(stName);
        expect(e.shape).toEqual(t.shape);
        expect(e.begin).toBe(expectedBegin);
        expect(e.end - e.begin).toBe(t.data.byteLength);
        expectedBegin = e.end;
        expect(f.readBytes(t.name)).toEqual(t.data);
        if (typeof t.dtype !== 'string' || t.dtype === 'BOOL') {
          const dt = typeof t.dtype === 'string' ? u8 : t.dtype;
          expect(e.sfcDtype).toBe(dt);
          const raw = f.readRaw(t.name);
          expect(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength)).toEqual(t.data);
          expect(raw.length).toBe(t.data.byteLength / dt.bytes);
          const x = f.toTensor(t.name, cpu);
          expect(x.dtype).toBe(dt);
          expect(x.shape).toEqual(t.shape);
          const back = x.toRaw();
          expect(new Uint8Array(back.buffer, back.byteOffset, back.byteLength)).toEqual(t.data);
        } else {
          expect(e.sfcDtype).toBeUndefined();
          expect(() => f.readRaw(t.name)).toThrow(
            `${p}: tensor '${t.name}' has dtype ${t.dtype}, which sfc has no dtype for; read its bytes with readBytes() and convert them`,
          );
        }
      }
      expect(expectedBegin).toBe(file.byteLength);
      expect(f.readRaw('t0.f32')).toBeInstanceOf(Float32Array);
      expect(f.readRaw('t2.bf16')).toBeInstanceOf(Uint16Array);
      expect(f.readRaw('t3.i64')).toBeInstanceOf(BigInt64Array);
      expect(f.readRaw('t4.i32')).toBeInstanceOf(Int32Array);
      expect(f.readRaw('t6.e4m3')).toBeInstanceOf(Uint8Array);
    } finally {
      f.close();
    }
  });

  it('writes no metadata key when there is none and pads the header with spaces to 8 bytes', () => {
    for (let n = 1; n <= 9; n++) {
      const p = tmp();
      writeSafetensors(p, [{ name: 'x'.repeat(n), dtype: u8, shape: [1], data: new Uint8Array([n]) }]);
      const b = readFileSync(p);
      const len = Number(b.readBigUInt64LE(0));
      expect(len % 8).toBe(0);
      const text = b.subarray(8, 8 + len).toString('utf8');
      expect(text.trimEnd()).toBe(`{"${'x'.repeat(n)}":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`);
      expect(text.length - text.trimEnd().length).toBeLessThan(8);
      expect(b.byteLength).toBe(8 + len + 1);
    }
  });

  it('produces the reference byte layout and reads a hand-built file', () => {
    // {"test": F32 [2, 2]} as the reference implementation serializes it: 60 bytes of JSON + 4 spaces
    const json = '{"test":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}';
    expect(json.length).toBe(60);
    const expected = [64, 0, 0, 0, 0, 0, 0, 0, ...[...json].map((c) => c.charCodeAt(0)), 32, 32, 32, 32];
    const values = new Float32Array([1, -2.5, 3e-8, Infinity]);
    const data = new Uint8Array(values.buffer);
    const p = tmp();
    writeSafetensors(p, [{ name: 'test', dtype: f32, shape: [2, 2], data }]);
    expect([...readFileSync(p)]).toEqual([...expected, ...data]);

    // hand-built: metadata after the tensors, pretty-printed, not padded, a gap after the data
    const header =
      '{\n "b": {"dtype": "I32", "shape": [2], "data_offsets": [8, 16]},\n' +
      ' "a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]},\n' +
      ' "__metadata__": {"format": "pt"}\n}';
    const bytes = [
      ...build(header),
      0x00,
      0x3c,
      0x00,
      0xc0,
      0x00,
      0x7c,
      0xee,
      0xee,
      1,
      0,
      0,
      0,
      0xff,
      0xff,
      0xff,
      0xff,
    ];
    const q = save(new Uint8Array(bytes));
    const f = SafetensorsFile.open(q);
    expect(f.names()).toEqual(['b', 'a']);
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(f.entry('a')).toEqual({
      name: 'a',
      dtype: 'F16',
      sfcDtype: f16,
      shape: [3],
      begin: 8 + header.length,
      end: 14 + header.length,
    });
    expect([...(f.readRaw('a') as Uint16Array)]).toEqual([0x3c00, 0xc000, 0x7c00]);
    expect(Array.from(f.toTensor('a', cpu).toF32())).toEqual([1, -2, Infinity]);
    expect([...(f.readRaw('b') as Int32Array)]).toEqual([1, -1]);
    f.close();
    f.close(); // idempotent
    expect(() => f.readBytes('a')).toThrow(`${q}: file was closed (reading 'a')`);
  });

  it('reads a file with only metadata, and an empty header object', () => {
    const f = SafetensorsFile.open(save(build({ __metadata__: { a: 'b' } })));
    expect(f.names()).toEqual([]);
    expect(f.metadata).toEqual({ a: 'b' });
    f.close();
    const g = SafetensorsFile.open(save(build('{}')));
    expect(g.entries.size).toBe(0);
    g.close();
    const p = tmp();
    writeSafetensors(p, []);
    const h = SafetensorsFile.open(p);
    expect(h.names()).toEqual([]);
    expect(h.headerLength).toBe(8);
    h.close();
  });

  it('uses 64-bit file positions (a sparse file with a tensor past 4 GiB)', () => {
    const header = JSON.stringify({
      low: entry('U8', [4], [0, 4]),
      high: entry('F32', [2], [5_000_000_000, 5_000_000_008]),
    });
    const p = tmp();
    const head = build(header, new Uint8Array([1, 2, 3, 4]));
    const fd = openSync(p, 'w');
    try {
      writeSync(fd, head, 0, head.byteLength, 0);
      const v = new Uint8Array(new Float32Array([0.5, -7]).buffer);
      writeSync(fd, v, 0, 8, 8 + header.length + 5_000_000_000); // leaves a hole
    } finally {
      closeSync(fd);
    }
    try {
      const f = SafetensorsFile.open(p);
      expect(f.size).toBe(8 + header.length + 5_000_000_008);
      expect([...(f.readRaw('high') as Float32Array)]).toEqual([0.5, -7]);
      expect([...f.readBytes('low')]).toEqual([1, 2, 3, 4]);
      f.close();
    } finally {
      rmSync(p);
    }
  });

  it('suggests close names for unknown tensors', () => {
    const p = tmp();
    writeSafetensors(p, [
      { name: 'blocks.0.attn.q.weight', dtype: f32, shape: [1], data: new Uint8Array(4) },
      { name: 'blocks.0.attn.k.weight', dtype: f32, shape: [1], data: new Uint8Array(4) },
      { name: 'blocks.1.ffn.0.weight', dtype: f32, shape: [1], data: new Uint8Array(4) },
      { name: 'head.bias', dtype: f32, shape: [1], data: new Uint8Array(4) },
    ]);
    const f = SafetensorsFile.open(p);
    expect(() => f.readBytes('blocks.0.attn.v.weight')).toThrow(
      `${p}: no tensor named 'blocks.0.attn.v.weight' (close names: 'blocks.0.attn.k.weight', 'blocks.0.attn.q.weight', 'blocks.1.ffn.0.weight')`,
    );
    f.close();
    const q = tmp();
    writeSafetensors(q, []);
    const g = SafetensorsFile.open(q);
    expect(() => g.entry('x')).toThrow(`${q}: no tensor named 'x' (it holds no tensors)`);
    g.close();
  });

  it('refuses bad input on write', () => {
    const p = tmp();
    const t = (over: Partial<TensorToWrite>): TensorToWrite => ({
      name: 'w',
      dtype: f32,
      shape: [2],
      data: new Uint8Array(8),
      ...over,
    });
    expect(() => writeSafetensors(p, [t({ data: new Uint8Array(7) })])).toThrow(
      `${p}: tensor 'w': 7 data bytes do not match F32 [2] (8 bytes)`,
    );
    expect(() => writeSafetensors(p, [t({}), t({})])).toThrow(`${p}: tensor 'w': written twice`);
    expect(() => writeSafetensors(p, [t({ name: '__metadata__' })])).toThrow(
      `${p}: tensor '__metadata__': the name is reserved for metadata`,
    );
    expect(() => writeSafetensors(p, [t({ shape: [-2] })])).toThrow(
      `${p}: tensor 'w': shape must be non-negative integers, got [-2]`,
    );
    expect(() => writeSafetensors(p, [t({ dtype: 'F128' as SafetensorsDType })])).toThrow(
      `${p}: tensor 'w': unknown dtype "F128"`,
    );
    expect(() => writeSafetensors(p, [t({})], { n: 1 as unknown as string })).toThrow(
      `${p}: metadata value for 'n' is not a string (got number)`,
    );
    expect(() => statSync(p)).toThrow();
    expect(() => writeSafetensors(join(dir, 'no-such-dir', 'x.safetensors'), [t({})])).toThrow(SafetensorsError);
  });
});

describe('safetensors validation', () => {
  const ok = (n = 16) => ({ w: entry('F32', [n / 4], [0, n]) });

  it('empty and short files', () => {
    const p = save(new Uint8Array(0));
    expect(openError(p)).toBe(`${p}: file is empty (0 bytes), not a safetensors file`);
    const q = save(new Uint8Array(5));
    expect(openError(q)).toBe(`${q}: file is only 5 bytes, too short for the 8-byte header length`);
    const r = join(dir, 'missing.safetensors');
    expect(openError(r)).toBe(`${r}: cannot open: ENOENT`);
    expect(openError(dir)).toMatch(
      new RegExp(`^${dir}: (cannot open: EISDIR|is a directory, not a safetensors file)$`),
    );
  });

  it('header lengths beyond the file or the 100 MB limit', () => {
    const p = save(build({}, new Uint8Array(1224), { length: 9999999999n }));
    expect(openError(p)).toBe(`${p}: header length 9999999999 exceeds the file size (1234 bytes)`);
    const q = save(build('{}', new Uint8Array(0), { length: 5n }));
    expect(openError(q)).toBe(
      `${q}: header length 5 exceeds the file size (10 bytes); only 2 bytes follow the 8-byte length`,
    );
    const r = save(build('{}', new Uint8Array(0), { length: 2n ** 64n - 1n }));
    expect(openError(r)).toBe(`${r}: header length 18446744073709551615 exceeds the file size (10 bytes)`);
    // a sparse 150 MB file whose header length fits it but is absurd
    const s = tmp();
    const fd = openSync(s, 'w');
    try {
      const head = build('{}', new Uint8Array(0), { length: 120_000_000n });
      writeSync(fd, head, 0, head.byteLength, 0);
      writeSync(fd, new Uint8Array(1), 0, 1, 150_000_000);
    } finally {
      closeSync(fd);
    }
    expect(openError(s)).toBe(`${s}: header length 120000000 exceeds the 100 MB limit; not a safetensors file?`);
    rmSync(s);
  });

  it('headers that are not a UTF-8 JSON object', () => {
    const p = save(build('{"w": {"dtype": "F32", '));
    expect(openError(p)).toMatch(new RegExp(`^${p}: header is not valid JSON \\(.+\\)$`));
    const bad = build('{"x": 1}');
    bad[10] = 0xff; // the "x"
    const q = save(bad);
    expect(openError(q)).toBe(`${q}: header is not valid UTF-8`);
    const r = save(build('[1, 2]'));
    expect(openError(r)).toBe(`${r}: header is not a JSON object (got array)`);
    const s = save(build('null'));
    expect(openError(s)).toBe(`${s}: header is not a JSON object (got null)`);
    const t = save(build(''));
    expect(openError(t)).toMatch(new RegExp(`^${t}: header is not valid JSON`));
    const u = save(build({ w: [1] }));
    expect(openError(u)).toBe(`${u}: tensor 'w': entry is not an object (got array)`);
  });

  it('bad dtypes, shapes and offsets', () => {
    const data = new Uint8Array(32);
    const cases: Array<[unknown, string]> = [
      [
        { w: entry('F128', [4], [0, 16]) },
        `tensor 'w': unknown dtype "F128" (known: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2)`,
      ],
      [{ w: { shape: [4], data_offsets: [0, 16] } }, `tensor 'w': unknown dtype undefined (known: F64,`],
      [{ w: entry('F32', [-4], [0, 16]) }, `tensor 'w': shape must be an array of non-negative integers, got [-4]`],
      [
        { w: entry('F32', [2, 1.5], [0, 12]) },
        `tensor 'w': shape must be an array of non-negative integers, got [2,1.5]`,
      ],
      [{ w: entry('F32', '4', [0, 16]) }, `tensor 'w': shape must be an array of non-negative integers, got "4"`],
      [
        { w: entry('F32', [4], [0]) },
        `tensor 'w': data_offsets must be [begin, end] with non-negative integers, got [0]`,
      ],
      [
        { w: entry('F32', [4], [-16, 0]) },
        `tensor 'w': data_offsets must be [begin, end] with non-negative integers, got [-16,0]`,
      ],
      [{ w: entry('F32', [0], [8, 4]) }, `tensor 'w': data_offsets [8, 4] end before they begin`],
      [
        { w: entry('F32', [4], [24, 40]) },
        `tensor 'w': data_offsets [24, 40] run past the end of the file (the data region holds 32 bytes; is the file truncated?)`,
      ],
      [
        { w: entry('F32', [4], [1e20, 1e20 + 16]) },
        `tensor 'w': data_offsets must be [begin, end] with non-negative integers, got [100000000000000000000,100000000000000000000]`,
      ],
      [{ w: entry('F32', [2, 2], [0, 12]) }, `tensor 'w': data_offsets [0, 12] span 12 bytes, but F32 [2, 2] needs 16`],
      [{ w: entry('BF16', [3], [0, 8]) }, `tensor 'w': data_offsets [0, 8] span 8 bytes, but BF16 [3] needs 6`],
      [
        { w: entry('U8', [2 ** 30, 2 ** 30, 2 ** 30], [0, 8]) },
        `tensor 'w': data_offsets [0, 8] span 8 bytes, but U8 [1073741824, 1073741824, 1073741824] needs more than 2^53`,
      ],
      [{ a: entry('F32', [4], [0, 16]), b: entry('F32', [4], [8, 24]) }, `tensors 'a' [0, 16] and 'b' [8, 24] overlap`],
      [
        { b: entry('U8', [4], [12, 16]), a: entry('F32', [4], [0, 16]) },
        `tensors 'a' [0, 16] and 'b' [12, 16] overlap`,
      ],
      [{ w: ok().w, __metadata__: { a: 'x', b: 3 } }, `__metadata__ value for 'b' is not a string (got number)`],
      [{ w: ok().w, __metadata__: ['a'] }, `__metadata__ must be an object of strings (got array)`],
    ];
    for (const [header, message] of cases) {
      const p = save(build(header, data));
      const got = openError(p);
      expect(got.startsWith(`${p}: ${message}`), `${got}\n  expected: ${message}`).toBe(true);
    }
  });

  it('accepts zero-size tensors anywhere, null metadata, gaps and reused zero-size offsets', () => {
    const header = {
      __metadata__: null,
      a: entry('F32', [4], [0, 16]),
      z1: entry('F32', [0], [8, 8]),
      z2: entry('I64', [3, 0], [16, 16]),
      b: entry('U8', [4], [20, 24]),
    };
    const f = SafetensorsFile.open(save(build(header, new Uint8Array(24))));
    expect(f.metadata).toEqual({});
    expect(f.readBytes('z1').byteLength).toBe(0);
    expect(f.readRaw('z2')).toEqual(new BigInt64Array(0));
    expect(f.toTensor('z2', cpu).shape).toEqual([3, 0]);
    f.close();
  });

  it('a truncated data region', () => {
    const p = tmp();
    const rand = mulberry32(7);
    writeSafetensors(p, [
      { name: 'a', dtype: f32, shape: [8], data: randomBytes(rand, 32) },
      { name: 'b', dtype: f32, shape: [8], data: randomBytes(rand, 32) },
    ]);
    const full = readFileSync(p);
    writeFileSync(p, full.subarray(0, full.byteLength - 20));
    expect(openError(p)).toBe(
      `${p}: tensor 'b': data_offsets [32, 64] run past the end of the file (the data region holds 44 bytes; is the file truncated?)`,
    );
  });
});

describe('sharded safetensors', () => {
  function sharded(): { dir: string; index: string } {
    const d = mkdtempSync(join(dir, 'sharded-'));
    writeSafetensors(join(d, 'model-00001-of-00002.safetensors'), [
      { name: 'a', dtype: f32, shape: [2], data: new Uint8Array(new Float32Array([1, 2]).buffer) },
      { name: 'b', dtype: i32, shape: [1], data: new Uint8Array(new Int32Array([-3]).buffer) },
      { name: 'unlisted', dtype: u8, shape: [1], data: new Uint8Array(1) },
    ]);
    writeSafetensors(join(d, 'model-00002-of-00002.safetensors'), [
      { name: 'c', dtype: bf16, shape: [1], data: new Uint8Array([0x80, 0x3f]) },
    ]);
    const index = join(d, 'model.safetensors.index.json');
    writeFileSync(
      index,
      JSON.stringify({
        metadata: { total_size: 14 },
        weight_map: {
          a: 'model-00001-of-00002.safetensors',
          c: 'model-00002-of-00002.safetensors',
          b: 'model-00001-of-00002.safetensors',
        },
      }),
    );
    return { dir: d, index };
  }

  it('reads across shards, opening them lazily', () => {
    const { dir: d, index } = sharded();
    const s = openSafetensors(index);
    expect(s).toBeInstanceOf(ShardedSafetensors);
    const idx = s as ShardedSafetensors;
    expect(idx.names()).toEqual(['a', 'c', 'b']);
    expect(idx.metadata).toEqual({ total_size: 14 });
    expect(idx.shardNames()).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(idx.has('unlisted')).toBe(false);
    // a broken, unused shard does not matter until something in it is read
    writeFileSync(join(d, 'model-00002-of-00002.safetensors'), 'garbage, not a safetensors file');
    expect([...(idx.readRaw('a') as Float32Array)]).toEqual([1, 2]);
    expect(idx.entry('b').sfcDtype).toBe(i32);
    expect([...(idx.toTensor('b', cpu).toArray() as Int32Array)]).toEqual([-3]);
    expect(() => idx.readBytes('c')).toThrow(`${join(d, 'model-00002-of-00002.safetensors')}: header length`);
    expect(() => idx.readBytes('d')).toThrow(`${index}: no tensor named 'd' (close names: 'a', 'b', 'c')`);
    idx.close();

    // by content: an index without the .json name
    const renamed = join(d, 'index-without-extension');
    writeFileSync(renamed, readFileSync(index));
    expect(openSafetensors(renamed)).toBeInstanceOf(ShardedSafetensors);
    expect(openSafetensors(join(d, 'model-00001-of-00002.safetensors'))).toBeInstanceOf(SafetensorsFile);
  });

  it('reports a missing shard, a missing tensor and a malformed index', () => {
    const { dir: d, index } = sharded();
    const wm = (m: Record<string, unknown>) => JSON.stringify({ weight_map: m });
    writeFileSync(index, wm({ a: 'model-00001-of-00002.safetensors', x: 'model-00003-of-00003.safetensors' }));
    expect(openError(index, openSafetensors)).toBe(
      `${index}: shard 'model-00003-of-00003.safetensors' (holding 1 tensor, e.g. 'x') does not exist in ${d}`,
    );
    writeFileSync(
      index,
      wm({
        a: 'model-00001-of-00002.safetensors',
        x: 'model-00001-of-00002.safetensors',
        y: 'model-00001-of-00002.safetensors',
      }),
    );
    expect(openError(index, openSafetensors)).toBe(
      `${index}: tensor 'x' is mapped to shard 'model-00001-of-00002.safetensors', which does not contain it (nor 1 more mapped tensors)`,
    );
    writeFileSync(index, '{"weight_map": ');
    expect(openError(index, openSafetensors)).toMatch(new RegExp(`^${index}: index is not valid JSON \\(`));
    writeFileSync(index, '{"metadata": {}}');
    expect(openError(index, openSafetensors)).toBe(`${index}: index has no "weight_map" object (got undefined)`);
    writeFileSync(index, wm({ a: 3 }));
    expect(openError(index, openSafetensors)).toBe(`${index}: weight_map['a'] is not a file name (got 3)`);
    writeFileSync(index, '[]');
    expect(openError(index, openSafetensors)).toBe(`${index}: index is not a JSON object (got array)`);
    const missing = join(d, 'nope.safetensors.index.json');
    expect(openError(missing, openSafetensors)).toBe(`${missing}: cannot read the index: ENOENT`);
  });
});

describe('safetensors fuzz', () => {
  it('mutated files open and read, or fail with a SafetensorsError', () => {
    // SFC_FUZZ_SEED / SFC_FUZZ_ITERS run other or longer campaigns
    const rand = mulberry32(Number(process.env.SFC_FUZZ_SEED ?? 20240611));
    const int = (n: number) => Math.floor(rand() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

    const seeds: Uint8Array[] = [];
    const dts = [f32, f16, bf16, i64, i32, u8, e4m3, e5m2] as const;
    for (let s = 0; s < 4; s++) {
      const p = tmp();
      const tensors: TensorToWrite[] = [];
      for (let t = 0; t < 1 + s * 2; t++) {
        const dtype = t === 3 ? ('F64' as const) : pick(dts);
        const shape = Array.from({ length: int(3) }, () => int(4));
        const bytes = shape.reduce((a, b) => a * b, 1) * (typeof dtype === 'string' ? 8 : dtype.bytes);
        tensors.push({ name: `layer.${t}.w`, dtype, shape, data: randomBytes(rand, bytes) });
      }
      writeSafetensors(p, tensors, s % 2 ? { format: 'pt', step: String(s) } : undefined);
      seeds.push(new Uint8Array(readFileSync(p)));
    }

    const junk: unknown[] = [
      null,
      true,
      -1,
      0,
      1.5,
      2 ** 53,
      1e300,
      'F32',
      'BF16',
      'X',
      '',
      [],
      [1],
      [0, 0],
      [-1, 3],
      {},
      [[1]],
      { a: 1 },
      'é',
    ];
    const headerOf = (b: Uint8Array): string | undefined => {
      if (b.byteLength < 8) return undefined;
      const n = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
      if (n > b.byteLength - 8) return undefined;
      return new TextDecoder().decode(b.subarray(8, 8 + n));
    };
    const withHeader = (b: Uint8Array, text: string, lengthDelta = 0): Uint8Array => {
      const old = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
      return build(text, b.subarray(8 + old), {
        length: BigInt(Math.max(0, enc.encode(text).byteLength + lengthDelta)),
      });
    };
    const editJson = (text: string): string => {
      let h: Record<string, unknown>;
      try {
        h = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return text;
      }
      const names = Object.keys(h);
      const name = names.length ? pick(names) : 'w';
      const e = h[name] as Record<string, unknown> | undefined;
      switch (int(8)) {
        case 0:
          if (e && typeof e === 'object') e.dtype = pick([...Object.keys(SAFETENSORS_DTYPES), ...junk]);
          break;
        case 1:
          if (e && typeof e === 'object')
            e.shape =
              rand() < 0.5 ? pick(junk) : Array.from({ length: int(4) }, () => (rand() < 0.8 ? int(5) : pick(junk)));
          break;
        case 2:
          if (e && typeof e === 'object') {
            const off = Array.isArray(e.data_offsets) ? (e.data_offsets as unknown[]) : [0, 0];
            const i = int(2);
            off[i] = rand() < 0.7 ? Number(off[i]) + int(33) - 16 : pick(junk);
            e.data_offsets = rand() < 0.9 ? off : pick(junk);
          }
          break;
        case 3:
          delete h[name];
          break;
        case 4:
          h[rand() < 0.5 ? '__metadata__' : name] = pick(junk);
          break;
        case 5:
          h.__metadata__ = { k: pick(junk) };
          break;
        case 6:
          h[`${name}.copy`] = structuredClone(e);
          break;
        default:
          if (e && typeof e === 'object') delete e[pick(['dtype', 'shape', 'data_offsets'])];
      }
      return JSON.stringify(h);
    };
    const mutate = (src: Uint8Array): Uint8Array => {
      let b: Uint8Array = src.slice();
      const rounds = 1 + int(3);
      for (let r = 0; r < rounds; r++) {
        const header = headerOf(b);
        switch (int(8)) {
          case 0: // flip bytes anywhere
            for (let k = 1 + int(4); k > 0 && b.byteLength; k--) b[int(b.byteLength)] ^= 1 << int(8);
            break;
          case 1: // flip a byte of the header
            if (b.byteLength > 8) b[8 + int(Math.min(b.byteLength - 8, 200))] = int(256);
            break;
          case 2: // truncate
            b = b.slice(0, int(b.byteLength + 1));
            break;
          case 3: {
            // edit the header length
            if (b.byteLength < 8) break;
            const v = new DataView(b.buffer, b.byteOffset);
            const choice = int(4);
            if (choice === 0) v.setBigUint64(0, BigInt(int(b.byteLength + 16)), true);
            else if (choice === 1) v.setBigUint64(0, v.getBigUint64(0, true) + BigInt(int(17) - 8), true);
            else if (choice === 2) v.setUint32(4 * int(2), int(2 ** 32), true);
            else v.setBigUint64(0, 2n ** 63n + BigInt(int(1000)), true);
            break;
          }
          case 4: // structured JSON edit, length fixed up (sometimes off by a little)
            if (header !== undefined) b = withHeader(b, editJson(header), rand() < 0.8 ? 0 : int(5) - 2);
            break;
          case 5: {
            // text edit of the header: insert, delete or replace a character
            if (header === undefined || !header.length) break;
            const i = int(header.length);
            const c = pick(['{', '}', '[', ']', ',', ':', '"', '0', '9', '-', '.', 'e', '\\', ' ', 'é', '\u0000']);
            const op = int(3);
            const text =
              op === 0
                ? header.slice(0, i) + c + header.slice(i)
                : op === 1
                  ? header.slice(0, i) + header.slice(i + 1)
                  : header.slice(0, i) + c + header.slice(i + 1);
            b = withHeader(b, text);
            break;
          }
          case 6: {
            // append bytes
            const extra = randomBytes(rand, int(24));
            const out = new Uint8Array(b.byteLength + extra.byteLength);
            out.set(b);
            out.set(extra, b.byteLength);
            b = out;
            break;
          }
          default: // swap in another seed's header
            if (header !== undefined) {
              const other = headerOf(pick(seeds));
              if (other !== undefined) b = withHeader(b, other);
            }
        }
      }
      return b;
    };

    const start = Date.now();
    const p = join(dir, 'fuzz.safetensors');
    const counts = { opened: 0, failed: 0, tensorsRead: 0 };
    const messages = new Set<string>();
    for (let iter = 0, iters = Number(process.env.SFC_FUZZ_ITERS ?? 4000); iter < iters; iter++) {
      const bytes = mutate(pick(seeds));
      writeFileSync(p, bytes);
      let f: SafetensorsFile | ShardedSafetensors | undefined;
      try {
        f = iter % 4 === 0 ? openSafetensors(p) : SafetensorsFile.open(p);
        counts.opened++;
        for (const name of f.names()) {
          const e = f.entry(name);
          const data = f.readBytes(name);
          expect(data.byteLength).toBe(e.end - e.begin);
          expect(e.begin).toBeGreaterThanOrEqual(8);
          expect(e.end).toBeLessThanOrEqual(bytes.byteLength);
          expect(data).toEqual(bytes.subarray(e.begin, e.end));
          if (e.sfcDtype) {
            expect(f.readRaw(name).byteLength).toBe(data.byteLength);
            expect(f.toTensor(name, cpu).shape).toEqual(e.shape);
          } else {
            expect(() => f!.readRaw(name)).toThrow(SafetensorsError);
          }
          counts.tensorsRead++;
        }
      } catch (e) {
        if (!(e instanceof SafetensorsError)) {
          throw new Error(`iteration ${iter}: ${String(e)} for input ${Buffer.from(bytes).toString('base64')}`, {
            cause: e,
          });
        }
        expect(e.message.startsWith(`${p}: `)).toBe(true);
        messages.add(
          e.message
            .slice(p.length + 2)
            .replace(/^(tensors? )'.*?'(?=[: ])/s, '$1X')
            .replace(/(unknown dtype) .*$/s, '$1')
            .replace(/ \(.*$/s, '')
            .replace(/[0-9]+/g, 'N')
            .slice(0, 60),
        );
        counts.failed++;
      } finally {
        f?.close();
      }
    }
    // the mutations reach every kind of check
    for (const kind of [
      'header length',
      'too short',
      'not valid UTF-8',
      'not valid JSON',
      'unknown dtype',
      'shape must be',
      'data_offsets must be',
      'end before they begin',
      'run past the end',
      'bytes, but',
      'overlap',
      '__metadata__',
    ]) {
      expect(
        [...messages].some((m) => m.includes(kind.replace(/[0-9]+/g, 'N'))),
        kind,
      ).toBe(true);
    }
    expect(counts.opened).toBeGreaterThan(200);
    expect(counts.failed).toBeGreaterThan(1000);
    expect(counts.tensorsRead).toBeGreaterThan(200);
    expect(Date.now() - start).toBeLessThan(30_000);
  });
});
