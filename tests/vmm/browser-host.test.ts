/**
 * The browser's RunnerHost with an injected fetch (Node has fetch's Response, Blob and
 * DecompressionStream): what it builds from URLs, and the one-line errors for bad files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { BrowserRunnerHost } from '../../src/vmm/browser-host.js';
import type { RunnerConfig } from '../../src/vmm/protocol.js';
import { DEFAULT_JIT_THRESHOLD } from '../../src/machine/machine.js';

const MiB = 1 << 20;

function host(files: Record<string, Uint8Array>, opts: ConstructorParameters<typeof BrowserRunnerHost>[0] = {}): BrowserRunnerHost {
  return new BrowserRunnerHost({
    ...opts,
    fetch: async (url) => {
      if (url === 'http://x/down') throw new TypeError('Failed to fetch');
      const f = files[url];
      return f ? new Response(f as BodyInit) : new Response('nope', { status: 404, statusText: 'Not Found' });
    },
  });
}

const cfg = (c: Partial<RunnerConfig>): RunnerConfig => ({ name: 't', memoryBytes: 64 * MiB, ...c });

test('kernel, initrd and append come from URLs; a gzip kernel is decompressed, the initrd is not', async () => {
  const kernel = new Uint8Array(100_000).map((_, i) => (i * 7) & 0xff);
  const initrd = new Uint8Array(gzipSync(Buffer.from('initrd bytes')));
  const h = host({ 'http://x/k.gz': new Uint8Array(gzipSync(kernel)), 'http://x/i': initrd }, { jitThreshold: 50 });
  const { base, disks } = await h.load(cfg({ kernel: 'http://x/k.gz', initrd: 'http://x/i', append: 'console=ttyS0 quiet' }));
  assert.deepEqual(base.kernel, kernel);
  assert.deepEqual(base.initrd, initrd);
  assert.equal(base.append, 'console=ttyS0 quiet');
  assert.equal(base.bios, null);
  assert.equal(base.memoryBytes, 64 * MiB);
  assert.equal(base.jitThreshold, 50);
  assert.deepEqual(disks, []);
  assert.equal(h.cpuSeconds(), 0);
  assert.equal(h.rssBytes(), 0);
});

test('no kernel: the default guest, with its command line', async () => {
  const h = host({ 'http://x/k': new Uint8Array([1, 2, 3]), 'http://x/i': new Uint8Array([4]) }, { defaultGuest: { kernel: 'http://x/k', initrd: 'http://x/i' } });
  const { base } = await h.load(cfg({}));
  assert.deepEqual(base.kernel, new Uint8Array([1, 2, 3]));
  assert.deepEqual(base.initrd, new Uint8Array([4]));
  assert.equal(base.append, 'console=ttyS0');
  assert.equal(base.jitThreshold, DEFAULT_JIT_THRESHOLD, 'the translator unless the page asks for the interpreter');
  const interp = await host({ 'http://x/k': new Uint8Array([1]) }, { defaultGuest: { kernel: 'http://x/k' }, jitThreshold: Infinity }).load(cfg({}));
  assert.equal(interp.base.jitThreshold, Infinity);
  await assert.rejects(host({}).load(cfg({})), /no kernel given and no default guest/);
});

test('a drive is an in-memory copy: the guest reads the file, its writes stay in the copy', async () => {
  const image = new Uint8Array(4096 + 100).map((_, i) => i & 0xff);
  const h = host({ 'http://x/d': image });
  const { disks } = await h.load(cfg({ kernel: 'http://x/d', drives: [{ file: 'http://x/d' }] }));
  const d = disks[0];
  assert.equal(d.sizeBytes, 4096, 'whole sectors only');
  assert.equal(d.readOnly, false);
  const buf = new Uint8Array(512);
  await d.read(512, buf);
  assert.deepEqual(buf, image.subarray(512, 1024));
  await d.write(0, new Uint8Array(512).fill(0xee));
  await d.read(0, buf);
  assert.ok(buf.every((b) => b === 0xee));
  assert.equal(image[0], 0, 'the fetched bytes are not changed');
  await assert.rejects(d.read(4096, buf), /outside the disk/);
  const ro = (await h.load(cfg({ kernel: 'http://x/d', drives: [{ file: 'http://x/d', readOnly: true }] }))).disks[0];
  assert.equal(ro.readOnly, true);
});

test('bad files and settings: one-line errors naming the file', async () => {
  const qcow = new Uint8Array(1024);
  qcow.set([0x51, 0x46, 0x49, 0xfb]);
  const h = host({ 'http://x/k': new Uint8Array([1]), 'http://x/q': qcow, 'http://x/empty': new Uint8Array(0), 'http://x/small': new Uint8Array(100),
    'http://x/badgz': new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]) });
  await assert.rejects(h.load(cfg({ kernel: 'http://x/missing' })), /^Error: cannot fetch kernel 'http:\/\/x\/missing': HTTP 404 Not Found$/);
  await assert.rejects(h.load(cfg({ kernel: 'http://x/down' })), /cannot fetch kernel 'http:\/\/x\/down': Failed to fetch/);
  await assert.rejects(h.load(cfg({ kernel: 'http://x/empty' })), /kernel 'http:\/\/x\/empty' is empty/);
  await assert.rejects(h.load(cfg({ kernel: 'http://x/badgz' })), /kernel 'http:\/\/x\/badgz' looks gzip-compressed but does not decompress/);
  await assert.rejects(h.load(cfg({ kernel: 'http://x/k', drives: [{ file: 'http://x/q' }] })), /drive http:\/\/x\/q: a qcow2 image; the browser takes raw images only/);
  await assert.rejects(h.load(cfg({ kernel: 'http://x/k', drives: [{ file: 'http://x/k', format: 'qcow2' }] })), /qcow2 is not supported in the browser/);
  await assert.rejects(h.load(cfg({ kernel: 'http://x/k', drives: [{ file: 'http://x/small' }] })), /smaller than one 512-byte sector/);
  await assert.rejects(h.load(cfg({ initrd: 'http://x/k', bios: 'http://x/k' })), /an initrd needs a kernel/);
  for (const m of [0, 3 * MiB, 64 * MiB + 1, 2 ** 40, NaN]) {
    await assert.rejects(h.load(cfg({ kernel: 'http://x/k', memoryBytes: m })), /must be a multiple of 4 KiB between 4 MiB and 3840 MiB/);
  }
});
