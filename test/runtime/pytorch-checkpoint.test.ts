// PyTorch (torch.save zip) checkpoints: real pickles from Python's own pickler against a stand-in
// torch package (test/reference/fake_torch_pickles.py, checked against numpy), hand-assembled pickles
// and zips for the refusals and malformed archives, and a seeded fuzz run over a small checkpoint.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bf16, e4m3, f16, f32, i64, u8 } from '../../dsl/dtypes.js';
import { isUserError, SfcError } from '../../dsl/errors.js';
import {
  CheckpointError,
  flattenStateDict,
  loadPytorchCheckpoint,
  PyGlobal,
  tensorBytes,
  type PytorchCheckpoint,
  type TensorRef,
} from '../../runtime/checkpoint/pytorch.js';
import { ZipReader } from '../../runtime/checkpoint/zip.js';
import { mulberry32 } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sfc-pt-'));
const enc = new TextEncoder();
/** SFC_FUZZ_ITERATIONS=200000 for a long run; the default keeps the suite well under 30 s. */
const FUZZ_ITERATIONS = Number(process.env.SFC_FUZZ_ITERATIONS ?? 2000);
const FUZZ_TIMEOUT = Math.max(30_000, FUZZ_ITERATIONS * 10);
const FUZZ_SEED = Number(process.env.SFC_FUZZ_SEED ?? 20240611);
const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

// ---- a tiny pickle assembler -------------------------------------------------------------------

type Part = number | string | Uint8Array | Part[];
/** Bytes of `parts`: numbers are single bytes, strings are latin-1 literal bytes (opcodes, lines). */
function pk(...parts: Part[]): Uint8Array {
  const out: number[] = [];
  const add = (p: Part) => {
    if (typeof p === 'number') out.push(p);
    else if (typeof p === 'string') for (const c of p) out.push(c.charCodeAt(0));
    else if (p instanceof Uint8Array) out.push(...p);
    else p.forEach(add);
  };
  parts.forEach(add);
  return Uint8Array.from(out);
}
const le32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
/** BINUNICODE */
const U = (s: string): Part => {
  const b = enc.encode(s);
  return [0x58, le32(b.length), b];
};
/** BININT1 / BININT */
const K = (n: number): Part => (n >= 0 && n < 256 ? [0x4b, n] : [0x4a, le32(n)]);
const G = (module: string, name: string): Part => `c${module}\n${name}\n`;
const tuple = (...items: Part[]): Part => ['(', items, 't'];
const EMPTY_HOOKS: Part = [G('collections', 'OrderedDict'), ')', 'R'];
const storagePid = (type: string, key: string, numel: number): Part => [
  tuple(U('storage'), G('torch', type), U(key), U('cpu'), K(numel)),
  'Q',
];
/** torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()) */
const tensor = (storage: Part, offset: number, size: number[], stride: number[]): Part => [
  G('torch._utils', '_rebuild_tensor_v2'),
  tuple(storage, K(offset), tuple(...size.map(K)), tuple(...stride.map(K)), 0x89, EMPTY_HOOKS),
  'R',
];

// ---- a tiny zip writer (stored entries; ZIP64 and lies on request) -------------------------------

interface ZipSpec {
  name: string;
  data: Uint8Array;
  method?: number;
  /** declared (uncompressed and compressed) size in the central directory */
  size?: number;
  /** declared local header offset */
  offset?: number;
  /** a gap of this many (unwritten) bytes before the entry: a sparse file past 4 GiB */
  hole?: number;
}

interface Segment {
  pos: number;
  data: Uint8Array;
}

