// Reading and writing safetensors checkpoints (https://github.com/huggingface/safetensors format):
//   [u64 little-endian header length N] [N bytes of UTF-8 JSON header] [data region]
// The header maps tensor name -> {dtype, shape, data_offsets: [begin, end]} (offsets relative to the
// start of the data region) plus an optional "__metadata__": {string: string}. Sharded checkpoints
// come with a `*.safetensors.index.json` ({metadata?, weight_map: {tensor: shard file}}).
//
// The reader validates the whole header on open (every error names the file) and then reads single
// tensors with positioned reads, so a multi-GB file is never loaded at once; offsets are JS numbers
// (exact up to 2^53), never 32-bit. Unlike the reference implementation the data region need not be
// covered completely; each tensor must only lie inside the file, have exactly numel * itemsize bytes
// and not overlap another tensor. The writer streams tensor by tensor into a temp file, fsyncs it
// and renames it into place, so readers never see a partial checkpoint.
import {
  closeSync,
  fstatSync,
  fsyncSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { distance } from 'fastest-levenshtein';
import { bf16, e4m3, e5m2, f16, f32, i32, i64, u8, type DType } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import { rawArray, type RawArray } from '../convert.js';
import type { Device } from '../device.js';
import { Tensor } from '../tensor.js';

/** Every error about a malformed or unusable checkpoint; the message starts with the file path. */
export class SafetensorsError extends SfcError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options);
    this.name = 'SafetensorsError';
  }
}

/** The dtype names a safetensors header may use (the ones this reader knows). */
export type SafetensorsDType =
  'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'F8_E4M3' | 'F8_E5M2';

/** Bytes per element and the sfc dtype (undefined: readable as raw bytes only) of each safetensors dtype. */
export const SAFETENSORS_DTYPES: Readonly<Record<SafetensorsDType, { readonly bytes: number; readonly sfc?: DType }>> =
  Object.freeze({
    F64: { bytes: 8 },
    F32: { bytes: 4, sfc: f32 },
    F16: { bytes: 2, sfc: f16 },
    BF16: { bytes: 2, sfc: bf16 },
    I64: { bytes: 8, sfc: i64 },
    I32: { bytes: 4, sfc: i32 },
    I16: { bytes: 2 },
    I8: { bytes: 1 },
    U8: { bytes: 1, sfc: u8 },
    BOOL: { bytes: 1, sfc: u8 },
    F8_E4M3: { bytes: 1, sfc: e4m3 },
    F8_E5M2: { bytes: 1, sfc: e5m2 },
  });

const SFC_TO_SAFETENSORS: Readonly<Record<DType['name'], SafetensorsDType>> = Object.freeze({
  f32: 'F32',
  f16: 'F16',
  bf16: 'BF16',
  i64: 'I64',
  i32: 'I32',
  u8: 'U8',
  e4m3: 'F8_E4M3',
  e5m2: 'F8_E5M2',
});

/** The safetensors dtype name an sfc dtype is stored as. */
export function safetensorsDtypeOf(dtype: DType): SafetensorsDType {
  return SFC_TO_SAFETENSORS[dtype.name];
}

function isSafetensorsDType(s: unknown): s is SafetensorsDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPES, s);
}

/** Headers longer than this are refused (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Largest single read or write call (Node refuses lengths of 2 GiB and more). */
const IO_CHUNK = 1 << 30;

export interface TensorEntry {
  name: string;
  /** the safetensors dtype name (F32, BF16, BOOL, F64, ...) */
  dtype: SafetensorsDType;
  /** the sfc dtype it reads as; undefined for F64, I16 and I8, which are readable as raw bytes only */
  sfcDtype?: DType;
  shape: number[];
  /** absolute file offsets of the tensor's bytes: [begin, end) */
  begin: number;
  end: number;
}

/** The read API shared by single files and sharded checkpoints. */
export interface SafetensorsReader {
  readonly path: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  names(): string[];
  has(name: string): boolean;
  entry(name: string): TensorEntry;
  readBytes(name: string): Uint8Array;
  readRaw(name: string): RawArray;
  toTensor(name: string, device: Device): Tensor;
  close(): void;
}

