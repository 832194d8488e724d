/**
 * Host-side ext4 tools for disk tests (Debian e2fsprogs and qemu-utils): build an image
 * from a directory, check it, read files back.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync } from 'node:fs';

const SBIN = { PATH: `/usr/sbin:/sbin:${process.env.PATH ?? ''}` };

export function md5(data: Uint8Array): string { return createHash('md5').update(data).digest('hex'); }
export function md5File(path: string): string { return md5(readFileSync(path)); }

/** mkfs.ext4 -d: a filesystem of `size` (e.g. '32M') holding `dir`. */
export function mkfsExt4(img: string, dir: string, size: string): void {
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', dir, img, size], { env: { ...process.env, ...SBIN } });
}

/** e2fsck -fn (read-only check): returns status and output; status 0 means clean. */
export function fsckClean(img: string): { status: number; out: string } {
  const r = spawnSync('e2fsck', ['-fn', img], { env: { ...process.env, ...SBIN }, encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/**
 * Replay the journal in place (`e2fsck -E journal_only -y`, as a mount does; no other
 * repair), for an image saved while the guest had it mounted: such an image is crash
 * consistent, clean once its journal is replayed. Use on a scratch copy.
 */
export function replayJournal(img: string): { status: number; out: string } {
  const r = spawnSync('e2fsck', ['-E', 'journal_only', '-y', img], { env: { ...process.env, ...SBIN }, encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** A copy with the journal replayed (e2fsck -fy), for images left behind by a killed VM. */
export function recoveredCopy(img: string, copy: string): { status: number; out: string } {
  copyFileSync(img, copy);
  const r = spawnSync('e2fsck', ['-fy', copy], { env: { ...process.env, ...SBIN }, encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** The bytes of `path` inside the image, via debugfs (no mount needed). */
export function debugfsCat(img: string, path: string): Buffer {
  return execFileSync('debugfs', ['-R', `cat ${path}`, img], { env: { ...process.env, ...SBIN }, stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20 });
}

/** debugfs ls -l of a directory, for checking a tree the guest wrote. */
export function debugfsLs(img: string, path: string): string {
  return execFileSync('debugfs', ['-R', `ls -l ${path}`, img], { env: { ...process.env, ...SBIN }, stdio: ['ignore', 'pipe', 'ignore'], encoding: 'utf8' });
}

export function qemuImg(args: string[]): { status: number; out: string } {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}