/** The zip's bytes as positioned segments (holes between them read as zeros). */
function zipSegments(entries: ZipSpec[], opts: { zip64?: boolean; count?: number } = {}): Segment[] {
  const parts: Segment[] = [];
  const central: Uint8Array[] = [];
  let pos = 0;
  for (const e of entries) {
    pos += e.hole ?? 0;
    const name = enc.encode(e.name);
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, e.method ?? 0, true);
    lv.setUint32(18, e.data.length, true);
    lv.setUint32(22, e.data.length, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    const offset = e.offset ?? pos;
    parts.push({ pos, data: local }, { pos: pos + local.length, data: e.data });
    pos += local.length + e.data.length;

    const size = e.size ?? e.data.length;
    const big = opts.zip64 || size > 0xfffffffe || offset > 0xfffffffe;
    const cen = new Uint8Array(46 + name.length + (big ? 28 : 0));
    const cv = new DataView(cen.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 45, true);
    cv.setUint16(6, big ? 45 : 20, true);
    cv.setUint16(10, e.method ?? 0, true);
    cv.setUint32(20, big ? 0xffffffff : size, true);
    cv.setUint32(24, big ? 0xffffffff : size, true);
    cv.setUint16(28, name.length, true);
    cv.setUint16(30, big ? 28 : 0, true);
    cv.setUint32(42, big ? 0xffffffff : offset, true);
    cen.set(name, 46);
    if (big) {
      const x = 46 + name.length;
      cv.setUint16(x, 1, true);
      cv.setUint16(x + 2, 24, true);
      cv.setBigUint64(x + 4, BigInt(size), true);
      cv.setBigUint64(x + 12, BigInt(size), true);
      cv.setBigUint64(x + 20, BigInt(offset), true);
    }
    central.push(cen);
  }
  const cdOffset = pos;
  const cdSize = central.reduce((a, c) => a + c.length, 0);
  const count = opts.count ?? entries.length;
  const tail: Uint8Array[] = [];
  if (opts.zip64) {
    const rec = new Uint8Array(56);
    const rv = new DataView(rec.buffer);
    rv.setUint32(0, 0x06064b50, true);
    rv.setBigUint64(4, 44n, true);
    rv.setUint16(12, 45, true);
    rv.setUint16(14, 45, true);
    rv.setBigUint64(24, BigInt(count), true);
    rv.setBigUint64(32, BigInt(count), true);
    rv.setBigUint64(40, BigInt(cdSize), true);
    rv.setBigUint64(48, BigInt(cdOffset), true);
    const loc = new Uint8Array(20);
    const locv = new DataView(loc.buffer);
    locv.setUint32(0, 0x07064b50, true);
    locv.setBigUint64(8, BigInt(cdOffset + cdSize), true);
    locv.setUint32(16, 1, true);
    tail.push(rec, loc);
  }
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, opts.zip64 ? 0xffff : count, true);
  ev.setUint16(10, opts.zip64 ? 0xffff : count, true);
  ev.setUint32(12, opts.zip64 ? 0xffffffff : cdSize, true);
  ev.setUint32(16, opts.zip64 ? 0xffffffff : cdOffset, true);
  tail.push(eocd);
  for (const c of [...central, ...tail]) {
    parts.push({ pos, data: c });
    pos += c.length;
  }
  return parts;
}

function makeZip(entries: ZipSpec[], opts: { zip64?: boolean; count?: number } = {}): Uint8Array {
  const segments = zipSegments(entries, opts);
  const last = segments[segments.length - 1]!;
  const out = new Uint8Array(last.pos + last.data.length);
  for (const s of segments) out.set(s.data, s.pos);
  return out;
}

// ---- a small checkpoint built here (no Python needed) -------------------------------------------

const floats = new Float32Array([0, 1.5, 3, 4.5, 6, 7.5]);
const longs = new BigInt64Array([-1n, 1n << 40n]);
const smallPickle = pk(
  0x80,
  2,
  '}',
  '(',
  U('w'),
  tensor(storagePid('FloatStorage', '0', 6), 0, [2, 3], [3, 1]),
  U('w_t'),
  tensor(storagePid('FloatStorage', '0', 6), 0, [3, 2], [1, 3]),
  U('v'),
  tensor(storagePid('FloatStorage', '0', 6), 1, [2], [2]),
  U('ids'),
  [
    G('torch._utils', '_rebuild_parameter'),
    tuple(tensor(storagePid('LongStorage', '1', 2), 0, [2], [1]), 0x88, EMPTY_HOOKS),
    'R',
  ],
  U('step'),
  K(7),
  'u',
  '.',
);

function checkpointEntries(pickle: Uint8Array, archive = 'archive'): ZipSpec[] {
  return [
    { name: `${archive}/data.pkl`, data: pickle },
    { name: `${archive}/byteorder`, data: enc.encode('little') },
    { name: `${archive}/data/0`, data: new Uint8Array(floats.buffer.slice(0)) },
    { name: `${archive}/data/1`, data: new Uint8Array(longs.buffer.slice(0)) },
    { name: `${archive}/version`, data: enc.encode('3\n') },
  ];
}

let fileNo = 0;
function writeTemp(bytes: Uint8Array, name = `f${fileNo++}.pt`): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

