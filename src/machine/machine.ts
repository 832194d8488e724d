/**
 * The machine: the virt board, its boot setup, and the run loop that drives the hart.
 *
 * The loop runs the hart in slices of instructions. Between slices it updates timers,
 * devices and HTIF. When the hart executes WFI with nothing pending it sleeps (a host
 * timer) until the next timer deadline or until input arrives: it never spins.
 * Host-agnostic: only setTimeout (and setImmediate when present) is used.
 */
import type { Hart } from '../cpu/hart.js';
import { PRIV_M } from '../cpu/csr.js';
import { VirtBoard } from './virt.js';
import { setupBoot, type BootLayout, type RawImage } from './boot.js';

export type { RawImage };
export { BootError } from './boot.js';
import { parseElf, isElf } from './elf.js';
import { Htif } from '../devices/htif.js';
import type { SerialBackend, BlockBackend, NetBackend } from '../devices/device.js';
import type { VirtioDevice } from '../devices/virtio/mmio.js';
import { VirtioBlk } from '../devices/virtio/blk.js';
import { VirtioConsole } from '../devices/virtio/console.js';
import { VirtioRng } from '../devices/virtio/rng.js';
import { VirtioNet, defaultMac } from '../devices/virtio/net.js';
import { VirtioInput } from '../devices/virtio/input.js';
import type { ClockMode, ClockState } from './clock.js';
import type { VirtioMmioState } from '../devices/virtio/mmio.js';
import type { TimerState } from './virt.js';
import type { HartState } from '../cpu/hart.js';
import type { RamState } from './bus.js';
import type { ClintState } from '../devices/clint.js';
import type { PlicState } from '../devices/plic.js';
import type { Uart16550State } from '../devices/uart16550.js';
import type { GoldfishRtcState } from '../devices/goldfish_rtc.js';
import type { SifiveTestState } from '../devices/sifive_test.js';
import type { RomState } from '../devices/rom.js';
import type { HtifState } from '../devices/htif.js';
import { BuiltinSbi, type BuiltinSbiState } from '../firmware/sbi.js';

export type { SerialBackend, ClockMode };

/** A virtio device to plug into the board, with its host backend. Slots fill in list order. */
export type VirtioDeviceSpec =
  | { kind: 'blk'; disk: BlockBackend }
  | { kind: 'console'; serial: SerialBackend }
  | { kind: 'rng' }
  /** virtio-input: a power button (plus Ctrl-Alt-Del), pressed by powerButton(). */
  | { kind: 'input' }
  /** virtio-net; the MAC defaults to 52:54:00:12:34:56 plus the NIC's index in this list. */
  | { kind: 'net'; backend: NetBackend; mac?: Uint8Array; offloads?: boolean; tso?: boolean };

/** The translator compiles a block start after this many entries (the CLI's --accel jit default). */
export const DEFAULT_JIT_THRESHOLD = 50;

export interface MachineConfig {
  /** Guest RAM in bytes (default 512 MiB). */
  memoryBytes: number;
  /**
   * M-mode firmware: ELF or raw binary (raw loads at 0x8000_0000); null = the built-in SBI;
   * 'none' = no firmware, the kernel itself starts in M-mode (QEMU's -bios none).
   */
  bios: Uint8Array | 'none' | null;
  /** Linux Image (already decompressed), raw binary or ELF. */
  kernel: Uint8Array | null;
  initrd: Uint8Array | null;
  /** Kernel command line. */
  append: string;
  /** Raw images loaded at physical addresses (QEMU's generic loader). */
  images?: readonly RawImage[];
  serial: SerialBackend;
  /** Host monotonic clock in ms (default performance.now). */
  monoClockMs?: () => number;
  /** Host wall clock in ms since the epoch (default Date.now). */
  wallClockMs?: () => number;
  /**
   * The translator: block starts entered this many times are compiled to WebAssembly
   * (0: at once); Infinity keeps the interpreter alone. Default: DEFAULT_JIT_THRESHOLD.
   */
  jitThreshold?: number;
  /** virtio devices (disks, console, rng), in slot order: the first disk is /dev/vda. */
  virtio?: readonly VirtioDeviceSpec[];
  /** Guest time: host-paced (default) or virtual, advancing with instructions (QEMU -icount). */
  clock?: ClockMode;
  /**
   * Stop (reason 'stopped') after this many steps: instructions plus traps taken. With the
   * virtual clock, a run bounded this way is reproducible (fuzzing, tests).
   */
  stepLimit?: number;
  /**
   * The device tree's /chosen/rng-seed, which Linux credits to its entropy pool at boot, as
   * QEMU's virt board does: 32 random bytes by default, fixed bytes for reproducible runs,
   * null for none (the kernel then gathers entropy itself, slowly, before its RNG is ready).
   */
  rngSeed?: Uint8Array | null;
}

