/**
 * The guest lookup tests and benchmarks use (tests/lib/guest.ts): $TYPEVISOR_GUEST_DIR beats
 * ../shared/guest, which beats the cached default guest; with none, one line naming the
 * command that builds it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findGuest, GuestNotFound } from '../lib/guest.js';

const root = mkdtempSync(join(tmpdir(), 'typevisor-guest-lookup-'));

function guestIn(dir: string, files = ['Image', 'initramfs.cpio.gz']): string {
  mkdirSync(dir, { recursive: true });
  for (const f of files) writeFileSync(join(dir, f), f);
  return dir;
}

const envDir = guestIn(join(root, 'env'));
const shared = guestIn(join(root, 'shared', 'guest'));
const cache = join(root, 'cache');
guestIn(join(cache, 'guest'));
const nowhere = join(root, 'nowhere');

test('guest lookup: $TYPEVISOR_GUEST_DIR beats ../shared/guest beats the cache', () => {
  const a = findGuest({ TYPEVISOR_GUEST_DIR: envDir, TYPEVISOR_CACHE_DIR: cache }, shared);
  assert.deepEqual(a, { dir: envDir, kernel: join(envDir, 'Image'), initrd: join(envDir, 'initramfs.cpio.gz'), source: 'TYPEVISOR_GUEST_DIR' });
  const b = findGuest({ TYPEVISOR_CACHE_DIR: cache }, shared);
  assert.equal(b.dir, shared);
  assert.equal(b.source, '../shared/guest');
  // An empty variable counts as unset, as in the CLI.
  const c = findGuest({ TYPEVISOR_GUEST_DIR: '', TYPEVISOR_CACHE_DIR: cache }, nowhere);
  assert.equal(c.dir, join(cache, 'guest'));
  assert.equal(c.kernel, join(cache, 'guest', 'Image'));
  assert.equal(c.source, 'cache');
  // The cache follows XDG_CACHE_HOME like `typevisor image path`.
  const xdg = join(root, 'xdg');
  guestIn(join(xdg, 'typevisor', 'guest'));
  assert.equal(findGuest({ XDG_CACHE_HOME: xdg }, nowhere).dir, join(xdg, 'typevisor', 'guest'));
});

test('guest lookup: a directory with only a kernel is not a guest', () => {
  const half = guestIn(join(root, 'half'), ['Image']);
  assert.equal(findGuest({ TYPEVISOR_CACHE_DIR: cache }, half).source, 'cache');
});

test('guest lookup: nothing found is one line naming the build command', () => {
  const empty = join(root, 'empty-cache');
  assert.throws(() => findGuest({ TYPEVISOR_CACHE_DIR: empty }, nowhere), (e: unknown) => {
    assert.ok(e instanceof GuestNotFound);
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, /npm run guest/);
    assert.match(e.message, /typevisor image build/);
    assert.ok(e.message.includes(join(empty, 'guest')), e.message);
    return true;
  });
  // An explicit $TYPEVISOR_GUEST_DIR without a guest is an error, not a fallback.
  assert.throws(() => findGuest({ TYPEVISOR_GUEST_DIR: nowhere, TYPEVISOR_CACHE_DIR: cache }, shared),
    (e: unknown) => e instanceof GuestNotFound && e.message.includes(nowhere) && !e.message.includes('\n'));
});
