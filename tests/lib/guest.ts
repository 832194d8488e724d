/**
 * Where tests and benchmarks find a Linux guest (kernel Image + initramfs), the way a
 * user's machine has one. In order:
 *   1. $TYPEVISOR_GUEST_DIR, if set (an error if it holds no guest: it was asked for);
 *   2. ../shared/guest next to the repository (the prebuilt guests CI keeps, to save time);
 *   3. the cached default guest that `npm start` / `typevisor image build` leaves
 *      (`typevisor image path`).
 * With none of them, `requireGuest()` throws a one-line error naming the build command, so
 * a test that needs a kernel fails with something to do instead of ENOENT.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDir, GUEST_INITRD, GUEST_KERNEL } from '../../src/host/guest-cache.js';

/** The repository root (this file runs from dist/tests/lib). */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export type GuestSource = 'TYPEVISOR_GUEST_DIR' | '../shared/guest' | 'cache';

export interface FoundGuest {
  dir: string;
  kernel: string;
  initrd: string;
  /** Which rule of the lookup found it. */
  source: GuestSource;
}

export const BUILD_HINT = 'npm run guest (typevisor image build, a few minutes)';

export class GuestNotFound extends Error {}

function filesIn(dir: string): { kernel: string; initrd: string } | null {
  const kernel = join(dir, GUEST_KERNEL), initrd = join(dir, GUEST_INITRD);
  return existsSync(kernel) && existsSync(initrd) ? { kernel, initrd } : null;
}

/**
 * The lookup itself, with its inputs explicit so it can be tested.
 * `sharedDir` is where the prebuilt guests would be (default: ../shared/guest).
 */
export function findGuest(env: NodeJS.ProcessEnv = process.env,
  sharedDir: string = resolve(repoRoot, '..', 'shared', 'guest')): FoundGuest {
  const fromEnv = env.TYPEVISOR_GUEST_DIR;
  if (fromEnv) {
    const f = filesIn(fromEnv);
    if (!f) throw new GuestNotFound(`TYPEVISOR_GUEST_DIR=${fromEnv} holds no ${GUEST_KERNEL} + ${GUEST_INITRD}; unset it or run: ${BUILD_HINT}`);
    return { dir: fromEnv, ...f, source: 'TYPEVISOR_GUEST_DIR' };
  }
  const shared = filesIn(sharedDir);
  if (shared) return { dir: sharedDir, ...shared, source: '../shared/guest' };
  const cached = join(cacheDir(env), 'guest');
  const c = filesIn(cached);
  if (c) return { dir: cached, ...c, source: 'cache' };
  throw new GuestNotFound(`no Linux guest (not in $TYPEVISOR_GUEST_DIR, ${sharedDir} or ${cached}); build it with: ${BUILD_HINT}`);
}

/** The guest for this run; throws GuestNotFound (one line, naming the build command). */
export function requireGuest(): FoundGuest {
  return findGuest();
}