/** Bytes of /chosen/rng-seed (QEMU's virt board: 32). */
export const RNG_SEED_BYTES = 32;

/** The rng-seed for a machine config: its own (checked), none, or random bytes. */
function rngSeedOf(cfg: MachineConfig): Uint8Array | undefined {
  const s = cfg.rngSeed;
  if (s === null) return undefined;
  if (s === undefined) return randomRngSeed();
  if (!(s instanceof Uint8Array) || s.length !== RNG_SEED_BYTES) {
    throw new Error(`rngSeed: expected ${RNG_SEED_BYTES} bytes, got ${s instanceof Uint8Array ? s.length : typeof s}`);
  }
  return s;
}

/** Fresh rng-seed bytes from the host's CSPRNG (Web Crypto: Node and browsers alike), as QEMU's virt board gives. */
export function randomRngSeed(): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(RNG_SEED_BYTES));
}

/**
 * A reproducible rng-seed from a number (the CLI's -seed N, tests): the same N always gives
 * the same bytes (splitmix32 steps; a seed for a VM's entropy pool, not for secrets).
 */
export function rngSeedFrom(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new Error(`seed ${n}: expected a whole number from 0 to 4294967295`);
  const out = new Uint8Array(RNG_SEED_BYTES);
  const view = new DataView(out.buffer);
  let x = n | 0;
  for (let i = 0; i < RNG_SEED_BYTES; i += 4) {
    x = (x + 0x9e3779b9) | 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    view.setUint32(i, (z ^ (z >>> 16)) >>> 0, true);
  }
  return out;
}

/**
 * A whole machine's state (snapshots, migration): each part's own versioned state.
 * Host backends, the boot configuration and derived caches are not in it.
 */
export interface MachineState {
  /** 2 added the virtio slots and device timers; a version 1 state loads into a machine without virtio devices. */
  v: 2;
  memoryBytes: number;
  /** Boot path: a state only loads into a machine built the same way (built-in SBI or not, HTIF or not). */
  mode: BootLayout['mode'];
  hart: HartState;
  ram: RamState;
  clock: ClockState;
  clint: ClintState;
  plic: PlicState;
  uart: Uart16550State;
  rtc: GoldfishRtcState;
  test: SifiveTestState;
  rom: RomState;
  sbi: BuiltinSbiState | null;
  htif: HtifState | null;
  /** The eight virtio-mmio slots in board order (transport registers, queues, device state). */
  virtio: VirtioMmioState[];
  /** Pending device timers (board.schedule), as data. */
  timers: TimerState[];
}

/** The first version, before virtio and timers were part of the state. */
export type MachineStateV1 = Omit<MachineState, 'v' | 'virtio' | 'timers'> & { v: 1 };

export type MachineExit = {
  /** 'panic': the guest wedged itself (a trap reached M-mode with no M-mode firmware); 'error': a host exception (a bug). */
  reason: 'poweroff' | 'reset' | 'fail' | 'htif' | 'stopped' | 'panic' | 'error';
  code: number;
  message?: string;
};

