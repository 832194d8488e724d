/**
 * The typevisor snapshot file: one machine's whole state, self-describing, checksummed per
 * section. No Node APIs (CompressionStream, TextEncoder), so a browser reads and writes it.
 *
 *   magic "TVSNAP\r\n" (8) | major u16 | minor u16 | 0 u32            (16 bytes, little-endian)
 *   section*: type (4 ASCII) | length u32 | payload | CRC-32C u32 of type, length and payload
 *
 * Sections, in order: HEAD (the JSON header: typevisor version, creation time, the machine
 * definition, disk identities, RAM size), MACH (the MachineState without RAM, JSON with byte
 * arrays in base64, deflated), RAM (one per chunk of up to CHUNK_PAGES pages: first page,
 * page count, a bitmap of the non-zero pages, and only those pages, deflated, or stored when deflate does not save an eighth), END (the
 * count of sections before it). A type whose first letter is lower case is optional: a
 * reader that does not know it skips it (newer minor versions add such sections); an
 * unknown upper-case type is refused. A newer major version is refused; a newer minor loads.
 *
 * Everything is checked before anything is used (magic, version, every CRC, lengths, page
 * ranges, the END count), so a truncated, corrupted or foreign file is refused with a
 * message saying what is wrong, and a machine is never half-loaded from it.
 */
import { crc32c } from './crc32c.js';
import type { MachineState, MachineStateV1 } from '../machine/machine.js';

export const FORMAT_MAJOR = 1;
export const FORMAT_MINOR = 0;
const MAGIC = Uint8Array.of(0x54, 0x56, 0x53, 0x4e, 0x41, 0x50, 0x0d, 0x0a); // "TVSNAP\r\n"
const PREAMBLE = 16;
const PAGE = 4096;
/** Pages per RAM section (1 MiB): compressed and checked independently, in parallel. */
export const CHUNK_PAGES = 256;
/** Upper bound of a JSON section's inflated size (a MachineState without RAM is ~100 KiB). */
const MAX_JSON = 64 << 20;
const METHOD_STORED = 0, METHOD_DEFLATE = 1;

export class SnapshotError extends Error {
  override name = 'SnapshotError';
}

/** How a disk was when the snapshot was taken: a restore refuses a disk that differs. */
export interface DiskIdentity {
  /** Absolute path on the saving host. */
  path: string;
  format: 'raw' | 'qcow2';
  readOnly: boolean;
  /** File size in bytes and modification time (ms since the epoch). */
  size: number;
  mtimeMs: number;
  /** SHA-256 (hex) of the file's first 64 KiB: the qcow2 header and tables, or a raw disk's partition table and superblock. */
  headSha256: string;
}

export interface SnapshotHeader {
  /** The typevisor version that wrote it. */
  typevisor: string;
  /** ISO 8601. */
  created: string;
  /** How to rebuild the machine the state loads into (the CLI's flags, a daemon definition): opaque here. */
  machine: unknown;
  memoryBytes: number;
  disks: DiskIdentity[];
}

export interface Snapshot {
  header: SnapshotHeader;
  state: MachineState | MachineStateV1;
  /** The format version the file was written with. */
  format: { major: number; minor: number };
}

export interface EncodeOptions {
  /** Deflate RAM and the machine state (default). 'none' stores them: larger, fastest to restore. */
  compression?: 'deflate' | 'none';
  /** Format version to write (tests and fixtures only). */
  version?: { major: number; minor: number };
}

// ---- encoding ----

