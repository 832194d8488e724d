/**
 * Loading guest images from host files: clear errors that name the file, and transparent
 * gunzip (a gzip'd kernel or initrd is accepted, as QEMU accepts gzip'd kernels).
 */
import { readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

/** A user-facing error: the CLI prints the message (no stack trace) and exits with `status`. */
export class UserError extends Error {
  constructor(message: string, readonly status = 1) { super(message); this.name = 'UserError'; }
}

/** Largest image accepted (the guest's RAM is at most 3.75 GiB anyway). */
const MAX_IMAGE = 0xf000_0000;

export function isGzip(b: Uint8Array): boolean {
  return b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
}

/** Read an image file for `what` ("kernel", "initrd", "firmware"); gunzip when compressed. */
export function loadImage(path: string, what: string, opts: { gunzip?: boolean } = {}): Uint8Array {
  let data: Uint8Array;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new UserError(`${what} '${path}' is not a regular file`);
    if (st.size === 0) throw new UserError(`${what} '${path}' is empty`);
    if (st.size > MAX_IMAGE) throw new UserError(`${what} '${path}' is too large (${st.size} bytes)`);
    const b = readFileSync(path);
    data = new Uint8Array(b.buffer, b.byteOffset, b.byteLength); // (a view: a kernel is tens of MB)
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (e as Error).message;
    throw new UserError(`cannot read ${what} '${path}': ${why}`);
  }
  if ((opts.gunzip ?? true) && isGzip(data)) {
    try {
      data = new Uint8Array(gunzipSync(data, { maxOutputLength: MAX_IMAGE }));
    } catch (e) {
      throw new UserError(`${what} '${path}' looks gzip-compressed but does not decompress: ${(e as Error).message}`);
    }
  }
  return data;
}
