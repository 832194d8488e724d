/**
 * Device models against their specs, driven through their MMIO registers as a guest would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Plic } from '../../src/devices/plic.js';
import { Uart16550 } from '../../src/devices/uart16550.js';
import { Clint } from '../../src/devices/clint.js';
import { GoldfishRtc } from '../../src/devices/goldfish_rtc.js';
import { SifiveTest } from '../../src/devices/sifive_test.js';
import { VirtioMmio } from '../../src/devices/virtio/mmio.js';
import { Bus } from '../../src/machine/bus.js';
import { GuestClock } from '../../src/machine/clock.js';
import { IRQ } from '../../src/cpu/csr.js';
import { VirtBoard } from '../../src/machine/virt.js';

/** Records the interrupt lines a device drives into the hart. */
class FakeHart {
  lines = new Map<number, boolean>();
  setIrqLine(bit: number, level: boolean): void { this.lines.set(bit, level); }
  level(bit: number): boolean { return this.lines.get(bit) ?? false; }
}

const CTX_M_THRESHOLD = 0x20_0000, CTX_M_CLAIM = 0x20_0004, CTX_S_THRESHOLD = 0x20_1000, CTX_S_CLAIM = 0x20_1004;
const ENABLE_M = 0x2000, ENABLE_S = 0x2080;

test('PLIC: priority, threshold, claim and complete with level-triggered gateways', () => {
  const hart = new FakeHart();
  const plic = new Plic(hart);
  plic.write(4 * 10, 4, 3);        // source 10 priority 3
  plic.write(4 * 11, 4, 5);        // source 11 priority 5
  plic.write(ENABLE_S, 4, (1 << 10) | (1 << 11));
  plic.line(10).set(true);
  assert.equal(hart.level(IRQ.SEI), true, 'S context sees the enabled source');
  assert.equal(hart.level(IRQ.MEI), false, 'M context has nothing enabled');
  assert.equal(plic.read(0x1000, 4), 1 << 10, 'pending bit');
  plic.line(11).set(true);
  assert.equal(plic.read(CTX_S_CLAIM, 4), 11, 'highest priority first');
  assert.equal(plic.read(CTX_S_CLAIM, 4), 10);
  assert.equal(plic.read(CTX_S_CLAIM, 4), 0, 'nothing left to claim');
  assert.equal(hart.level(IRQ.SEI), false, 'claimed sources do not interrupt');
  plic.line(11).set(false);
  plic.write(CTX_S_CLAIM, 4, 11);  // complete: line low, stays idle
  assert.equal(hart.level(IRQ.SEI), false);
  plic.write(CTX_S_CLAIM, 4, 10);  // complete: line still high, pends again
  assert.equal(hart.level(IRQ.SEI), true);
  plic.write(CTX_S_THRESHOLD, 4, 3); // threshold 3 masks priority 3
  assert.equal(hart.level(IRQ.SEI), false);
  assert.equal(plic.read(CTX_S_CLAIM, 4), 0);
  plic.write(CTX_S_THRESHOLD, 4, 2);
  assert.equal(plic.read(CTX_S_CLAIM, 4), 10);
  // M context, priority 0 never interrupts.
  plic.write(ENABLE_M, 4, 1 << 12);
  plic.line(12).set(true);
  assert.equal(hart.level(IRQ.MEI), false, 'priority 0 = never');
  plic.write(4 * 12, 4, 1);
  assert.equal(hart.level(IRQ.MEI), true);
  assert.equal(plic.read(CTX_M_THRESHOLD, 4), 0);
  assert.equal(plic.read(CTX_M_CLAIM, 4), 12);
  // Garbage is ignored: source 0, out-of-range completes, odd sizes.
  plic.write(0, 4, 7);
  assert.equal(plic.read(0, 4), 0, 'source 0 has no priority');
  plic.write(CTX_M_CLAIM, 4, 0xffff_ffff);
  plic.write(0x3f_fffc, 4, 1);
  assert.equal(plic.read(0x5f_fffc, 4), 0);
  assert.equal(plic.read(4 * 10, 1), 0);
  assert.throws(() => plic.line(97), /out of range/);
  plic.line(96).set(true);
});