/** The CheckpointError message loading `bytes` gives (fails the test if it loads or throws another error). */
function loadError(bytes: Uint8Array | string): string {
  const path = typeof bytes === 'string' ? bytes : writeTemp(bytes);
  try {
    const ck = loadPytorchCheckpoint(path);
    try {
      for (const t of flattenStateDict(ck.root).tensors.values()) tensorBytes(t);
    } finally {
      ck.close();
    }
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointError);
    const m = (e as Error).message;
    expect(m.startsWith(path + ': ')).toBe(true);
    return m;
  }
  throw new Error('expected a CheckpointError, the checkpoint loaded');
}

function withCheckpoint<T>(path: string, fn: (ck: PytorchCheckpoint) => T): T {
  const ck = loadPytorchCheckpoint(path);
  try {
    return fn(ck);
  } finally {
    ck.close();
  }
}

describe('loadPytorchCheckpoint: a hand-built checkpoint', () => {
  it('reads tensors, views, parameters and scalars', () => {
    for (const zip64 of [false, true]) {
      const path = writeTemp(makeZip(checkpointEntries(smallPickle), { zip64 }));
      withCheckpoint(path, (ck) => {
        expect(ck.archive).toBe('archive');
        const flat = flattenStateDict(ck.root);
        expect([...flat.tensors.keys()]).toEqual(['w', 'w_t', 'v', 'ids']);
        expect(flat.skipped).toEqual(['step']);
        expect(flat.skippedValues.get('step')).toBe(7);
        const w = flat.tensors.get('w')!;
        expect(w.dtype).toBe(f32);
        expect(new Float32Array(tensorBytes(w).slice().buffer)).toEqual(floats);
        const wt = tensorBytes(flat.tensors.get('w_t')!);
        expect([...new Float32Array(wt.slice().buffer)]).toEqual([0, 4.5, 1.5, 6, 3, 7.5]);
        expect([...new Float32Array(tensorBytes(flat.tensors.get('v')!).slice().buffer)]).toEqual([1.5, 4.5]);
        const ids = flat.tensors.get('ids')!;
        expect(ids.requiresGrad).toBe(true);
        expect(ids.dtype).toBe(i64);
        expect([...new BigInt64Array(tensorBytes(ids).slice().buffer)]).toEqual([...longs]);
        // one storage object for the three views of storage 0, read once
        expect(flat.tensors.get('w_t')!.storage).toBe(w.storage);
        expect(w.storage.bytes()).toBe(flat.tensors.get('v')!.storage.bytes());
        expect(ck.storages.size).toBe(2);
      });
    }
  });

  it('reads a ZIP64 archive whose storages lie past 4 GiB (a sparse file)', () => {
    const entries = checkpointEntries(smallPickle);
    entries[2]!.hole = 5 * 2 ** 30;
    const path = join(dir, 'sparse.pt');
    const fd = openSync(path, 'w');
    try {
      for (const seg of zipSegments(entries, { zip64: true })) writeSync(fd, seg.data, 0, seg.data.length, seg.pos);
    } finally {
      closeSync(fd);
    }
    try {
      expect(statSync(path).size).toBeGreaterThan(5 * 2 ** 30);
      withCheckpoint(path, (ck) => {
        const flat = flattenStateDict(ck.root);
        expect(new Float32Array(tensorBytes(flat.tensors.get('w')!).slice().buffer)).toEqual(floats);
        expect([...new BigInt64Array(tensorBytes(flat.tensors.get('ids')!).slice().buffer)]).toEqual([...longs]);
      });
    } finally {
      rmSync(path);
    }
  });

  it('closes the file: unread storages then throw', () => {
    const path = writeTemp(makeZip(checkpointEntries(smallPickle)));
    const ck = loadPytorchCheckpoint(path);
    const flat = flattenStateDict(ck.root);
    tensorBytes(flat.tensors.get('w')!);
    ck.close();
    expect(tensorBytes(flat.tensors.get('v')!).length).toBe(8); // cached before close
    expect(() => tensorBytes(flat.tensors.get('ids')!)).toThrow(/the checkpoint is closed/);
  });
});

