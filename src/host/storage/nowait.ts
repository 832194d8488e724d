/**
 * Reads that the host's page cache can serve, done at once on the calling thread:
 * native/io.c's preadv2(RWF_NOWAIT), which fails with EAGAIN instead of waiting for the
 * device (io_uring tries a read inline the same way before it hands it to a worker). A
 * 4 KiB read of a cached image through libuv's thread pool costs the vCPU thread a pool
 * thread's wake-up and then an event-loop turn for the completion: a QD1 O_DIRECT guest
 * read took ~340 µs, ~265 µs with this (docs/PERFORMANCE.md). The helper is optional: not
 * built (no C compiler), not Linux, or TYPEVISOR_NOWAIT=0, and every read takes the pool.
 */
import { createRequire } from 'node:module';

export interface NativeIo {
  /** Bytes read (0 at EOF, short when only part is cached), or -errno (-EAGAIN: not cached). */
  preadNowait(fd: number, dst: Uint8Array, position: number): number;
  /** posix_fadvise(DONTNEED): 0, or -errno. Tests use it to make a read miss the cache. */
  dropCache(fd: number, length: number, position: number): number;
  /** The platform's numbers for the errors callers tell apart. */
  readonly errno: { EAGAIN: number; EOPNOTSUPP: number; ENOSYS: number; EINVAL: number; EBADF: number };
  /** 1 where preadv2 with RWF_NOWAIT exists. */
  readonly nowait: number;
}

/** Where scripts/build-native.mjs leaves the helper, from dist/src/host/storage. */
const ADDON = '../../../../native/build/Release/typevisor_io.node';

let native: NativeIo | null | undefined;
/** Why the helper is not in use, or null when it is. */
export let nativeIoMissing: string | null = null;

/** The native helper, or null (see nativeIoMissing). Loaded once. */
export function nativeIo(): NativeIo | null {
  if (native !== undefined) return native;
  native = null;
  if (process.env.TYPEVISOR_NOWAIT === '0') nativeIoMissing = 'turned off (TYPEVISOR_NOWAIT=0)';
  else {
    try {
      const m = createRequire(import.meta.url)(ADDON) as NativeIo;
      if (m.nowait === 1) native = m; else nativeIoMissing = 'preadv2 with RWF_NOWAIT is not available on this platform';
    } catch (e) {
      nativeIoMissing = `not built (npm run build builds it with node-gyp): ${(e as Error).message.split('\n')[0]}`;
    }
  }
  return native;
}