// ---- helpers -------------------------------------------------------------------------------------

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** A name for a message: quoted, shortened, control characters escaped. */
function quote(name: string): string {
  const s = name.length > 200 ? `${name.slice(0, 197)}...` : name;
  // eslint-disable-next-line no-control-regex
  return `'${s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}'`;
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** numel, or undefined when it is not exactly representable (> 2^53). */
function numelOf(shape: readonly number[]): number | undefined {
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) return undefined;
  }
  return n;
}

function isDim(d: unknown): d is number {
  return typeof d === 'number' && Number.isSafeInteger(d) && d >= 0;
}

/** Up to three names closest to `name`, for "did you mean" messages. */
function closeNames(name: string, names: Iterable<string>): string[] {
  const scored: Array<[number, string]> = [];
  for (const n of names) scored.push([distance(name.slice(0, 300), n.slice(0, 300)), n]);
  scored.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : 1));
  return scored.slice(0, 3).map(([, n]) => n);
}

function unknownName(path: string, name: string, names: Iterable<string>): SafetensorsError {
  const close = closeNames(name, names);
  const tail = close.length ? ` (close names: ${close.map(quote).join(', ')})` : ' (it holds no tensors)';
  return new SafetensorsError(`${path}: no tensor named ${quote(name)}${tail}`);
}

function ioError(path: string, what: string, e: unknown): SafetensorsError {
  const code = (e as { code?: string }).code;
  return new SafetensorsError(`${path}: ${what}: ${code ?? (e as Error).message}`, { cause: e });
}

/** Reads exactly `dst.byteLength` bytes at `position`, or throws if the file ends first. */
function readFully(fd: number, dst: Uint8Array, position: number, path: string, what: string): void {
  let done = 0;
  while (done < dst.byteLength) {
    const len = Math.min(dst.byteLength - done, IO_CHUNK);
    let n: number;
    try {
      n = readSync(fd, dst, done, len, position + done);
    } catch (e) {
      throw ioError(path, `reading ${what}`, e);
    }
    if (n === 0) {
      throw new SafetensorsError(
        `${path}: unexpected end of file reading ${what} (got ${done} of ${dst.byteLength} bytes at offset ${position}; the file shrank?)`,
      );
    }
    done += n;
  }
}

function writeFully(fd: number, src: Uint8Array): void {
  let done = 0;
  while (done < src.byteLength) done += writeSync(fd, src, done, Math.min(src.byteLength - done, IO_CHUNK));
}

/** The sfc dtype of an entry, or an error for the dtypes sfc cannot hold (F64, I16, I8). */
function sfcDtypeOf(path: string, e: TensorEntry): DType {
  if (!e.sfcDtype) {
    throw new SafetensorsError(
      `${path}: tensor ${quote(e.name)} has dtype ${e.dtype}, which sfc has no dtype for; read its bytes with readBytes() and convert them`,
    );
  }
  return e.sfcDtype;
}

// ---- header parsing ------------------------------------------------------------------------------