function uart(): { u: Uart16550; out: number[]; irq: { level: boolean } } {
  const out: number[] = [];
  const irq = { level: false };
  const u = new Uart16550({ set(l: boolean) { irq.level = l; } }, { write(b: Uint8Array) { out.push(...b); } });
  return { u, out, irq };
}
const THR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

test('16550A: transmit, line status, scratch and divisor latch', () => {
  const { u, out } = uart();
  assert.equal(u.read(LSR, 1) & 0x60, 0x60, 'THRE and TEMT: ready to send');
  for (const c of 'hi') u.write(THR, 1, c.charCodeAt(0));
  u.flush();
  assert.deepEqual(out, [0x68, 0x69]);
  u.write(SCR, 1, 0xa5);
  assert.equal(u.read(SCR, 1), 0xa5);
  u.write(LCR, 1, 0x83);           // DLAB
  u.write(0, 1, 0x01);
  u.write(1, 1, 0x02);
  assert.equal(u.read(0, 1), 0x01);
  assert.equal(u.read(1, 1), 0x02);
  u.write(LCR, 1, 0x03);
  assert.equal(u.read(IER, 1), 0, 'IER is distinct from DLM');
  assert.equal(out.length, 2, 'divisor writes are not output');
});

test('16550A: RX FIFO, trigger levels, interrupts and no lost input', () => {
  const { u, irq } = uart();
  u.write(FCR, 1, 0xc7);           // FIFO on, clear, trigger 14
  assert.equal(u.read(IIR, 1) & 0xc0, 0xc0, 'FIFOs enabled');
  u.write(IER, 1, 0x01);           // ERBFI
  assert.equal(irq.level, false);
  const input = new Uint8Array(40).map((_, i) => 0x30 + (i % 40));
  u.receive(input);
  assert.equal(irq.level, true);
  assert.equal(u.read(IIR, 1) & 0x0f, 0x04, 'received data available at the trigger level');
  const got: number[] = [];
  while (u.read(LSR, 1) & 1) got.push(u.read(THR, 1));
  assert.deepEqual(got, [...input], 'all 40 bytes arrive, in order, through the 16-byte FIFO');
  assert.equal(irq.level, false);
  assert.equal(u.read(IIR, 1) & 0x0f, 0x01, 'no interrupt pending');
  u.receive(Uint8Array.of(0x41));
  assert.equal(u.read(IIR, 1) & 0x0f, 0x0c, 'below the trigger level: character timeout');
  assert.equal(u.read(THR, 1), 0x41);
});

test('16550A: FIFO resets keep host input that is not yet on the wire (Linux init sequence, a lone FCR=01)', () => {
  const input = new Uint8Array(29).map((_, i) => 0x41 + i);
  for (const seq of [[0x01, 0x07, 0x00, 0xc1], [0x01], [0x07, 0x06, 0x00]]) {
    const { u, irq } = uart();
    u.receive(input);
    for (const v of seq) u.write(FCR, 1, v);
    u.write(IER, 1, 0x01);
    assert.equal(u.read(LSR, 1) & 1, 1, `data ready after FCR ${seq.join(',')}`);
    assert.equal(irq.level, true, 'and the receive interrupt is raised');
    assert.equal(u.inputPending, 29);
    const got: number[] = [];
    while (u.read(LSR, 1) & 1) got.push(u.read(THR, 1));
    assert.deepEqual(got, [...input], `all 29 bytes after FCR ${seq.join(',')}`);
    assert.equal(u.inputPending, 0);
  }
  // Linux's 8250 startup: MCR without RTS, FIFO reset, then a discarding RBR read; input
  // waits on the line (RTS/CTS flow control) until RTS is raised.
  {
    const { u } = uart();
    u.receive(input);
    u.write(MCR, 1, 0x01);
    for (const v of [0x01, 0x07, 0x00]) u.write(FCR, 1, v);
    u.read(THR, 1);
    assert.equal(u.read(LSR, 1) & 1, 0, 'nothing received while RTS is off');
    u.write(MCR, 1, 0x0b);
    const got: number[] = [];
    while (u.read(LSR, 1) & 1) got.push(u.read(THR, 1));
    assert.deepEqual(got, [...input], 'all 29 bytes once RTS is raised');
  }
  // Bytes the guest looped back itself are in the FIFO: a reset clears them.
  const { u } = uart();
  u.write(FCR, 1, 0x01);
  u.write(MCR, 1, 0x10);
  u.write(THR, 1, 0x5a);
  assert.equal(u.read(LSR, 1) & 1, 1);
  u.write(FCR, 1, 0x03);
  assert.equal(u.read(LSR, 1) & 1, 0, 'loopback byte cleared by FCR.CLEAR_RX');
});