describe('the pickle machine', () => {
  // pickle.dumps(d, protocol=0) and (with bytes and sets added) protocol=4, from CPython 3.11
  const p0 =
    '286470300a566b65790a70310a4934320a7356660a70320a46312e350a73566269670a70330a4c31323334353637383930313233343536' +
    '37383930313233344c0a73566e65670a70340a492d370a73566c0a70350a286c70360a49310a614930310a614e617356740a70370a2856' +
    '780a70380a7470390a7356750a7031300a56e95c75323061635c75303035630a7031310a732e';
  const p4 =
    '80049577000000000000007d94288c036b6579944b2a8c016694473ff80000000000008c03626967948a0af2af966ca0101f9b241a8c03' +
    '6e6567944af9ffffff8c016c945d94284b01884e658c0174948c01789485948c0175948c06c3a9e282ac5c948c016294430200ff948c01' +
    '73948f94284b01908c02667394284b029194752e';

  it('reads plain data of protocols 0 and 4', () => {
    for (const [proto, hexText] of [
      [0, p0],
      [4, p4],
    ] as const) {
      const path = writeTemp(makeZip(checkpointEntries(Uint8Array.from(Buffer.from(hexText, 'hex')))));
      withCheckpoint(path, (ck) => {
        const d = ck.root as Map<string, unknown>;
        expect(d.get('key')).toBe(42);
        expect(d.get('f')).toBe(1.5);
        expect(d.get('big')).toBe(123456789012345678901234n);
        expect(d.get('neg')).toBe(-7);
        expect(d.get('l')).toEqual([1, true, null]);
        expect(d.get('t')).toEqual(['x']);
        expect(d.get('u')).toBe('\u00e9\u20ac\\');
        if (proto === 4) {
          expect(d.get('b')).toEqual(Uint8Array.from([0, 255]));
          expect(d.get('s')).toEqual(new Set([1]));
          expect(d.get('fs')).toEqual(new Set([2]));
        }
      });
    }
  });
});

