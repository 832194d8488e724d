/**
 * Image locking. Node cannot take fcntl/OFD byte locks, so:
 *  - QEMU's locks are detected by reading /proc/locks for the image's device:inode. QEMU
 *    holds OFD locks on bytes 100.. (permissions in use) and 200.. (permissions it does not
 *    share); any of them blocks our writing, and byte 101 (QEMU is writing) blocks reading.
 *  - typevisor vs typevisor: lock files per image (keyed by device:inode) in a per-user
 *    directory: one for the writer, one per reading process, each holding the owner's pid and
 *    start time; a lock whose process is gone is stale and taken over.
 * QEMU cannot see typevisor's lock files: start QEMU on an image typevisor uses at your own risk.
 */
import { readFileSync, writeFileSync, unlinkSync, mkdirSync, statSync, readdirSync, linkSync, renameSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { DiskError } from './file.js';

const QEMU_PERM_WRITE_BYTE = 101;
const QEMU_LOCK_FIRST = 100;
const QEMU_LOCK_LAST = 299;

export function lockDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TYPEVISOR_LOCK_DIR) return env.TYPEVISOR_LOCK_DIR;
  let uid = 'user';
  try { uid = String(userInfo().uid); } catch { /* no passwd entry */ }
  return join(tmpdir(), `typevisor-locks-${uid}`);
}

function devParts(dev: number): [number, number] {
  // Linux dev_t encoding (glibc gnu_dev_major/minor).
  const big = BigInt(dev);
  const major = Number(((big >> 8n) & 0xfffn) | ((big >> 32n) & ~0xfffn));
  const minor = Number((big & 0xffn) | ((big >> 12n) & ~0xffn));
  return [major, minor];
}

interface ProcLock { start: number; end: number }

/** Byte-range locks any process holds on (dev, ino), from /proc/locks (empty where unavailable). */
export function procLocks(dev: number, ino: number, text?: string): ProcLock[] {
  let body = text;
  if (body === undefined) {
    try { body = readFileSync('/proc/locks', 'utf8'); } catch { return []; }
  }
  const [major, minor] = devParts(dev);
  const out: ProcLock[] = [];
  for (const line of body.split('\n')) {
    // "1: OFDLCK ADVISORY  READ -1 fe:00:2149102 100 101"  (a "->" prefix marks a waiter)
    const m = /^\d+:\s+(?:->\s+)?\S+\s+\S+\s+\S+\s+-?\d+\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s+(\d+)\s+(\d+|EOF)/i.exec(line.trim());
    if (!m || line.includes('->')) continue;
    if (parseInt(m[1], 16) !== major || parseInt(m[2], 16) !== minor || Number(m[3]) !== ino) continue;
    out.push({ start: Number(m[4]), end: m[5] === 'EOF' ? Number.MAX_SAFE_INTEGER : Number(m[5]) });
  }
  return out;
}

function qemuConflict(path: string, dev: number, ino: number, writable: boolean): void {
  const hit = procLocks(dev, ino).some((l) => writable
    ? l.end >= QEMU_LOCK_FIRST && l.start <= QEMU_LOCK_LAST
    : l.start <= QEMU_PERM_WRITE_BYTE && l.end >= QEMU_PERM_WRITE_BYTE);
  if (hit) {
    throw new DiskError(`'${path}' is locked: another process (QEMU?) has it open${writable ? '' : ' for writing'}; ` +
      `typevisor will not ${writable ? 'write to' : 'read'} it`);
  }
}

/** A process's start time (clock ticks since boot, /proc/PID/stat field 22), to tell a reused pid. */
function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch { return ''; }
}

function alive(pid: number, started: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try { process.kill(pid, 0); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false; }
  const now = startTime(pid);
  return started === '' || now === '' || now === started;
}

const held = new Set<string>();
/** Read locks this process holds, by reader file: how many opens share it. */
const readers = new Map<string, number>();
let exitHook = false;

function onExitCleanup(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const f of [...held, ...readers.keys()]) { try { unlinkSync(f); } catch { /* gone */ } }
  });
}

export interface ImageLock { release(): void }