/** Instructions per slice between device updates. */
const SLICE = 20000;
/**
 * Wall time to run before yielding to the host event loop. While a device waits for host
 * I/O the loop yields after every slice instead: a completion runs only when the loop
 * yields, and a busy guest (a CPU hog beside a disk reader) waited up to this long for
 * each one (QD1 4 KiB reads 15 ms each, QEMU's 0.27 ms).
 */
const YIELD_MS = 15;
/**
 * Interactive traffic with the host (a NIC's bytes: some within TRAFFIC_MS, less than
 * TRAFFIC_BULK in a window of that length) makes the run loop yield after every slice: a
 * request from the host to a guest that computes (busybox httpd beside a CPU hog) waited
 * for a 15 ms turn at each step of its exchange (46 ms, QEMU 15). Bulk traffic does not, as
 * a NIC moderates its interrupts: ACKs that reached a bulk sender one by one cost the guest
 * ~45 % more instructions per MiB (an 8 MiB upload 25 -> 11 MiB/s). (Bytes, not frames:
 * with TSO a bulk upload is ~30 frames in 50 ms.)
 */
const TRAFFIC_MS = 50;
const TRAFFIC_BULK = 64 * 1024;
/** Longest host timer (setTimeout's limit is 2^31-1 ms; beyond it fires at once). */
const MAX_TIMER_MS = 0x7fff_ffff;

export class Machine {
  readonly board: VirtBoard;
  readonly hart: Hart;
  readonly layout: BootLayout;
  /** The device tree this machine booted with. */
  get dtb(): Uint8Array { return this.layout.dtb; }
  readonly htif: Htif | null = null;
  /** The plugged virtio device models, in the order of cfg.virtio. */
  readonly virtioDevices: VirtioDevice[] = [];
  private exit: MachineExit | null = null;
  private wake: (() => void) | null = null;
  /** Set while suspended: the run loop waits on it at a slice boundary. */
  private pauseGate: Promise<void> | null = null;
  private unpause: (() => void) | null = null;
  private readonly mono: () => number;
  private readonly stepLimit: number;
  /** Instructions executed plus traps taken, since construction. */
  steps = 0;
  /**
   * How the run loop waited while the hart slept in WFI: waits begun (with the virtual clock,
   * skips to the next deadline count too); host clock: waits ended by their timer, ended by
   * a host event (kick), and timer ends that came before the deadline (wasted wake-ups).
   */
  readonly idle = { sleeps: 0, timerWakes: 0, kicks: 0, earlyWakes: 0 };

  constructor(cfg: MachineConfig) {
    this.mono = cfg.monoClockMs ?? (() => performance.now());
    this.stepLimit = cfg.stepLimit ?? Infinity;
    this.board = new VirtBoard({
      memoryBytes: cfg.memoryBytes,
      serial: cfg.serial,
      monoClockMs: this.mono,
      wallClockMs: cfg.wallClockMs ?? (() => Date.now()),
      clock: cfg.clock,
      onPowerOff: (code) => this.finish({ reason: code === 0 ? 'poweroff' : 'fail', code }),
      onReset: () => this.finish({ reason: 'reset', code: 0 }),
      wake: () => this.wakeUp(),
    });
    this.hart = this.board.hart;
    this.hart.enableJit(cfg.jitThreshold ?? DEFAULT_JIT_THRESHOLD);
    let nics = 0;
    for (const spec of cfg.virtio ?? []) {
      const dev = spec.kind === 'blk' ? new VirtioBlk(spec.disk) : spec.kind === 'console' ? new VirtioConsole(spec.serial)
        : spec.kind === 'net' ? new VirtioNet(spec.backend, spec.mac ?? defaultMac(nics), spec.offloads, spec.tso)
          : spec.kind === 'input' ? new VirtioInput() : new VirtioRng();
      if (spec.kind === 'net') nics++;
      this.board.plugVirtio(dev);
      this.virtioDevices.push(dev);
    }
    const ramBase = this.board.bus.ramBase;
    this.board.bus.onRamWrite((paddr, len) => {
      const w = this.bootWrites;
      if (w) { if (w.length < 64) w.push([paddr - ramBase, paddr - ramBase + len]); else this.bootWrites = null; }
    });
    this.layout = setupBoot(this.board, this.hart, {
      bios: cfg.bios,
      kernel: cfg.kernel,
      initrd: cfg.initrd,
      append: cfg.append,
      images: cfg.images,
      rngSeed: rngSeedOf(cfg),
      onShutdown: (code) => this.finish({ reason: code === 0 ? 'poweroff' : 'fail', code }),
      onReset: () => this.finish({ reason: 'reset', code: 0 }),
    });
    const prog = cfg.bios instanceof Uint8Array ? cfg.bios : cfg.bios === 'none' ? cfg.kernel : null;
    if (prog && isElf(prog)) {
      const elf = parseElf(prog);
      const tohost = elf.symbols.get('tohost');
      if (tohost !== undefined) {
        const fromhost = elf.symbols.get('fromhost');
        this.htif = new Htif(this.board.bus, tohost, fromhost ?? null, (b) => this.board.uart.emit(b), (code) => this.finish({ reason: 'htif', code }));
      }
    }
  }

