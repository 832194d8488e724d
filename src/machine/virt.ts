/**
 * The typevisor virt board: QEMU `virt`-compatible memory map, interrupt numbers and
 * device tree (QEMU hw/riscv/virt.c's layout, as documented in docs/system/riscv/virt.rst),
 * so the same kernels, DTB consumers and firmware run unchanged.
 */
import { Bus } from './bus.js';
import { Hart } from '../cpu/hart.js';
import { GuestClock, TIMEBASE_HZ, type ClockMode } from './clock.js';
import { FdtBuilder } from './fdt.js';
import { Clint, CLINT_SIZE } from '../devices/clint.js';
import { Plic, PLIC_SIZE, PLIC_SOURCES } from '../devices/plic.js';
import { Uart16550 } from '../devices/uart16550.js';
import { GoldfishRtc } from '../devices/goldfish_rtc.js';
import { SifiveTest, FINISHER_PASS, FINISHER_RESET } from '../devices/sifive_test.js';
import { Rom } from '../devices/rom.js';
import { VirtioMmio, VIRTIO_MMIO_SIZE, type VirtioDevice } from '../devices/virtio/mmio.js';
import type { SerialBackend } from '../devices/device.js';

export const VIRT = {
  MROM_BASE: 0x1000, MROM_SIZE: 0xf000,
  TEST_BASE: 0x10_0000, TEST_SIZE: 0x1000,
  RTC_BASE: 0x10_1000, RTC_SIZE: 0x1000,
  CLINT_BASE: 0x200_0000,
  PLIC_BASE: 0xc00_0000,
  UART0_BASE: 0x1000_0000, UART0_SIZE: 0x100,
  VIRTIO_BASE: 0x1000_1000, VIRTIO_COUNT: 8,
  DRAM_BASE: 0x8000_0000,
  UART0_IRQ: 10, RTC_IRQ: 11, VIRTIO_IRQ: 1,
} as const;

/** The ISA string in the device tree; must match what the hart implements. */
export const RISCV_ISA = 'rv64imafdc_zicntr_zicsr_zifencei_zihintpause_zihpm_sstc';
/** UART input clock QEMU advertises (3.6864 MHz). */
const UART_CLOCK = 0x38_4000;

export interface VirtBoardOptions {
  memoryBytes: number;
  serial: SerialBackend;
  /** Host monotonic milliseconds (performance.now). */
  monoClockMs(): number;
  /** Host wall-clock milliseconds since the epoch (Date.now), for the RTC. */
  wallClockMs(): number;
  /** How guest time advances (default: with the host's monotonic clock). */
  clock?: ClockMode;
  onPowerOff(code: number): void;
  onReset(): void;
  /**
   * Called by devices when something happened outside the run loop (host I/O completed,
   * network input): the machine runs its device service and wakes a sleeping hart.
   */
  wake?(): void;
}

/**
 * A part that owns device timers (board.schedule). Timers are data, (owner, kind, deadline),
 * never closures, so a snapshot carries them and the owner re-arms them when loaded.
 */
export interface TimerOwner {
  /** Unique on the board and stable across machines built the same way (a device name). */
  readonly timerId: string;
  /** The timer `kind` that was scheduled is due. */
  onTimer(kind: string): void;
}

/** A pending device timer as saved state: who, what, and the deadline in guest ticks. */
export interface TimerState { owner: string; kind: string; at: number }

/** Something the board brings up to date between run slices (timers, alarms, output batching). */
export interface Serviced {
  /** Update for guest time `now` (mtime ticks); return the next tick at which it needs service, or Infinity. */
  service(now: number): number;
}

export interface DtbChosen {
  bootargs: string;
  initrdStart?: number;
  initrdEnd?: number;
  /** /chosen/rng-seed: bytes the kernel credits to its entropy pool at boot (QEMU's virt board gives 32 random ones). */
  rngSeed?: Uint8Array;
}

