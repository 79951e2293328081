// A minimal, defensive reader for the zip archives torch.save writes: the end-of-central-directory
// record (ZIP64 included), the central directory and local headers, and positioned reads of
// uncompressed ("stored") entries from an open file descriptor. Nothing is inflated and nothing is
// read until asked for, so multi-GB checkpoints cost only the bytes a caller reads. Offsets and sizes
// are JS numbers (exact to 2^53), never 32-bit math.
//
// Every declared number is checked against the file before it is used: sizes larger than the file,
// entries that overlap the central directory or run past the end, impossible entry counts, sizes that
// add up to more than the file (overlapping entries: a zip bomb), '..' in names. Allocations never
// exceed the file size (the central directory is also capped), and reads never leave the file.
import { readSync } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';

/** Throws the caller's error type; the message has no file name (the caller adds it). */
export type Fail = (message: string) => never;

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored; anything else is compressed and refused by `read`. */
  readonly method: number;
  readonly flags: number;
  readonly compressedSize: number;
  /** uncompressed size */
  readonly size: number;
  readonly localHeaderOffset: number;
}

const EOCD_SIG = 0x06054b50;
const EOCD_LEN = 22;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_LOCATOR_LEN = 20;
const ZIP64_EOCD_SIG = 0x06064b50;
const ZIP64_EOCD_LEN = 56;
const CENTRAL_SIG = 0x02014b50;
const CENTRAL_LEN = 46;
const LOCAL_SIG = 0x04034b50;
const LOCAL_LEN = 30;
/** A real checkpoint's central directory is ~100 bytes an entry; anything this large is a lie. */
const MAX_CENTRAL_DIRECTORY = 256 * 1024 * 1024;
/** readSync moves at most 2 GiB a call. */
const READ_CHUNK = 1 << 30;

const METHOD_NAMES: Record<number, string> = { 8: 'deflate', 9: 'deflate64', 12: 'bzip2', 14: 'lzma', 93: 'zstd' };

function u64(view: DataView, at: number, what: string, fail: Fail): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`zip ${what} ${v} is too large`);
  return Number(v);
}

function checkName(name: string, fail: Fail): void {
  const shown = JSON.stringify(name);
  if (name.length === 0) fail('zip has an entry with an empty name');
  if (name.includes('\0') || name.includes('\\')) fail(`zip entry name ${shown} has a NUL or backslash`);
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) fail(`zip entry name ${shown} is an absolute path`);
  if (name.split('/').some((part) => part === '..')) fail(`zip entry name ${shown} contains '..'`);
}

export class ZipReader {
  readonly entries: ReadonlyMap<string, ZipEntry>;
  /** Where the central directory starts: every entry's data must end before it. */
  private readonly dataEnd: number;
  private readonly dataStarts = new Map<ZipEntry, number>();

