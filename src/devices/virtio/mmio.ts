/**
 * The virtio-mmio transport, version 2 (Virtio 1.2 §4.2.2 "MMIO Device Register Layout").
 * QEMU virt has eight slots at 0x1000_1000..0x1000_8000. A slot with no device answers
 * DeviceID 0 (§4.2.3.1.1), which drivers skip. A device model (blk, console, rng) plugs into
 * a slot; the transport owns the registers, feature negotiation (§2.2, §3.1.1), the device
 * status (§2.1), the queues and the interrupt line.
 *
 * Malformed rings put the device in DEVICE_NEEDS_RESET (§2.1.2) with a configuration-change
 * interrupt; the device then does nothing until the driver resets it.
 */
import type { IrqLine, MmioDevice, Stateful } from '../device.js';
import type { Bus } from '../../machine/bus.js';
import { Chain, Virtqueue, type QueueState } from './virtqueue.js';

export const VIRTIO_MMIO_SIZE = 0x1000;

// Register offsets (§4.2.2).
const MAGIC_VALUE = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, VENDOR_ID = 0x00c;
const DEVICE_FEATURES = 0x010, DEVICE_FEATURES_SEL = 0x014;
const DRIVER_FEATURES = 0x020, DRIVER_FEATURES_SEL = 0x024;
const QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038, QUEUE_READY = 0x044;
const QUEUE_NOTIFY = 0x050, INTERRUPT_STATUS = 0x060, INTERRUPT_ACK = 0x064, STATUS = 0x070;
const QUEUE_DESC_LOW = 0x080, QUEUE_DESC_HIGH = 0x084;
const QUEUE_DRIVER_LOW = 0x090, QUEUE_DRIVER_HIGH = 0x094;
const QUEUE_DEVICE_LOW = 0x0a0, QUEUE_DEVICE_HIGH = 0x0a4;
const SHM_LEN_LOW = 0x0b0, SHM_LEN_HIGH = 0x0b4, SHM_BASE_LOW = 0x0b8, SHM_BASE_HIGH = 0x0bc;
const QUEUE_RESET = 0x0c0;
const CONFIG_GENERATION = 0x0fc, CONFIG = 0x100;

/** "virt" in little-endian ASCII. */
const VIRTIO_MAGIC = 0x74726976;
/** QEMU's vendor ID ("QEMU"), which Linux does not interpret. */
const VENDOR = 0x554d4551;

// Device status bits (§2.1).
export const STATUS_ACKNOWLEDGE = 1, STATUS_DRIVER = 2, STATUS_DRIVER_OK = 4, STATUS_FEATURES_OK = 8;
export const STATUS_DEVICE_NEEDS_RESET = 64, STATUS_FAILED = 128;

// Transport feature bits (§6), in the high or low 32-bit word.
export const VIRTIO_F_INDIRECT_DESC = 28, VIRTIO_F_EVENT_IDX = 29;
/** VIRTIO_F_VERSION_1 is bit 32: bit 0 of the high word. */
const F_HI_VERSION_1 = 1;

export const INT_USED_BUFFER = 1, INT_CONFIG_CHANGE = 2;

/** What a device model sees of its transport. */
export interface VirtioTransport {
  readonly bus: Bus;
  queue(i: number): Virtqueue;
  /** A chain scratch object sized for queue i (reused; one per queue). */
  chain(i: number): Chain;
  /** DRIVER_OK is set and the device is not awaiting reset. */
  readonly live: boolean;
  /** Changes on every reset: async completions from before a reset compare it and drop themselves. */
  readonly epoch: number;
  /** Whether the driver accepted feature bit `bit` (< 32). */
  hasFeature(bit: number): boolean;
  /** After pushing used entries on queue i: interrupt if the driver wants one. */
  notifyUsed(i: number): void;
  /** A malformed ring or request: DEVICE_NEEDS_RESET (§2.1.2). */
  fail(): void;
  /** The device changed its config space (§2.4.2). */
  configChanged(): void;
  /** Wake the machine after work done outside the run loop (host I/O completions). */
  wake(): void;
  /**
   * End the run loop's slice after the current instruction: host I/O just begun may have
   * completed already (a read the host's page cache served at once), and its completion
   * runs only when the loop yields. The guest then sees it before its next instruction, as
   * a device whose I/O took no time (without this it ran on, ~2,800 instructions in Linux,
   * into WFI first).
   */
  yieldSoon(): void;
}

