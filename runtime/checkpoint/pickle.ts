// A safe pickle reader: Python's unpickling stack machine (protocols 0-5) that never executes
// anything. Every global the pickle names goes through `hooks.findGlobal`, which must refuse what it
// does not know; calls (REDUCE, NEWOBJ, INST, OBJ), BUILD and persistent ids are handed to the hooks,
// so the caller decides what each allowed global means. Plain data maps to JS values:
//   None -> null, bool -> boolean, int -> number (bigint beyond 2^53), float -> number,
//   str -> string, bytes/bytearray -> Uint8Array, list/tuple -> array, dict -> Map, set -> Set.
// Work and memory are linear in the pickle's size: every opcode consumes at least one byte and
// pushes at most one new value; every length is checked against the bytes that remain.
import type { Fail } from './zip.js';

/** A global the pickle named (module + qualified name), as pushed by GLOBAL / STACK_GLOBAL. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  toString(): string {
    return `${this.module}.${this.name}`;
  }
}

export interface UnpickleHooks {
  /** The value GLOBAL/STACK_GLOBAL push for `module.name`; must throw for anything not allowed. */
  findGlobal(module: string, name: string): unknown;
  /** REDUCE, INST and OBJ: `callable(*args)`. */
  call(callable: unknown, args: unknown[]): unknown;
  /** NEWOBJ and NEWOBJ_EX: `cls.__new__(cls, *args, **kwargs)`. */
  newObject(cls: unknown, args: unknown[], kwargs: Map<unknown, unknown> | undefined): unknown;
  /** BUILD: `obj.__setstate__(state)`; the object stays on the stack. */
  build(obj: unknown, state: unknown): void;
  /** BINPERSID / PERSID. */
  persistentLoad(pid: unknown): unknown;
  fail: Fail;
}

/** Integers longer than this (LONG / LONG4) are refused rather than parsed. */
const MAX_LONG_BYTES = 4096;

const OPCODE_NAMES: Record<number, string> = {
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

function intFromBytes(b: Uint8Array): number | bigint {
  const n = b.length;
  if (n === 0) return 0;
  if (n <= 6) {
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + b[i]!;
    if (b[n - 1]! & 0x80) v -= 2 ** (8 * n);
    return v;
  }
  let hex = '';
  for (let i = n - 1; i >= 0; i--) hex += b[i]!.toString(16).padStart(2, '0');
  let v = BigInt('0x' + hex);
  if (b[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
  return narrow(v);
}

function narrow(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Python's repr of a str literal (STRING opcode), decoded the way Python's `codecs.escape_decode` does. */
function unescapePython(body: string, fail: Fail): string {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const d = body[++i];
    switch (d) {
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'a':
        out += '\x07';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'v':
        out += '\v';
        break;
      case '\\':
      case "'":
      case '"':
        out += d;
        break;
      case '\n':
        break;
      case 'x': {
        const h = body.slice(i + 1, i + 3);
        if (!/^[0-9a-fA-F]{2}$/.test(h)) fail('pickle STRING has a bad \\x escape');
        out += String.fromCharCode(parseInt(h, 16));
        i += 2;
        break;
      }
      default:
        if (d !== undefined && d >= '0' && d <= '7') {
          let o = d;
          while (o.length < 3 && body[i + 1] !== undefined && body[i + 1]! >= '0' && body[i + 1]! <= '7')
            o += body[++i];
          out += String.fromCharCode(parseInt(o, 8) & 0xff);
        } else {
          out += '\\' + (d ?? '');
        }
    }
  }
  return out;
}

/** raw-unicode-escape (UNICODE opcode): \uXXXX and \UXXXXXXXX escapes, every other byte is latin-1. */
function rawUnicodeEscape(bytes: Uint8Array, fail: Fail): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === 0x5c && (bytes[i + 1] === 0x75 || bytes[i + 1] === 0x55)) {
      const n = bytes[i + 1] === 0x75 ? 4 : 8;
      const h = String.fromCharCode(...bytes.subarray(i + 2, i + 2 + n));
      if (h.length !== n || !/^[0-9a-fA-F]+$/.test(h)) fail('pickle UNICODE has a bad escape');
      const cp = parseInt(h, 16);
      if (cp > 0x10ffff) fail('pickle UNICODE has a bad escape');
      out += String.fromCodePoint(cp);
      i += 1 + n;
    } else {
      out += String.fromCharCode(c);
    }
  }
  return out;
}