  /** Reads the directory of the archive open on `fd` (which stays owned by the caller). */
  constructor(
    private readonly fd: number,
    readonly fileSize: number,
    private readonly fail: Fail,
  ) {
    const size = fileSize;
    if (size < EOCD_LEN) fail(`is not a zip archive (${size} bytes is too small)`);

    // The end-of-central-directory record: the last 22 bytes, unless a comment (<= 65535 bytes) follows.
    const tailLen = Math.min(size, EOCD_LEN + 0xffff);
    const tailStart = size - tailLen;
    const tail = this.readAt(tailStart, tailLen);
    const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    let at = -1;
    for (let i = tailLen - EOCD_LEN; i >= 0; i--) {
      if (tv.getUint32(i, true) === EOCD_SIG && i + EOCD_LEN + tv.getUint16(i + 20, true) === tailLen) {
        at = i;
        break;
      }
    }
    if (at < 0) fail('is not a zip archive, or is truncated (no end-of-central-directory record)');
    const eocdPos = tailStart + at;
    let disk = tv.getUint16(at + 4, true);
    let cdDisk = tv.getUint16(at + 6, true);
    let entriesOnDisk = tv.getUint16(at + 8, true);
    let entryCount = tv.getUint16(at + 10, true);
    let cdSize = tv.getUint32(at + 12, true);
    let cdOffset = tv.getUint32(at + 16, true);
    let cdLimit = eocdPos; // the central directory must end before this

    // ZIP64: a locator right before the EOCD points at the ZIP64 end-of-central-directory record.
    let zip64 = false;
    if (eocdPos >= ZIP64_LOCATOR_LEN) {
      const loc = this.readAt(eocdPos - ZIP64_LOCATOR_LEN, ZIP64_LOCATOR_LEN);
      const lv = new DataView(loc.buffer, loc.byteOffset, loc.byteLength);
      if (lv.getUint32(0, true) === ZIP64_LOCATOR_SIG) {
        zip64 = true;
        const recordPos = u64(lv, 8, 'ZIP64 record offset', fail);
        const totalDisks = lv.getUint32(16, true);
        if (lv.getUint32(4, true) !== 0 || totalDisks > 1) fail('is a multi-part zip archive, which is not supported');
        if (recordPos + ZIP64_EOCD_LEN > eocdPos - ZIP64_LOCATOR_LEN) {
          fail(`zip's ZIP64 end-of-central-directory offset ${recordPos} is past the end of the archive`);
        }
        const rec = this.readAt(recordPos, ZIP64_EOCD_LEN);
        const rv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
        if (rv.getUint32(0, true) !== ZIP64_EOCD_SIG) fail('zip has a broken ZIP64 end-of-central-directory record');
        disk = rv.getUint32(16, true);
        cdDisk = rv.getUint32(20, true);
        entriesOnDisk = u64(rv, 24, 'entry count', fail);
        entryCount = u64(rv, 32, 'entry count', fail);
        cdSize = u64(rv, 40, 'central directory size', fail);
        cdOffset = u64(rv, 48, 'central directory offset', fail);
        cdLimit = recordPos;
      }
    }
    // (0xffff entries is also a legal plain count, so only the size and offset sentinels are refused.)
    if (!zip64 && (cdSize === 0xffffffff || cdOffset === 0xffffffff)) fail('zip needs a ZIP64 record but has none');
    if (disk !== 0 || cdDisk !== 0 || entriesOnDisk !== entryCount) {
      fail('is a multi-part zip archive, which is not supported');
    }
    if (cdOffset > cdLimit || cdSize > cdLimit - cdOffset) {
      fail(`zip's central directory (offset ${cdOffset}, ${cdSize} bytes) runs past the end of the archive`);
    }
    if (cdSize > MAX_CENTRAL_DIRECTORY) fail(`zip's central directory is absurdly large (${cdSize} bytes)`);
    if (entryCount * CENTRAL_LEN > cdSize) {
      fail(`zip claims ${entryCount} entries, more than its ${cdSize}-byte central directory can hold`);
    }
    this.dataEnd = cdOffset;

    const cd = this.readAt(cdOffset, cdSize);
    const cv = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
    const decoder = new TextDecoder('utf-8');
    const entries = new Map<string, ZipEntry>();
    let declaredTotal = 0;
    let p = 0;
    for (let i = 0; i < entryCount; i++) {
      if (p + CENTRAL_LEN > cdSize || cv.getUint32(p, true) !== CENTRAL_SIG) {
        fail(`zip's central directory is corrupt at entry ${i}`);
      }
      const flags = cv.getUint16(p + 8, true);
      const method = cv.getUint16(p + 10, true);
      let compressedSize = cv.getUint32(p + 20, true);
      let entrySize = cv.getUint32(p + 24, true);
      const nameLen = cv.getUint16(p + 28, true);
      const extraLen = cv.getUint16(p + 30, true);
      const commentLen = cv.getUint16(p + 32, true);
      const diskStart = cv.getUint16(p + 34, true);
      let localHeaderOffset = cv.getUint32(p + 42, true);
      const end = p + CENTRAL_LEN + nameLen + extraLen + commentLen;
      if (end > cdSize) fail(`zip's central directory is corrupt at entry ${i}`);
      const name = decoder.decode(cd.subarray(p + CENTRAL_LEN, p + CENTRAL_LEN + nameLen));

      // ZIP64 extended information: 8-byte values for exactly the fields that hold 0xffffffff.
      const needSize = entrySize === 0xffffffff;
      const needCompressed = compressedSize === 0xffffffff;
      const needOffset = localHeaderOffset === 0xffffffff;
      if (needSize || needCompressed || needOffset) {
        let q = p + CENTRAL_LEN + nameLen;
        const extraEnd = q + extraLen;
        let found = false;
        while (q + 4 <= extraEnd) {
          const id = cv.getUint16(q, true);
          const len = cv.getUint16(q + 2, true);
          const body = q + 4;
          if (body + len > extraEnd) break;
          if (id === 0x0001) {
            let r = body;
            const next = (what: string): number => {
              if (r + 8 > body + len) fail(`zip entry ${JSON.stringify(name)} has a short ZIP64 field`);
              const v = u64(cv, r, what, fail);
              r += 8;
              return v;
            };
            if (needSize) entrySize = next('entry size');
            if (needCompressed) compressedSize = next('entry size');
            if (needOffset) localHeaderOffset = next('entry offset');
            found = true;
            break;
          }
          q = body + len;
        }
        if (!found) fail(`zip entry ${JSON.stringify(name)} lacks its ZIP64 sizes`);
      }
      p = end;

      checkName(name, fail);
      const shown = JSON.stringify(name);
      if (entries.has(name)) fail(`zip has two entries named ${shown}`);
      if (diskStart !== 0) fail('is a multi-part zip archive, which is not supported');
      if (flags & 1) fail(`zip entry ${shown} is encrypted`);
      if (compressedSize > cdOffset || (method === 0 && entrySize > cdOffset)) {
        fail(`zip entry ${shown} declares ${Math.max(entrySize, compressedSize)} bytes, more than the file holds`);
      }
      if (method === 0 && compressedSize !== entrySize) {
        fail(`zip entry ${shown} is stored but declares two different sizes`);
      }
      if (localHeaderOffset + LOCAL_LEN > cdOffset) {
        fail(`zip entry ${shown} starts at offset ${localHeaderOffset}, past the end of the entry data`);
      }
      // (the local header repeats the name; its extra field can only push the data further)
      if (localHeaderOffset + LOCAL_LEN + nameLen + compressedSize > cdOffset) {
        fail(`zip entry ${shown} runs into the central directory or past the end of the file`);
      }
      declaredTotal += compressedSize;
      if (declaredTotal > cdOffset) {
        fail('zip entries declare more bytes than the file holds (overlapping entries: a zip bomb?)');
      }
      entries.set(name, { name, method, flags, compressedSize, size: entrySize, localHeaderOffset });
    }
    this.entries = entries;
  }

