// Reads PyTorch checkpoints (torch.save's zip format, the default since PyTorch 1.6) without Python
// and without executing anything. A .pt file is a zip of stored entries:
//   <archive>/data.pkl        the pickled object (a state dict, or dicts of them)
//   <archive>/data/<key>      one file per storage: the raw elements, in <archive>/byteorder (little if absent)
//   <archive>/version, <archive>/.data/serialization_id, ...
// The pickle is run by ./pickle.ts with an allowlist of globals: containers (OrderedDict), the tensor
// rebuild functions, storage types and dtypes, torch.device and torch.Size. Anything else (a class, a
// function, numpy scalars, os.system ...) is refused before it is touched. Tensors come back as
// TensorRefs over lazily read, shared StorageRefs; `tensorBytes` gathers a tensor's elements.
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { bf16, e4m3, e5m2, f16, f32, i32, i64, u8, type DType } from '../../dsl/dtypes.js';
import { SfcError } from '../../dsl/errors.js';
import { PyGlobal, unpickle } from './pickle.js';
import { ZipReader, type Fail, type ZipEntry } from './zip.js';

export { PyGlobal } from './pickle.js';

/** A checkpoint that cannot be read, or is refused; the message starts with the file's path. */
export class CheckpointError extends SfcError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options);
    this.name = 'CheckpointError';
  }
}

export interface StorageRef {
  /** the storage's key: its data is <archive>/data/<key> */
  readonly key: string;
  /** the storage type the pickle named, e.g. 'torch.BFloat16Storage' or 'torch.storage.UntypedStorage' */
  readonly torchType: string;
  /** torch's element type of the storage ('uint8' for untyped storages) */
  readonly torchDtype: string;
  /** elements (of torchDtype) */
  readonly numel: number;
  readonly nbytes: number;
  /** where it lived when saved, e.g. 'cpu', 'cuda:0' */
  readonly location: string;
  readonly byteOrder: 'little' | 'big';
  /** The raw bytes as stored (in byteOrder), read on first use and cached; do not modify. */
  bytes(): Uint8Array;
  /** Drops the cached bytes (a later bytes() reads them again, while the checkpoint is open). */
  release(): void;
}

export interface TensorRef {
  kind: 'tensor';
  /** the sfc dtype (bool reads as u8), undefined for torch dtypes sfc has no type for (float64, int16, int8, ...) */
  dtype: DType | undefined;
  /** torch's dtype name without 'torch.', e.g. 'bfloat16', 'float32', 'int64', 'bool' */
  torchDtype: string;
  shape: number[];
  /** in elements, as torch's */
  stride: number[];
  /** in elements */
  storageOffset: number;
  storage: StorageRef;
  requiresGrad: boolean;
}

export interface PytorchCheckpoint {
  readonly path: string;
  /** The unpickled object: Maps (dicts, OrderedDicts; keys may be non-strings), arrays (lists and
   * tuples), numbers (bigint beyond 2^53), strings, booleans, null (None), Uint8Array (bytes),
   * TensorRefs, and PyGlobal for torch dtypes stored as values. */
  readonly root: unknown;
  /** the top-level folder of the archive */
  readonly archive: string;
  readonly byteOrder: 'little' | 'big';
  /** every storage the pickle referenced, by key */
  readonly storages: ReadonlyMap<string, StorageRef>;
  /** Closes the file; storages read before stay readable, others throw. */
  close(): void;
}

interface DtypeInfo {
  readonly bytes: number;
  readonly dtype: DType | undefined;
  /** byte-swap unit for big-endian files (complex numbers swap each half) */
  readonly swap: number;
}