/** Write a snapshot of `state` (RAM included) with `header`. */
export async function encodeSnapshot(header: SnapshotHeader, state: MachineState | MachineStateV1, opts: EncodeOptions = {}): Promise<Uint8Array> {
  const deflate = (opts.compression ?? 'deflate') === 'deflate';
  const ver = opts.version ?? { major: FORMAT_MAJOR, minor: FORMAT_MINOR };
  const ram = state.ram.bytes;
  if (ram.length % PAGE !== 0) throw new SnapshotError(`RAM of ${ram.length} bytes is not whole pages`);
  const parts: Uint8Array[] = [];
  const pre = new Uint8Array(PREAMBLE);
  pre.set(MAGIC);
  const pv = new DataView(pre.buffer);
  pv.setUint16(8, ver.major, true); pv.setUint16(10, ver.minor, true);
  parts.push(pre);
  let count = 0;
  const section = (type: string, payload: Uint8Array): void => { parts.push(...frame(type, payload)); count++; };

  section('HEAD', utf8(JSON.stringify(header)));
  const noRam = { ...state, ram: { ...state.ram, bytes: new Uint8Array(0) } };
  const mach = utf8(toJson(noRam));
  section('MACH', await packed(mach, deflate));
  const pages = ram.length / PAGE;
  const chunks: Array<Promise<Uint8Array>> = [];
  for (let first = 0; first < pages; first += CHUNK_PAGES) chunks.push(ramChunk(ram, first, Math.min(CHUNK_PAGES, pages - first), deflate));
  for (const c of await Promise.all(chunks)) if (c.length > 0) section('RAM ', c);
  const end = new Uint8Array(4);
  new DataView(end.buffer).setUint32(0, count, true);
  section('END ', end);
  return concat(parts);
}

/** One RAM section: {first u32, count u32, method u8, pad 3, rawLen u32, bitmap, data}; empty if all pages are zero. */
async function ramChunk(ram: Uint8Array, first: number, n: number, deflate: boolean): Promise<Uint8Array> {
  const bitmap = new Uint8Array((n + 7) >> 3);
  const words = new Uint32Array(ram.buffer, ram.byteOffset + first * PAGE, n * PAGE / 4);
  let nonZero = 0;
  for (let p = 0; p < n; p++) {
    const w0 = p * (PAGE / 4);
    for (let i = w0; i < w0 + PAGE / 4; i++) {
      if (words[i] !== 0) { bitmap[p >> 3] |= 1 << (p & 7); nonZero++; break; }
    }
  }
  if (nonZero === 0) return new Uint8Array(0);
  const raw = new Uint8Array(nonZero * PAGE);
  let o = 0;
  for (let p = 0; p < n; p++) {
    if (bitmap[p >> 3] & (1 << (p & 7))) { raw.set(ram.subarray((first + p) * PAGE, (first + p + 1) * PAGE), o); o += PAGE; }
  }
  let data = deflate ? await deflateRaw(raw) : raw;
  // Pages that do not shrink by an eighth (random data, already compressed) are stored: restoring them is then a copy.
  const packs = deflate && data.length <= raw.length - (raw.length >> 3);
  if (!packs) data = raw;
  const out = new Uint8Array(16 + bitmap.length + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, first, true); v.setUint32(4, n, true);
  out[8] = packs ? METHOD_DEFLATE : METHOD_STORED;
  v.setUint32(12, raw.length, true);
  out.set(bitmap, 16);
  out.set(data, 16 + bitmap.length);
  return out;
}

/** {method u8, pad 3, rawLen u32, data}. */
async function packed(raw: Uint8Array, deflate: boolean): Promise<Uint8Array> {
  const data = deflate ? await deflateRaw(raw) : raw;
  const out = new Uint8Array(8 + data.length);
  out[0] = deflate ? METHOD_DEFLATE : METHOD_STORED;
  new DataView(out.buffer).setUint32(4, raw.length, true);
  out.set(data, 8);
  return out;
}

function frame(type: string, payload: Uint8Array): Uint8Array[] {
  const head = new Uint8Array(8);
  for (let i = 0; i < 4; i++) head[i] = type.charCodeAt(i);
  new DataView(head.buffer).setUint32(4, payload.length, true);
  const tail = new Uint8Array(4);
  new DataView(tail.buffer).setUint32(0, crc32c(payload, crc32c(head)), true);
  return [head, payload, tail];
}

// ---- decoding ----

interface Section { type: string; payload: Uint8Array }