describe('loadPytorchCheckpoint: refusals', () => {
  const ck = (pickle: Uint8Array) => makeZip(checkpointEntries(pickle));

  it("refuses os.system by GLOBAL ('posix\\nsystem')", () => {
    const m = loadError(ck(pk(0x80, 2, G('posix', 'system'), U('echo pwned'), 0x85, 'R', '.')));
    expect(m).toMatch(
      /refusing to load global 'posix\.system' from the pickle \(sfc only loads tensors and containers/,
    );
    expect(m).toContain('re-save the state dict with torch.save');
  });

  it('refuses builtins.eval by STACK_GLOBAL', () => {
    const short = (s: string): Part => [0x8c, s.length, s];
    const m = loadError(
      ck(pk(0x80, 4, short('builtins'), 0x94, short('eval'), 0x94, 0x93, short('1+1'), 0x85, 'R', '.')),
    );
    expect(m).toMatch(/refusing to load global 'builtins\.eval'/);
  });

  it('refuses os.system hidden inside an otherwise valid state dict', () => {
    const m = loadError(ck(pk(0x80, 2, '}', U('w'), G('os', 'system'), U('ls'), 0x85, 'R', 's', '.')));
    expect(m).toMatch(/refusing to load global 'os\.system'/);
  });

  it('refuses other classes (numpy scalars, argparse, torch internals it does not know)', () => {
    expect(loadError(ck(pk(0x80, 2, G('numpy.core.multiarray', 'scalar'), '.')))).toMatch(
      /'numpy\.core\.multiarray\.scalar'/,
    );
    expect(loadError(ck(pk(0x80, 2, G('torch', 'load'), '.')))).toMatch(/refusing to load global 'torch\.load'/);
    expect(loadError(ck(pk(0x80, 2, G('torch._utils', '_rebuild_qtensor'), '.')))).toMatch(/refusing/);
  });

  it('is not fooled by names that exist on every JS object', () => {
    for (const name of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      expect(loadError(ck(pk(0x80, 2, G('torch', name), '.')))).toMatch(`refusing to load global 'torch.${name}'`);
      expect(loadError(ck(pk(0x80, 2, G('collections', name), '.')))).toMatch(/refusing/);
    }
  });

  it('refuses calling an allowed global that is not a function', () => {
    expect(loadError(ck(pk(0x80, 2, G('torch', 'bfloat16'), ')', 'R', '.')))).toMatch(/calls 'torch\.bfloat16'/);
  });

  it('reports unknown opcodes, truncated pickles and stack underflow', () => {
    expect(loadError(ck(pk(0x80, 2, 0xff, '.')))).toMatch(/unknown pickle opcode 0xff at offset 2/);
    expect(loadError(ck(pk(0x80, 2, '}', '(', U('a'))))).toMatch(/pickle ends without a STOP opcode/);
    expect(loadError(ck(pk(0x80, 2, 0x58, le32(1000), 'ab')))).toMatch(/pickle is truncated/);
    expect(loadError(ck(pk(0x80, 2, '(', 's', '.')))).toMatch(/stack underflow/);
    expect(loadError(ck(pk(0x80, 2, 'h', 5, '.')))).toMatch(/memo entry 5/);
  });

  it('rejects tensors that reach past their storage', () => {
    const p = pk(0x80, 2, '}', U('w'), tensor(storagePid('FloatStorage', '0', 6), 2, [2, 3], [3, 1]), 's', '.');
    expect(loadError(ck(p))).toMatch(/reaches past the end of storage 0/);
    const big = pk(0x80, 2, '}', U('w'), tensor(storagePid('FloatStorage', '0', 100), 0, [100], [1]), 's', '.');
    expect(loadError(ck(big))).toMatch(/storage 0 holds 24 bytes, fewer than its 100 float32 elements need/);
  });

  it('rejects the legacy (pre-1.6) format', () => {
    const legacy = pk(0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.');
    expect(loadError(legacy)).toMatch(
      /uses PyTorch's legacy \(pre-1\.6\) format, which sfc does not read; re-save it with torch\.save\(obj, path\) from PyTorch >= 1\.6/,
    );
  });
});

describe('loadPytorchCheckpoint: malformed zips', () => {
  const good = () => makeZip(checkpointEntries(smallPickle));

  it('rejects non-zips, empty and missing files', () => {
    expect(loadError(enc.encode('{"not": "a zip"} '.repeat(10)))).toMatch(/is not a zip archive/);
    expect(loadError(new Uint8Array(0))).toMatch(/is empty/);
    expect(loadError(join(dir, 'missing.pt'))).toMatch(/cannot open the checkpoint \(ENOENT\)/);
    expect(loadError(dir)).toMatch(/is not a regular file/);
  });

  it('rejects a truncated zip', () => {
    const g = good();
    expect(loadError(g.subarray(0, g.length >> 1))).toMatch(/is not a zip archive, or is truncated/);
    expect(loadError(g.subarray(0, g.length - 1))).toMatch(/truncated/);
  });

  it('rejects compressed entries', () => {
    const entries = checkpointEntries(smallPickle);
    entries[0]!.method = 8;
    expect(loadError(makeZip(entries))).toMatch(/zip entry "archive\/data\.pkl" is compressed \(deflate\)/);
    const storage = checkpointEntries(smallPickle);
    storage[2]!.method = 8;
    expect(loadError(makeZip(storage))).toMatch(/"archive\/data\/0" is compressed/);
  });

  it('rejects sizes far beyond the file (zip bombs) without allocating them', () => {
    const entries = checkpointEntries(smallPickle);
    entries[2]!.size = 2 ** 40;
    expect(loadError(makeZip(entries))).toMatch(
      /"archive\/data\/0" declares 1099511627776 bytes, more than the file holds/,
    );
    const e2 = checkpointEntries(smallPickle);
    e2[0]!.size = 0xfffffff0;
    expect(loadError(makeZip(e2))).toMatch(/declares 4294967280 bytes/);
    // many entries that all claim the same bytes: overlapping entries
    const data = new Uint8Array(400);
    const overlapping: ZipSpec[] = [{ name: 'a/data.pkl', data }];
    for (let i = 0; i < 5; i++)
      overlapping.push({ name: `a/data/${i}`, data: new Uint8Array(0), offset: 0, size: 400 });
    expect(loadError(makeZip(overlapping))).toMatch(/declare more bytes than the file holds/);
  });

  it('rejects offsets past the end and data running into the central directory', () => {
    const entries = checkpointEntries(smallPickle);
    entries[2]!.offset = 1_000_000;
    expect(loadError(makeZip(entries))).toMatch(/"archive\/data\/0" starts at offset 1000000, past the end/);
    const e64 = checkpointEntries(smallPickle);
    e64[3]!.offset = 2 ** 50;
    expect(loadError(makeZip(e64, { zip64: true }))).toMatch(/starts at offset 1125899906842624, past the end/);
    const into = checkpointEntries(smallPickle);
    into[4]!.size = 40; // version: the last entry, now running into the central directory
    expect(loadError(makeZip(into))).toMatch(/"archive\/version" runs into the central directory/);
  });

  it("rejects absurd entry counts, '..' names, duplicates, broken local headers", () => {
    expect(loadError(makeZip(checkpointEntries(smallPickle), { count: 60000 }))).toMatch(/claims 60000 entries/);
    const dotdot = checkpointEntries(smallPickle);
    dotdot.push({ name: 'archive/../../etc/passwd', data: new Uint8Array(1) });
    expect(loadError(makeZip(dotdot))).toMatch(/contains '\.\.'/);
    const abs = checkpointEntries(smallPickle);
    abs.push({ name: '/etc/passwd', data: new Uint8Array(1) });
    expect(loadError(makeZip(abs))).toMatch(/is an absolute path/);
    const dup = checkpointEntries(smallPickle);
    dup.push({ ...dup[1]! });
    expect(loadError(makeZip(dup))).toMatch(/two entries named "archive\/byteorder"/);
    const shifted = checkpointEntries(smallPickle);
    shifted[2]!.offset = 3; // points into the middle of another local header
    expect(loadError(makeZip(shifted))).toMatch(/broken local header/);
  });

  it('rejects zips that are not torch.save checkpoints', () => {
    expect(loadError(makeZip([{ name: 'hello.txt', data: enc.encode('hi') }]))).toMatch(/no <archive>\/data\.pkl/);
    const ts = checkpointEntries(smallPickle);
    ts.push({ name: 'archive/code/__torch__.py', data: enc.encode('x') });
    expect(loadError(makeZip(ts))).toMatch(/is a TorchScript archive/);
    const missing = checkpointEntries(smallPickle).filter((e) => e.name !== 'archive/data/1');
    expect(loadError(makeZip(missing))).toMatch(/storage 1 has no data/);
  });
});

describe('flattenStateDict', () => {
  it('joins nested keys with dots, honours a prefix, lists non-tensors', () => {
    const t = { kind: 'tensor' } as TensorRef;
    const root = new Map<unknown, unknown>([
      ['generator', new Map([['model.a', t]])],
      ['lists', [t, 3]],
      [7, 'seven'],
    ]);
    const flat = flattenStateDict(root, 'ck');
    expect([...flat.tensors.keys()]).toEqual(['ck.generator.model.a', 'ck.lists.0']);
    expect(flat.skipped).toEqual(['ck.lists.1', 'ck.7']);
  });

  it('rejects cycles and duplicate names with an SfcError', () => {
    const cyc = new Map<unknown, unknown>();
    cyc.set('self', cyc);
    expect(() => flattenStateDict(cyc)).toThrow(SfcError);
    const dup = new Map<unknown, unknown>([
      ['a.b', 1],
      ['a', new Map([['b', 2]])],
    ]);
    expect(() => flattenStateDict(dup)).toThrow(/two values are named 'a\.b'/);
  });
});

// ---- fixtures from Python's pickler (fake torch) ------------------------------------------------

const python = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
const hasPython = python.status === 0;
if (!hasPython) console.warn('pytorch-checkpoint.test.ts: python3 with numpy not found; skipping the pickled fixtures');

interface ExpectedTensor {
  torchDtype: string;
  shape: number[];
  stride: number[];
  storageOffset: number;
  storageKey: string;
  requiresGrad: boolean;
  hex: string;
}

describe.skipIf(!hasPython)('loadPytorchCheckpoint: fixtures from fake_torch_pickles.py', () => {
  const fixtures = join(dir, 'py');
  let expected: Record<string, { tensors: Record<string, ExpectedTensor>; protocol: number }>;
  beforeAll(() => {
    const script = join(import.meta.dirname, '..', 'reference', 'fake_torch_pickles.py');
    const r = spawnSync('python3', [script, fixtures], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`fake_torch_pickles.py failed:\n${r.stderr}`);
    expected = JSON.parse(readFileSync(join(fixtures, 'expected.json'), 'utf8'));
  });

  function checkTensors(name: string, tensors: Map<string, TensorRef>) {
    const want = expected[name]!.tensors;
    expect([...tensors.keys()].sort()).toEqual(Object.keys(want).sort());
    for (const [tname, w] of Object.entries(want)) {
      const t = tensors.get(tname)!;
      expect({ name: tname, torchDtype: t.torchDtype, shape: t.shape, stride: t.stride }).toEqual({
        name: tname,
        torchDtype: w.torchDtype,
        shape: w.shape,
        stride: w.stride,
      });
      expect(t.storageOffset).toBe(w.storageOffset);
      expect(t.storage.key).toBe(w.storageKey);
      expect(t.requiresGrad).toBe(w.requiresGrad);
      const bytes = tensorBytes(t);
      const numel = t.shape.reduce((a, b) => a * b, 1);
      if (numel > 0) expect(bytes.byteOffset % (bytes.length / numel), 'aligned').toBe(0);
      expect(hex(bytes), tname).toBe(w.hex);
    }
  }

  for (const protocol of [1, 2, 4, 5]) {
    it(`reads nested state dicts (protocol ${protocol})`, () => {
      const name = `nested_p${protocol}`;
      withCheckpoint(join(fixtures, `${name}.pt`), (ck) => {
        expect(ck.archive).toBe(protocol === 4 ? 'archive' : name);
        expect(ck.byteOrder).toBe('little');
        const root = ck.root as Map<string, unknown>;
        expect(root).toBeInstanceOf(Map);
        expect([...(root.get('generator') as Map<string, unknown>).keys()][0]).toBe(
          'model._fsdp_wrapped_module.blocks.0.weight',
        );
        const flat = flattenStateDict(root);
        checkTensors(name, flat.tensors);

        const t = (n: string) => flat.tensors.get(n)!;
        expect(t('generator.model._fsdp_wrapped_module.blocks.0.weight').dtype).toBe(bf16);
        expect(t('generator.model.head.weight').dtype).toBe(f16);
        expect(t('generator.model.pos_ids').dtype).toBe(i64);
        expect(t('generator.model.mask').dtype).toBe(u8);
        expect(t('generator.model.mask').torchDtype).toBe('bool');
        expect(t('generator.model.freqs').torchDtype).toBe('float64');
        expect(t('generator_ema.model.param').requiresGrad).toBe(true);
        // views of one storage share one StorageRef, across dicts too, and its bytes are read once
        const a = t('generator_ema.model.shared.a');
        for (const other of [
          'generator_ema.model.shared.b',
          'generator_ema.model.shared.every_other',
          'generator.model.scalar',
        ]) {
          expect(t(other).storage).toBe(a.storage);
        }
        expect(a.storage.bytes()).toBe(t('generator.model.scalar').storage.bytes());
        expect(ck.storages.size).toBe(10);
        // contiguous tensors are views of the cached bytes; strided ones are copies
        expect(tensorBytes(t('generator_ema.model.shared.b')).buffer).toBe(a.storage.bytes().buffer);
        expect(t('generator_ema.model.empty').shape).toEqual([0, 4]);

        expect(flat.skipped).toEqual([
          'step',
          'lr',
          'name',
          'big',
          'none',
          'flag',
          'dtype',
          'device',
          'shape.0',
          'shape.1',
          'shape.2',
        ]);
        const v = flat.skippedValues;
        expect(v.get('step')).toBe(1234);
        expect(v.get('lr')).toBe(1e-4);
        expect(v.get('name')).toBe('self-forcing');
        expect(v.get('big')).toBe(2n ** 70n);
        expect(v.get('none')).toBeNull();
        expect(v.get('flag')).toBe(true);
        expect(v.get('dtype')).toBeInstanceOf(PyGlobal);
        expect(String(v.get('dtype'))).toBe('torch.bfloat16');
        expect(v.get('device')).toBe('cuda:0');
      });
    });
  }

  it('reads untyped storages with _rebuild_tensor_v3 and dtype-named storages', () => {
    withCheckpoint(join(fixtures, 'untyped.pt'), (ck) => {
      const flat = flattenStateDict(ck.root);
      checkTensors('untyped', flat.tensors);
      const w = flat.tensors.get('w')!;
      expect(w.dtype).toBe(f32);
      expect(w.storage.torchType).toBe('torch.storage.UntypedStorage');
      expect(w.storage.location).toBe('cuda:0');
      expect(flat.tensors.get('w_t')!.storage).toBe(w.storage);
      expect(flat.tensors.get('fp8')!.dtype).toBe(e4m3);
      expect(flat.tensors.get('named')!.dtype).toBe(bf16);
    });
  });

  it('swaps big-endian storages to little-endian', () => {
    withCheckpoint(join(fixtures, 'big_endian.pt'), (ck) => {
      expect(ck.byteOrder).toBe('big');
      checkTensors('big_endian', flattenStateDict(ck.root).tensors);
    });
  });

  it('fuzz: mutations of a protocol-4 checkpoint load or throw an SfcError', { timeout: FUZZ_TIMEOUT }, () => {
    // the fixture's entries, re-zipped by makeZip around each mutated pickle
    const path = join(fixtures, 'nested_p4.pt');
    const fd = openSync(path, 'r');
    let entries: ZipSpec[];
    try {
      const zip = new ZipReader(fd, fstatSync(fd).size, (m) => {
        throw new Error(m);
      });
      entries = [...zip.entries.values()].map((e) => ({ name: e.name, data: zip.read(e) }));
    } finally {
      closeSync(fd);
    }
    const { loaded, refused } = fuzz(entries, FUZZ_SEED + 1, FUZZ_ITERATIONS / 2);
    expect(loaded).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });

  it('survives every truncation of a real checkpoint', () => {
    const full = readFileSync(join(fixtures, 'nested_p4.pt'));
    for (let n = 0; n < full.length; n += 7) {
      const path = writeTemp(full.subarray(0, n), 'trunc.pt');
      expect(() => loadPytorchCheckpoint(path).close()).toThrow(CheckpointError);
    }
  });
});

// ---- fuzz ----------------------------------------------------------------------------------------

/** Opcodes (and PROTO/FRAME/MEMOIZE...) worth splicing into a pickle. */
const OPCODES = [...'()}]0125abdeghjlopqrstuNQRJKMXGTUBCI.']
  .map((c) => c.charCodeAt(0))
  .concat([
    0x80, 0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95,
    0x96, 0x97,
  ]);

/**
 * Loads `iterations` mutations of the checkpoint made of `entries`: half mutate the zip's bytes (any
 * header, the directory, the data), half mutate the pickle (byte edits, inserted opcodes, deleted or
 * repeated ranges) and re-zip it. Each must load (and give every tensor's bytes) or throw an SfcError.
 */
function fuzz(entries: ZipSpec[], seed: number, iterations: number): { loaded: number; refused: number } {
  const base = makeZip(entries);
  const pickleIndex = entries.findIndex((e) => e.name.endsWith('/data.pkl'));
  const pickle = entries[pickleIndex]!.data;
  const rand = mulberry32(seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const interesting = [0, 1, 0x7f, 0x80, 0xfe, 0xff, ...OPCODES];
  const path = join(dir, `fuzz-${seed}.pt`);
  let loaded = 0;
  let refused = 0;
  for (let it = 0; it < iterations; it++) {
    let buf: Uint8Array;
    if (it % 2 === 0) {
      buf = base.slice();
      if (pick(10) === 0) buf = buf.subarray(0, pick(buf.length));
      else {
        for (let e = 1 + pick(4); e > 0; e--) {
          buf[pick(buf.length)] = rand() < 0.5 ? pick(256) : interesting[pick(interesting.length)]!;
        }
      }
    } else {
      let p = Array.from(pickle);
      for (let e = 1 + pick(3); e > 0; e--) {
        const at = pick(p.length);
        const r = pick(4);
        if (r === 0) p[at] = rand() < 0.5 ? pick(256) : interesting[pick(interesting.length)]!;
        else if (r === 1) p.splice(at, 0, OPCODES[pick(OPCODES.length)]!);
        else if (r === 2) p.splice(at, 1 + pick(8));
        else p = [...p.slice(0, at), ...p.slice(at, at + 1 + pick(32)), ...p.slice(at)];
      }
      const mutated = entries.slice();
      mutated[pickleIndex] = { name: entries[pickleIndex]!.name, data: Uint8Array.from(p) };
      buf = makeZip(mutated);
    }
    writeFileSync(path, buf);
    try {
      const ck = loadPytorchCheckpoint(path);
      try {
        for (const t of flattenStateDict(ck.root).tensors.values()) tensorBytes(t);
      } finally {
        ck.close();
      }
      loaded++;
    } catch (e) {
      if (!isUserError(e)) throw new Error(`fuzz seed ${seed} iteration ${it}: not an SfcError: ${(e as Error).stack}`);
      refused++;
    }
  }
  return { loaded, refused };
}

describe('loadPytorchCheckpoint: fuzz', () => {
  it('mutated checkpoints load or throw an SfcError, never anything else', { timeout: FUZZ_TIMEOUT }, () => {
    const start = Date.now();
    const { loaded, refused } = fuzz(checkpointEntries(smallPickle), FUZZ_SEED, FUZZ_ITERATIONS);
    expect(loaded).toBeGreaterThan(FUZZ_ITERATIONS / 40);
    expect(refused).toBeGreaterThan(FUZZ_ITERATIONS / 4);
    if (FUZZ_ITERATIONS <= 2000) expect(Date.now() - start).toBeLessThan(30_000);
  });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));