const TORCH_DTYPES: ReadonlyMap<string, DtypeInfo> = new Map<string, DtypeInfo>([
  ['float64', { bytes: 8, dtype: undefined, swap: 8 }],
  ['float32', { bytes: 4, dtype: f32, swap: 4 }],
  ['float16', { bytes: 2, dtype: f16, swap: 2 }],
  ['bfloat16', { bytes: 2, dtype: bf16, swap: 2 }],
  ['int64', { bytes: 8, dtype: i64, swap: 8 }],
  ['int32', { bytes: 4, dtype: i32, swap: 4 }],
  ['int16', { bytes: 2, dtype: undefined, swap: 2 }],
  ['int8', { bytes: 1, dtype: undefined, swap: 1 }],
  ['uint8', { bytes: 1, dtype: u8, swap: 1 }],
  ['bool', { bytes: 1, dtype: u8, swap: 1 }], // 0/1 bytes: read as u8 (torchDtype still says bool)
  ['uint16', { bytes: 2, dtype: undefined, swap: 2 }],
  ['uint32', { bytes: 4, dtype: undefined, swap: 4 }],
  ['uint64', { bytes: 8, dtype: undefined, swap: 8 }],
  ['complex64', { bytes: 8, dtype: undefined, swap: 4 }],
  ['complex128', { bytes: 16, dtype: undefined, swap: 8 }],
  ['float8_e4m3fn', { bytes: 1, dtype: e4m3, swap: 1 }],
  ['float8_e5m2', { bytes: 1, dtype: e5m2, swap: 1 }],
]);

/** torch's other names for the same dtypes (torch.float is torch.float32, ...). */
const DTYPE_ALIASES: ReadonlyMap<string, string> = new Map<string, string>([
  ['float', 'float32'],
  ['double', 'float64'],
  ['half', 'float16'],
  ['long', 'int64'],
  ['int', 'int32'],
  ['short', 'int16'],
  ['cfloat', 'complex64'],
  ['cdouble', 'complex128'],
]);

const STORAGE_TYPES: ReadonlyMap<string, string> = new Map<string, string>([
  ['DoubleStorage', 'float64'],
  ['FloatStorage', 'float32'],
  ['HalfStorage', 'float16'],
  ['BFloat16Storage', 'bfloat16'],
  ['LongStorage', 'int64'],
  ['IntStorage', 'int32'],
  ['ShortStorage', 'int16'],
  ['CharStorage', 'int8'],
  ['ByteStorage', 'uint8'],
  ['BoolStorage', 'bool'],
  ['ComplexFloatStorage', 'complex64'],
  ['ComplexDoubleStorage', 'complex128'],
]);

const UNTYPED_STORAGES = new Set(['torch.storage.UntypedStorage', 'torch.UntypedStorage']);

/** Callable globals the checkpoint may use; each is interpreted here, never looked up or run. */
const CALLABLES = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor_v3',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch.device',
  'torch.Size',
]);

/** A tensor whose elements repeat (zero strides) may expand past its storage by this much at most. */
const MAX_EXPANDED_BYTES = 256 * 1024 * 1024;
/** flattenStateDict: nesting depth and the number of values it visits. */
const MAX_DEPTH = 100;
const MAX_VISITS = 10_000_000;

function dtypeName(g: unknown): string | undefined {
  if (!(g instanceof PyGlobal) || g.module !== 'torch') return undefined;
  const name = DTYPE_ALIASES.get(g.name) ?? g.name;
  return TORCH_DTYPES.has(name) ? name : undefined;
}

function isAllowedGlobal(module: string, name: string): boolean {
  const full = `${module}.${name}`;
  if (CALLABLES.has(full) || UNTYPED_STORAGES.has(full)) return true;
  if (module !== 'torch') return false;
  return STORAGE_TYPES.has(name) || TORCH_DTYPES.has(name) || DTYPE_ALIASES.has(name);
}

function isTensorRef(x: unknown): x is TensorRef {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'tensor';
}

class Storage implements StorageRef {
  private cached: Uint8Array | undefined;
  readonly nbytes: number;