  /** RAM ranges written before the first run (loaders, load()); null once it ran, or after many. */
  private bootWrites: Array<[number, number]> | null = [];

  /**
   * Where the RAM of a machine that has not run may hold non-zero bytes (what its loaders
   * wrote), as byte ranges [start, end) from the start of RAM; the rest is untouched zeros.
   * Null once it ran (unknown). A snapshot restore leaves the rest unread (decodeSnapshot's intoWritten).
   */
  ramWritten(): ReadonlyArray<readonly [number, number]> | null { return this.bootWrites; }

  private finish(e: MachineExit): void {
    if (this.exit === null) this.exit = e;
    this.resume();
    this.hart.requestStop();
    this.kick();
  }

  /**
   * The machine's state. Call it while the machine is not running (before run(), after
   * run() returned, or paused); guest time is taken at this instant. Throws if a virtio
   * device has requests in flight: snapshot() waits for them.
   */
  save(): MachineState {
    const b = this.board;
    const busy = this.virtioDevices.find((d) => d.busy === true);
    if (busy) throw new Error(`machine state: ${busy.name} has requests in flight (use snapshot(), which drains them)`);
    return { ...this.saveParts(), ram: b.bus.saveRam() };
  }

  /** Everything but RAM (the part that is cheap to copy). */
  private saveParts(): MachineState {
    const b = this.board;
    const sbi = this.hart.sbi instanceof BuiltinSbi ? this.hart.sbi : null;
    return {
      v: 2, memoryBytes: b.memoryBytes, mode: this.layout.mode,
      hart: this.hart.save(), ram: { v: 1, base: b.bus.ramBase, bytes: new Uint8Array(0) }, clock: b.clock.save(),
      clint: b.clint.save(), plic: b.plic.save(), uart: b.uart.save(), rtc: b.rtc.save(), test: b.test.save(), rom: b.mrom.save(),
      sbi: sbi ? sbi.save() : null, htif: this.htif ? this.htif.save() : null,
      virtio: b.virtio.map((slot) => slot.save()), timers: b.saveTimers(),
    };
  }

  /**
   * Save a machine that may be running: pause the vCPU at a slice boundary, let in-flight
   * virtio-blk requests complete (their data lands in guest RAM, their used entries on the
   * ring), save, and resume unless it was already paused. The guest sees only a pause.
   * With `ram: false` the state's RAM is empty (the caller sends pages itself).
   */
  async snapshot(opts: { ram?: boolean } = {}): Promise<MachineState> {
    const wasPaused = this.paused;
    this.pause();
    try {
      for (;;) {
        const busy = this.virtioDevices.filter((d) => d.busy === true && d.drain);
        if (busy.length === 0) break;
        await Promise.all(busy.map((d) => d.drain?.()));
      }
      // ram: false (live migration's last round): the pages travel separately, skip the copy.
      return opts.ram === false ? this.saveParts() : this.save();
    } finally {
      if (!wasPaused) this.resume();
    }
  }

