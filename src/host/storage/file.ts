/**
 * The byte store under a disk image: the one interface the format code (raw.ts, qcow2.ts)
 * is written against, so it can run over a Node file, an in-memory buffer (tests, fuzzing)
 * or a browser File/OPFS handle. No Node imports here.
 */
export interface HostFile {
  /** A name for error messages (the path). */
  readonly name: string;
  /** Reads up to dst.length bytes at `position`; returns how many were read (short at EOF). */
  pread(dst: Uint8Array, position: number): Promise<number>;
  /** Writes all of src at `position`, growing the file if needed. */
  pwrite(src: Uint8Array, position: number): Promise<void>;
  /** Makes every completed write durable (fsync/fdatasync). */
  sync(): Promise<void>;
  size(): Promise<number>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

/** The error every storage failure is reported as: the message names the file and the problem. */
export class DiskError extends Error {
  constructor(message: string) { super(message); this.name = 'DiskError'; }
}

/** Reads exactly dst.length bytes; bytes past the end of the file read as zeros. */
export async function readFull(f: HostFile, dst: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < dst.length) {
    const n = await f.pread(dst.subarray(done), position + done);
    if (n <= 0) { dst.fill(0, done); return; }
    done += n;
  }
}

/** A HostFile in memory: tests and the fuzzer run the format code against it. */
export class MemFile implements HostFile {
  private buf: Uint8Array;
  private len: number;
  syncs = 0;
  constructor(readonly name: string, initial: Uint8Array = new Uint8Array(0), private readonly maxBytes = 1 << 30) {
    this.buf = initial.slice();
    this.len = initial.length;
  }
  get bytes(): Uint8Array { return this.buf.subarray(0, this.len); }
  async pread(dst: Uint8Array, position: number): Promise<number> {
    if (position >= this.len) return 0;
    const n = Math.min(dst.length, this.len - position);
    dst.set(this.buf.subarray(position, position + n));
    return n;
  }
  async pwrite(src: Uint8Array, position: number): Promise<void> {
    const end = position + src.length;
    this.grow(end);
    this.buf.set(src, position);
    if (end > this.len) this.len = end;
  }
  async sync(): Promise<void> { this.syncs++; }
  async size(): Promise<number> { return this.len; }
  async truncate(length: number): Promise<void> {
    this.grow(length);
    if (length < this.len) this.buf.fill(0, length, this.len);
    this.len = length;
  }
  async close(): Promise<void> {}
  private grow(end: number): void {
    if (end > this.maxBytes) throw new DiskError(`${this.name}: in-memory file limit exceeded (${end} bytes)`);
    if (end <= this.buf.length) return;
    const next = new Uint8Array(Math.max(end, this.buf.length * 2));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
}