  constructor(
    private readonly file: OpenFile,
    readonly key: string,
    readonly torchType: string,
    readonly torchDtype: string,
    readonly numel: number,
    readonly location: string,
    private readonly entry: ZipEntry | undefined,
  ) {
    this.nbytes = numel * TORCH_DTYPES.get(torchDtype)!.bytes;
  }

  get byteOrder(): 'little' | 'big' {
    return this.file.byteOrder;
  }

  bytes(): Uint8Array {
    if (this.cached) return this.cached;
    if (this.nbytes === 0 || !this.entry) return (this.cached = new Uint8Array(0));
    this.cached = this.file.read(this.entry, this.nbytes);
    return this.cached;
  }

  release(): void {
    this.cached = undefined;
  }
}

/** The open archive behind a checkpoint's storages. */
class OpenFile {
  fd: number | undefined;
  zip!: ZipReader;
  byteOrder: 'little' | 'big' = 'little';

  constructor(readonly path: string) {}

  readonly fail: Fail = (message: string): never => {
    throw new CheckpointError(`${this.path}: ${message}`);
  };

  read(entry: ZipEntry, length: number): Uint8Array {
    if (this.fd === undefined) this.fail(`cannot read storage ${JSON.stringify(entry.name)}: the checkpoint is closed`);
    return this.zip.read(entry, 0, length);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function shownValue(x: unknown): string {
  if (x === null) return 'None';
  if (Array.isArray(x)) return 'a tuple';
  if (x instanceof Map) return 'a dict';
  if (x instanceof PyGlobal) return `'${x}'`;
  if (isTensorRef(x)) return 'a tensor';
  return typeof x === 'string' ? JSON.stringify(x) : typeof x;
}

/**
 * Opens a torch.save checkpoint and unpickles its object. Tensors are TensorRefs whose storages are
 * read only when asked for (`tensorBytes`, `storage.bytes()`), so keep the checkpoint open until then
 * and close() it after.
 */
export function loadPytorchCheckpoint(path: string): PytorchCheckpoint {
  const file = new OpenFile(path);
  const fail: Fail = file.fail;
  try {
    // stat first: opening a FIFO or device could block
    if (!statSync(path).isFile()) fail('is not a regular file');
    file.fd = openSync(path, 'r');
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new CheckpointError(`${path}: cannot open the checkpoint (${code ?? (e as Error).message})`, { cause: e });
  }
  try {
    const st = fstatSync(file.fd);
    if (!st.isFile()) fail('is not a regular file');
    const size = st.size;
    if (size === 0) fail('is empty');
    // A pickle PROTO opcode first (0x80, protocol 2-5): the legacy format, a pickled magic number then the objects.
    const head = new Uint8Array(2);
    if (size >= 2 && readSync(file.fd, head, 0, 2, 0) === 2 && head[0] === 0x80 && head[1]! >= 2 && head[1]! <= 5) {
      fail(
        "uses PyTorch's legacy (pre-1.6) format, which sfc does not read; " +
          're-save it with torch.save(obj, path) from PyTorch >= 1.6',
      );
    }
    file.zip = new ZipReader(file.fd, size, fail);
    return readArchive(file);
  } catch (e) {
    file.close();
    throw e;
  }
}

function readArchive(file: OpenFile): PytorchCheckpoint {
  const { zip, path } = file;
  const fail: Fail = file.fail;
  // The archive folder: the one top-level folder holding data.pkl.
  const pickles = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pickles.length === 0) {
    fail('is a zip archive but not a torch.save checkpoint (no <archive>/data.pkl entry)');
  }
  if (pickles.length > 1) fail(`holds several checkpoints (${pickles.join(', ')})`);
  const archive = pickles[0]!.slice(0, -'/data.pkl'.length);
  if (
    zip.entries.has(`${archive}/constants.pkl`) ||
    [...zip.entries.keys()].some((n) => n.startsWith(`${archive}/code/`))
  ) {
    fail(
      'is a TorchScript archive (torch.jit.save), which sfc does not read; ' +
        'save the weights with torch.save(model.state_dict(), path)',
    );
  }

  const orderEntry = zip.entries.get(`${archive}/byteorder`);
  if (orderEntry) {
    if (orderEntry.size > 16) fail('has a malformed byteorder entry');
    const order = new TextDecoder().decode(zip.read(orderEntry)).trim();
    if (order !== 'little' && order !== 'big') fail(`has an unknown byte order ${JSON.stringify(order)}`);
    file.byteOrder = order;
  }

  const storages = new Map<string, Storage>();
  const persistentLoad = (pid: unknown): Storage => {
    if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length !== 5) {
      fail(
        `the pickle has an unsupported persistent id (${Array.isArray(pid) ? pid.length + '-tuple' : shownValue(pid)})`,
      );
    }
    const [, type, key, location, numel] = pid as unknown[];
    if (!(type instanceof PyGlobal)) fail(`the pickle names storage type ${shownValue(type)}`);
    if (typeof key !== 'string' || key.length === 0 || key.includes('/') || key === '..') {
      fail(`the pickle has a bad storage key ${shownValue(key)}`);
    }
    if (typeof location !== 'string') fail(`storage ${key} has a bad location ${shownValue(location)}`);
    if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) {
      fail(`storage ${key} has a bad size ${shownValue(numel)}`);
    }
    const typeName = String(type);
    let torchDtype: string | undefined;
    if (UNTYPED_STORAGES.has(typeName)) torchDtype = 'uint8';
    else if (type.module === 'torch' && STORAGE_TYPES.has(type.name)) torchDtype = STORAGE_TYPES.get(type.name);
    else torchDtype = dtypeName(type); // some writers name the dtype itself
    if (!torchDtype) fail(`storage ${key} has unsupported type '${typeName}'`);

