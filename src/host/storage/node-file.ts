/** HostFile over node:fs/promises: the only format-independent storage code that imports Node. */
import { open, type FileHandle } from 'node:fs/promises';
import { DiskError, type HostFile } from './file.js';

export class NodeFile implements HostFile {
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

  async pread(dst: Uint8Array, position: number): Promise<number> {
    try {
      return (await this.fh.read(dst, 0, dst.length, position)).bytesRead;
    } catch (e) { throw new DiskError(`'${this.name}': read error at ${position}: ${errnoText(e)}`); }
  }
  async pwrite(src: Uint8Array, position: number): Promise<void> {
    try {
      let done = 0;
      while (done < src.length) {
        const { bytesWritten } = await this.fh.write(src, done, src.length - done, position + done);
        if (bytesWritten <= 0) throw new Error('short write');
        done += bytesWritten;
      }
    } catch (e) { throw new DiskError(`'${this.name}': write error at ${position}: ${errnoText(e)}`); }
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
