/**
 * HostFile over node:fs: the only format-independent storage code that imports Node.
 * A read the page cache can serve is done at once (nowait.ts); the others, and writes, go
 * through fs.read/fs.write on the handle's descriptor: a FileHandle's own read allocates a
 * promise request with its own stat buffer each call (~8 µs of the vCPU thread per 4 KiB
 * guest read, measured).
 */
import { read, write } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { DiskError, type HostFile } from './file.js';
import { nativeIo, type NativeIo } from './nowait.js';

export class NodeFile implements HostFile {
  /** Reads served from the page cache at once, and reads sent to the thread pool. */
  readonly reads = { inline: 0, pool: 0 };
  private io: NativeIo | null = nativeIo();
  private constructor(readonly name: string, private readonly fh: FileHandle) {}

  static async open(path: string, writable: boolean, create = false): Promise<NodeFile> {
    try {
      const fh = await open(path, create ? 'w+' : writable ? 'r+' : 'r');
      const st = await fh.stat();
      if (!st.isFile()) {
        await fh.close();
        throw new DiskError(`'${path}': not a regular file`);
      }
      return new NodeFile(path, fh);
    } catch (e) {
      if (e instanceof DiskError) throw e;
      throw new DiskError(`cannot open '${path}'${writable ? ' for writing' : ''}: ${errnoText(e)}`);
    }
  }

  pread(dst: Uint8Array, position: number): Promise<number> {
    const io = this.io;
    if (io !== null && dst.length > 0) {
      const n = io.preadNowait(this.fh.fd, dst, position);
      if (n >= 0) { this.reads.inline++; return Promise.resolve(n); }
      // Not cached (EAGAIN), or an error the pool reports in its own words; a file system
      // without RWF_NOWAIT reads through the pool from now on.
      if (n === -io.errno.EOPNOTSUPP || n === -io.errno.ENOSYS) this.io = null;
    }
    this.reads.pool++;
    return new Promise((resolve, reject) => {
      const fail = (e: unknown): void => reject(new DiskError(`'${this.name}': read error at ${position}: ${errnoText(e)}`));
      try {
        read(this.fh.fd, dst, 0, dst.length, position, (e, n) => { if (e) fail(e); else resolve(n); });
      } catch (e) { fail(e); } // (a closed handle's fd is -1: fs.read throws at once)
    });
  }
  pwrite(src: Uint8Array, position: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => reject(new DiskError(`'${this.name}': write error at ${position}: ${why}`));
      const step = (done: number): void => {
        if (done >= src.length) { resolve(); return; }
        try {
          write(this.fh.fd, src, done, src.length - done, position + done, (e, n) => {
            if (e) fail(errnoText(e));
            else if (n <= 0) fail('short write');
            else step(done + n);
          });
        } catch (e) { fail(errnoText(e)); }
      };
      step(0);
    });
  }
  async sync(): Promise<void> {
    try { await this.fh.datasync(); } catch (e) { throw new DiskError(`'${this.name}': fsync failed: ${errnoText(e)}`); }
  }
  async size(): Promise<number> {
    try { return (await this.fh.stat()).size; } catch (e) { throw new DiskError(`'${this.name}': stat failed: ${errnoText(e)}`); }
  }
  async truncate(length: number): Promise<void> {
    try { await this.fh.truncate(length); } catch (e) { throw new DiskError(`'${this.name}': truncate failed: ${errnoText(e)}`); }
  }
  async close(): Promise<void> {
    try { await this.fh.close(); } catch { /* already closed */ }
  }
  async stat(): Promise<{ dev: number; ino: number }> {
    const st = await this.fh.stat();
    return { dev: st.dev, ino: st.ino };
  }
}

export function errnoText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT': return 'no such file';
    case 'EACCES': case 'EPERM': return 'permission denied';
    case 'EISDIR': return 'is a directory';
    case 'EROFS': return 'read-only file system';
    case 'ENOSPC': return 'no space left on device';
    default: return (e as Error).message ?? String(e);
  }
}