interface ParsedHeader {
  entries: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

/** Validates a decoded header. `dataStart` is the absolute offset of the data region, `dataSize` its length. */
function parseHeader(path: string, text: string, dataStart: number, dataSize: number): ParsedHeader {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`${path}: header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json)) throw new SafetensorsError(`${path}: header is not a JSON object (got ${describe(json)})`);

  let metadata: Record<string, string> = {};
  const entries = new Map<string, TensorEntry>();
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(path, value);
      continue;
    }
    const where = `${path}: tensor ${quote(name)}`;
    if (!isPlainObject(value)) throw new SafetensorsError(`${where}: entry is not an object (got ${describe(value)})`);
    const { dtype, shape, data_offsets: offsets } = value;
    if (!isSafetensorsDType(dtype)) {
      throw new SafetensorsError(
        `${where}: unknown dtype ${show(dtype)} (known: ${Object.keys(SAFETENSORS_DTYPES).join(', ')})`,
      );
    }
    if (!Array.isArray(shape) || !shape.every(isDim)) {
      throw new SafetensorsError(`${where}: shape must be an array of non-negative integers, got ${show(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isDim)) {
      throw new SafetensorsError(
        `${where}: data_offsets must be [begin, end] with non-negative integers, got ${show(offsets)}`,
      );
    }
    const [b, e] = offsets as [number, number];
    if (b > e) throw new SafetensorsError(`${where}: data_offsets [${b}, ${e}] end before they begin`);
    if (e > dataSize) {
      throw new SafetensorsError(
        `${where}: data_offsets [${b}, ${e}] run past the end of the file (the data region holds ${dataSize} bytes; is the file truncated?)`,
      );
    }
    const info = SAFETENSORS_DTYPES[dtype];
    const n = numelOf(shape);
    const need = n === undefined ? undefined : n * info.bytes;
    if (need !== e - b) {
      throw new SafetensorsError(
        `${where}: data_offsets [${b}, ${e}] span ${e - b} bytes, but ${dtype} ${fmtShape(shape)} needs ${need ?? 'more than 2^53'}`,
      );
    }
    const entry: TensorEntry = { name, dtype, shape: [...shape], begin: dataStart + b, end: dataStart + e };
    if (info.sfc) entry.sfcDtype = info.sfc;
    entries.set(name, entry);
  }

  // no two tensors may share a byte (zero-size tensors occupy none)
  const sorted = [...entries.values()].filter((t) => t.end > t.begin).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.begin < prev.end) {
      const rel = (t: TensorEntry) => `[${t.begin - dataStart}, ${t.end - dataStart}]`;
      throw new SafetensorsError(
        `${path}: tensors ${quote(prev.name)} ${rel(prev)} and ${quote(cur.name)} ${rel(cur)} overlap`,
      );
    }
  }
  return { entries, metadata };
}

function parseMetadata(path: string, value: unknown): Record<string, string> {
  if (value === null) return {};
  if (!isPlainObject(value)) {
    throw new SafetensorsError(`${path}: __metadata__ must be an object of strings (got ${describe(value)})`);
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') {
      throw new SafetensorsError(`${path}: __metadata__ value for ${quote(k)} is not a string (got ${describe(v)})`);
    }
  }
  // Object.fromEntries defines own properties, so a "__proto__" key stays an ordinary key
  return Object.fromEntries(Object.entries(value)) as Record<string, string>;
}

// ---- single file ---------------------------------------------------------------------------------