/** Check the preamble and every section's frame and CRC; returns the sections (views into `bytes`). */
function sections(bytes: Uint8Array): { major: number; minor: number; list: Section[] } {
  if (bytes.length < PREAMBLE || !MAGIC.every((b, i) => bytes[i] === b)) {
    throw new SnapshotError('not a typevisor snapshot (bad magic)');
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = dv.getUint16(8, true), minor = dv.getUint16(10, true);
  if (major !== FORMAT_MAJOR) {
    throw new SnapshotError(major > FORMAT_MAJOR
      ? `snapshot format ${major}.${minor} is newer than this typevisor reads (${FORMAT_MAJOR}.x): upgrade typevisor`
      : `snapshot format ${major}.${minor} is no longer supported (this typevisor reads ${FORMAT_MAJOR}.x)`);
  }
  const list: Section[] = [];
  let o = PREAMBLE;
  for (;;) {
    if (o + 12 > bytes.length) throw new SnapshotError(`truncated: section ${list.length + 1} at byte ${o} is cut off (file is ${bytes.length} bytes)`);
    const type = String.fromCharCode(bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]);
    if (!/^[A-Za-z][A-Za-z0-9 ]{3}$/.test(type)) throw new SnapshotError(`corrupt: bad section type at byte ${o}`);
    const len = dv.getUint32(o + 4, true);
    if (o + 8 + len + 4 > bytes.length) throw new SnapshotError(`truncated: section '${type.trim()}' at byte ${o} needs ${len} bytes, the file ends first`);
    const payload = bytes.subarray(o + 8, o + 8 + len);
    const want = dv.getUint32(o + 8 + len, true);
    if (crc32c(payload, crc32c(bytes.subarray(o, o + 8))) !== want) throw new SnapshotError(`corrupt: checksum mismatch in section '${type.trim()}' at byte ${o}`);
    o += 12 + len;
    if (type === 'END ') {
      if (len !== 4 || dv.getUint32(o - 8, true) !== list.length) throw new SnapshotError('corrupt: the END section does not match the sections before it');
      if (o !== bytes.length) throw new SnapshotError(`corrupt: ${bytes.length - o} bytes after the END section`);
      return { major, minor, list };
    }
    list.push({ type, payload });
  }
}

/** Only the header (cheap: no inflating, but every checksum is verified). */
export function readSnapshotHeader(bytes: Uint8Array): SnapshotHeader {
  const { list } = sections(bytes);
  return parseHeader(list);
}

function parseHeader(list: Section[]): SnapshotHeader {
  const head = list.find((s) => s.type === 'HEAD');
  if (!head || list[0] !== head) throw new SnapshotError('corrupt: no HEAD section first');
  const h = parseJson(head.payload, 'HEAD') as Partial<SnapshotHeader> | null;
  if (typeof h !== 'object' || h === null || typeof h.typevisor !== 'string' || typeof h.created !== 'string' ||
    !Number.isSafeInteger(h.memoryBytes) || (h.memoryBytes as number) <= 0 || (h.memoryBytes as number) % PAGE !== 0 || !Array.isArray(h.disks)) {
    throw new SnapshotError('corrupt: the header lacks typevisor, created, memoryBytes or disks');
  }
  for (const d of h.disks as unknown[]) {
    const x = d as Partial<DiskIdentity> | null;
    if (typeof x?.path !== 'string' || (x.format !== 'raw' && x.format !== 'qcow2') || !Number.isSafeInteger(x.size) ||
      typeof x.mtimeMs !== 'number' || typeof x.headSha256 !== 'string' || typeof x.readOnly !== 'boolean') {
      throw new SnapshotError('corrupt: a disk entry in the header is malformed');
    }
  }
  return h as SnapshotHeader;
}

export interface DecodeOptions {
  /**
   * Decode RAM straight into this buffer (a fresh machine's `bus.ram`, header.memoryBytes
   * long) instead of a new one: restore skips a copy of all of RAM. Every checksum and the
   * structure are verified before it is written; a file that passes them but inflates
   * wrongly (crafted, not damaged) leaves it partly written, so use a machine that is
   * discarded if decoding fails.
   */
  into?: Uint8Array;
  /**
   * With `into`: the byte ranges [start, end) of it that may hold non-zero bytes (a machine
   * that has not run: what its loaders wrote, `Machine.ramWritten()`); the rest is known to
   * be zero, so the snapshot's zero pages there are neither read nor written. Absent, every
   * such page is read to check it (reading untouched memory costs the host a page fault per
   * page: 40–60 ms for 128 MiB).
   */
  intoWritten?: ReadonlyArray<readonly [number, number]> | null;
}

