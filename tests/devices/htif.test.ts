/**
 * HTIF as riscv-tests-style programs use it: the proxied write syscall through a
 * "magic memory" block, console putchar, and the exit code, all found via ELF symbols.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildElf } from '../lib/toolchain.js';
import { runBare } from '../lib/bare.js';
import { Bus } from '../../src/machine/bus.js';
import { Htif } from '../../src/devices/htif.js';

const PROG = `
  .section .tohost, "aw", @progbits
  .align 6
  .globl tohost
tohost: .dword 0
  .align 6
  .globl fromhost
fromhost: .dword 0
  .section .text.init
  .globl _start
_start:
  la t0, magic
  la t1, tohost
  sd t0, 0(t1)              # syscall block address (even payload): SYS_write(1, msg, 12)
1: la t2, fromhost
  ld t3, 0(t2)
  beqz t3, 1b               # the host answers in fromhost
  sd zero, 0(t2)
  ld t4, 0(t0)              # return value: bytes written
  li t5, 12
  bne t4, t5, fail
  la t0, badmagic           # a buffer outside RAM gets an error, not a crash
  sd t0, 0(t1)
2: ld t3, 0(t2)
  beqz t3, 2b
  ld t4, 0(t0)
  bgez t4, fail
  li t3, (1 << 56) | (1 << 48) | '!'
  sd t3, 0(t1)              # console putchar
3: ld t3, 0(t1)
  bnez t3, 3b
  li t3, (42 << 1) | 1      # exit 42
  sd t3, 0(t1)
4: j 4b
fail:
  li t3, (99 << 1) | 1
  sd t3, 0(t1)
5: j 5b
  .data
  .align 3
magic: .dword 64, 1, msg, 12, 0, 0, 0, 0
badmagic: .dword 64, 1, 0x10000, 12, 0, 0, 0, 0
msg: .ascii "hello htif!\\n"
`;

test('HTIF: proxied write syscall, bad buffers refused, putchar, exit code', { timeout: 60_000 }, async () => {
  const elf = readFileSync(await buildElf({ name: 'htif-syscall', sources: { 'h.S': PROG } }));
  const r = await runBare(elf, { timeoutMs: 20_000 });
  assert.equal(r.reason, 'htif');
  assert.equal(r.code, 42);
  assert.equal(r.console, 'hello htif!\n!');
});

test('HTIF writes RAM through the bus DMA path (decoded code and dirty tracking see them)', () => {
  const bus = new Bus(0x8000_0000, 1 << 20);
  const writes: Array<[number, number]> = [];
  bus.onRamWrite((pa, len) => writes.push([pa, len]));
  const tohost = 0x8000_1000, fromhost = 0x8000_1040, block = 0x8000_2000;
  let out = '';
  const h = new Htif(bus, tohost, fromhost, (b) => { out += new TextDecoder().decode(b); }, () => {});
  const dv = bus.dv, off = (pa: number): number => bus.ramOffset(pa, 8);
  dv.setBigUint64(off(block), 64n, true);
  dv.setBigUint64(off(block + 8), 1n, true);
  dv.setBigUint64(off(block + 16), BigInt(block + 64), true);
  dv.setBigUint64(off(block + 24), 2n, true);
  bus.u8.set([0x6f, 0x6b], off(block + 64));
  dv.setBigUint64(off(tohost), BigInt(block), true);
  h.poll();
  assert.equal(out, 'ok');
  assert.equal(dv.getBigUint64(off(block), true), 2n, 'return value in block[0]');
  assert.deepEqual(writes.map(([pa]) => pa).sort(), [tohost, fromhost, block].sort());
  assert.ok(writes.every(([, len]) => len === 8));
});