    const old = storages.get(key);
    if (old) {
      if (old.torchDtype !== torchDtype || old.numel !== numel) {
        fail(`storage ${key} is declared twice with different types or sizes`);
      }
      return old;
    }
    const entryName = `${archive}/data/${key}`;
    const entry = zip.entries.get(entryName);
    const nbytes = numel * TORCH_DTYPES.get(torchDtype)!.bytes;
    if (nbytes > 0) {
      if (!entry) fail(`storage ${key} has no data (no entry ${JSON.stringify(entryName)})`);
      if (entry.size < nbytes) {
        fail(`storage ${key} holds ${entry.size} bytes, fewer than its ${numel} ${torchDtype} elements need`);
      }
      if (entry.method !== 0) zip.read(entry, 0, 0); // throws the "compressed" error now rather than later
      zip.dataStart(entry); // checks the local header and that the data lies inside the file
    }
    const s = new Storage(file, key, typeName, torchDtype, numel, location, entry);
    storages.set(key, s);
    return s;
  };

  const rebuildTensor = (fn: string, args: unknown[]): TensorRef => {
    const v3 = fn.endsWith('_v3');
    const expected = v3 ? [7, 8] : [6, 7];
    if (!expected.includes(args.length)) fail(`${fn} called with ${args.length} arguments`);
    const [storage, offset, size, stride, requiresGrad] = args;
    if (!(storage instanceof Storage)) fail(`${fn} called with ${shownValue(storage)} instead of a storage`);
    let torchDtype = storage.torchDtype;
    if (v3) {
      const d = dtypeName(args[6]);
      if (!d) fail(`${fn} called with unsupported dtype ${shownValue(args[6])}`);
      torchDtype = d;
    }
    const shape = intList(size, `${fn}'s size`);
    const strides = intList(stride, `${fn}'s stride`);
    if (strides.length !== shape.length) fail(`${fn}: size and stride have different lengths`);
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
      fail(`${fn} called with a bad storage offset ${shownValue(offset)}`);
    }
    if (typeof requiresGrad !== 'boolean') fail(`${fn} called with requires_grad ${shownValue(requiresGrad)}`);
    checkView(storage, torchDtype, offset, shape, strides);
    return {
      kind: 'tensor',
      dtype: TORCH_DTYPES.get(torchDtype)!.dtype,
      torchDtype,
      shape,
      stride: strides,
      storageOffset: offset,
      storage,
      requiresGrad,
    };
  };

  const intList = (x: unknown, what: string): number[] => {
    if (!Array.isArray(x) || x.length > 64) fail(`${what} is not a tuple of integers`);
    for (const v of x) {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`${what} is not a tuple of integers`);
    }
    return [...(x as number[])];
  };

  const checkView = (storage: Storage, torchDtype: string, offset: number, shape: number[], stride: number[]) => {
    const bytes = TORCH_DTYPES.get(torchDtype)!.bytes;
    let numel = 1;
    let last = offset;
    for (let i = 0; i < shape.length; i++) {
      numel *= shape[i]!;
      if (shape[i]! > 0) last += (shape[i]! - 1) * stride[i]!;
    }
    const what = `a ${torchDtype} tensor of shape [${shape.join(', ')}]`;
    if (numel === 0) return;
    if (!Number.isSafeInteger(numel * bytes) || !Number.isSafeInteger((last + 1) * bytes)) fail(`${what} is too large`);
    if ((last + 1) * bytes > storage.nbytes) {
      fail(`${what} (offset ${offset}, strides [${stride.join(', ')}]) reaches past the end of storage ${storage.key}`);
    }
    const logical = numel * bytes;
    if (logical > bufferConstants.MAX_LENGTH || (logical > storage.nbytes && logical > MAX_EXPANDED_BYTES)) {
      fail(`${what} repeats its storage's elements into ${logical} bytes, too many to read`);
    }
  };

  const hooks = {
    fail,
    findGlobal(module: string, name: string): unknown {
      if (!isAllowedGlobal(module, name)) {
        fail(
          `refusing to load global '${module}.${name}' from the pickle ` +
            '(sfc only loads tensors and containers; re-save the state dict with torch.save)',
        );
      }
      return new PyGlobal(module, name);
    },
    call(callable: unknown, args: unknown[]): unknown {
      if (!(callable instanceof PyGlobal)) fail(`the pickle calls ${shownValue(callable)}`);
      const fn = String(callable);
      if (!CALLABLES.has(fn)) fail(`the pickle calls '${fn}'`);
      switch (fn) {
        case 'collections.OrderedDict': {
          const d = new Map<unknown, unknown>();
          if (args.length === 0) return d;
          const [items] = args;
          if (args.length !== 1) fail('OrderedDict called with several arguments');
          if (items instanceof Map) for (const [k, v] of items) d.set(k, v);
          else if (Array.isArray(items)) {
            for (const kv of items) {
              if (!Array.isArray(kv) || kv.length !== 2) fail('OrderedDict called with items that are not pairs');
              d.set(kv[0], kv[1]);
            }
          } else fail(`OrderedDict called with ${shownValue(items)}`);
          return d;
        }
        case 'torch._utils._rebuild_tensor_v2':
        case 'torch._utils._rebuild_tensor_v3':
          return rebuildTensor(fn.slice('torch._utils.'.length), args);
        case 'torch._utils._rebuild_parameter':
        case 'torch._utils._rebuild_parameter_with_state': {
          const [data, requiresGrad] = args;
          if (args.length !== (fn.endsWith('state') ? 4 : 3)) fail(`${fn} called with ${args.length} arguments`);
          if (!isTensorRef(data)) fail(`${fn} called with ${shownValue(data)} instead of a tensor`);
          if (typeof requiresGrad !== 'boolean') fail(`${fn} called with requires_grad ${shownValue(requiresGrad)}`);
          return { ...data, requiresGrad };
        }
        case 'torch.device': {
          const [type, index] = args;
          if (typeof type !== 'string' || args.length > 2) fail('torch.device called with bad arguments');
          if (index === undefined || index === null) return type;
          if (typeof index !== 'number') fail('torch.device called with bad arguments');
          return `${type}:${index}`;
        }
        case 'torch.Size': {
          const dims = args.length === 0 ? [] : args[0];
          return intList(dims, 'torch.Size');
        }
      }
      return fail(`the pickle calls '${fn}'`);
    },
    newObject(cls: unknown): unknown {
      if (cls instanceof PyGlobal && String(cls) === 'collections.OrderedDict') return new Map();
      return fail(`the pickle creates an object of ${shownValue(cls)}, which sfc does not load`);
    },
    build(obj: unknown, state: unknown): void {
      // OrderedDict.__reduce__ pickles the instance's attributes (a state dict's _metadata) as BUILD
      // state: plain data, dropped here.
      if (obj instanceof Map) {
        const ok = (s: unknown) => s === null || s instanceof Map;
        if (ok(state) || (Array.isArray(state) && state.length === 2 && ok(state[0]) && ok(state[1]))) return;
      }
      fail(`the pickle sets the state of ${shownValue(obj)} to ${shownValue(state)}, which sfc does not support`);
    },
    persistentLoad,
  };

  const pklEntry = zip.entries.get(`${archive}/data.pkl`)!;
  const root = unpickle(zip.read(pklEntry), hooks);

  return {
    path,
    root,
    archive,
    get byteOrder() {
      return file.byteOrder;
    },
    storages,
    close: () => file.close(),
  };
}