  /**
   * Continue from a saved state, in a machine constructed with the same memory size, boot
   * path and virtio devices (its own boot setup is overwritten). Throws a clear Error on a
   * mismatch, leaving the machine as it was; call it before run() (or while paused).
   */
  load(state: MachineState | MachineStateV1): void {
    const b = this.board;
    const s = this.migrate(state);
    if (s.memoryBytes !== b.memoryBytes) throw new Error(`machine state: saved with ${s.memoryBytes} bytes of RAM, this machine has ${b.memoryBytes}`);
    if (s.mode !== this.layout.mode) throw new Error(`machine state: saved with boot path '${s.mode}', this machine uses '${this.layout.mode}'`);
    if ((s.htif === null) !== (this.htif === null)) throw new Error('machine state: HTIF presence differs');
    const sbi = this.hart.sbi instanceof BuiltinSbi ? this.hart.sbi : null;
    if ((s.sbi === null) !== (sbi === null)) throw new Error('machine state: built-in SBI presence differs');
    if (!Array.isArray(s.virtio) || s.virtio.length !== b.virtio.length) throw new Error(`machine state: expected ${b.virtio.length} virtio slots`);
    b.bus.checkRam(s.ram);
    // Each part checks its state before changing anything; if a later part refuses, the
    // earlier ones are put back, so a machine is never left half-loaded. RAM, checked above,
    // goes in last, so the rollback copy need not hold it.
    const before = this.saveParts();
    try {
      this.apply(s, sbi);
    } catch (e) {
      this.apply(before, sbi);
      throw e;
    }
    b.bus.loadRam(s.ram);
    this.hart.load(s.hart); // again: a RAM write drops the LR reservation the hart state holds
    b.clock.load(s.clock); // and guest time continues from the saved tick, however long loading took
  }

  /** Bring an older state up to the current version, or refuse it clearly. */
  private migrate(s: MachineState | MachineStateV1): MachineState {
    if (s?.v === 2) return s;
    if (s?.v === 1) {
      // Version 1 knew no virtio devices: it fits only a machine without them, whose empty slots keep their reset state.
      if (this.virtioDevices.length > 0) throw new Error('machine state: version 1 has no virtio devices, this machine has ' + this.virtioDevices.map((d) => d.name).join(', '));
      return { ...s, v: 2, virtio: this.board.virtio.map((slot) => slot.save()), timers: [] };
    }
    throw new Error(`machine state: unsupported version ${String((s as { v?: unknown } | null)?.v)}`);
  }

  private apply(s: MachineState, sbi: BuiltinSbi | null): void {
    const b = this.board;
    this.hart.load(s.hart);
    b.clock.load(s.clock); // after the hart: the virtual clock runs on its instruction count
    b.clint.load(s.clint);
    b.plic.load(s.plic);
    b.uart.load(s.uart);
    b.rtc.load(s.rtc);
    b.test.load(s.test);
    b.mrom.load(s.rom);
    if (sbi && s.sbi) sbi.load(s.sbi);
    if (this.htif && s.htif) this.htif.load(s.htif);
    s.virtio.forEach((vs, i) => b.virtio[i].load(vs)); // after the PLIC: a slot re-drives its line
    b.loadTimers(s.timers);
  }

  /** Stop the machine from the host (Ctrl-A X, a test timeout). */
  stop(): void { this.finish({ reason: 'stopped', code: 0 }); }

  /**
   * Suspend: the run loop stops at the next slice boundary and runs nothing (no vCPU,
   * no device service) until resume(). The caller keeps guest time still (monoClockMs).
   */
  pause(): void {
    if (this.pauseGate) return;
    this.pauseGate = new Promise((r) => { this.unpause = r; });
    this.kick();
  }

  resume(): void {
    const r = this.unpause;
    this.pauseGate = null;
    this.unpause = null;
    r?.();
  }

  get paused(): boolean { return this.pauseGate !== null; }

