/**
 * Snapshot files on the host (Node): atomic writes, and the identity of the disks a
 * snapshot refers to, so a restore never runs a guest on a disk other than the one whose
 * contents its page cache and file systems remember.
 */
import { closeSync, fsyncSync, openSync, readSync, renameSync, rmSync, statSync, writeSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import type { DiskIdentity } from '../snapshot/format.js';

/** Bytes hashed at the start of a disk image (qcow2 header and tables; a raw disk's partition table and superblock). */
const HEAD_BYTES = 64 * 1024;

/** Write `bytes` to `file` atomically: a temp file in the same directory, fsync, rename, fsync of the directory. */
export function writeFileAtomic(file: string, bytes: Uint8Array): void {
  const path = resolve(file);
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now()}`);
  let fd = -1;
  try {
    fd = openSync(tmp, 'wx', 0o600);
    for (let o = 0; o < bytes.length;) o += writeSync(fd, bytes, o, bytes.length - o);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    rmSync(tmp, { force: true });
    throw new Error(`cannot write snapshot '${file}': ${(e as Error).message}`);
  }
  try {
    const d = openSync(dirname(path), 'r');
    try { fsyncSync(d); } finally { closeSync(d); }
  } catch { /* not every file system syncs directories */ }
}

export function readSnapshotFile(file: string): Uint8Array {
  try {
    const b = readFileSync(file);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    throw new Error(`cannot read snapshot '${file}': ${(e as Error).message}`);
  }
}

/** A disk image's identity now. */
export function diskIdentity(file: string, format: 'raw' | 'qcow2' | undefined, readOnly: boolean): DiskIdentity {
  const path = resolve(file);
  const st = statSync(path);
  const head = new Uint8Array(Math.min(HEAD_BYTES, st.size));
  const fd = openSync(path, 'r');
  try {
    for (let o = 0; o < head.length;) {
      const n = readSync(fd, head, o, head.length - o, o);
      if (n === 0) break;
      o += n;
    }
  } finally {
    closeSync(fd);
  }
  // Probed as openDisk does when no format was given: the qcow2 magic "QFI\xfb".
  const fmt = format ?? (head[0] === 0x51 && head[1] === 0x46 && head[2] === 0x49 && head[3] === 0xfb ? 'qcow2' : 'raw');
  return { path, format: fmt, readOnly, size: st.size, mtimeMs: st.mtimeMs, headSha256: createHash('sha256').update(head).digest('hex') };
}

/**
 * Check that the disks a restored machine opens are the ones the snapshot saw, in order.
 * Throws naming the disk and what differs; the path may differ (a moved file) when the
 * contents' identity matches.
 */
export function checkDisks(saved: readonly DiskIdentity[], now: readonly DiskIdentity[]): void {
  if (saved.length !== now.length) {
    throw new Error(`the snapshot was taken with ${saved.length} disk(s) (${saved.map((d) => d.path).join(', ') || 'none'}), this machine has ${now.length}`);
  }
  saved.forEach((s, i) => {
    const n = now[i];
    const what: string[] = [];
    if (s.format !== n.format) what.push(`format ${s.format} → ${n.format}`);
    if (s.size !== n.size) what.push(`size ${s.size} → ${n.size}`);
    if (s.headSha256 !== n.headSha256) what.push('its first 64 KiB');
    if (s.mtimeMs !== n.mtimeMs) what.push(`modified ${new Date(s.mtimeMs).toISOString()} → ${new Date(n.mtimeMs).toISOString()}`);
    if (what.length) {
      throw new Error(`disk ${i + 1} '${n.path}' is not the disk the snapshot was taken with ('${s.path}': ${what.join(', ')}); ` +
        'the guest remembers that disk\'s contents, so it is refused');
    }
  });
}