/**
 * Creates `file` with its whole content at once, so no one ever reads it half written:
 * exclusive (fails with EEXIST if it exists) by link(2), else by rename(2).
 */
function writeWhole(file: string, content: string, exclusive: boolean): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, content);
  try {
    if (exclusive) linkSync(tmp, file); else renameSync(tmp, file);
  } finally {
    try { unlinkSync(tmp); } catch { /* renamed */ }
  }
}

/** pid and start time from a lock file, if its process is alive. */
function liveOwner(file: string): number | null {
  let lines: string[];
  try { lines = readFileSync(file, 'utf8').split('\n'); } catch { return null; }
  const pid = Number(lines[0]);
  return alive(pid, lines[1] ?? '') ? pid : null;
}

/**
 * Checks the image against QEMU's locks and typevisor's lock files, and takes typevisor's lock:
 * one writer and no readers, or any number of readers (a backing file is read by every overlay
 * on it). Throws a DiskError naming the file and the holder.
 */
export function lockImage(path: string, writable: boolean, env: NodeJS.ProcessEnv = process.env): ImageLock {
  let st;
  try { st = statSync(path); } catch { return { release() {} }; } // open() reports the missing file
  qemuConflict(path, st.dev, st.ino, writable);
  const dir = lockDir(env);
  const key = `${st.dev}-${st.ino}`;
  const file = join(dir, `${key}.lock`);
  const me = `${process.pid}\n${startTime(process.pid)}\n${path}\n`;
  let dirError: Error | null = null;
  try { mkdirSync(dir, { recursive: true, mode: 0o700 }); } catch (e) { dirError = e as Error; }
  if (dirError && writable) throw new DiskError(`'${path}': cannot create the lock directory ${dir}: ${dirError.message}`);
  onExitCleanup();
  const refuseWriter = (pid: number): never => {
    throw new DiskError(`'${path}' is locked: typevisor process ${pid} has it open for writing`);
  };
  if (!writable) {
    // Register first, then look for a writer: of two racing opens, one sees the other.
    const mine = join(dir, `${key}.r.${process.pid}`);
    const n = readers.get(mine) ?? 0;
    let registered = true;
    if (n === 0) {
      // Best effort: a reader that cannot register (no writable lock directory) still opens.
      try { writeWhole(mine, me, false); } catch { registered = false; }
    }
    if (registered) readers.set(mine, n + 1);
    let released = false;
    const release = (): void => {
      if (released || !registered) return;
      released = true;
      const left = (readers.get(mine) ?? 1) - 1;
      if (left > 0) { readers.set(mine, left); return; }
      readers.delete(mine);
      try { unlinkSync(mine); } catch { /* gone */ }
    };
    const pid = liveOwner(file);
    if (pid !== null) { release(); refuseWriter(pid); }
    return { release };
  }
  for (let attempt = 0; ; attempt++) {
    try {
      writeWhole(file, me, true);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new DiskError(`'${path}': cannot create lock file ${file}: ${(e as Error).message}`);
      const pid = liveOwner(file);
      if (pid !== null) refuseWriter(pid);
      if (attempt >= 3) throw new DiskError(`'${path}': cannot take the lock file ${file}`);
      try { unlinkSync(file); } catch { /* someone else removed the stale lock */ }
    }
  }
  held.add(file);
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    held.delete(file);
    try { if (Number(readFileSync(file, 'utf8').split('\n')[0]) === process.pid) unlinkSync(file); } catch { /* gone */ }
  };
  // Readers (overlays using this image as their backing file) block writing.
  let names: string[] = [];
  try { names = readdirSync(dir); } catch { /* no readers */ }
  for (const n of names) {
    if (!n.startsWith(`${key}.r.`) || n.endsWith('.tmp')) continue;
    const pid = liveOwner(join(dir, n));
    if (pid === null) { try { unlinkSync(join(dir, n)); } catch { /* gone */ } continue; }
    release();
    throw new DiskError(`'${path}' is locked: typevisor process ${pid} has it open read-only (as a disk or a backing file)`);
  }
  return { release };
}
