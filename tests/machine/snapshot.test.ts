/**
 * Machine state as data: save Linux mid-boot, load it into a fresh Machine, and the guest
 * finishes booting with exactly the console output of an uninterrupted run (the virtual
 * clock makes both runs deterministic). Plus the refusals: wrong versions and shapes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Machine, rngSeedFrom, type MachineConfig, type MachineState } from '../../src/machine/machine.js';
import { guestDir } from '../lib/toolchain.js';

/**
 * Past the shell prompt of the guest (Debian's defconfig kernel takes about 155 M steps with
 * the virtual clock at shift 4, the board's own kernel fewer).
 */
const TOTAL_STEPS = 165_000_000;

function config(stepLimit: number, sink: { out: string; onWrite?: () => void }): MachineConfig {
  return {
    memoryBytes: 128 << 20, bios: null, append: 'console=ttyS0',
    kernel: readFileSync(join(guestDir, 'Image')), initrd: readFileSync(join(guestDir, 'initramfs.cpio.gz')),
    clock: { kind: 'virtual', shift: 4 }, wallClockMs: () => 1_700_000_000_000, stepLimit, rngSeed: rngSeedFrom(1),
    serial: { write(b: Uint8Array) { sink.out += Buffer.from(b).toString('latin1'); sink.onWrite?.(); } },
  };
}

test('Linux saved mid-boot and loaded into a fresh Machine finishes booting exactly as an uninterrupted run', { timeout: 240_000 }, async () => {
  // The uninterrupted run also finds where to save: halfway between the kernel's first
  // console output and init's welcome line (whichever kernel the guest has).
  let firstOutput = -1, welcome = -1;
  const whole: { out: string; onWrite?: () => void } = { out: '' };
  const c = new Machine(config(TOTAL_STEPS, whole));
  whole.onWrite = () => {
    if (firstOutput < 0) firstOutput = c.steps;
    if (welcome < 0 && whole.out.includes('Welcome')) welcome = c.steps;
  };
  assert.equal((await c.run()).reason, 'stopped');
  assert.match(whole.out, /Welcome to the riscv64 busybox guest/);
  assert.match(whole.out, /~ # $/, 'the uninterrupted run reached the shell');
  assert.ok(firstOutput > 0 && welcome > firstOutput, `console at step ${firstOutput}, welcome at ${welcome}`);
  const SAVE_AT = Math.floor((firstOutput + welcome) / 2);

  const first = { out: '' };
  const a = new Machine(config(SAVE_AT, first));
  assert.equal((await a.run()).reason, 'stopped');
  const saved = structuredClone(a.save()); // plain data: survives structuredClone
  assert.ok(first.out.length > 0 && !first.out.includes('Welcome'), 'saved in the middle of the boot');

  const second = { out: '' };
  const b = new Machine(config(TOTAL_STEPS - SAVE_AT, second));
  b.load(saved);
  assert.equal((await b.run()).reason, 'stopped');
  assert.equal(first.out + second.out, whole.out);
  assert.equal(b.hart.icount, c.hart.icount, 'same instruction count at the end');
  assert.deepEqual(b.save().hart.regs, c.save().hart.regs, 'same registers at the end');
});

test('load refuses states of another version, RAM size or boot path, and malformed parts', () => {
  const sink = { out: '' };
  const m = new Machine({ ...config(1, sink), memoryBytes: 16 << 20, kernel: new Uint8Array(64), initrd: null });
  const good = m.save();
  const n = new Machine({ ...config(1, sink), memoryBytes: 16 << 20, kernel: new Uint8Array(64), initrd: null });
  n.load(structuredClone(good));
  const bad = (patch: (s: MachineState) => unknown, re: RegExp): void => {
    const s = structuredClone(good);
    patch(s);
    assert.throws(() => n.load(s), re);
  };
  bad((s) => { (s as { v: number }).v = 3; }, /unsupported version 3/);
  bad((s) => { s.memoryBytes = 32 << 20; }, /RAM/);
  bad((s) => { (s as { mode: string }).mode = 'firmware'; }, /boot path/);
  bad((s) => { s.ram.bytes = new Uint8Array(10); }, /RAM state/);
  bad((s) => { (s.hart as { v: number }).v = 9; }, /hart state/);
  bad((s) => { s.hart.mepc = 'zz'; }, /hart state: malformed mepc/);
  bad((s) => { s.plic.priority = [1]; }, /plic state/);
  bad((s) => { s.uart.rx = new Uint8Array(17); s.uart.rxFromHost = new Uint8Array(17); }, /uart16550 state/);
  bad((s) => { (s.clock as { ticks: unknown }).ticks = 'soon'; }, /clock state/);
  // A refusal late in the load (the ROM, after RAM and the hart) leaves the machine as it was.
  const before = n.save();
  const late = structuredClone(good);
  late.ram.bytes[0] = 0x5a; late.hart.icount = 12345; late.rom.bytes = new Uint8Array(3);
  assert.throws(() => n.load(late), /rom state/);
  const after = n.save();
  assert.equal(after.ram.bytes[0], before.ram.bytes[0]);
  assert.equal(after.hart.icount, before.hart.icount);
  assert.deepEqual(after.hart.regs, before.hart.regs);
});