/**
 * The tensor's elements in logical row-major order, little-endian. A contiguous tensor of a
 * little-endian file is a view of the cached storage bytes (do not modify it); anything else is a
 * fresh copy. The result's byteOffset is a multiple of the element size, so typed arrays fit.
 */
export function tensorBytes(ref: TensorRef): Uint8Array {
  const info = TORCH_DTYPES.get(ref.torchDtype);
  if (!info) throw new SfcError(`tensorBytes: unknown torch dtype ${JSON.stringify(ref.torchDtype)}`);
  const size = info.bytes;
  const { shape, stride } = ref;
  const rank = shape.length;
  let numel = 1;
  for (const d of shape) numel *= d;
  const src = ref.storage.bytes();
  const n = numel * size;
  if (n === 0) return new Uint8Array(0);
  let last = ref.storageOffset;
  for (let i = 0; i < rank; i++) last += (shape[i]! - 1) * stride[i]!;
  if ((last + 1) * size > src.length || n > bufferConstants.MAX_LENGTH) {
    throw new SfcError(`tensorBytes: tensor view [${shape.join(', ')}] reaches past its storage ${ref.storage.key}`);
  }

  // Contiguous (dims of size 1 may have any stride)?
  let contiguous = true;
  for (let i = rank - 1, expected = 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) contiguous = false;
    expected *= shape[i]!;
  }
  const start = ref.storageOffset * size;
  let out: Uint8Array;
  if (contiguous) {
    out = src.subarray(start, start + n);
    if (ref.storage.byteOrder === 'little' || info.swap === 1) return out;
    out = out.slice();
  } else {
    out = gather(src, start, size, shape, stride, n);
  }
  if (ref.storage.byteOrder === 'big') swapBytes(out, info.swap);
  return out;
}

