/**
 * `typevisor img create|info|convert|check`: the common qemu-img cases, in qemu-img's spelling
 * and exit statuses (check: 0 clean, 2 corruption, 3 leaks only, 1 check failed, 63 unsupported).
 */
import { statSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { UserError } from '../host/images.js';
import { DiskError, openDisk, probeFormat, type DiskFormat } from '../host/storage/index.js';
import { NodeFile } from '../host/storage/node-file.js';
import { readQcow2Header, createQcow2, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, type Qcow2Header } from '../host/storage/qcow2-format.js';
import { checkQcow2 } from '../host/storage/check.js';
import { lockImage } from '../host/storage/lock.js';
import { parseFlags, USAGE_STATUS, type Parsed } from './args.js';

export interface ImgIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

export const IMG_HELP = `typevisor img create [-f raw|qcow2] [-b BACKING [-F FMT]] [-o cluster_size=N] FILE [SIZE]
typevisor img info [-f FMT] [--output human|json] FILE
typevisor img convert [-f FMT] [-O raw|qcow2] IN OUT
typevisor img check [-f FMT] [-r leaks] [--output human|json] FILE
  SIZE in bytes or with a K/M/G/T suffix (rounded up to 512 bytes).
`;

function one(p: Parsed, name: string): string | undefined { return p.flags.get(name)?.[0]; }

function format(text: string | undefined, flag: string): DiskFormat | undefined {
  if (text === undefined) return undefined;
  if (text === 'raw' || text === 'qcow2') return text;
  throw new UserError(`img: unsupported format '${text}' for ${flag} (raw or qcow2)`, USAGE_STATUS);
}

/** qemu-img sizes: plain numbers are bytes; k/K, M, G, T, P, E suffixes are powers of 1024. */
export function parseImgSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKMGTPE]?)[bB]?$/.exec(text.trim());
  if (!m) throw new UserError(`img: invalid size '${text}' (examples: 10G, 512M, 1048576)`, USAGE_STATUS);
  const exp = ' KMGTPE'.indexOf(m[2].toUpperCase() || ' ');
  const bytes = Math.ceil(Number(m[1]) * 1024 ** exp);
  if (!Number.isSafeInteger(bytes)) throw new UserError(`img: size '${text}' too large`, USAGE_STATUS);
  return Math.ceil(bytes / 512) * 512;
}