/** Read a whole snapshot: every check passes before the state is returned. */
export async function decodeSnapshot(bytes: Uint8Array, opts: DecodeOptions = {}): Promise<Snapshot> {
  const { major, minor, list } = sections(bytes);
  const header = parseHeader(list);
  if (opts.into && opts.into.length !== header.memoryBytes) throw new SnapshotError(`snapshot has ${header.memoryBytes} bytes of RAM, the machine ${opts.into.length}`);
  const ram = opts.into ?? new Uint8Array(header.memoryBytes);
  const pages = header.memoryBytes / PAGE;
  // Pages of `into` that may be non-zero (1): a snapshot's zero page clears them; null: none.
  let zeroFill: Uint8Array | null = null;
  if (opts.into) {
    zeroFill = new Uint8Array(pages);
    if (!opts.intoWritten) zeroFill.fill(1);
    else for (const [a, b] of opts.intoWritten) zeroFill.fill(1, Math.max(0, Math.floor(a / PAGE)), Math.min(pages, Math.ceil(b / PAGE)));
  }
  let mach: Section | null = null;
  const work: Array<Promise<void>> = [];
  const seen = new Uint8Array(Math.ceil(pages / CHUNK_PAGES));
  // Once anything is refused (a section inflates wrongly), sections still inflating write nothing more.
  const ctl = { failed: false };
  try {
    for (const s of list.slice(1)) {
      switch (s.type) {
        case 'MACH':
          if (mach) throw new SnapshotError('corrupt: two MACH sections');
          mach = s;
          break;
        case 'RAM ': {
          if (s.payload.length < 16) throw new SnapshotError('corrupt: RAM section too short');
          const v = new DataView(s.payload.buffer, s.payload.byteOffset, s.payload.byteLength);
          const first = v.getUint32(0, true), n = v.getUint32(4, true);
          if (first % CHUNK_PAGES !== 0 || n === 0 || n > CHUNK_PAGES || first + n > pages || seen[first / CHUNK_PAGES]) {
            throw new SnapshotError(`corrupt: RAM section for pages ${first}+${n} does not fit ${header.memoryBytes} bytes of RAM`);
          }
          seen[first / CHUNK_PAGES] = 1;
          const w = unpackRam(s.payload, ram, first, n, zeroFill, ctl);
          w.catch(() => { /* reported by the Promise.all below, or moot if an earlier check throws */ });
          work.push(w);
          break;
        }
        case 'HEAD': throw new SnapshotError('corrupt: two HEAD sections');
        default:
          // Optional sections (lower-case first letter) from newer minor versions are skipped.
          if (s.type[0] >= 'A' && s.type[0] <= 'Z') throw new SnapshotError(`unknown required section '${s.type.trim()}' (written by a newer typevisor?)`);
      }
    }
    if (!mach) throw new SnapshotError('corrupt: no MACH section');
    const json = await unpack(mach.payload, MAX_JSON, 'MACH');
    if (zeroFill) {
      // Chunks with no RAM section are all zero.
      for (let c = 0; c < seen.length; c++) {
        if (!seen[c]) for (let p = c * CHUNK_PAGES; p < Math.min(pages, (c + 1) * CHUNK_PAGES); p++) if (zeroFill[p]) zeroPage(ram, p);
      }
    }
    await Promise.all(work);
    const state = fromJson(json) as MachineState;
    if (typeof state !== 'object' || state === null || typeof state.ram !== 'object' || state.ram === null || state.memoryBytes !== header.memoryBytes) {
      throw new SnapshotError('corrupt: the machine state does not match the header');
    }
    state.ram.bytes = ram;
    return { header, state, format: { major, minor } };
  } catch (e) {
    ctl.failed = true;
    throw e;
  }
}

async function unpackRam(p: Uint8Array, ram: Uint8Array, first: number, n: number, zeroFill: Uint8Array | null, ctl: { failed: boolean }): Promise<void> {
  const bl = (n + 7) >> 3;
  if (p.length < 16 + bl) throw new SnapshotError('corrupt: RAM section too short');
  const bitmap = p.subarray(16, 16 + bl);
  let nonZero = 0;
  for (let i = 0; i < n; i++) if (bitmap[i >> 3] & (1 << (i & 7))) nonZero++;
  const rawLen = new DataView(p.buffer, p.byteOffset + 12, 4).getUint32(0, true);
  if (rawLen !== nonZero * PAGE) throw new SnapshotError(`corrupt: RAM section at page ${first} holds ${rawLen} bytes for ${nonZero} pages`);
  const data = await inflated(p[8], p.subarray(16 + bl), rawLen, `RAM at page ${first}`);
  if (ctl.failed) return;
  let o = 0;
  for (let i = 0; i < n;) {
    if (bitmap[i >> 3] & (1 << (i & 7))) {
      // A run of non-zero pages: one copy.
      let j = i + 1;
      while (j < n && bitmap[j >> 3] & (1 << (j & 7))) j++;
      ram.set(data.subarray(o, o + (j - i) * PAGE), (first + i) * PAGE);
      o += (j - i) * PAGE;
      i = j;
    } else {
      if (zeroFill && zeroFill[first + i]) zeroPage(ram, first + i);
      i++;
    }
  }
}