export class VirtBoard {
  readonly bus: Bus;
  readonly hart: Hart;
  readonly clock: GuestClock;
  readonly clint: Clint;
  readonly plic: Plic;
  readonly uart: Uart16550;
  readonly rtc: GoldfishRtc;
  readonly test: SifiveTest;
  readonly mrom: Rom;
  /** The eight virtio-mmio slots, index i at VIRTIO_BASE + i * 0x1000 on PLIC line VIRTIO_IRQ + i. */
  readonly virtio: VirtioMmio[] = [];
  readonly memoryBytes: number;
  /** Wake the machine from outside the run loop (async device completions). */
  readonly wake: () => void;
  private readonly serviced: Serviced[] = [];
  /** One-shot device timers, in guest ticks (schedule()). */
  private timers: TimerState[] = [];
  private readonly timerOwners = new Map<string, TimerOwner>();

  constructor(opts: VirtBoardOptions) {
    this.memoryBytes = opts.memoryBytes;
    this.wake = opts.wake ?? (() => {});
    this.bus = new Bus(VIRT.DRAM_BASE, opts.memoryBytes);
    this.clock = new GuestClock(opts.monoClockMs, opts.clock);
    this.hart = new Hart(this.bus, 0, this.clock);
    const hart = this.hart;
    this.clock.countInstructions(() => hart.retired);
    // With a virtual clock the RTC runs on guest time too (from the host's date at start), so runs repeat exactly.
    const wall0 = opts.wallClockMs();
    const clock = this.clock;
    const wallClockMs = clock.virtual ? () => wall0 + clock.now() / (TIMEBASE_HZ / 1000) : opts.wallClockMs;
    this.mrom = new Rom(VIRT.MROM_SIZE);
    this.test = new SifiveTest(opts.onPowerOff, opts.onReset);
    this.clint = new Clint(this.hart, this.clock, () => hart.requestStop());
    this.plic = new Plic(this.hart);
    this.uart = new Uart16550(this.plic.line(VIRT.UART0_IRQ), opts.serial);
    this.rtc = new GoldfishRtc(this.plic.line(VIRT.RTC_IRQ), wallClockMs);
    const clint = this.clint, rtc = this.rtc, uart = this.uart;
    this.addService({ service: () => clint.update() });
    this.addService({ service: (now) => hart.updateTimers(now) });
    this.addService({
      service: (now) => {
        const ms = rtc.service();
        return ms === Infinity ? Infinity : now + ms * (TIMEBASE_HZ / 1000);
      },
    });
    this.addService({ service: () => { uart.flush(); return Infinity; } });
    const b = this.bus;
    b.map(VIRT.MROM_BASE, VIRT.MROM_SIZE, this.mrom, { executable: true });
    b.map(VIRT.TEST_BASE, VIRT.TEST_SIZE, this.test);
    b.map(VIRT.RTC_BASE, VIRT.RTC_SIZE, this.rtc);
    b.map(VIRT.CLINT_BASE, CLINT_SIZE, this.clint);
    b.map(VIRT.PLIC_BASE, PLIC_SIZE, this.plic);
    b.map(VIRT.UART0_BASE, VIRT.UART0_SIZE, this.uart);
    for (let i = 0; i < VIRT.VIRTIO_COUNT; i++) {
      const slot = new VirtioMmio(i, b, this.plic.line(VIRT.VIRTIO_IRQ + i), this.wake, () => hart.requestStop());
      this.virtio.push(slot);
      b.map(VIRT.VIRTIO_BASE + i * VIRTIO_MMIO_SIZE, VIRTIO_MMIO_SIZE, slot);
    }
  }

  /**
   * Plug a virtio device into the next free slot. Slots fill from the highest address down,
   * as on QEMU's virt: the device tree lists that slot first and Linux probes in DT order,
   * so the first disk becomes /dev/vda.
   */
  plugVirtio(dev: VirtioDevice): VirtioMmio {
    for (let i = this.virtio.length - 1; i >= 0; i--) {
      const slot = this.virtio[i];
      if (!slot.device) { slot.plug(dev); return slot; }
    }
    throw new Error(`no free virtio-mmio slot for ${dev.name} (the board has ${VIRT.VIRTIO_COUNT})`);
  }