  /** Where the entry's bytes start (read from, and checked against, its local header; cached). */
  dataStart(entry: ZipEntry): number {
    const cached = this.dataStarts.get(entry);
    if (cached !== undefined) return cached;
    const shown = JSON.stringify(entry.name);
    const header = this.readAt(entry.localHeaderOffset, LOCAL_LEN);
    const hv = new DataView(header.buffer, header.byteOffset, header.byteLength);
    if (hv.getUint32(0, true) !== LOCAL_SIG) this.fail(`zip entry ${shown} has a broken local header`);
    const nameLen = hv.getUint16(26, true);
    const extraLen = hv.getUint16(28, true);
    const start = entry.localHeaderOffset + LOCAL_LEN + nameLen + extraLen;
    if (start + entry.compressedSize > this.dataEnd) {
      this.fail(`zip entry ${shown} runs into the central directory or past the end of the file`);
    }
    const localName = this.readAt(entry.localHeaderOffset + LOCAL_LEN, nameLen);
    if (new TextDecoder('utf-8').decode(localName) !== entry.name) {
      this.fail(`zip entry ${shown} has a different name in its local header`);
    }
    this.dataStarts.set(entry, start);
    return start;
  }

  /** `length` bytes of a stored entry from `offset` into it (a fresh, zero-offset buffer). */
  read(entry: ZipEntry, offset = 0, length = entry.size - offset): Uint8Array {
    const shown = JSON.stringify(entry.name);
    if (entry.method !== 0) {
      const how = METHOD_NAMES[entry.method] ?? `method ${entry.method}`;
      this.fail(
        `zip entry ${shown} is compressed (${how}); sfc reads only the uncompressed ("stored") entries torch.save writes`,
      );
    }
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      this.fail(`bad read of zip entry ${shown}`);
    }
    if (offset + length > entry.size) this.fail(`read past the end of zip entry ${shown}`);
    return this.readAt(this.dataStart(entry) + offset, length);
  }

  private readAt(position: number, length: number): Uint8Array {
    if (position < 0 || length < 0 || position + length > this.fileSize) {
      this.fail(`read of ${length} bytes at offset ${position} is outside the file`);
    }
    if (length > bufferConstants.MAX_LENGTH) this.fail(`cannot read ${length} bytes at once`);
    const buf = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = readSync(this.fd, buf, done, Math.min(length - done, READ_CHUNK), position + done);
      } catch (e) {
        this.fail(`read failed: ${(e as Error).message}`);
      }
      if (n === 0) this.fail('unexpected end of file (was it truncated while being read?)');
      done += n;
    }
    return buf;
  }
}