/** Clear a page unless it already reads as zero: untouched pages of a fresh machine stay unwritten (not committed by the host OS). */
function zeroPage(ram: Uint8Array, p: number): void {
  const w = new Int32Array(ram.buffer, ram.byteOffset + p * PAGE, PAGE / 4);
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) { w.fill(0); return; }
}

async function unpack(p: Uint8Array, max: number, what: string): Promise<Uint8Array> {
  if (p.length < 8) throw new SnapshotError(`corrupt: ${what} section too short`);
  const rawLen = new DataView(p.buffer, p.byteOffset + 4, 4).getUint32(0, true);
  if (rawLen > max) throw new SnapshotError(`corrupt: ${what} section claims ${rawLen} bytes`);
  return inflated(p[0], p.subarray(8), rawLen, what);
}

async function inflated(method: number, data: Uint8Array, rawLen: number, what: string): Promise<Uint8Array> {
  if (method === METHOD_STORED) {
    if (data.length !== rawLen) throw new SnapshotError(`corrupt: ${what}: stored length ${data.length}, expected ${rawLen}`);
    return data;
  }
  if (method !== METHOD_DEFLATE) throw new SnapshotError(`corrupt: ${what}: unknown compression method ${method}`);
  return inflateRaw(data, rawLen, what);
}

// ---- compression (CompressionStream: Node ≥ 18 and browsers; or the host's) ----

/**
 * One-shot raw deflate a host may provide instead of CompressionStream (Node: zlib on its
 * thread pool, src/host/snapshot-zlib.ts, 4–5× faster than streams for 1 MiB sections).
 * The same format either way. inflateRaw must fail (any error) rather than return more
 * than `size` bytes.
 */
export interface DeflateCodec {
  deflateRaw(data: Uint8Array): Promise<Uint8Array>;
  inflateRaw(data: Uint8Array, size: number): Promise<Uint8Array>;
}

let hostCodec: DeflateCodec | null = null;

/** Use `c` for deflate sections from now on (null: CompressionStream again). */
export function useDeflateCodec(c: DeflateCodec | null): void { hostCodec = c; }

async function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  if (hostCodec) return hostCodec.deflateRaw(data);
  return collect(streamOf(data).pipeThrough(new CompressionStream('deflate-raw')), Infinity, 'deflate');
}

