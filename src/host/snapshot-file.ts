/**
 * Snapshot files on the host (Node): atomic writes, the identity of the disks a snapshot
 * refers to, so a restore never runs a guest on a disk other than the one whose contents
 * its page cache and file systems remember, and bundles: a directory holding a snapshot
 * and consistent copies of its disks (`--with-disks`).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, rmSync, statSync, writeSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import type { DiskIdentity } from '../snapshot/format.js';
import type { BlockBackend } from '../devices/device.js';
import type { DirtyBlock } from './storage/dirty.js';
import { createImage, finalPass, openTarget, precopy, syncDir } from './storage/disk-copy.js';

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

/** A snapshot file's bytes; for a bundle (a directory), its snapshot.tvs. */
export function readSnapshotFile(file: string): Uint8Array {
  try {
    const b = readFileSync(isBundle(file) ? join(file, BUNDLE_SNAPSHOT) : file);
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
    // Within 10 µs: a copy given the same time (copyDiskExact) goes through a float of seconds.
    if (!(Math.abs(s.mtimeMs - n.mtimeMs) < 0.01)) what.push(`modified ${new Date(s.mtimeMs).toISOString()} → ${new Date(n.mtimeMs).toISOString()}`);
    if (what.length) {
      throw new Error(`disk ${i + 1} '${n.path}' is not the disk the snapshot was taken with ('${s.path}': ${what.join(', ')}); ` +
        'the guest remembers that disk\'s contents, so it is refused');
    }
  });
}

// ---- bundles (--with-disks) ----
//
// A bundle is a directory, not one container file: its disks are ordinary sparse raw and
// qcow2 images that qemu-img, e2fsck and typevisor open in place (a restore needs no
// extraction, and a 10 GiB disk with 1 GiB used stays 1 GiB), and the directory is
// renamed into place whole, so it appears complete or not at all.
//   snapshot.tvs   the snapshot; its header's disk identities are those of the copies
//   bundle.json    {"typevisorBundle": 1, "disks": [{"file", "format", "readOnly", "sizeBytes", "source"}]}
//   disk0.qcow2 …  disk N, in the machine's drive order, in the source's format

export const BUNDLE_SNAPSHOT = 'snapshot.tvs';
const MANIFEST = 'bundle.json';

export interface BundleManifest {
  typevisorBundle: 1;
  disks: Array<{ file: string; format: 'raw' | 'qcow2'; readOnly: boolean; sizeBytes: number; source: string }>;
}

export function isBundle(file: string): boolean {
  try { return statSync(file).isDirectory(); } catch { return false; }
}

/** The disks of the bundle at `dir` (absolute paths, drive order), or null if it is a plain snapshot file. Throws on a bad manifest. */
export function bundleDisks(dir: string): Array<{ file: string; format: 'raw' | 'qcow2'; readOnly: boolean }> | null {
  if (!isBundle(dir)) return null;
  let m: Partial<BundleManifest>;
  try { m = JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8')) as Partial<BundleManifest>; } catch (e) {
    throw new Error(`'${dir}' is a directory but not a snapshot bundle (${MANIFEST}: ${(e as Error).message})`);
  }
  if (m.typevisorBundle !== 1 || !Array.isArray(m.disks)) throw new Error(`'${dir}': ${MANIFEST} is not a version 1 bundle manifest`);
  return m.disks.map((d, i) => {
    if (typeof d?.file !== 'string' || isAbsolute(d.file) || d.file.includes('/') || d.file.startsWith('.') || (d.format !== 'raw' && d.format !== 'qcow2')) {
      throw new Error(`'${dir}': ${MANIFEST}: disk ${i} is malformed`);
    }
    return { file: join(resolve(dir), d.file), format: d.format, readOnly: d.readOnly === true };
  });
}

export interface BundleSource {
  /** The running disk, with tracking available. */
  disk: DirtyBlock;
  format: 'raw' | 'qcow2';
  readOnly: boolean;
  /** Its path (recorded in the manifest). */
  file: string;
}

/**
 * Write a bundle at `file` while the guest runs: each disk is copied to a fresh image in a
 * temporary directory next to it (all, then rounds of what the guest dirtied), then
 * `freeze` is called to pause and drain the guest, take its state and run `finalPass` (the
 * last dirty granules) before it resumes; so the copies are the disks at the instant the
 * state was taken. `encode` then gets the copies' identities and returns the snapshot's
 * bytes. Every file is fsynced, then the directory is renamed into place (an existing
 * bundle there is replaced). On failure nothing is left behind and the disks are untouched.
 */
