/**
 * Boot setup: the reset vector's register hand-off (QEMU virt convention and OpenSBI's
 * fw_dynamic info), raw images, Linux Image headers, and clear errors when things do not fit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { buildElf } from '../lib/toolchain.js';
import { requireGuest } from '../lib/guest.js';
import { Machine, BootError } from '../../src/machine/machine.js';
import { parseLinuxImage } from '../../src/machine/linux_image.js';

// M-mode program: check a0 = 0 (mhartid), a1 -> FDT magic, a2 -> fw_dynamic_info
// {magic "OSBI", version 2, next_addr, next_mode = 1 (S)}, a raw image at 0x80100000;
// exit code = number of the first failing check, 0 = all good.
const HANDOFF = `
  .section .text.init
  .globl _start
_start:
  li s1, 1
  bnez a0, fail
  li s1, 2
  lwu t0, 0(a1)
  li t1, 0xedfe0dd0
  bne t0, t1, fail
  li s1, 3
  ld t0, 0(a2)
  li t1, 0x4942534f
  bne t0, t1, fail
  li s1, 4
  ld t0, 8(a2)
  li t1, 2
  bne t0, t1, fail
  li s1, 5
  ld t0, 16(a2)
  li t1, 0x80200000
  bne t0, t1, fail
  li s1, 6
  ld t0, 24(a2)
  li t1, 1
  bne t0, t1, fail
  li s1, 7
  li t0, 0x80100000
  ld t0, 0(t0)
  li t1, 0x0123456789abcdef
  bne t0, t1, fail
  li s1, 8
  csrr t0, mstatus           # M-mode: the hart starts at the reset vector in M
  li s1, 0
fail:
  slli s1, s1, 16
  li t0, 0x3333
  or s1, s1, t0
  li t0, 0x5555
  beqz s1, 1f
  mv t0, s1
1:
  li t1, 0x100000
  srli t2, s1, 16
  bnez t2, 2f
  li t0, 0x5555
2:
  sw t0, 0(t1)
3: j 3b
`;

test('reset vector hands a0 = mhartid, a1 = DTB, a2 = fw_dynamic info to the firmware; raw images load', { timeout: 60_000 }, async () => {
  const elf = readFileSync(await buildElf({ name: 'handoff', sources: { 'h.S': HANDOFF } }));
  const image = new Uint8Array(8);
  new DataView(image.buffer).setBigUint64(0, 0x0123456789abcdefn, true);
  const m = new Machine({
    memoryBytes: 64 << 20, bios: elf, kernel: null, initrd: null, append: '',
    images: [{ name: 'blob', address: 0x8010_0000, data: image }], serial: { write() {} },
  });
  assert.equal(m.layout.mode, 'firmware');
  assert.equal(m.hart.pc, 0x1000n, 'starts at the reset vector');
  const exit = await m.run();
  assert.deepEqual(exit, { reason: 'poweroff', code: 0 }, `failing check: ${exit.code}`);
});

test('bios none: the kernel itself starts in M-mode through the reset vector', { timeout: 60_000 }, async () => {
  const src = `
  .section .text.init
  .globl _start
_start:
  csrr t0, mhartid           # only legal in M-mode
  lwu t0, 0(a1)
  li t1, 0xedfe0dd0
  li t2, 0x100000
  li t3, (9 << 16) | 0x3333
  bne t0, t1, 1f
  li t3, 0x5555
1: sw t3, 0(t2)
2: j 2b
`;
  const elf = readFileSync(await buildElf({ name: 'none-kernel', sources: { 'k.S': src } }));
  const m = new Machine({ memoryBytes: 32 << 20, bios: 'none', kernel: elf, initrd: null, append: '', serial: { write() {} } });
  assert.equal(m.layout.mode, 'none');
  assert.deepEqual(await m.run(), { reason: 'poweroff', code: 0 });
});

test('a raw firmware binary loads at 0x8000_0000', { timeout: 60_000 }, async () => {
  // li t0, 0x100000 ; li t1, 0x5555 ; sw t1, 0(t0) ; j .
  const words = [0x001002b7, 0x00005337, 0x5553031b, 0x0062a023, 0x0000006f];
  const bin = new Uint8Array(words.length * 4);
  words.forEach((w, i) => new DataView(bin.buffer).setUint32(i * 4, w, true));
  const m = new Machine({ memoryBytes: 16 << 20, bios: bin, kernel: null, initrd: null, append: '', serial: { write() {} } });
  assert.equal(m.layout.entry, 0x8000_0000);
  assert.deepEqual(await m.run(), { reason: 'poweroff', code: 0 });
});

test('images that do not fit give a clear BootError', () => {
  const serial = { write(): void {} };
  const kernel = new Uint8Array(4096);
  assert.throws(() => new Machine({ memoryBytes: 16 << 20, bios: null, kernel, initrd: new Uint8Array(20 << 20), append: '', serial }),
    (e: unknown) => e instanceof BootError && /initrd .* does not fit in 16 MiB/.test(e.message));
  assert.throws(() => new Machine({ memoryBytes: 4 << 20, bios: null, kernel: new Uint8Array(8 << 20), initrd: null, append: '', serial }),
    (e: unknown) => e instanceof BootError && /kernel .* does not fit/.test(e.message));
  assert.throws(() => new Machine({ memoryBytes: 16 << 20, bios: null, kernel: null, initrd: null, append: '', serial }),
    (e: unknown) => e instanceof BootError && /no kernel/.test(e.message));
  assert.throws(() => new Machine({ memoryBytes: 16 << 20, bios: new Uint8Array(0), kernel: null, initrd: null, append: '', serial }),
    (e: unknown) => e instanceof BootError && /empty/.test(e.message));
  assert.throws(() => new Machine({
    memoryBytes: 16 << 20, bios: null, kernel, initrd: null, append: '', serial,
    images: [{ name: 'x.bin', address: 0x4000_0000, data: new Uint8Array(4) }],
  }), (e: unknown) => e instanceof BootError && /x\.bin/.test(e.message));
});

test('Linux Image header: recognised, with its load offset; other data is not an Image', () => {
  const img = requireGuest().kernel;
  assert.ok(existsSync(img), `guest kernel at ${img}`);
  const hdr = parseLinuxImage(readFileSync(img));
  assert.ok(hdr);
  assert.equal(hdr.textOffset, 0x200000);
  assert.ok(hdr.imageSize > 1 << 20);
  assert.equal(parseLinuxImage(new Uint8Array(64)), null);
  assert.equal(parseLinuxImage(new Uint8Array(10)), null);
});
