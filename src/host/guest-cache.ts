/**
 * Where the default guest (kernel Image + initramfs) lives: a per-user cache directory,
 * filled by `typevisor image build`. $TYPEVISOR_GUEST_DIR points at an existing guest
 * directory instead (tests and CI use the prebuilt one).
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const GUEST_KERNEL = 'Image';
export const GUEST_INITRD = 'initramfs.cpio.gz';

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TYPEVISOR_CACHE_DIR) return env.TYPEVISOR_CACHE_DIR;
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'typevisor');
}

/** The directory `typevisor image build` writes and `typevisor run` reads. */
export function guestDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.TYPEVISOR_GUEST_DIR || join(cacheDir(env), 'guest');
}

export interface GuestFiles { kernel: string; initrd: string }

export function findDefaultGuest(env: NodeJS.ProcessEnv = process.env): GuestFiles | null {
  const dir = guestDir(env);
  const kernel = join(dir, GUEST_KERNEL), initrd = join(dir, GUEST_INITRD);
  return existsSync(kernel) && existsSync(initrd) ? { kernel, initrd } : null;
}
