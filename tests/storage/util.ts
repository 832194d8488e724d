/** Helpers for the storage tests: temp dirs, qemu-img/qemu-io runs, seeded data. */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { after } from 'node:test';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prng } from '../lib/prng.js';

/** A temporary directory, removed when the test file is done (KEEP_TMP=1 keeps it). */
export function tmp(tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `typevisor-storage-${tag}-`));
  if (!process.env.KEEP_TMP) after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs a qemu tool; throws with its stderr on failure. */
export function qemu(tool: 'qemu-img' | 'qemu-io', ...args: string[]): string {
  return execFileSync(tool, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs a qemu tool and returns status and output without throwing. */
export function qemuStatus(tool: 'qemu-img' | 'qemu-io', ...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(tool, args, { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

/** The image's guest-visible bytes according to QEMU. */
export function qemuRawBytes(file: string, dir: string, fmt?: string): Uint8Array {
  const out = join(dir, `raw-${Math.random().toString(36).slice(2)}.img`);
  qemu('qemu-img', 'convert', ...(fmt ? ['-f', fmt] : []), '-O', 'raw', file, out);
  return new Uint8Array(readFileSync(out));
}

/** Seeded bytes: compressible runs mixed with noise. */
export function pattern(next: () => number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  const fill = next() & 0xff, noisy = (next() & 3) === 0;
  for (let i = 0; i < len; i++) b[i] = noisy ? next() & 0xff : (fill + (i >> 9)) & 0xff;
  return b;
}

export { prng };

/** First differing offset of two byte arrays, or -1. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