export class SafetensorsFile implements SafetensorsReader {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    fd: number,
    /** file size in bytes */
    readonly size: number,
    /** N, the header's length in bytes (without the 8-byte prefix) */
    readonly headerLength: number,
    readonly entries: Map<string, TensorEntry>,
    readonly metadata: Record<string, string>,
  ) {
    this.fd = fd;
  }

  /** Opens `path` and validates its header (the tensor data is read later, one tensor at a time). */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw ioError(path, 'cannot open', e);
    }
    try {
      let size: number;
      try {
        const st = fstatSync(fd);
        if (st.isDirectory()) throw new SafetensorsError(`${path}: is a directory, not a safetensors file`);
        size = st.size;
      } catch (e) {
        if (e instanceof SafetensorsError) throw e;
        throw ioError(path, 'cannot stat', e);
      }
      if (size === 0) throw new SafetensorsError(`${path}: file is empty (0 bytes), not a safetensors file`);
      if (size < 8) {
        throw new SafetensorsError(`${path}: file is only ${size} bytes, too short for the 8-byte header length`);
      }
      const prefix = new Uint8Array(8);
      readFully(fd, prefix, 0, path, 'the header length');
      const n = new DataView(prefix.buffer).getBigUint64(0, true);
      if (n > BigInt(size - 8)) {
        const tail = n <= BigInt(size) ? `; only ${size - 8} bytes follow the 8-byte length` : '';
        throw new SafetensorsError(`${path}: header length ${n} exceeds the file size (${size} bytes)${tail}`);
      }
      if (n > BigInt(MAX_HEADER_BYTES)) {
        throw new SafetensorsError(
          `${path}: header length ${n} exceeds the ${MAX_HEADER_BYTES / 1e6} MB limit; not a safetensors file?`,
        );
      }
      const headerLength = Number(n);
      const raw = new Uint8Array(headerLength);
      readFully(fd, raw, 8, path, 'the header');
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
      } catch {
        throw new SafetensorsError(`${path}: header is not valid UTF-8`);
      }
      const dataStart = 8 + headerLength;
      const { entries, metadata } = parseHeader(path, text, dataStart, size - dataStart);
      return new SafetensorsFile(path, fd, size, headerLength, entries, metadata);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): TensorEntry {
    const e = this.entries.get(name);
    if (!e) throw unknownName(this.path, name, this.entries.keys());
    return e;
  }

  /** The tensor's raw little-endian element bytes, in a fresh buffer. */
  readBytes(name: string): Uint8Array {
    const e = this.entry(name);
    if (this.fd === undefined) throw new SafetensorsError(`${this.path}: file was closed (reading ${quote(name)})`);
    const out = new Uint8Array(e.end - e.begin);
    readFully(this.fd, out, e.begin, this.path, `tensor ${quote(name)}`);
    return out;
  }

  /** The tensor's elements as the raw typed array of its sfc dtype (bf16 bits in a Uint16Array, ...). */
  readRaw(name: string): RawArray {
    const dtype = sfcDtypeOf(this.path, this.entry(name));
    const bytes = this.readBytes(name); // a fresh buffer at offset 0, so the typed array is aligned
    return rawArray(dtype, bytes.buffer, 0, bytes.byteLength / dtype.bytes);
  }

  /**
   * The tensor on `device` (contiguous, its sfc dtype), read from the file straight into the
   * device's buffers (the CPU storage itself, or pinned staging buffers for a GPU).
   */
  toTensor(name: string, device: Device): Tensor {
    const e = this.entry(name);
    const t = Tensor.empty(device, sfcDtypeOf(this.path, e), e.shape);
    const fd = this.fd;
    if (fd === undefined) throw new SafetensorsError(`${this.path}: file was closed (reading ${quote(name)})`);
    try {
      device.writeFrom(t.storage, 0, e.end - e.begin, (dst, pos) =>
        readFully(fd, dst, e.begin + pos, this.path, `tensor ${quote(name)}`),
      );
    } catch (err) {
      t.dispose();
      throw err;
    }
    return t;
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }
}

// ---- sharded checkpoints -------------------------------------------------------------------------

/** A checkpoint split over several files, described by a `*.safetensors.index.json`. */
export class ShardedSafetensors implements SafetensorsReader {
  private readonly shards = new Map<string, SafetensorsFile>();
  /** shard file name -> the tensor names the index maps to it */
  private readonly byShard = new Map<string, string[]>();

  private constructor(
    /** the index file */
    readonly path: string,
    readonly dir: string,
    /** the index's "metadata" (e.g. {total_size: 123}); values need not be strings */
    readonly metadata: Record<string, unknown>,
    /** tensor name -> shard file name (relative to `dir`) */
    readonly weightMap: Map<string, string>,
  ) {
    for (const [name, shard] of weightMap) {
      let list = this.byShard.get(shard);
      if (!list) this.byShard.set(shard, (list = []));
      list.push(name);
    }
  }