/** QEMU's size_to_str: three significant digits and a binary unit. */
export function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let v = n, u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${Number(v.toPrecision(3))} ${units[u]}`;
}

async function withFile<T>(path: string, fn: (f: NodeFile) => Promise<T>): Promise<T> {
  const f = await NodeFile.open(path, false);
  try { return await fn(f); } finally { await f.close(); }
}

async function cmdCreate(argv: readonly string[], io: ImgIo): Promise<number> {
  const p = parseFlags(argv, [
    { name: 'f', value: true }, { name: 'b', value: true }, { name: 'F', value: true }, { name: 'o', value: true, repeat: true },
    { name: 'q', value: false },
  ], 'img create');
  const fmt = format(one(p, 'f'), '-f') ?? 'raw';
  const [file, sizeText, extra] = p.positional;
  if (!file || extra !== undefined) throw new UserError('img create: expected FILE [SIZE]', USAGE_STATUS);
  let clusterBits = 16;
  for (const opts of p.flags.get('o') ?? []) {
    for (const kv of opts.split(',')) {
      const [k, v] = kv.split('=');
      if (k === 'cluster_size' && v !== undefined) {
        const cs = parseImgSize(v);
        clusterBits = Math.log2(cs);
        if (!Number.isInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) throw new UserError(`img create: cluster_size must be a power of two between 512 and 2M`, USAGE_STATUS);
      } else if (k === 'backing_file' && v) p.flags.set('b', [v]);
      else if (k === 'backing_fmt' && v) p.flags.set('F', [v]);
      else throw new UserError(`img create: unsupported option '${kv}' (cluster_size, backing_file, backing_fmt)`, USAGE_STATUS);
    }
  }
  const backing = one(p, 'b');
  let backingFmt = format(one(p, 'F'), '-F');
  if (backing !== undefined && fmt !== 'qcow2') throw new UserError('img create: a backing file needs -f qcow2', USAGE_STATUS);
  let size: number | undefined = sizeText === undefined ? undefined : parseImgSize(sizeText);
  if (backing !== undefined) {
    // Relative backing names are relative to the new image, as QEMU stores them.
    const bpath = isAbsolute(backing) ? backing : resolve(dirname(file), backing);
    const b = await openDisk({ file: bpath, format: backingFmt, readOnly: true });
    try {
      size ??= b.sizeBytes;
      if (backingFmt === undefined) backingFmt = await withFile(bpath, probeFormat);
    } finally { await b.close(); }
  }
  if (size === undefined) throw new UserError('img create: a SIZE is needed (or a backing file)', USAGE_STATUS);
  const lock = lockImage(file, true); // never truncate an image a VM is using
  const f = await NodeFile.open(file, true, true).catch((e: unknown) => { lock.release(); throw e; });
  try {
    if (fmt === 'raw') await f.truncate(size);
    else await createQcow2(f, { size, clusterBits, backingFile: backing, backingFormat: backingFmt });
    await f.sync();
  } finally { await f.close(); lock.release(); }
  if (!p.flags.has('q')) {
    io.stdout.write(`Formatting '${file}', fmt=${fmt}${fmt === 'qcow2' ? ` cluster_size=${2 ** clusterBits}` : ''}` +
      `${backing !== undefined ? ` backing_file=${backing} backing_fmt=${backingFmt}` : ''} size=${size}\n`);
  }
  return 0;
}

interface Info { file: string; format: DiskFormat; size: number; actual: number; h: Qcow2Header | null }

async function readInfo(file: string, fmtText: string | undefined): Promise<Info> {
  return withFile(file, async (f) => {
    const fmt = format(fmtText, '-f') ?? await probeFormat(f);
    let actual = 0;
    try { actual = statSync(file).blocks * 512; } catch { /* unknown */ }
    if (fmt === 'raw') return { file, format: fmt, size: await f.size(), actual, h: null };
    const h = await readQcow2Header(f);
    return { file, format: fmt, size: h.size, actual, h };
  });
}

async function cmdInfo(argv: readonly string[], io: ImgIo): Promise<number> {
  const p = parseFlags(argv, [{ name: 'f', value: true }, { name: 'output', value: true }, { name: 'U', aliases: ['force-share'], value: false }], 'img info');
  const out = one(p, 'output') ?? 'human';
  if (out !== 'human' && out !== 'json') throw new UserError(`img info: --output must be human or json`, USAGE_STATUS);
  const [file, extra] = p.positional;
  if (!file || extra !== undefined) throw new UserError('img info: expected FILE', USAGE_STATUS);
  const i = await readInfo(file, one(p, 'f'));
  const h = i.h;
  const specific = h ? {
    compat: h.version === 3 ? '1.1' : '0.10',
    'compression-type': 'zlib',
    'lazy-refcounts': (h.compatible & 1) !== 0,
    'refcount-bits': 1 << h.refcountOrder,
    corrupt: (h.incompatible & INCOMPAT_CORRUPT) !== 0,
    'extended-l2': false,
  } : null;
  const backingFull = h?.backingFile ? (isAbsolute(h.backingFile) ? h.backingFile : resolve(dirname(file), h.backingFile)) : null;
  if (out === 'json') {
    const j: Record<string, unknown> = {
      'virtual-size': i.size, filename: file,
      ...(h ? { 'cluster-size': 2 ** h.clusterBits } : {}),
      format: i.format, 'actual-size': i.actual,
      ...(h ? { 'format-specific': { type: 'qcow2', data: specific } } : {}),
      ...(h?.backingFile ? { 'backing-filename': h.backingFile, 'full-backing-filename': backingFull, ...(h.backingFormat ? { 'backing-filename-format': h.backingFormat } : {}) } : {}),
      'dirty-flag': h ? (h.incompatible & INCOMPAT_DIRTY) !== 0 : false,
    };
    io.stdout.write(`${JSON.stringify(j, null, 4)}\n`);
    return 0;
  }
  let s = `image: ${file}\nfile format: ${i.format}\nvirtual size: ${humanSize(i.size)} (${i.size} bytes)\ndisk size: ${humanSize(i.actual)}\n`;
  if (h && specific) {
    s += `cluster_size: ${2 ** h.clusterBits}\n`;
    if (h.backingFile) s += `backing file: ${h.backingFile}${backingFull !== h.backingFile ? ` (actual path: ${backingFull})` : ''}\n`;
    if (h.backingFormat) s += `backing file format: ${h.backingFormat}\n`;
    if (h.nbSnapshots) s += `Snapshot list: ${h.nbSnapshots} snapshot(s)\n`;
    s += `Format specific information:\n    compat: ${specific.compat}\n    compression type: zlib\n    lazy refcounts: ${specific['lazy-refcounts']}\n` +
      `    refcount bits: ${specific['refcount-bits']}\n    corrupt: ${specific.corrupt}\n    extended l2: false\n`;
  }
  io.stdout.write(s);
  return 0;
}

const CONVERT_CHUNK = 1 << 20;
/** The most one block-status query covers (bounds its scan of the L2 tables). */
const STATUS_SPAN = 2 ** 30;

async function cmdConvert(argv: readonly string[], io: ImgIo): Promise<number> {
  const p = parseFlags(argv, [{ name: 'f', value: true }, { name: 'O', value: true }, { name: 'p', value: false }, { name: 'q', value: false }], 'img convert');
  const inFmt = format(one(p, 'f'), '-f');
  const outFmt = format(one(p, 'O'), '-O') ?? 'raw';
  const [src, dst, extra] = p.positional;
  if (!src || !dst || extra !== undefined) throw new UserError('img convert: expected IN OUT', USAGE_STATUS);
  try {
    const a = statSync(src), b = statSync(dst);
    if (a.dev === b.dev && a.ino === b.ino) throw new UserError(`img convert: '${dst}' is the input file`, USAGE_STATUS);
  } catch (e) { if (e instanceof UserError) throw e; /* the output does not exist yet */ }
  const input = await openDisk({ file: src, format: inFmt, readOnly: true });
  try {
    const size = input.sizeBytes;
    const lock = lockImage(dst, true);
    try {
      const f = await NodeFile.open(dst, true, true);
      try {
        if (outFmt === 'raw') await f.truncate(size);
        else await createQcow2(f, { size });
      } finally { await f.close(); }
    } finally { lock.release(); }
    const out = await openDisk({ file: dst, format: outFmt });
    try {
      const buf = new Uint8Array(CONVERT_CHUNK);
      // Ranges known to read as zeroes (unallocated qcow2 clusters) are not even read;
      // dataEnd is where the last block-status answer's data extent ends.
      let dataEnd = 0;
      for (let off = 0; off < size;) {
        if (off >= dataEnd) {
          const st = input.blockStatus ? await input.blockStatus(off, Math.min(size - off, STATUS_SPAN)) : { zero: false, length: size - off };
          if (st.zero) { off += st.length; continue; }
          dataEnd = off + st.length;
        }
        const chunk = buf.subarray(0, Math.min(CONVERT_CHUNK, dataEnd - off));
        await input.read(off, chunk);
        // Zero runs stay holes (raw) or unallocated clusters (qcow2): write only non-zero 64 KiB pieces.
        for (let s = 0; s < chunk.length; s += 65536) {
          const piece = chunk.subarray(s, Math.min(chunk.length, s + 65536));
          if (!isZero(piece)) await out.write(off + s, piece);
        }
        off += chunk.length;
      }
      await out.flush();
    } finally { await out.close(); }
  } finally { await input.close(); }
  void io;
  return 0;
}

function isZero(b: Uint8Array): boolean {
  const w = b.length % 4 === 0 && b.byteOffset % 4 === 0 ? new Uint32Array(b.buffer, b.byteOffset, b.length / 4) : b;
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
  return true;
}

async function cmdCheck(argv: readonly string[], io: ImgIo): Promise<number> {
  const p = parseFlags(argv, [{ name: 'f', value: true }, { name: 'output', value: true }, { name: 'q', value: false }, { name: 'U', aliases: ['force-share'], value: false }, { name: 'r', value: true }], 'img check');
  const repair = one(p, 'r');
  if (repair !== undefined && repair !== 'leaks') throw new UserError(`img check: -r ${repair}: only '-r leaks' is supported (use qemu-img check -r all for corruption)`, USAGE_STATUS);
  const out = one(p, 'output') ?? 'human';
  if (out !== 'human' && out !== 'json') throw new UserError(`img check: --output must be human or json`, USAGE_STATUS);
  const [file, extra] = p.positional;
  if (!file || extra !== undefined) throw new UserError('img check: expected FILE', USAGE_STATUS);
  let r, repaired = 0;
  try {
    if (repair) {
      const lock = lockImage(file, true);
      const f = await NodeFile.open(file, true);
      try {
        const fmt = format(one(p, 'f'), '-f') ?? await probeFormat(f);
        if (fmt === 'qcow2') {
          const first = await checkQcow2(f, { repairLeaks: true });
          if (first.errors) r = first;
          else { repaired = first.leaks; await f.sync(); r = await checkQcow2(f); }
        } else r = null;
      } finally { await f.close(); lock.release(); }
    } else {
      r = await withFile(file, async (f) => {
        const fmt = format(one(p, 'f'), '-f') ?? await probeFormat(f);
        return fmt === 'qcow2' ? await checkQcow2(f) : null;
      });
    }
  } catch (e) {
    if (e instanceof DiskError) { io.stderr.write(`typevisor: ${e.message}\n`); return 1; }
    throw e;
  }
  if (!r) { io.stderr.write(`typevisor: ${basename(file)}: this image format does not support checks\n`); return 63; }
  const pct = (n: number): string => (r.totalClusters ? (100 * n) / r.totalClusters : 0).toFixed(2);
  if (out === 'json') {
    io.stdout.write(`${JSON.stringify({
      'image-end-offset': r.imageEndOffset, 'total-clusters': r.totalClusters, 'check-errors': 0,
      'allocated-clusters': r.allocatedClusters, filename: file, format: 'qcow2',
      'fragmented-clusters': r.fragmentedClusters, 'compressed-clusters': r.compressedClusters,
      ...(r.leaks ? { leaks: r.leaks } : {}), ...(r.errors ? { 'corruptions': r.errors } : {}),
    }, null, 4)}\n`);
  } else {
    let s = r.messages.map((m) => `${m}\n`).join('');
    if (repaired) s = `The following inconsistencies were found and repaired:\n\n    ${repaired} leaked clusters\n    0 corruptions\n\nDouble checking the fixed image now...\n${s}`;
    if (r.errors) s += `\n${r.errors} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`;
    if (r.leaks) s += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
    if (!r.errors && !r.leaks) s += 'No errors were found on the image.\n';
    s += `${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters)}% allocated, ${pct(r.fragmentedClusters)}% fragmented, ${pct(r.compressedClusters)}% compressed clusters\n`;
    s += `Image end offset: ${r.imageEndOffset}\n`;
    if (!p.flags.has('q')) io.stdout.write(s);
  }
  return r.errors ? 2 : r.leaks ? 3 : 0;
}

export async function cmdImg(argv: readonly string[], io: ImgIo): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'create': return await cmdCreate(rest, io);
      case 'info': return await cmdInfo(rest, io);
      case 'convert': return await cmdConvert(rest, io);
      case 'check': return await cmdCheck(rest, io);
      case 'help': case '--help': case '-h': case undefined:
        io.stdout.write(IMG_HELP);
        return sub === undefined ? USAGE_STATUS : 0;
      default: throw new UserError(`img: unknown command '${sub}' (create, info, convert, check)`, USAGE_STATUS);
    }
  } catch (e) {
    if (e instanceof DiskError) throw new UserError(e.message);
    throw e;
  }
}