/** Runs the pickle in `data` and returns the object it builds. */
export function unpickle(data: Uint8Array, hooks: UnpickleHooks): unknown {
  const fail: Fail = hooks.fail;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  let opAt = 0;

  const need = (n: number): number => {
    if (n > data.length - pos) fail(`pickle is truncated (at offset ${opAt})`);
    const at = pos;
    pos += n;
    return at;
  };
  const bytes = (n: number): Uint8Array => {
    const at = need(n);
    return data.subarray(at, at + n);
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail(`pickle is truncated (at offset ${opAt})`);
    const s = String.fromCharCode(...data.subarray(pos, Math.min(end, pos + 1024)));
    if (end - pos > 1024) fail(`pickle has an overlong text argument (at offset ${opAt})`);
    pos = end + 1;
    return s;
  };
  const text = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      fail(`pickle has a string that is not valid UTF-8 (at offset ${opAt})`);
    }
  };
  const u8 = () => data[need(1)]!;
  const u16 = () => view.getUint16(need(2), true);
  const u32 = () => view.getUint32(need(4), true);
  const u64 = (): number => {
    const v = view.getBigUint64(need(8), true);
    if (v > BigInt(data.length)) fail(`pickle declares ${v} bytes, more than it holds (at offset ${opAt})`);
    return Number(v);
  };
  /** The stack floor: nothing at or below the last MARK may be popped except by popMark. */
  const floor = () => (marks.length ? marks[marks.length - 1]! : 0);
  const pop = (): unknown => {
    if (stack.length <= floor()) fail(`pickle stack underflow (at offset ${opAt})`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length <= floor()) fail(`pickle stack underflow (at offset ${opAt})`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail(`pickle has no MARK to pop (at offset ${opAt})`);
    return stack.splice(m);
  };
  const memoGet = (key: number): unknown => {
    if (!memo.has(key)) fail(`pickle reads memo entry ${key}, which was never stored (at offset ${opAt})`);
    return memo.get(key);
  };
  const memoPut = (key: number): void => {
    memo.set(key, top());
  };
  const parseInt10 = (s: string): number | bigint => {
    if (!/^[-+]?[0-9]+$/.test(s)) fail(`pickle has a bad integer literal (at offset ${opAt})`);
    return narrow(BigInt(s));
  };
  const asList = (x: unknown, op: string): unknown[] => {
    if (!Array.isArray(x)) fail(`pickle ${op} on something that is not a list (at offset ${opAt})`);
    return x;
  };
  const asDict = (x: unknown, op: string): Map<unknown, unknown> => {
    if (!(x instanceof Map)) fail(`pickle ${op} on something that is not a dict (at offset ${opAt})`);
    return x;
  };
  const asTuple = (x: unknown, op: string): unknown[] => {
    if (!Array.isArray(x)) fail(`pickle ${op} expects a tuple of arguments (at offset ${opAt})`);
    return x;
  };
  const setItems = (dict: Map<unknown, unknown>, items: unknown[]): void => {
    if (items.length % 2) fail(`pickle SETITEMS has an odd number of items (at offset ${opAt})`);
    for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1]);
  };
  const global = (module: string, name: string): unknown => hooks.findGlobal(module, name);

  for (;;) {
    opAt = pos;
    if (pos >= data.length) fail('pickle ends without a STOP opcode (truncated?)');
    const op = data[pos++]!;
    switch (op) {
      case 0x80: {
        // PROTO
        const proto = u8();
        if (proto > 5) fail(`pickle uses protocol ${proto}; only protocols 0-5 are known`);
        break;
      }
      case 0x95: // FRAME: framing is only a read-ahead hint
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x30: // POP
        if (stack.length > floor()) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;

      // ---- constants and numbers
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(view.getInt32(need(4), true));
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(intFromBytes(bytes(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = view.getInt32(need(4), true);
        if (n < 0) fail(`pickle LONG4 has a negative length (at offset ${opAt})`);
        if (n > MAX_LONG_BYTES) fail(`pickle has an integer of ${n} bytes, too large to read (at offset ${opAt})`);
        stack.push(intFromBytes(bytes(n)));
        break;
      }
      case 0x49: {
        // INT (text): I01 / I00 are True / False in protocol 0
        const s = line();
        if (s === '01') stack.push(true);
        else if (s === '00') stack.push(false);
        else stack.push(parseInt10(s));
        break;
      }
      case 0x4c: // LONG (text)
        stack.push(parseInt10(line().replace(/L$/, '')));
        break;
      case 0x47: // BINFLOAT (big-endian)
        stack.push(view.getFloat64(need(8), false));
        break;
      case 0x46: {
        // FLOAT (text)
        const s = line().trim();
        if (!/^[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|inf|nan)$/i.test(s)) {
          fail(`pickle has a bad float literal (at offset ${opAt})`);
        }
        const lower = s.toLowerCase();
        stack.push(
          lower.endsWith('nan') ? NaN : lower.endsWith('inf') ? (s.startsWith('-') ? -Infinity : Infinity) : Number(s),
        );
        break;
      }

      // ---- strings and bytes
      case 0x58: // BINUNICODE
        stack.push(text(bytes(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(bytes(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text(bytes(u64())));
        break;
      case 0x56: {
        // UNICODE (raw-unicode-escape, to end of line)
        const end = data.indexOf(0x0a, pos);
        if (end < 0) fail(`pickle is truncated (at offset ${opAt})`);
        stack.push(rawUnicodeEscape(data.subarray(pos, end), fail));
        pos = end + 1;
        break;
      }
      case 0x53: {
        // STRING (a quoted Python 2 str literal)
        const s = line();
        const q = s[0];
        if (s.length < 2 || (q !== "'" && q !== '"') || s[s.length - 1] !== q) {
          fail(`pickle STRING is not quoted (at offset ${opAt})`);
        }
        stack.push(unescapePython(s.slice(1, -1), fail));
        break;
      }
      case 0x54: // BINSTRING (Python 2 str: read as UTF-8, as torch.load does)
        stack.push(text(bytes(u32())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(text(bytes(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(bytes(u64()).slice());
        break;

      // ---- containers
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        stack.push([a, b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push([a, b, c]);
        break;
      }
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        asList(top(), 'APPEND').push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = asList(top(), 'APPENDS');
        for (const v of items) list.push(v);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: {
        // DICT
        const d = new Map<unknown, unknown>();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        asDict(top(), 'SETITEM').set(k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(asDict(top(), 'SETITEMS'), items);
        break;
      }
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const set = top();
        if (!(set instanceof Set)) fail(`pickle ADDITEMS on something that is not a set (at offset ${opAt})`);
        for (const v of items) set.add(v);
        break;
      }
      case 0x91: // FROZENSET
        stack.push(new Set(popMark()));
        break;

      // ---- memo
      case 0x71: // BINPUT
        memoPut(u8());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32());
        break;
      case 0x70: // PUT (text)
        memoPut(Number(parseInt10(line())));
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size);
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      case 0x67: // GET (text)
        stack.push(memoGet(Number(parseInt10(line()))));
        break;

      // ---- globals and objects: all decided by the hooks
      case 0x63: {
        // GLOBAL
        const module = line();
        const name = line();
        stack.push(global(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') {
          fail(`pickle STACK_GLOBAL needs two strings (at offset ${opAt})`);
        }
        stack.push(global(module, name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = asTuple(pop(), 'REDUCE');
        const callable = pop();
        stack.push(hooks.call(callable, args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = asTuple(pop(), 'NEWOBJ');
        const cls = pop();
        stack.push(hooks.newObject(cls, args, undefined));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = asDict(pop(), 'NEWOBJ_EX');
        const args = asTuple(pop(), 'NEWOBJ_EX');
        const cls = pop();
        stack.push(hooks.newObject(cls, args, kwargs));
        break;
      }
      case 0x69: {
        // INST: module and name lines, arguments since the MARK
        const module = line();
        const name = line();
        const cls = global(module, name);
        stack.push(hooks.call(cls, popMark()));
        break;
      }
      case 0x6f: {
        // OBJ: class and arguments since the MARK
        const items = popMark();
        if (items.length === 0) fail(`pickle OBJ without a class (at offset ${opAt})`);
        stack.push(hooks.call(items[0], items.slice(1)));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        hooks.build(top(), state);
        break;
      }
      case 0x51: // BINPERSID
        stack.push(hooks.persistentLoad(pop()));
        break;
      case 0x50: // PERSID (text)
        stack.push(hooks.persistentLoad(line()));
        break;

      default: {
        const name = OPCODE_NAMES[op];
        if (name) fail(`pickle uses opcode ${name}, which sfc does not support (at offset ${opAt})`);
        fail(`unknown pickle opcode 0x${op.toString(16).padStart(2, '0')} at offset ${opAt}`);
      }
    }
  }
}