  /**
   * Press the power button (a virtio-input KEY_POWER), as ACPI's button asks a PC to shut
   * down; the guest decides what to do. False if the machine has no such device.
   */
  powerButton(): boolean {
    const dev = this.virtioDevices.find((d): d is VirtioInput => d instanceof VirtioInput);
    if (!dev) return false;
    dev.pressPower();
    return true;
  }

  /** Console input from the host. Wakes a sleeping hart. */
  sendInput(bytes: Uint8Array): void {
    this.board.uart.receive(bytes);
    this.kick();
  }

  /**
   * Something happened outside the run loop (a device's host I/O completed): service the
   * devices now and wake a hart sleeping in WFI. Safe to call from any host callback.
   */
  wakeUp(): void { this.kick(); }

  private kick(): void {
    const w = this.wake;
    if (w) { this.wake = null; w(); }
  }

  /**
   * Devices' traffic (VirtioDevice.traffic) at the last look and when it last moved; its
   * count when the current TRAFFIC_MS window began, and when that was.
   */
  private traffic = 0;
  private trafficAt = -Infinity;
  private windowBase = 0;
  private windowAt = -Infinity;

  /** A device waits for host I/O (its completion runs when the loop yields). */
  private hostIoPending(): boolean {
    const v = this.virtioDevices;
    for (let i = 0; i < v.length; i++) if (v[i].busy === true) return true;
    return false;
  }

  /**
   * How long to run before the host's event loop gets a turn: YIELD_MS, or no longer than a
   * slice while a device's traffic with the host is interactive: some within TRAFFIC_MS,
   * less than TRAFFIC_BULK bytes in the current window of that length (more comes only
   * when the loop yields).
   */
  private yieldMs(): number {
    const v = this.virtioDevices;
    let traffic = 0;
    for (let i = 0; i < v.length; i++) { const t = v[i].traffic; if (t !== undefined) traffic += t; }
    const now = this.mono();
    if (traffic !== this.traffic) { this.traffic = traffic; this.trafficAt = now; }
    if (now - this.windowAt >= TRAFFIC_MS) { this.windowAt = now; this.windowBase = traffic; }
    return now - this.trafficAt < TRAFFIC_MS && traffic - this.windowBase < TRAFFIC_BULK ? 0 : YIELD_MS;
  }

  /** Bring devices and timers up to date; returns the next timer deadline in mtime ticks. */
  private service(): number {
    this.htif?.poll();
    return this.board.service();
  }

