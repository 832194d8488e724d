/**
 * Copies of a running VM's disks (snapshot bundles, live migration with --copy-storage):
 * new target images, and a copy made in rounds on top of dirty tracking (dirty.ts).
 * Targets keep the source's format; a qcow2 target is a fresh image with no backing file,
 * the copy reads the guest's view through the whole chain, so the chain is flattened.
 */
import { closeSync, fsyncSync, openSync, statSync } from 'node:fs';
import type { BlockBackend } from '../../devices/device.js';
import { NodeFile } from './node-file.js';
import { createQcow2, isQcow2, readQcow2Header } from './qcow2-format.js';
import { openDisk, type DiskFormat } from './index.js';
import { DiskError } from './file.js';
import { allGranules, copyGranules, type DirtyBlock } from './dirty.js';

/** A disk's format (given or probed) and virtual size in bytes. */
export async function diskInfo(file: string, format?: DiskFormat): Promise<{ format: DiskFormat; sizeBytes: number }> {
  const f = await NodeFile.open(file, false);
  try {
    const fmt = format ?? ((await isQcow2(f)) ? 'qcow2' : 'raw');
    if (fmt === 'raw') return { format: fmt, sizeBytes: Math.floor((await f.size()) / 512) * 512 };
    const h = await readQcow2Header(f);
    return { format: fmt, sizeBytes: Math.floor(h.size / 512) * 512 };
  } finally {
    await f.close();
  }
}

/**
 * Create an empty image at `path` (which must not exist): raw as a sparse file of `sizeBytes`,
 * qcow2 as a version 3 image of that virtual size with 64 KiB clusters and no backing file.
 */
export async function createImage(path: string, format: DiskFormat, sizeBytes: number): Promise<void> {
  try { statSync(path); throw new DiskError(`'${path}': already exists`); } catch (e) { if (e instanceof DiskError) throw e; }
  const f = await NodeFile.open(path, true, true);
  try {
    if (format === 'raw') await f.truncate(sizeBytes);
    else await createQcow2(f, { size: sizeBytes });
    await f.sync();
  } finally {
    await f.close();
  }
}

/** Open a target made by createImage for writing (locked like any disk). */
export function openTarget(path: string, format: DiskFormat): Promise<BlockBackend> {
  return openDisk({ file: path, format, readOnly: false });
}

/** fsync a directory (entries created or renamed in it); not every file system can. */
export function syncDir(dir: string): void {
  try {
    const d = openSync(dir, 'r');
    try { fsyncSync(d); } finally { closeSync(d); }
  } catch { /* best effort */ }
}

/** Pre-copy rounds stop once a round has at most this many dirty granules (4 MiB) or after MAX_ROUNDS. */
const SMALL = 64;
const MAX_ROUNDS = 5;

/**
 * Copy a tracked disk to a fresh target while the guest runs: everything once, then the
 * granules dirtied meanwhile, until few are left. The caller finishes with `finalPass`
 * while the guest is paused and drained. Tracking must already be on.
 */
export async function precopy(src: DirtyBlock, dst: BlockBackend): Promise<number> {
  let bytes = await copyGranules(src.inner, dst, allGranules(src), true);
  for (let r = 0; r < MAX_ROUNDS && src.dirtyCount > SMALL; r++) bytes += await copyGranules(src.inner, dst, src.takeDirty(), false);
  return bytes;
}

/** The last pass: what was dirtied since the last round (call it with the guest paused and drained). */
export function finalPass(src: DirtyBlock, dst: BlockBackend): Promise<number> {
  return copyGranules(src.inner, dst, src.takeDirty(), false);
}