export async function writeBundle(file: string, sources: readonly BundleSource[],
  freeze: (finalPass: () => Promise<void>) => Promise<void>,
  encode: (disks: DiskIdentity[]) => Promise<Uint8Array>): Promise<{ bytes: number; diskBytes: number }> {
  const path = resolve(file);
  const parent = dirname(path);
  if (statSync(parent, { throwIfNoEntry: false })?.isDirectory() !== true) throw new Error(`cannot write bundle '${file}': no directory ${parent}`);
  const existing = statSync(path, { throwIfNoEntry: false });
  if (existing && !(existing.isDirectory() && statSync(join(path, MANIFEST), { throwIfNoEntry: false }))) {
    throw new Error(`cannot write bundle '${file}': it exists and is not a bundle`);
  }
  const tmp = join(parent, `.${basename(path)}.tmp-${process.pid}-${Date.now()}`);
  mkdirSync(tmp, { mode: 0o700 });
  const targets: BlockBackend[] = [];
  const names = sources.map((s, i) => `disk${i}.${s.format}`);
  let diskBytes = 0;
  try {
    for (const [i, s] of sources.entries()) {
      await createImage(join(tmp, names[i]), s.format, s.disk.sizeBytes);
      targets.push(await openTarget(join(tmp, names[i]), s.format));
    }
    for (const s of sources) s.disk.startTracking();
    for (const [i, s] of sources.entries()) diskBytes += await precopy(s.disk, targets[i]);
    await freeze(async () => { for (const [i, s] of sources.entries()) diskBytes += await finalPass(s.disk, targets[i]); });
    for (const s of sources) s.disk.stopTracking();
    for (const t of targets.splice(0)) await t.close(); // flush: fdatasync
    const ids = sources.map((s, i) => ({ ...diskIdentity(join(tmp, names[i]), s.format, s.readOnly), path: join(path, names[i]) }));
    const bytes = await encode(ids);
    const manifest: BundleManifest = {
      typevisorBundle: 1,
      disks: sources.map((s, i) => ({ file: names[i], format: s.format, readOnly: s.readOnly, sizeBytes: s.disk.sizeBytes, source: resolve(s.file) })),
    };
    writeDurable(join(tmp, MANIFEST), new TextEncoder().encode(JSON.stringify(manifest, null, 2) + '\n'));
    writeDurable(join(tmp, BUNDLE_SNAPSHOT), bytes);
    syncDir(tmp);
    if (existing) {
      const old = join(parent, `.${basename(path)}.old-${process.pid}-${Date.now()}`);
      renameSync(path, old);
      try { renameSync(tmp, path); } catch (e) { renameSync(old, path); throw e; } // the old bundle stays
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, path);
    }
    syncDir(parent);
    return { bytes: bytes.length, diskBytes };
  } catch (e) {
    for (const s of sources) s.disk.stopTracking();
    await Promise.allSettled(targets.map((t) => t.close()));
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`cannot write bundle '${file}': ${(e as Error).message}`);
  }
}

function writeDurable(path: string, bytes: Uint8Array): void {
  writeFileSync(path, bytes, { mode: 0o600, flag: 'wx' });
  const fd = openSync(path, 'r+');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

/**
 * A byte-exact copy of a bundle's disk image for a VM to run on, so the bundle stays as it
 * was saved and restores any number of times: read in 1 MiB pieces, all-zero pieces left as
 * holes (a sparse image stays sparse), fsynced, renamed into place, and given the source's
 * modification time, so the copy has the identity the snapshot recorded (size, first 64 KiB,
 * mtime; the path is not part of it). Asynchronous: a daemon keeps serving meanwhile.
 */
export async function copyDiskExact(src: string, dst: string): Promise<void> {
  const { open, rename, rm, stat, utimes } = await import('node:fs/promises');
  const st = await stat(src);
  const tmp = `${dst}.part`;
  const inF = await open(src, 'r');
  let outF: Awaited<ReturnType<typeof open>> | null = null;
  try {
    outF = await open(tmp, 'w', 0o600);
    const buf = new Uint8Array(1 << 20);
    for (let off = 0; off < st.size;) {
      const { bytesRead } = await inF.read(buf, 0, Math.min(buf.length, st.size - off), off);
      if (bytesRead === 0) throw new Error(`${src}: ended at ${off} of ${st.size} bytes`);
      const piece = buf.subarray(0, bytesRead);
      if (!isZero(piece)) await outF.write(piece, 0, bytesRead, off);
      off += bytesRead;
    }
    await outF.truncate(st.size);
    await outF.sync();
    await outF.close();
    outF = null;
    await utimes(tmp, st.atimeMs / 1000, st.mtimeMs / 1000);
    await rename(tmp, dst);
    syncDir(dirname(dst));
  } catch (e) {
    await outF?.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  } finally {
    await inF.close();
  }
}

function isZero(b: Uint8Array): boolean {
  if (b.byteOffset % 8 !== 0) return b.every((x) => x === 0);
  const w = new BigUint64Array(b.buffer, b.byteOffset, b.length >>> 3);
  for (let i = 0; i < w.length; i++) if (w[i] !== 0n) return false;
  for (let i = w.length << 3; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}