/** Copies a strided view element by element (in words of up to 4 bytes, so any bit pattern survives). */
function gather(
  src: Uint8Array,
  start: number,
  size: number,
  shape: number[],
  stride: number[],
  n: number,
): Uint8Array {
  const out = new Uint8Array(n);
  const word = size % 4 === 0 ? 4 : size % 2 === 0 ? 2 : 1;
  const per = size / word; // words per element
  const make = (b: Uint8Array) =>
    word === 4
      ? new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4)
      : word === 2
        ? new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2)
        : b;
  // Storage bytes start at offset 0 of their buffer and `start` is a multiple of `size`: aligned.
  const s = make(src.subarray(0, src.length - (src.length % word)));
  const o = make(out);
  const rank = shape.length;
  if (rank === 0) {
    for (let w = 0; w < per; w++) o[w] = s[start / word + w]!;
    return out;
  }
  const inner = shape[rank - 1]!;
  const innerStride = stride[rank - 1]! * per;
  const idx = new Array<number>(rank).fill(0);
  let base = start / word; // word offset of the current row
  let k = 0;
  for (;;) {
    let p = base;
    if (per === 1) {
      for (let j = 0; j < inner; j++, p += innerStride) o[k++] = s[p]!;
    } else {
      for (let j = 0; j < inner; j++, p += innerStride) for (let w = 0; w < per; w++) o[k++] = s[p + w]!;
    }
    // Advance the odometer over the outer dims.
    let d = rank - 2;
    for (; d >= 0; d--) {
      idx[d]!++;
      base += stride[d]! * per;
      if (idx[d]! < shape[d]!) break;
      base -= shape[d]! * stride[d]! * per;
      idx[d] = 0;
    }
    if (d < 0) return out;
  }
}

