/**
 * Opening disks for the device models: format probing, backing chains, throw-away overlays
 * (-snapshot), locking and cache modes. Node-specific glue around raw.ts and qcow2.ts.
 */
import { inflateRawSync, constants as zc } from 'node:zlib';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { BlockBackend } from '../../devices/device.js';
import { DiskError, type HostFile } from './file.js';
import { NodeFile } from './node-file.js';
import { RawDisk } from './raw.js';
import { Qcow2Disk, type Inflate } from './qcow2.js';
import { isQcow2, createQcow2, readQcow2Header } from './qcow2-format.js';
import { lockImage, type ImageLock } from './lock.js';

export { DiskError } from './file.js';

export type DiskFormat = 'raw' | 'qcow2';
export interface DiskOptions {
  file: string;
  /** Default: probe (qcow2 magic, else raw). */
  format?: DiskFormat;
  readOnly?: boolean;
  /** Writes go to a throw-away overlay; the file is never modified. */
  snapshot?: boolean;
  /** 'none': every write is durable before it completes. */
  cache?: 'writeback' | 'none';
}

/** Longest backing chain accepted (QEMU has no fixed limit; loops and absurd chains are refused). */
export const MAX_CHAIN = 16;

export const nodeInflate: Inflate = (src, outLen) => {
  try {
    const out = inflateRawSync(src, { maxOutputLength: outLen, finishFlush: zc.Z_SYNC_FLUSH });
    return out.length === outLen ? new Uint8Array(out.buffer, out.byteOffset, out.length) : null;
  } catch {
    return null;
  }
};

export async function probeFormat(f: HostFile): Promise<DiskFormat> {
  return (await isQcow2(f)) ? 'qcow2' : 'raw';
}

function parseFormat(name: string | null | undefined, where: string): DiskFormat | undefined {
  if (name === null || name === undefined || name === '') return undefined;
  if (name === 'raw' || name === 'qcow2') return name;
  throw new DiskError(`${where}: unsupported format '${name}' (raw or qcow2)`);
}

/** Wraps a backend so that close() also releases the image lock. */
function withLock(d: BlockBackend, lock: ImageLock): BlockBackend {
  const close = d.close.bind(d);
  d.close = async () => { try { await close(); } finally { lock.release(); } };
  return d;
}

interface ChainOpts { readOnly: boolean; syncEachWrite: boolean; depth: number; seen: Set<string> }

async function openChain(file: string, format: DiskFormat | undefined, o: ChainOpts): Promise<BlockBackend> {
  if (o.depth > MAX_CHAIN) throw new DiskError(`'${file}': backing chain longer than ${MAX_CHAIN} images`);
  let key: string;
  try {
    const st = statSync(file);
    if (st.isDirectory()) throw new DiskError(`'${file}': is a directory`);
    key = `${st.dev}:${st.ino}`;
  } catch (e) {
    if (e instanceof DiskError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new DiskError(`cannot open disk image '${file}': ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
  }
  if (o.seen.has(key)) throw new DiskError(`'${file}': backing chain loop (the image is its own backing file)`);
  o.seen.add(key);
  const lock = lockImage(file, !o.readOnly);
  let f: NodeFile | null = null;
  try {
    f = await NodeFile.open(file, !o.readOnly);
    const fmt = format ?? await probeFormat(f);
    if (fmt === 'raw') return withLock(await RawDisk.open(f, o.readOnly, o.syncEachWrite, format === undefined), lock);
    // qcow2: the header names the backing file; open it read-only first.
    const h = await readQcow2Header(f);
    let backing: BlockBackend | null = null;
    if (h.backingFile !== null) {
      const bpath = isAbsolute(h.backingFile) ? h.backingFile : resolve(dirname(file), h.backingFile);
      backing = await openChain(bpath, parseFormat(h.backingFormat, `'${file}': backing file format`),
        { readOnly: true, syncEachWrite: false, depth: o.depth + 1, seen: o.seen });
    }
    try {
      return withLock(await Qcow2Disk.open(f, { readOnly: o.readOnly, backing, inflate: nodeInflate, syncEachWrite: o.syncEachWrite }), lock);
    } catch (e) {
      await backing?.close();
      throw e;
    }
  } catch (e) {
    await f?.close();
    lock.release();
    throw e;
  }
}

/** Opens a disk image for a block device. Errors are DiskErrors naming the file. */
export async function openDisk(opts: DiskOptions): Promise<BlockBackend> {
  const syncEachWrite = opts.cache === 'none';
  if (opts.cache !== undefined && opts.cache !== 'none' && opts.cache !== 'writeback') {
    throw new DiskError(`'${opts.file}': unsupported cache mode '${String(opts.cache)}' (writeback or none)`);
  }
  const format = parseFormat(opts.format, `'${opts.file}'`);
  if (!opts.snapshot) {
    return openChain(opts.file, format, { readOnly: opts.readOnly ?? false, syncEachWrite, depth: 0, seen: new Set() });
  }
  // -snapshot: the image is only read; writes go to a temporary qcow2 overlay deleted at once.
  const base = await openChain(opts.file, format, { readOnly: true, syncEachWrite: false, depth: 0, seen: new Set() });
  try {
    const dir = mkdtempSync(join(tmpdir(), 'typevisor-snapshot-'));
    const path = join(dir, 'overlay.qcow2');
    let f: NodeFile;
    try {
      f = await NodeFile.open(path, true, true);
    } finally {
      rmSync(dir, { recursive: true, force: true }); // unlinked: the open handle keeps it alive
    }
    try {
      await createQcow2(f, { size: base.sizeBytes });
      return await Qcow2Disk.open(f, { readOnly: opts.readOnly ?? false, backing: base, inflate: nodeInflate, syncEachWrite: false });
    } catch (e) {
      await f.close();
      throw e;
    }
  } catch (e) {
    await base.close();
    throw e;
  }
}