  /** Reads and validates the index and checks that every shard it lists exists (shards open lazily). */
  static open(path: string): ShardedSafetensors {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw ioError(path, 'cannot read the index', e);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new SafetensorsError(`${path}: index is not valid JSON (${(e as Error).message})`);
    }
    if (!isPlainObject(json)) throw new SafetensorsError(`${path}: index is not a JSON object (got ${describe(json)})`);
    const { metadata, weight_map: wm } = json;
    if (metadata !== undefined && metadata !== null && !isPlainObject(metadata)) {
      throw new SafetensorsError(`${path}: index "metadata" is not an object (got ${describe(metadata)})`);
    }
    if (!isPlainObject(wm)) {
      throw new SafetensorsError(`${path}: index has no "weight_map" object (got ${describe(wm)})`);
    }
    const weightMap = new Map<string, string>();
    for (const [name, shard] of Object.entries(wm)) {
      if (typeof shard !== 'string' || shard === '') {
        throw new SafetensorsError(`${path}: weight_map[${quote(name)}] is not a file name (got ${show(shard)})`);
      }
      weightMap.set(name, shard);
    }
    const dir = dirname(path);
    const idx = new ShardedSafetensors(path, dir, Object.fromEntries(Object.entries(metadata ?? {})), weightMap);
    for (const [shard, names] of idx.byShard) {
      let ok = false;
      try {
        ok = statSync(join(dir, shard)).isFile();
      } catch {
        ok = false;
      }
      if (!ok) {
        throw new SafetensorsError(
          `${path}: shard ${quote(shard)} (holding ${names.length} tensor${names.length === 1 ? '' : 's'}, e.g. ${quote(names[0]!)}) does not exist in ${dir}`,
        );
      }
    }
    return idx;
  }

  /** Tensor names in index order. */
  names(): string[] {
    return [...this.weightMap.keys()];
  }

  /** Shard file names (relative to the index's folder), in order of first use in the index. */
  shardNames(): string[] {
    return [...this.byShard.keys()];
  }

  has(name: string): boolean {
    return this.weightMap.has(name);
  }

  /** The open shard file holding `name` (opened and checked against the index on first use). */
  shardOf(name: string): SafetensorsFile {
    const shardName = this.weightMap.get(name);
    if (shardName === undefined) throw unknownName(this.path, name, this.weightMap.keys());
    let shard = this.shards.get(shardName);
    if (!shard) {
      shard = SafetensorsFile.open(join(this.dir, shardName));
      const missing = this.byShard.get(shardName)!.filter((n) => !shard!.has(n));
      if (missing.length) {
        shard.close();
        throw new SafetensorsError(
          `${this.path}: tensor ${quote(missing[0]!)} is mapped to shard ${quote(shardName)}, which does not contain it` +
            (missing.length > 1 ? ` (nor ${missing.length - 1} more mapped tensors)` : ''),
        );
      }
      this.shards.set(shardName, shard);
    }
    return shard;
  }

  entry(name: string): TensorEntry {
    return this.shardOf(name).entry(name);
  }

  readBytes(name: string): Uint8Array {
    return this.shardOf(name).readBytes(name);
  }

  readRaw(name: string): RawArray {
    return this.shardOf(name).readRaw(name);
  }

  toTensor(name: string, device: Device): Tensor {
    return this.shardOf(name).toTensor(name, device);
  }

  /** Closes every shard opened so far (later reads reopen nothing: they fail). */
  close(): void {
    for (const s of this.shards.values()) s.close();
  }
}

/**
 * Opens a single `.safetensors` file or a sharded checkpoint's `.index.json`, chosen by the file name
 * (`*.json` is an index) and otherwise by content (a JSON object that cannot be a safetensors prefix).
 */
export function openSafetensors(path: string): SafetensorsFile | ShardedSafetensors {
  if (path.toLowerCase().endsWith('.json')) return ShardedSafetensors.open(path);
  if (looksLikeJson(path)) return ShardedSafetensors.open(path);
  return SafetensorsFile.open(path);
}