/** Inflate exactly `size` bytes; more, less or a bad stream is an error (no decompression bombs). */
async function inflateRaw(data: Uint8Array, size: number, what: string): Promise<Uint8Array> {
  let out: Uint8Array;
  try {
    out = hostCodec ? await hostCodec.inflateRaw(data, size)
      : await collect(streamOf(data).pipeThrough(new DecompressionStream('deflate-raw')), size, what);
  } catch (e) {
    if (e instanceof SnapshotError) throw e;
    throw new SnapshotError(`corrupt: ${what}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (out.length !== size) throw new SnapshotError(`corrupt: ${what} inflates to ${out.length} bytes, expected ${size}`);
  return out;
}

function streamOf(data: Uint8Array): ReadableStream<BufferSource> {
  return new ReadableStream<BufferSource>({ start(c) { c.enqueue(data as Uint8Array<ArrayBuffer>); c.close(); } });
}

async function collect(s: ReadableStream<Uint8Array>, max: number, what: string): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  const r = s.getReader();
  for (;;) {
    const { done, value } = await r.read();
    if (done) break;
    n += value.length;
    if (n > max) { await r.cancel(); throw new SnapshotError(`corrupt: ${what} inflates to more than ${max} bytes`); }
    chunks.push(value);
  }
  return chunks.length === 1 ? chunks[0] : concat(chunks);
}

// ---- JSON with byte arrays ----

/** JSON where each Uint8Array becomes {"$bytes": base64}. */
export function toJson(v: unknown): string {
  return JSON.stringify(v, function (this: unknown, _k: string, x: unknown) {
    return x instanceof Uint8Array ? { $bytes: toBase64(x) } : x;
  });
}

export function fromJson(text: Uint8Array): unknown {
  return parseJson(text, 'MACH', (_k, x) => {
    if (typeof x === 'object' && x !== null && !Array.isArray(x)) {
      const b = (x as { $bytes?: unknown }).$bytes;
      if (typeof b === 'string' && Object.keys(x).length === 1) return fromBase64(b);
    }
    return x;
  });
}

// ---- the machine state on the wire (live migration's last round) ----

const STATE_MAGIC = 0x54535654; // "TVST"

/**
 * A machine state without RAM for live migration's stop: "TVST" | JSON length u32 | the
 * JSON of its structure | its byte arrays, raw, each named in the JSON as
 * {"$raw": [offset, length]} from the end of the JSON. No base64 and no replacer or reviver
 * calls: a 64 MiB guest's state (60 KiB of it the boot ROM) encodes in a fraction of a
 * millisecond instead of 3–4 ms, in the downtime.
 */
export function encodeState(v: unknown): Uint8Array {
  const blobs: Uint8Array[] = [];
  let at = 0;
  const strip = (x: unknown): unknown => {
    if (x instanceof Uint8Array) { blobs.push(x); at += x.length; return { $raw: [at - x.length, x.length] }; }
    if (Array.isArray(x)) return x.map(strip);
    if (typeof x === 'object' && x !== null && !ArrayBuffer.isView(x)) {
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(x)) o[k] = strip((x as Record<string, unknown>)[k]);
      return o;
    }
    return x;
  };
  const json = utf8(JSON.stringify(strip(v)));
  const out = new Uint8Array(8 + json.length + at);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, STATE_MAGIC, true);
  dv.setUint32(4, json.length, true);
  out.set(json, 8);
  let o = 8 + json.length;
  for (const b of blobs) { out.set(b, o); o += b.length; }
  return out;
}

/** Read encodeState()'s bytes (or toJson()'s UTF-8, from an older source); a clear SnapshotError if malformed. */
export function decodeState(b: Uint8Array): unknown {
  if (b.length > 0 && b[0] === 0x7b) return fromJson(b); // '{': JSON with base64
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length < 8 || dv.getUint32(0, true) !== STATE_MAGIC) throw new SnapshotError('corrupt: the machine state is neither TVST nor JSON');
  const jsonLen = dv.getUint32(4, true);
  if (8 + jsonLen > b.length) throw new SnapshotError('corrupt: the machine state is truncated');
  const base = 8 + jsonLen, blobBytes = b.length - base;
  const fill = (x: unknown): unknown => {
    if (Array.isArray(x)) { for (let i = 0; i < x.length; i++) x[i] = fill(x[i]); return x; }
    if (typeof x === 'object' && x !== null) {
      const r = (x as { $raw?: unknown }).$raw;
      if (r !== undefined && Object.keys(x).length === 1) {
        if (!Array.isArray(r) || r.length !== 2 || !Number.isSafeInteger(r[0]) || !Number.isSafeInteger(r[1]) ||
          (r[0] as number) < 0 || (r[1] as number) < 0 || (r[0] as number) + (r[1] as number) > blobBytes) {
          throw new SnapshotError('corrupt: a byte array of the machine state lies outside it');
        }
        return b.slice(base + (r[0] as number), base + (r[0] as number) + (r[1] as number));
      }
      const o = x as Record<string, unknown>;
      for (const k of Object.keys(o)) o[k] = fill(o[k]);
      return o;
    }
    return x;
  };
  return fill(parseJson(b.subarray(8, base), 'the machine state'));
}

function parseJson(bytes: Uint8Array, what: string, reviver?: (k: string, v: unknown) => unknown): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes), reviver) as unknown;
  } catch (e) {
    throw new SnapshotError(`corrupt: ${what} is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  let bin: string;
  try { bin = atob(s); } catch { throw new SnapshotError('corrupt: bad base64 in the machine state'); }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function utf8(s: string): Uint8Array { return new TextEncoder().encode(s); }

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
