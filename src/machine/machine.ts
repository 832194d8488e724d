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
import type { SerialBackend, BlockBackend } from '../devices/device.js';
import type { VirtioDevice } from '../devices/virtio/mmio.js';
import { VirtioBlk } from '../devices/virtio/blk.js';
import { VirtioConsole } from '../devices/virtio/console.js';
import { VirtioRng } from '../devices/virtio/rng.js';

export type { SerialBackend };

/** A virtio device to plug into the board, with its host backend. Slots fill in list order. */
export type VirtioDeviceSpec =
  | { kind: 'blk'; disk: BlockBackend }
  | { kind: 'console'; serial: SerialBackend }
  | { kind: 'rng' };

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
  /** virtio devices (disks, console, rng), in slot order: the first disk is /dev/vda. */
  virtio?: readonly VirtioDeviceSpec[];
}

export type MachineExit = {
  /** 'panic': the guest wedged itself (a trap reached M-mode with no M-mode firmware); 'error': a host exception (a bug). */
  reason: 'poweroff' | 'reset' | 'fail' | 'htif' | 'stopped' | 'panic' | 'error';
  code: number;
  message?: string;
};

/** Instructions per slice between device updates. */
const SLICE = 20000;
/** Wall time to run before yielding to the host event loop. */
const YIELD_MS = 15;

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

  constructor(cfg: MachineConfig) {
    this.mono = cfg.monoClockMs ?? (() => performance.now());
    this.board = new VirtBoard({
      memoryBytes: cfg.memoryBytes,
      serial: cfg.serial,
      monoClockMs: this.mono,
      wallClockMs: cfg.wallClockMs ?? (() => Date.now()),
      onPowerOff: (code) => this.finish({ reason: code === 0 ? 'poweroff' : 'fail', code }),
      onReset: () => this.finish({ reason: 'reset', code: 0 }),
      wake: () => this.wakeUp(),
    });
    this.hart = this.board.hart;
    for (const spec of cfg.virtio ?? []) {
      const dev = spec.kind === 'blk' ? new VirtioBlk(spec.disk) : spec.kind === 'console' ? new VirtioConsole(spec.serial) : new VirtioRng();
      this.board.plugVirtio(dev);
      this.virtioDevices.push(dev);
    }
    this.layout = setupBoot(this.board, this.hart, {
      bios: cfg.bios,
      kernel: cfg.kernel,
      initrd: cfg.initrd,
      append: cfg.append,
      images: cfg.images,
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

  private finish(e: MachineExit): void {
    if (this.exit === null) this.exit = e;
    this.resume();
    this.hart.requestStop();
    this.kick();
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

  /** Bring devices and timers up to date; returns the next timer deadline in mtime ticks. */
  private service(): number {
    this.htif?.poll();
    return this.board.service();
  }

  /** Run until the guest powers off, resets, fails, or stop() is called. */
  async run(): Promise<MachineExit> {
    const hart = this.hart;
    const builtin = this.layout.mode === 'builtin';
    try {
      while (this.exit === null) {
        if (this.pauseGate) { await this.pauseGate; continue; }
        const t0 = this.mono();
        let deadline = Infinity;
        while (this.exit === null && this.pauseGate === null) {
          hart.run(SLICE);
          if (builtin && hart.priv === PRIV_M) { this.firmwareTrap(); break; }
          deadline = this.service();
          if (hart.waiting || this.mono() - t0 >= YIELD_MS) break;
        }
        if (this.exit !== null) break;
        if (this.pauseGate) continue;
        if (hart.waiting) {
          const ticks = deadline - this.board.clock.now();
          if (ticks > 0) await this.sleep(Math.min(1000, ticks / 10000));
          this.service();
          if (hart.waiting && hart.interruptPending) hart.waiting = false;
        } else {
          await yieldToHost();
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

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.wake = null; resolve(); }, Math.max(0, ms));
      this.wake = () => { clearTimeout(t); resolve(); };
    });
  }
}

const g = globalThis as { setImmediate?: (cb: () => void) => unknown };
function yieldToHost(): Promise<void> {
  return new Promise((resolve) => {
    if (g.setImmediate) g.setImmediate(resolve); else setTimeout(resolve, 0);
  });
}