function looksLikeJson(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return false; // SafetensorsFile.open reports the error
  }
  try {
    const size = fstatSync(fd).size;
    const head = new Uint8Array(Math.min(8, size));
    const n = readSync(fd, head, 0, head.byteLength, 0);
    let i = 0;
    while (i < n && (head[i] === 0x20 || head[i] === 0x0a || head[i] === 0x0d || head[i] === 0x09)) i++;
    if (i >= n || head[i] !== 0x7b /* { */) return false;
    // A safetensors file starting with "{" is possible only if its header length fits the file.
    if (n < 8) return true;
    return new DataView(head.buffer).getBigUint64(0, true) > BigInt(size - 8);
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

// ---- writing -------------------------------------------------------------------------------------

export interface TensorToWrite {
  name: string;
  /** an sfc dtype, or a safetensors dtype name for types sfc has none for (F64, I16, I8, BOOL) */
  dtype: DType | SafetensorsDType;
  shape: readonly number[];
  /**
   * raw little-endian element bytes, numel * itemsize of them; or a function producing them when the
   * tensor is written, so a converter holds one tensor in memory at a time
   */
  data: Uint8Array | (() => Uint8Array);
}

export interface WriteOptions {
  /** called after each tensor is written (progress bars) */
  onTensor?: (name: string, bytes: number) => void;
}

/**
 * Writes a safetensors file: tensors in the given order, the header padded with spaces to a multiple
 * of 8 bytes (as the reference implementation does). Streams one tensor at a time into a temp file
 * beside `path`, fsyncs it and renames it over `path`.
 */
export function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Readonly<Record<string, string>>,
  options: WriteOptions = {},
): void {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') {
        throw new SafetensorsError(`${path}: metadata value for ${quote(k)} is not a string (got ${describe(v)})`);
      }
    }
    if (Object.keys(metadata).length) header.__metadata__ = Object.fromEntries(Object.entries(metadata));
  }
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    const where = `${path}: tensor ${quote(t.name)}`;
    if (typeof t.name !== 'string') throw new SafetensorsError(`${path}: tensor name ${show(t.name)} is not a string`);
    if (t.name === '__metadata__') throw new SafetensorsError(`${where}: the name is reserved for metadata`);
    if (seen.has(t.name)) throw new SafetensorsError(`${where}: written twice`);
    seen.add(t.name);
    const dt: SafetensorsDType = typeof t.dtype === 'string' ? t.dtype : safetensorsDtypeOf(t.dtype);
    if (!isSafetensorsDType(dt)) throw new SafetensorsError(`${where}: unknown dtype ${show(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every(isDim)) {
      throw new SafetensorsError(`${where}: shape must be non-negative integers, got ${show(t.shape)}`);
    }
    const n = numelOf(t.shape);
    const need = n === undefined ? undefined : n * SAFETENSORS_DTYPES[dt].bytes;
    if (need === undefined || (typeof t.data !== 'function' && need !== t.data.byteLength)) {
      const have = typeof t.data === 'function' ? '?' : t.data.byteLength;
      throw new SafetensorsError(
        `${where}: ${have} data bytes do not match ${dt} ${fmtShape(t.shape)} (${need ?? 'more than 2^53'} bytes)`,
      );
    }
    // Object.defineProperty: a tensor named "__proto__" must stay an ordinary key
    Object.defineProperty(header, t.name, {
      value: { dtype: dt, shape: [...t.shape], data_offsets: [offset, offset + need] },
      enumerable: true,
      writable: true,
      configurable: true,
    });
    offset += need;
  }

  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`${path}: header would be ${padded} bytes, over the ${MAX_HEADER_BYTES / 1e6} MB limit`);
  }
  const head = new Uint8Array(8 + padded).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);

  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w');
    writeFully(fd, head);
    for (const t of tensors) {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      const need = (header[t.name] as { data_offsets: [number, number] }).data_offsets;
      if (data.byteLength !== need[1] - need[0]) {
        throw new SafetensorsError(
          `${path}: tensor ${quote(t.name)} produced ${data.byteLength} bytes, expected ${need[1] - need[0]}`,
        );
      }
      writeFully(fd, data);
      options.onTensor?.(t.name, data.byteLength);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw ioError(path, 'cannot write', e);
  }
  syncDir(dirname(path));
}

/** Makes a rename durable (best effort: not every platform can fsync a directory). */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // ignore
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