  /**
   * Bring time-driven state up to date: CLINT MTIP, the Sstc/SBI supervisor timer, the RTC
   * alarm, console output. Returns the next timer deadline in mtime ticks (Infinity if none).
   */
  service(): number {
    const now = this.clock.now();
    let next = Infinity;
    if (this.timers.length > 0) {
      const due = this.timers.filter((t) => t.at <= now);
      this.timers = this.timers.filter((t) => t.at > now);
      for (const t of due) this.timerOwners.get(t.owner)?.onTimer(t.kind);
      for (const t of this.timers) next = Math.min(next, t.at);
    }
    for (const s of this.serviced) next = Math.min(next, s.service(now));
    return next;
  }

  /** Devices that need time-driven updates register here (service() calls them in order). */
  addService(s: Serviced): void { this.serviced.push(s); }

  /**
   * Call `owner.onTimer(kind)` from the run loop once `ticks` of guest time have passed
   * (device timers: a virtio completion delay, a NIC's interrupt moderation). Exact with the
   * virtual clock: the run loop stops at the deadline. The owner registers itself first
   * (addTimerOwner), so a loaded machine finds it by its id.
   */
  schedule(ticks: number, owner: TimerOwner, kind: string): void {
    if (this.timerOwners.get(owner.timerId) !== owner) throw new Error(`timer owner '${owner.timerId}' is not registered`);
    this.timers.push({ owner: owner.timerId, kind, at: this.clock.now() + Math.max(0, ticks) });
    this.hart.requestStop(); // the run loop recomputes its next deadline
  }

  addTimerOwner(owner: TimerOwner): void {
    if (this.timerOwners.has(owner.timerId)) throw new Error(`timer owner '${owner.timerId}' registered twice`);
    this.timerOwners.set(owner.timerId, owner);
  }

  /** Pending device timers (snapshots). */
  saveTimers(): TimerState[] { return this.timers.map((t) => ({ ...t })); }

  /** Re-arm saved timers; each owner must exist on this board. Checks everything before changing anything. */
  loadTimers(ts: readonly TimerState[]): void {
    if (!Array.isArray(ts)) throw new Error('timer state: malformed');
    for (const t of ts) {
      if (typeof t?.owner !== 'string' || typeof t.kind !== 'string' || !Number.isFinite(t.at)) throw new Error('timer state: malformed');
      if (!this.timerOwners.has(t.owner)) throw new Error(`timer state: no device '${t.owner}' on this machine`);
    }
    this.timers = ts.map((t) => ({ owner: t.owner, kind: t.kind, at: t.at }));
    this.hart.requestStop();
  }

