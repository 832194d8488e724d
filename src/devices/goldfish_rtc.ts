/**
 * Goldfish RTC at 0x10_1000, IRQ 11 (Android emulator "goldfish" virtual hardware,
 * GOLDFISH-VIRTUAL-HARDWARE.TXT, "goldfish_rtc"; Linux drivers/rtc/rtc-goldfish.c).
 * Time is nanoseconds since the Unix epoch, from the host's wall clock plus an offset
 * the guest may set. Reading TIME_LOW latches TIME_HIGH. One alarm with an interrupt.
 */
import type { MmioDevice, IrqLine, Stateful } from './device.js';

const TIME_LOW = 0x00, TIME_HIGH = 0x04, ALARM_LOW = 0x08, ALARM_HIGH = 0x0c;
const IRQ_ENABLED = 0x10, CLEAR_ALARM = 0x14, ALARM_STATUS = 0x18, CLEAR_INTERRUPT = 0x1c;
const NS_PER_MS = 1_000_000n;

export interface GoldfishRtcState {
  v: 1; offsetNs: string; latchedHigh: number; alarmHigh: number; alarmNs: string; irqEnabled: number; irqPending: boolean;
}

export class GoldfishRtc implements MmioDevice, Stateful<GoldfishRtcState> {
  readonly name = 'goldfish_rtc';
  private offsetNs = 0n;
  private latchedHigh = 0;
  private alarmHigh = 0;
  private alarmNs = -1n;
  private irqEnabled = 0;
  private irqPending = false;

  constructor(private readonly irq: IrqLine, private readonly wallClockMs: () => number) {}

  save(): GoldfishRtcState {
    return { v: 1, offsetNs: this.offsetNs.toString(), latchedHigh: this.latchedHigh, alarmHigh: this.alarmHigh,
      alarmNs: this.alarmNs.toString(), irqEnabled: this.irqEnabled, irqPending: this.irqPending };
  }

  /** offsetNs is relative to the host's wall clock, so the guest's date follows the host's after a load. */
  load(s: GoldfishRtcState): void {
    const int = (t: unknown): boolean => typeof t === 'string' && /^-?\d{1,25}$/.test(t);
    if (s?.v !== 1 || !int(s.offsetNs) || !int(s.alarmNs) || ![s.latchedHigh, s.alarmHigh, s.irqEnabled].every(Number.isInteger)) {
      throw new Error('goldfish rtc state: unsupported version or malformed');
    }
    this.offsetNs = BigInt(s.offsetNs); this.latchedHigh = s.latchedHigh; this.alarmHigh = s.alarmHigh;
    this.alarmNs = BigInt(s.alarmNs); this.irqEnabled = s.irqEnabled; this.irqPending = s.irqPending === true;
  }

  private nowNs(): bigint {
    return BigInt(Math.floor(this.wallClockMs() * 1000)) * 1000n + this.offsetNs;
  }

  read(offset: number, size: 1 | 2 | 4): number {
    if (size !== 4) return 0;
    switch (offset) {
      case TIME_LOW: {
        const t = BigInt.asUintN(64, this.nowNs());
        this.latchedHigh = Number(t >> 32n);
        return Number(t & 0xffff_ffffn);
      }
      case TIME_HIGH: return this.latchedHigh;
      case ALARM_LOW: return this.alarmNs < 0n ? 0 : Number(this.alarmNs & 0xffff_ffffn);
      case ALARM_HIGH: return this.alarmNs < 0n ? 0 : Number(this.alarmNs >> 32n);
      case IRQ_ENABLED: return this.irqEnabled;
      case ALARM_STATUS: return this.alarmNs >= 0n ? 1 : 0;
      default: return 0;
    }
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 4) return;
    value >>>= 0;
    switch (offset) {
      case TIME_LOW: {
        // Setting the time: the driver writes TIME_HIGH first, then TIME_LOW.
        const want = (BigInt(this.latchedHigh) << 32n) | BigInt(value);
        this.offsetNs += want - this.nowNs();
        return;
      }
      case TIME_HIGH: this.latchedHigh = value; return;
      case ALARM_HIGH: this.alarmHigh = value; return;
      case ALARM_LOW:
        // The driver writes ALARM_HIGH first; writing ALARM_LOW arms the alarm.
        this.alarmNs = (BigInt(this.alarmHigh) << 32n) | BigInt(value);
        this.service();
        return;
      case IRQ_ENABLED: this.irqEnabled = value & 1; this.service(); return;
      case CLEAR_ALARM: this.alarmNs = -1n; return;
      case CLEAR_INTERRUPT: this.setIrq(false); return;
      default: return;
    }
  }

  private setIrq(level: boolean): void {
    if (level !== this.irqPending) { this.irqPending = level; this.irq.set(level); }
  }

  /** Fire the alarm if due. Returns host ms until it is due (Infinity if none). */
  service(): number {
    if (this.alarmNs < 0n) return Infinity;
    const now = this.nowNs();
    if (now >= this.alarmNs) {
      this.alarmNs = -1n;
      if (this.irqEnabled) this.setIrq(true);
      return Infinity;
    }
    return Number((this.alarmNs - now) / NS_PER_MS);
  }
}
