/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as iSCSI, ext4 and Btrfs use it:
 * better error detection than CRC-32 for the same cost.
 *
 * Two implementations of the same table method: slicing-by-16 in a small WebAssembly
 * function generated below (about 2 GB/s; no bounds checks, 16 table loads per 16 bytes),
 * fed through a scratch buffer in its own memory, and slicing-by-8 in JavaScript (about
 * 1 GB/s) for short inputs and hosts without WebAssembly. Restores and migrations check
 * every byte they read, so this is on their critical path.
 */
const POLY = 0x82f63b78;
const SLICES = 16;
/** T[s * 256 + b]: the CRC of byte b followed by s zero bytes. */
const T = new Uint32Array(SLICES * 256);
for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[i] = c;
}
for (let i = 0; i < 256; i++) {
  for (let s = 1; s < SLICES; s++) T[s * 256 + i] = (T[(s - 1) * 256 + i] >>> 8) ^ T[T[(s - 1) * 256 + i] & 0xff];
}

/** Continue a CRC-32C over `data` (start with crc = 0), slicing-by-8 in JavaScript: the reference for the fast path. */
export function crc32cJs(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  let i = 0;
  const n = data.length;
  // Eight bytes per step: two little-endian words through eight tables.
  for (; i + 8 <= n; i += 8) {
    const lo = (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)) ^ c;
    const hi = data[i + 4] | (data[i + 5] << 8) | (data[i + 6] << 16) | (data[i + 7] << 24);
    c = T[1792 + (lo & 0xff)] ^ T[1536 + ((lo >>> 8) & 0xff)] ^ T[1280 + ((lo >>> 16) & 0xff)] ^ T[1024 + (lo >>> 24)] ^
      T[768 + (hi & 0xff)] ^ T[512 + ((hi >>> 8) & 0xff)] ^ T[256 + ((hi >>> 16) & 0xff)] ^ T[hi >>> 24];
  }
  for (; i < n; i++) c = T[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// ---- the WebAssembly kernel ----

/** Memory layout: the tables at 0, the scratch buffer the input is copied to after them. */
const TABLES_BYTES = SLICES * 1024;
const SCRATCH_AT = TABLES_BYTES;
const SCRATCH_BYTES = 256 << 10;
const WASM_PAGES = Math.ceil((SCRATCH_AT + SCRATCH_BYTES) / 65536);
/** Below this, copying to the scratch buffer and the call cost more than they save. */
const WASM_MIN = 256;

function uleb(n: number): number[] {
  const o: number[] = [];
  do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; o.push(b); } while (n);
  return o;
}

/**
 * The module: memory (exported "m") and crc(c, p, n) -> c, with c the inverted running CRC:
 * slicing-by-16 over [p, p + n - n % 16), then a byte at a time.
 */
function kernelModule(): Uint8Array {
  const GET = 0x20, SET = 0x21, TEE = 0x22, CONST = 0x41, LOAD = 0x28, LOAD8 = 0x2d;
  const ADD = 0x6a, AND = 0x71, XOR = 0x73, SHL = 0x74, SHRU = 0x76, LTU = 0x49, GEU = 0x4f;
  const C = 0, P = 1, N = 2, END = 3, W = 4; // params c, p, n; locals: end, w0..w3
  const code: number[] = [];
  // end = p + n - n % 16
  code.push(GET, P, GET, N, CONST, 0x70 /* -16 */, AND, ADD, SET, END);
  code.push(0x02, 0x40, GET, P, GET, END, GEU, 0x0d, 0, 0x03, 0x40); // block; br_if p >= end; loop
  for (let k = 0; k < 4; k++) {
    code.push(GET, P, LOAD, 2, ...uleb(4 * k));
    if (k === 0) code.push(GET, C, XOR);
    code.push(SET, W + k);
  }
  // Byte j of word k is the (4k + j)-th of 16: through table 15 - (4k + j).
  for (let k = 0; k < 4; k++) {
    for (let j = 0; j < 4; j++) {
      code.push(GET, W + k);
      if (j > 0) code.push(CONST, 8 * j, SHRU);
      if (j < 3) code.push(CONST, 0xff, 0x01, AND);
      code.push(CONST, 2, SHL, LOAD, 2, ...uleb((SLICES - 1 - 4 * k - j) * 1024));
      if (k + j > 0) code.push(XOR);
    }
  }
  code.push(SET, C, GET, P, CONST, 16, ADD, TEE, P, GET, END, LTU, 0x0d, 0, 0x0b, 0x0b); // p += 16; br_if p < end; end; end
  // The tail: end = p + n % 16, a byte at a time.
  code.push(GET, P, GET, N, CONST, 15, AND, ADD, SET, END);
  code.push(0x02, 0x40, GET, P, GET, END, GEU, 0x0d, 0, 0x03, 0x40);
  code.push(GET, C, GET, P, LOAD8, 0, 0, XOR, CONST, 0xff, 0x01, AND, CONST, 2, SHL, LOAD, 2, 0, GET, C, CONST, 8, SHRU, XOR, SET, C);
  code.push(GET, P, CONST, 1, ADD, TEE, P, GET, END, LTU, 0x0d, 0, 0x0b, 0x0b);
  code.push(GET, C, 0x0b);
  const body = [1, 5, 0x7f, ...code]; // locals: 5 × i32
  const section = (id: number, c: number[]): number[] => [id, ...uleb(c.length), ...c];
  const name = (s: string): number[] => [s.length, ...Array.from(s, (ch) => ch.charCodeAt(0))];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [1, 0x60, 3, 0x7f, 0x7f, 0x7f, 1, 0x7f]), // type (i32 i32 i32) -> i32
    ...section(3, [1, 0]), // one function of type 0
    ...section(5, [1, 1, WASM_PAGES, WASM_PAGES]), // memory: min = max
    ...section(7, [2, ...name('crc'), 0, 0, ...name('m'), 2, 0]),
    ...section(10, [1, ...uleb(body.length), ...body]),
  ]);
}

let kernel: ((c: number, p: number, n: number) => number) | null = null;
let heap: Uint8Array | null = null;

function setUpKernel(): void {
  try {
    if (typeof WebAssembly !== 'object') return;
    const inst = new WebAssembly.Instance(new WebAssembly.Module(kernelModule() as Uint8Array<ArrayBuffer>), {});
    const mem = inst.exports.m as WebAssembly.Memory;
    heap = new Uint8Array(mem.buffer);
    new Uint32Array(mem.buffer, 0, T.length).set(T);
    kernel = inst.exports.crc as (c: number, p: number, n: number) => number;
  } catch {
    kernel = null; heap = null; // no WebAssembly here (or it is disabled): the JavaScript path
  }
}
setUpKernel();

/** Whether crc32c() runs the WebAssembly kernel (tests and figures). */
export function crc32cKernel(): 'wasm' | 'js' { return kernel ? 'wasm' : 'js'; }

/** Continue a CRC-32C over `data` (start with crc = 0). */
export function crc32c(data: Uint8Array, crc = 0): number {
  const n = data.length;
  if (kernel === null || heap === null || n < WASM_MIN) return crc32cJs(data, crc);
  let c = ~crc;
  for (let o = 0; o < n; o += SCRATCH_BYTES) {
    const len = Math.min(SCRATCH_BYTES, n - o);
    heap.set(o === 0 && len === n ? data : data.subarray(o, o + len), SCRATCH_AT);
    c = kernel(c, SCRATCH_AT, len);
  }
  return ~c >>> 0;
}