/** A device model behind the transport (one file per device type). */
export interface VirtioDevice extends Stateful<{ v: number }> {
  readonly deviceId: number;
  readonly name: string;
  /** Maximum size of each queue. */
  readonly queueMax: readonly number[];
  /** Device feature bits 0..23 (the transport adds its own). */
  readonly features: number;
  /** Device configuration space (§4.2.2 Config), little-endian, read by the driver. */
  readonly config: Uint8Array;
  attach(t: VirtioTransport): void;
  /** The driver notified queue i. */
  notify(i: number): void;
  /** The driver wrote the config space (already stored in `config` where writable). */
  configWrite?(offset: number, size: number, value: number): void;
  /** Device reset (§2.4): drop queued work; in-flight host I/O is ignored when it completes. */
  reset(): void;
  /** DRIVER_OK was just set. */
  driverOk?(): void;
  /** Requests taken from a ring whose host work has not completed (not saveable state). */
  readonly busy?: boolean;
  /** Resolves when nothing is in flight (completions may start more: loop while busy). */
  drain?(): Promise<void>;
  /**
   * A count of the device's traffic with the host (a NIC's bytes in and out). While it
   * moves, the run loop lets host events in after every slice: the next frame of an
   * exchange then reaches a guest that computes without waiting for the loop's 15 ms turn.
   */
  readonly traffic?: number;
}

export interface VirtioMmioState {
  v: 1;
  status: number;
  deviceFeaturesSel: number;
  driverFeaturesSel: number;
  driverFeatures: [number, number];
  queueSel: number;
  interruptStatus: number;
  configGeneration: number;
  queues: QueueState[];
  device: { v: number } | null;
  /** The device type in the slot (absent in states saved before it was recorded). */
  deviceId?: number;
}

export class VirtioMmio implements MmioDevice, VirtioTransport, Stateful<VirtioMmioState> {
  readonly name: string;
  private dev: VirtioDevice | null = null;
  private queues: Virtqueue[] = [];
  private chains: Chain[] = [];
  private status = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeatures: [number, number] = [0, 0];
  private queueSel = 0;
  private interruptStatus = 0;
  private configGeneration = 0;
  epoch = 0;

  constructor(index: number, readonly bus: Bus, private readonly irq: IrqLine, private readonly waker: () => void,
    private readonly endSlice: () => void = () => {}) {
    this.name = `virtio_mmio${index}`;
  }

  get device(): VirtioDevice | null { return this.dev; }

  /** Plug a device into this slot (before the guest runs). */
  plug(dev: VirtioDevice): void {
    if (this.dev) throw new Error(`${this.name} already holds ${this.dev.name}`);
    this.dev = dev;
    this.queues = dev.queueMax.map((m) => new Virtqueue(this.bus, m));
    this.chains = dev.queueMax.map((m) => new Chain(this.bus, m));
    dev.attach(this);
  }

  // ---- VirtioTransport ----
  queue(i: number): Virtqueue { return this.queues[i]; }
  chain(i: number): Chain { return this.chains[i]; }
  get live(): boolean { return (this.status & (STATUS_DRIVER_OK | STATUS_DEVICE_NEEDS_RESET)) === STATUS_DRIVER_OK; }
  hasFeature(bit: number): boolean { return ((this.driverFeatures[0] >>> bit) & 1) === 1; }
  wake(): void { this.waker(); }
  yieldSoon(): void { this.endSlice(); }

  notifyUsed(i: number): void {
    if (this.queues[i].shouldNotify()) this.raise(INT_USED_BUFFER);
  }

