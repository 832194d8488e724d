/**
 * virtio-input (Virtio 1.2 §5.8) as a small keyboard: the power button (KEY_POWER), plus
 * Ctrl, Alt and Delete so the host can also send Ctrl-Alt-Del. Linux's virtio_input driver
 * makes it an input device; a guest acts on KEY_POWER through evdev (busybox acpid, systemd-
 * logind), and a kernel with a VT keyboard turns Ctrl-Alt-Del into SIGINT for init.
 *
 * Queue 0 (eventq) carries struct virtio_input_event {le16 type; le16 code; le32 value}
 * to the guest, one per buffer; queue 1 (statusq) carries LED updates back, which this
 * device takes and drops. Events wait in a bounded queue while the guest has no buffers.
 */
import type { VirtioDevice, VirtioTransport } from './mmio.js';

export const VIRTIO_ID_INPUT = 18;
const EVENTQ = 0, STATUSQ = 1;
const QUEUE_SIZE = 64;

// Linux input event codes (include/uapi/linux/input-event-codes.h).
export const EV_SYN = 0, EV_KEY = 1, SYN_REPORT = 0;
export const KEY_LEFTCTRL = 29, KEY_LEFTALT = 56, KEY_DELETE = 111, KEY_POWER = 116;
const KEYS = [KEY_LEFTCTRL, KEY_LEFTALT, KEY_DELETE, KEY_POWER] as const;

// struct virtio_input_config: select, subsel, size, reserved[5], then the 128-byte union.
const CFG_SELECT = 0, CFG_SUBSEL = 1, CFG_SIZE = 2, CFG_UNION = 8, CFG_LEN = 136;
const CFG_UNSET = 0x00, CFG_ID_NAME = 0x01, CFG_ID_SERIAL = 0x02, CFG_ID_DEVIDS = 0x03;
const CFG_PROP_BITS = 0x10, CFG_EV_BITS = 0x11;
const NAME = 'typevisor power button';
const SERIAL = 'typevisor-keys-0';
/** BUS_VIRTUAL (input.h), and ids of our own (no vendor registry involved). */
const BUS_VIRTUAL = 0x06, VENDOR_ID = 0x0627, PRODUCT_ID = 0x0001, VERSION = 0x0001;
/** Events held while the guest posts no buffers (a driver that never comes loses the oldest beyond this). */
const MAX_PENDING = 256;

export interface VirtioInputState { v: 1; select: number; subsel: number; pending: number[] }