  /** The device tree describing this board (what QEMU's virt machine would generate). */
  buildDtb(chosen: DtbChosen): Uint8Array {
    const f = new FdtBuilder();
    const cpuPh = f.phandle(), intcPh = f.phandle(), plicPh = f.phandle(), testPh = f.phandle();
    f.beginNode('');
    f.prop('#address-cells', [2]).prop('#size-cells', [2]);
    f.prop('compatible', 'riscv-virtio').prop('model', 'riscv-virtio,qemu');

    f.beginNode('chosen');
    if (chosen.rngSeed) f.prop('rng-seed', chosen.rngSeed);
    f.prop('bootargs', chosen.bootargs);
    if (chosen.initrdStart !== undefined && chosen.initrdEnd !== undefined) {
      f.prop64('linux,initrd-start', [chosen.initrdStart]).prop64('linux,initrd-end', [chosen.initrdEnd]);
    }
    f.prop('stdout-path', `/soc/serial@${hex(VIRT.UART0_BASE)}`);
    f.endNode();

    f.beginNode(`memory@${hex(VIRT.DRAM_BASE)}`);
    f.prop('device_type', 'memory').prop64('reg', [VIRT.DRAM_BASE, this.memoryBytes]);
    f.endNode();

    f.beginNode('cpus');
    f.prop('#address-cells', [1]).prop('#size-cells', [0]).prop('timebase-frequency', [TIMEBASE_HZ]);
    f.beginNode('cpu@0');
    f.prop('phandle', [cpuPh]).prop('device_type', 'cpu').prop('reg', [0]).prop('status', 'okay');
    f.prop('compatible', 'riscv').prop('riscv,isa', RISCV_ISA).prop('mmu-type', 'riscv,sv57');
    f.beginNode('interrupt-controller');
    f.prop('#address-cells', [0]).prop('#interrupt-cells', [1]).prop('interrupt-controller', null).prop('compatible', 'riscv,cpu-intc');
    f.prop('phandle', [intcPh]);
    f.endNode();
    f.endNode();
    f.beginNode('cpu-map').beginNode('cluster0').beginNode('core0').prop('cpu', [cpuPh]).endNode().endNode().endNode();
    f.endNode();

    f.beginNode('poweroff');
    f.prop('value', [FINISHER_PASS]).prop('offset', [0]).prop('regmap', [testPh]).prop('compatible', 'syscon-poweroff');
    f.endNode();
    f.beginNode('reboot');
    f.prop('value', [FINISHER_RESET]).prop('offset', [0]).prop('regmap', [testPh]).prop('compatible', 'syscon-reboot');
    f.endNode();

    f.beginNode('soc');
    f.prop('#address-cells', [2]).prop('#size-cells', [2]).prop('compatible', 'simple-bus').prop('ranges', null);

    f.beginNode(`rtc@${hex(VIRT.RTC_BASE)}`);
    f.prop('interrupts', [VIRT.RTC_IRQ]).prop('interrupt-parent', [plicPh]);
    f.prop64('reg', [VIRT.RTC_BASE, VIRT.RTC_SIZE]).prop('compatible', 'google,goldfish-rtc');
    f.endNode();

    f.beginNode(`serial@${hex(VIRT.UART0_BASE)}`);
    f.prop('interrupts', [VIRT.UART0_IRQ]).prop('interrupt-parent', [plicPh]).prop('clock-frequency', [UART_CLOCK]);
    f.prop64('reg', [VIRT.UART0_BASE, VIRT.UART0_SIZE]).prop('compatible', 'ns16550a');
    f.endNode();

    f.beginNode(`test@${hex(VIRT.TEST_BASE)}`);
    f.prop('phandle', [testPh]).prop64('reg', [VIRT.TEST_BASE, VIRT.TEST_SIZE]);
    f.prop('compatible', ['sifive,test1', 'sifive,test0', 'syscon']);
    f.endNode();

    // QEMU lists the slots from the highest address down; Linux probes them in DT order.
    for (let i = VIRT.VIRTIO_COUNT - 1; i >= 0; i--) {
      const base = VIRT.VIRTIO_BASE + i * VIRTIO_MMIO_SIZE;
      f.beginNode(`virtio_mmio@${hex(base)}`);
      f.prop('interrupts', [VIRT.VIRTIO_IRQ + i]).prop('interrupt-parent', [plicPh]);
      f.prop64('reg', [base, VIRTIO_MMIO_SIZE]).prop('compatible', 'virtio,mmio');
      f.endNode();
    }

    f.beginNode(`plic@${hex(VIRT.PLIC_BASE)}`);
    f.prop('phandle', [plicPh]).prop('riscv,ndev', [PLIC_SOURCES - 1]);
    f.prop64('reg', [VIRT.PLIC_BASE, PLIC_SIZE]);
    f.prop('interrupts-extended', [intcPh, 11, intcPh, 9]);
    f.prop('interrupt-controller', null).prop('compatible', ['sifive,plic-1.0.0', 'riscv,plic0']);
    f.prop('#address-cells', [0]).prop('#interrupt-cells', [1]);
    f.endNode();

    f.beginNode(`clint@${hex(VIRT.CLINT_BASE)}`);
    f.prop('interrupts-extended', [intcPh, 3, intcPh, 7]);
    f.prop64('reg', [VIRT.CLINT_BASE, CLINT_SIZE]).prop('compatible', ['sifive,clint0', 'riscv,clint0']);
    f.endNode();

    f.endNode(); // soc
    f.endNode(); // root
    return f.finish(0);
  }
}

function hex(n: number): string { return n.toString(16); }