  fail(): void {
    if (this.status & STATUS_DEVICE_NEEDS_RESET) return;
    this.status |= STATUS_DEVICE_NEEDS_RESET;
    this.raise(INT_CONFIG_CHANGE);
  }

  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) >>> 0;
    if (this.status & STATUS_DRIVER_OK) this.raise(INT_CONFIG_CHANGE);
  }

  private raise(bit: number): void {
    this.interruptStatus |= bit;
    this.irq.set(true);
  }

  // ---- registers ----
  read(offset: number, size: 1 | 2 | 4): number {
    const dev = this.dev;
    if (offset >= CONFIG) {
      if (!dev) return 0;
      const o = offset - CONFIG, c = dev.config;
      if (o + size > c.length) return 0;
      return size === 1 ? c[o] : size === 2 ? c[o] | (c[o + 1] << 8) : (c[o] | (c[o + 1] << 8) | (c[o + 2] << 16) | (c[o + 3] << 24)) >>> 0;
    }
    if (size !== 4) return 0;
    switch (offset) {
      case MAGIC_VALUE: return VIRTIO_MAGIC;
      case VERSION: return 2;
      case DEVICE_ID: return dev ? dev.deviceId : 0;
      case VENDOR_ID: return VENDOR;
    }
    if (!dev) return 0;
    const q = this.queues[this.queueSel] as Virtqueue | undefined;
    switch (offset) {
      case DEVICE_FEATURES:
        if (this.deviceFeaturesSel === 0) return this.deviceFeatureWord(0);
        return this.deviceFeaturesSel === 1 ? this.deviceFeatureWord(1) : 0;
      case QUEUE_NUM_MAX: return q ? q.maxSize : 0;
      case QUEUE_READY: return q?.ready ? 1 : 0;
      case INTERRUPT_STATUS: return this.interruptStatus;
      case STATUS: return this.status;
      case QUEUE_DESC_LOW: return q ? q.desc >>> 0 : 0;
      case QUEUE_DESC_HIGH: return q ? Math.floor(q.desc / 0x1_0000_0000) : 0;
      case QUEUE_DRIVER_LOW: return q ? q.driver >>> 0 : 0;
      case QUEUE_DRIVER_HIGH: return q ? Math.floor(q.driver / 0x1_0000_0000) : 0;
      case QUEUE_DEVICE_LOW: return q ? q.device >>> 0 : 0;
      case QUEUE_DEVICE_HIGH: return q ? Math.floor(q.device / 0x1_0000_0000) : 0;
      // No shared memory regions: length -1 means "does not exist" (§4.2.2).
      case SHM_LEN_LOW: case SHM_LEN_HIGH: case SHM_BASE_LOW: case SHM_BASE_HIGH: return 0xffff_ffff;
      case QUEUE_RESET: return 0;
      case CONFIG_GENERATION: return this.configGeneration;
      default: return 0;
    }
  }

  private deviceFeatureWord(w: number): number {
    const dev = this.dev;
    if (!dev) return 0;
    if (w === 1) return F_HI_VERSION_1;
    return ((dev.features & 0x00ff_ffff) | (1 << VIRTIO_F_INDIRECT_DESC) | (1 << VIRTIO_F_EVENT_IDX)) >>> 0;
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    const dev = this.dev;
    if (!dev) return;
    if (offset >= CONFIG) { this.writeConfig(offset - CONFIG, size, value); return; }
    if (size !== 4) return;
    value >>>= 0;
    const q = this.queues[this.queueSel] as Virtqueue | undefined;
    // Queue layout registers are writable only while the queue is not ready (§4.2.2).
    const qw = q !== undefined && !q.ready;
    switch (offset) {
      case DEVICE_FEATURES_SEL: this.deviceFeaturesSel = value; break;
      case DRIVER_FEATURES_SEL: this.driverFeaturesSel = value; break;
      case DRIVER_FEATURES:
        if (this.driverFeaturesSel < 2 && !(this.status & STATUS_FEATURES_OK)) this.driverFeatures[this.driverFeaturesSel] = value;
        break;
      case QUEUE_SEL: this.queueSel = value; break;
      case QUEUE_NUM: if (qw) q.num = value; break;
      case QUEUE_READY:
        if (!q) break;
        if (value & 1) {
          if (!q.ready && !q.activate()) this.fail();
        } else {
          q.ready = false;
        }
        break;
      case QUEUE_NOTIFY:
        // With VIRTIO_F_NOTIFICATION_DATA not offered, the value is the queue index.
        if (value < this.queues.length && this.live && this.queues[value].ready) dev.notify(value);
        break;
      case INTERRUPT_ACK:
        this.interruptStatus &= ~value;
        if (this.interruptStatus === 0) this.irq.set(false);
        break;
      case STATUS: this.writeStatus(value & 0xff); break;
      case QUEUE_DESC_LOW: if (qw) q.desc = hiPart(q.desc) + value; break;
      case QUEUE_DESC_HIGH: if (qw) q.desc = hiValue(value) + (q.desc % 0x1_0000_0000); break;
      case QUEUE_DRIVER_LOW: if (qw) q.driver = hiPart(q.driver) + value; break;
      case QUEUE_DRIVER_HIGH: if (qw) q.driver = hiValue(value) + (q.driver % 0x1_0000_0000); break;
      case QUEUE_DEVICE_LOW: if (qw) q.device = hiPart(q.device) + value; break;
      case QUEUE_DEVICE_HIGH: if (qw) q.device = hiValue(value) + (q.device % 0x1_0000_0000); break;
      default: break;
    }
  }

  private writeStatus(value: number): void {
    const dev = this.dev;
    if (!dev) return;
    if (value === 0) { this.reset(); return; }
    const old = this.status;
    let s = value;
    if ((s & STATUS_FEATURES_OK) && !(old & STATUS_FEATURES_OK)) {
      // §2.2.2: accept only a subset of what we offer, and only modern drivers (§7.2.1).
      const ok = (this.driverFeatures[0] & ~this.deviceFeatureWord(0)) === 0 &&
        (this.driverFeatures[1] & ~this.deviceFeatureWord(1)) === 0 &&
        (this.driverFeatures[1] & F_HI_VERSION_1) !== 0;
      if (!ok) s &= ~STATUS_FEATURES_OK;
      else {
        const ev = this.hasFeature(VIRTIO_F_EVENT_IDX);
        for (const q of this.queues) q.eventIdx = ev;
      }
    }
    // The driver cannot clear bits except by reset, nor set NEEDS_RESET.
    s = (s | old) & ~STATUS_DEVICE_NEEDS_RESET | (old & STATUS_DEVICE_NEEDS_RESET);
    this.status = s;
    if ((s & STATUS_DRIVER_OK) && !(old & STATUS_DRIVER_OK)) dev.driverOk?.();
  }

  private writeConfig(o: number, size: 1 | 2 | 4, value: number): void {
    const dev = this.dev;
    if (!dev || !dev.configWrite || o + size > dev.config.length) return;
    dev.configWrite(o, size, value);
  }

  /** Device reset (§2.4, status written 0). */
  reset(): void {
    this.status = 0;
    this.deviceFeaturesSel = this.driverFeaturesSel = 0;
    this.driverFeatures = [0, 0];
    this.queueSel = 0;
    this.interruptStatus = 0;
    this.irq.set(false);
    this.epoch++;
    for (const q of this.queues) q.reset();
    this.dev?.reset();
  }

  save(): VirtioMmioState {
    return {
      v: 1, status: this.status, deviceFeaturesSel: this.deviceFeaturesSel, driverFeaturesSel: this.driverFeaturesSel,
      driverFeatures: [this.driverFeatures[0], this.driverFeatures[1]], queueSel: this.queueSel,
      interruptStatus: this.interruptStatus, configGeneration: this.configGeneration,
      queues: this.queues.map((q) => q.save()), device: this.dev ? this.dev.save() : null, deviceId: this.dev ? this.dev.deviceId : 0,
    };
  }

  /**
   * Load a saved transport. In-flight requests are not state: save only when the device is
   * quiescent (Machine.snapshot() drains virtio-blk first). Checks the whole state before
   * changing anything; a queue whose rings are not valid here leaves DEVICE_NEEDS_RESET.
   */
  load(s: VirtioMmioState): void {
    if (s?.v !== 1) throw new Error(`${this.name}: unknown state version ${String(s?.v)}`);
    const u32 = (x: unknown): boolean => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0xffff_ffff;
    const addr = (x: unknown): boolean => Number.isSafeInteger(x) && (x as number) >= 0;
    if (![s.status, s.deviceFeaturesSel, s.driverFeaturesSel, s.queueSel, s.interruptStatus, s.configGeneration].every(u32) ||
      !Array.isArray(s.driverFeatures) || s.driverFeatures.length !== 2 || !s.driverFeatures.every(u32) || !Array.isArray(s.queues) ||
      !s.queues.every((q) => u32(q?.num) && typeof q.ready === 'boolean' && addr(q.desc) && addr(q.driver) && addr(q.device) && u32(q.lastAvail) && u32(q.usedIdx))) {
      throw new Error(`${this.name}: malformed state`);
    }
    const id = this.dev ? this.dev.deviceId : 0;
    if (s.queues.length !== this.queues.length || (s.device === null) !== (this.dev === null) || (s.deviceId !== undefined && s.deviceId !== id)) {
      throw new Error(`${this.name}: saved state is for a different device (saved ${s.deviceId ?? '?'}, here ${id})`);
    }
    if (this.dev && s.device) this.dev.load(s.device);
    this.status = s.status; this.deviceFeaturesSel = s.deviceFeaturesSel; this.driverFeaturesSel = s.driverFeaturesSel;
    this.driverFeatures = [s.driverFeatures[0] >>> 0, s.driverFeatures[1] >>> 0];
    this.queueSel = s.queueSel; this.interruptStatus = s.interruptStatus; this.configGeneration = s.configGeneration;
    this.epoch++;
    const ev = this.hasFeature(VIRTIO_F_EVENT_IDX);
    s.queues.forEach((qs, i) => {
      const q = this.queues[i];
      q.eventIdx = ev;
      if (!q.load(qs)) this.status |= STATUS_DEVICE_NEEDS_RESET;
    });
    this.irq.set(this.interruptStatus !== 0);
  }
}

function hiPart(v: number): number { return Math.floor(v / 0x1_0000_0000) * 0x1_0000_0000; }
/** High address word; anything above 2^53 cannot be RAM, clamp so activate() rejects it. */
function hiValue(v: number): number { return Math.min(v, 0x1f_ffff) * 0x1_0000_0000; }