test('16550A: THRE interrupt on enable and after each write; cleared by reading IIR', () => {
  const { u, irq } = uart();
  u.write(IER, 1, 0x02);
  assert.equal(irq.level, true, 'enabling ETBEI with an empty THR interrupts');
  assert.equal(u.read(IIR, 1) & 0x0f, 0x02);
  assert.equal(irq.level, false, 'reading IIR clears THRE');
  u.write(THR, 1, 0x41);
  assert.equal(irq.level, true, 'the byte is sent at once: THR empty again');
  u.write(IER, 1, 0);
  assert.equal(irq.level, false);
});

test('16550A: loopback mode returns transmitted bytes and mirrors MCR in MSR', () => {
  const { u, out } = uart();
  u.write(MCR, 1, 0x10 | 0x0a);    // LOOP + RTS + OUT2
  u.write(THR, 1, 0x5a);
  assert.equal(u.read(LSR, 1) & 1, 1);
  assert.equal(u.read(THR, 1), 0x5a);
  const msr = u.read(MSR, 1);
  assert.equal(msr & 0xf0, 0x10 | 0x80, 'CTS <- RTS, DCD <- OUT2');
  u.flush();
  assert.deepEqual(out, [], 'nothing reaches the line in loopback');
});

test('CLINT: mtime follows the guest clock, mtimecmp drives MTIP, msip drives MSIP', () => {
  let ms = 1000;
  const clock = new GuestClock(() => ms);
  const hart = new FakeHart();
  const clint = new Clint(hart, clock);
  assert.equal(clint.read(0xbff8, 4), 0);
  ms += 1;                         // 1 ms = 10000 ticks at 10 MHz
  assert.equal(clint.read(0xbff8, 4), 10000);
  clint.write(0x4004, 4, 0);
  clint.write(0x4000, 4, 15000);
  assert.equal(hart.level(IRQ.MTI), false);
  assert.equal(clint.update(), 15000, 'next deadline');
  ms += 0.5;
  clint.update();
  assert.equal(hart.level(IRQ.MTI), true);
  clint.write(0x4004, 4, 0xffff_ffff);
  assert.equal(hart.level(IRQ.MTI), false, 'moving mtimecmp out clears MTIP');
  clint.write(0, 4, 1);
  assert.equal(hart.level(IRQ.MSI), true);
  assert.equal(clint.read(0, 4), 1);
  clint.write(0, 4, 0);
  assert.equal(hart.level(IRQ.MSI), false);
  clint.write(0xbff8, 4, 5);       // mtime is writable
  clint.write(0xbffc, 4, 0);
  assert.equal(clint.read(0xbff8, 4), 5);
  assert.equal(clock.now(), 5, 'the time CSR reads the same clock');
});