  /** Run until the guest powers off, resets, fails, or stop() is called. */
  async run(): Promise<MachineExit> {
    this.bootWrites = null; // the guest writes RAM from now on
    const hart = this.hart;
    const builtin = this.layout.mode === 'builtin';
    try {
      const clock = this.board.clock;
      let deadline = this.service();
      /** When the host's event loop last had a turn. */
      let lastTurn = this.mono();
      while (this.exit === null) {
        if (this.pauseGate) { await this.pauseGate; continue; }
        const t0 = this.mono();
        while (this.exit === null && this.pauseGate === null) {
          // Virtual clock: end the slice exactly at the next deadline, so timer interrupts
          // arrive at the same instruction however the run is sliced (or saved and resumed).
          const slice = clock.virtual ? Math.max(1, Math.min(SLICE, clock.instructionsUntil(deadline))) : SLICE;
          this.steps += hart.run(Math.min(slice, this.stepLimit - this.steps));
          if (this.steps >= this.stepLimit) { this.finish({ reason: 'stopped', code: 0, message: `step limit ${this.stepLimit} reached` }); break; }
          if (builtin && hart.priv === PRIV_M) { this.firmwareTrap(); break; }
          deadline = this.service();
          if (hart.waiting || this.hostIoPending() || this.mono() - t0 >= this.yieldMs()) break;
        }
        if (this.exit !== null) break;
        if (this.pauseGate) continue;
        if (hart.waiting) {
          if (clock.virtual && deadline !== Infinity) {
            // Nothing runs until the deadline: skip there instead of waiting for it.
            this.idle.sleeps++;
            clock.advanceTo(deadline);
            await yieldToHost();
          } else {
            await this.idleWait(deadline, t0);
          }
          lastTurn = this.mono();
          deadline = this.service();
          if (hart.waiting && hart.interruptPending) hart.waiting = false;
        } else if (this.hostIoPending() && this.mono() - lastTurn < YIELD_MS) {
          // The completion may be due already (a read the host's page cache served:
          // host/storage/nowait.ts) and runs in the microtasks that run now: go on as soon as
          // it wakes the machine, without the event loop's turn. That turn still comes when
          // nothing wakes it, and at least every YIELD_MS.
          if (await this.wokenOrTurn()) lastTurn = this.mono();
        } else {
          await yieldToHost();
          lastTurn = this.mono();
        }
      }
    } catch (e) {
      this.exit = { reason: 'error', code: 1, message: e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e) };
    }
    this.board.uart.flush();
    return this.exit ?? { reason: 'stopped', code: 0 };
  }

  /** Built-in SBI mode has no M-mode code: a trap that reaches M is a fatal guest error, as a firmware panic would be. */
  private firmwareTrap(): void {
    const h = this.hart;
    const hex = (v: bigint): string => '0x' + BigInt.asUintN(64, v).toString(16);
    this.finish({ reason: 'panic', code: 1, message: `unhandled trap to M-mode: mcause=${hex(h.mcause)} mepc=${hex(h.mepc)} mtval=${hex(h.mtval)}` });
  }

  /** Wait for a wake-up (kick) or a turn of the host's event loop, whichever comes first; true for the turn. */
  private wokenOrTurn(): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const woken = (): void => { resolve(false); };
      this.wake = woken;
      void yieldToHost().then(() => {
        if (this.wake === woken) this.wake = null;
        resolve(true);
      });
    });
  }

  /**
   * The hart sleeps in WFI (host clock): one host timer for the earliest guest deadline
   * (mtimecmp, stimecmp, RTC alarm, device timers), or none when there is none; a host event
   * (input, I/O completion: kick()) ends the wait early. Nothing polls in between.
   */
  private async idleWait(deadline: number, turnStart: number): Promise<void> {
    const idle = this.idle;
    const ms = this.board.clock.msUntil(deadline);
    if (ms <= 0) return;
    idle.sleeps++;
    // Host timers count from the event loop's cached time, taken when this host turn began:
    // add the time run since, and round up, so the timer does not fire before the deadline.
    // No deadline at all: the longest timer, only so that the host keeps running.
    const wait = Math.min(MAX_TIMER_MS, Math.ceil(ms + Math.max(0, this.mono() - turnStart)));
    const kicked = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => { this.wake = null; resolve(false); }, wait);
      this.wake = () => { clearTimeout(t); resolve(true); };
    });
    if (kicked) idle.kicks++;
    else {
      idle.timerWakes++;
      if (this.board.clock.now() < deadline && wait !== MAX_TIMER_MS) idle.earlyWakes++;
    }
  }
}

const g = globalThis as { setImmediate?: (cb: () => void) => unknown };
/** Browsers: a MessageChannel message is the unclamped macrotask (setTimeout(0) is clamped to >= 4 ms). */
let channel: MessageChannel | null = null;
const channelWaiters: Array<() => void> = [];

/** Let host events (input, I/O completions, timers) run, as soon as possible. */
export function yieldToHost(): Promise<void> {
  return new Promise((resolve) => {
    if (g.setImmediate) { g.setImmediate(resolve); return; }
    if (typeof MessageChannel === 'function') {
      if (channel === null) {
        channel = new MessageChannel();
        channel.port1.onmessage = () => { channelWaiters.shift()?.(); };
        // Node (tests): an idle port must not keep the process alive.
        (channel.port1 as { unref?: () => void }).unref?.();
      }
      channelWaiters.push(resolve);
      channel.port2.postMessage(0);
      return;
    }
    setTimeout(resolve, 0);
  });
}