export class VirtioInput implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_INPUT;
  readonly name = 'virtio-input';
  readonly queueMax = [QUEUE_SIZE, QUEUE_SIZE];
  readonly features = 0;
  readonly config = new Uint8Array(CFG_LEN);
  private t!: VirtioTransport;
  /** Pending events, 3 numbers each (type, code, value). */
  private pending: number[] = [];
  private readonly ev = new Uint8Array(8);
  private readonly evView = new DataView(this.ev.buffer);
  /** Events dropped because the guest took none for too long. */
  dropped = 0;

  attach(t: VirtioTransport): void { this.t = t; }
  reset(): void { this.pending = []; this.select(CFG_UNSET, 0); }
  driverOk(): void { this.deliver(); }

  notify(i: number): void {
    if (i === EVENTQ) this.deliver();
    else if (i === STATUSQ) this.drainStatus();
  }

  /**
   * Press and release `keys` as a chord: each goes down in order, a SYN_REPORT, then each
   * comes up in reverse order, another SYN_REPORT. Unknown codes are ignored.
   */
  press(keys: readonly number[]): void {
    const ks = keys.filter((k) => (KEYS as readonly number[]).includes(k));
    if (ks.length === 0) return;
    for (const k of ks) this.queue(EV_KEY, k, 1);
    this.queue(EV_SYN, SYN_REPORT, 0);
    for (let i = ks.length - 1; i >= 0; i--) this.queue(EV_KEY, ks[i], 0);
    this.queue(EV_SYN, SYN_REPORT, 0);
    this.deliver();
    this.t.wake();
  }

  /** The power button: KEY_POWER down and up. */
  pressPower(): void { this.press([KEY_POWER]); }

  private queue(type: number, code: number, value: number): void {
    if (this.pending.length >= MAX_PENDING * 3) { this.pending.splice(0, 3); this.dropped++; }
    this.pending.push(type, code, value);
  }

  private deliver(): void {
    const t = this.t;
    if (!t.live || this.pending.length === 0) return;
    const q = t.queue(EVENTQ), c = t.chain(EVENTQ);
    let used = 0;
    while (used < this.pending.length) {
      const r = q.pop(c);
      if (r === 0) break;
      if (r < 0) { t.fail(); return; }
      if (c.writeLen < 8) { q.push(c.head, 0); continue; } // too small for an event: return it unused
      this.evView.setUint16(0, this.pending[used], true);
      this.evView.setUint16(2, this.pending[used + 1], true);
      this.evView.setUint32(4, this.pending[used + 2] >>> 0, true);
      q.push(c.head, c.write(0, this.ev));
      used += 3;
    }
    if (used > 0) {
      this.pending.splice(0, used);
      t.notifyUsed(EVENTQ);
    }
  }

  /** statusq: LED and similar updates from the guest, which a power button has no use for. */
  private drainStatus(): void {
    const t = this.t, q = t.queue(STATUSQ), c = t.chain(STATUSQ);
    let any = false;
    for (;;) {
      const r = q.pop(c);
      if (r === 0) break;
      if (r < 0) { t.fail(); return; }
      q.push(c.head, 0);
      any = true;
    }
    if (any) t.notifyUsed(STATUSQ);
  }

  configWrite(offset: number, size: number, value: number): void {
    // Only select and subsel are driver-writable (§5.8.5); a wider write may cover both.
    for (let i = 0; i < size; i++) {
      const o = offset + i, b = (value >>> (8 * i)) & 0xff;
      if (o === CFG_SELECT) this.config[CFG_SELECT] = b;
      else if (o === CFG_SUBSEL) this.config[CFG_SUBSEL] = b;
    }
    if (offset <= CFG_SUBSEL) this.select(this.config[CFG_SELECT], this.config[CFG_SUBSEL]);
  }

  /** Fill size and the union for (select, subsel) (§5.8.5.1). */
  private select(sel: number, subsel: number): void {
    const c = this.config;
    c.fill(0);
    c[CFG_SELECT] = sel;
    c[CFG_SUBSEL] = subsel;
    const u = c.subarray(CFG_UNION);
    let size = 0;
    const str = (s: string): number => { for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i); return s.length; };
    switch (sel) {
      case CFG_ID_NAME: if (subsel === 0) size = str(NAME); break;
      case CFG_ID_SERIAL: if (subsel === 0) size = str(SERIAL); break;
      case CFG_ID_DEVIDS:
        if (subsel === 0) {
          const v = new DataView(u.buffer, u.byteOffset, 8);
          v.setUint16(0, BUS_VIRTUAL, true); v.setUint16(2, VENDOR_ID, true);
          v.setUint16(4, PRODUCT_ID, true); v.setUint16(6, VERSION, true);
          size = 8;
        }
        break;
      case CFG_PROP_BITS: break; // no input properties
      case CFG_EV_BITS:
        if (subsel === EV_KEY) {
          for (const k of KEYS) u[k >> 3] |= 1 << (k & 7);
          size = (Math.max(...KEYS) >> 3) + 1;
        }
        break;
      default: break;
    }
    c[CFG_SIZE] = size;
  }

  save(): VirtioInputState {
    return { v: 1, select: this.config[CFG_SELECT], subsel: this.config[CFG_SUBSEL], pending: this.pending.slice() };
  }

  load(s: { v: number }): void {
    const st = s as Partial<VirtioInputState>;
    if (st.v !== 1 || !Number.isInteger(st.select) || !Number.isInteger(st.subsel) || !Array.isArray(st.pending)
      || st.pending.length % 3 !== 0 || st.pending.length > MAX_PENDING * 3 || !st.pending.every((x) => Number.isInteger(x))) {
      throw new Error('virtio-input state: unsupported version or malformed');
    }
    this.select((st.select as number) & 0xff, (st.subsel as number) & 0xff);
    this.pending = st.pending.slice();
  }
}