test('CLINT: a 64-bit mtime load samples the clock once (no tear when the low word wraps)', () => {
  // mtime is 2^32 - 1 at the first clock reading after arming, 10 ticks later at every further one.
  let armed = false, readings = 0;
  const board = new VirtBoard({
    memoryBytes: 1 << 20, serial: { write() {} }, monoClockMs: () => (!armed ? 0 : readings++ === 0 ? 0 : 0.001),
    wallClockMs: () => 0, onPowerOff() {}, onReset() {},
  });
  board.clock.set(2 ** 32 - 1);
  armed = true;
  const h = board.hart;
  board.bus.writeBytes(0x8000_0000, new Uint8Array(new Uint32Array([0x0005b503, 0x0000006f]).buffer)); // ld a0, 0(a1); j .
  h.pc = 0x8000_0000n;
  h.x[11] = 0x200_bff8n;
  h.run(1);
  assert.equal(readings, 1, 'one clock reading for one load');
  assert.equal(h.reg(10), 2n ** 32n - 1n);
  h.pc = 0x8000_0000n;
  h.x[11] = 0x200_4000n;
  board.bus.writeBytes(0x8000_0000, new Uint8Array(new Uint32Array([0x00b5b023, 0x0005b503]).buffer)); // sd a1, 0(a1); ld a0, 0(a1)
  // A timer write ends the run slice (the machine recomputes its deadline): run on.
  for (let i = 0; i < 4 && h.pc !== 0x8000_0008n; i++) h.run(1);
  assert.equal(h.reg(10), 0x200_4000n, 'mtimecmp written and read whole');
});

test('goldfish RTC: nanoseconds since the epoch, settable, alarm interrupt', () => {
  let wall = 1_700_000_000_000;
  const irq = { level: false };
  const rtc = new GoldfishRtc({ set(l: boolean) { irq.level = l; } }, () => wall);
  const read = (): bigint => { const lo = rtc.read(0, 4); return (BigInt(rtc.read(4, 4)) << 32n) | BigInt(lo >>> 0); };
  assert.equal(read(), 1_700_000_000_000_000_000n);
  const target = 1_800_000_000_000_000_000n;
  rtc.write(4, 4, Number(target >> 32n));
  rtc.write(0, 4, Number(target & 0xffff_ffffn));
  assert.equal(read(), target);
  rtc.write(0x10, 4, 1);
  const alarm = target + 5_000_000n;  // 5 ms later
  rtc.write(0x0c, 4, Number(alarm >> 32n));
  rtc.write(0x08, 4, Number(alarm & 0xffff_ffffn));
  assert.equal(rtc.read(0x18, 4), 1, 'alarm armed');
  assert.equal(rtc.service(), 5);
  assert.equal(irq.level, false);
  wall += 6;
  rtc.service();
  assert.equal(irq.level, true);
  rtc.write(0x1c, 4, 1);
  assert.equal(irq.level, false);
});

test('SiFive test finisher: pass, fail with code, reset; other values ignored', () => {
  const events: string[] = [];
  const t = new SifiveTest((c) => events.push(`off ${c}`), () => events.push('reset'));
  t.write(0, 4, 0x5555);
  t.write(0, 4, (42 << 16) | 0x3333);
  t.write(0, 4, 0x7777);
  t.write(0, 4, 0x1234);
  t.write(0, 1, 0x55);
  t.write(4, 4, 0x5555);
  t.write(0, 2, 0x5555);
  assert.deepEqual(events, ['off 0', 'off 42', 'reset', 'off 0']);
});

test('virtio-mmio slots with no device read as magic, version 2, device ID 0', () => {
  const s = new VirtioMmio(0, new Bus(0x8000_0000, 1 << 20), { set() {} }, () => {});
  assert.equal(s.read(0, 4), 0x74726976);
  assert.equal(s.read(4, 4), 2);
  assert.equal(s.read(8, 4), 0);
  s.write(0x70, 4, 0xff);
  assert.equal(s.read(0x70, 4), 0);
});