function swapBytes(b: Uint8Array, unit: number): void {
  for (let i = 0; i + unit <= b.length; i += unit) {
    for (let a = i, z = i + unit - 1; a < z; a++, z--) {
      const t = b[a]!;
      b[a] = b[z]!;
      b[z] = t;
    }
  }
}

/** flattenStateDict's result. */
export interface FlatStateDict {
  /** the tensors by dotted name, in the dicts' order */
  tensors: Map<string, TensorRef>;
  /** dotted names of the non-tensor leaves that were skipped (numbers, strings, None, ...) */
  skipped: string[];
  /** the skipped leaves' values by name */
  skippedValues: Map<string, unknown>;
}

/**
 * Flattens nested dicts (Maps, or plain objects) and lists into dotted names:
 * {generator: {'blocks.0.w': t}} -> 'generator.blocks.0.w'. Keys are used as written (String(key));
 * non-tensor leaves are listed in `skipped`. `prefix` is prepended to every name ('' by default).
 */
export function flattenStateDict(root: unknown, prefix = ''): FlatStateDict {
  const tensors = new Map<string, TensorRef>();
  const skippedValues = new Map<string, unknown>();
  let visits = 0;
  const todo: { name: string; value: unknown; depth: number }[] = [{ name: prefix, value: root, depth: 0 }];
  const join = (a: string, b: string) => (a === '' ? b : `${a}.${b}`);
  while (todo.length) {
    const { name, value, depth } = todo.pop()!;
    if (++visits > MAX_VISITS) {
      throw new SfcError(`flattenStateDict: more than ${MAX_VISITS} values (shared or cyclic containers?)`);
    }
    let children: [string, unknown][] | undefined;
    if (value instanceof Map) children = [...value].map(([k, v]) => [String(k), v]);
    else if (Array.isArray(value)) children = value.map((v, i) => [String(i), v]);
    else if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
      if (!isTensorRef(value)) children = Object.entries(value);
    }
    if (children) {
      if (depth >= MAX_DEPTH) throw new SfcError(`flattenStateDict: '${name}' is nested too deeply (cyclic?)`);
      // Pushed in reverse so names come out in the dicts' order.
      for (let i = children.length - 1; i >= 0; i--) {
        todo.push({ name: join(name, children[i]![0]), value: children[i]![1], depth: depth + 1 });
      }
      continue;
    }
    if (tensors.has(name) || skippedValues.has(name)) {
      throw new SfcError(`flattenStateDict: two values are named '${name}'`);
    }
    if (isTensorRef(value)) tensors.set(name, value);
    else skippedValues.set(name, value);
  }
  return { tensors, skipped: [...skippedValues.keys()], skippedValues };
}
