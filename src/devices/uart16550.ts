/**
 * NS16550A UART at 0x1000_0000, IRQ 10 (TI PC16550D datasheet, "Register description";
 * the register set Linux's 8250 driver expects for `ns16550a`). 16-byte FIFOs, the
 * THRE/RX/line-status interrupts, divisor latch, scratch register and loopback mode.
 *
 * Transmission is instantaneous: THR/TSR are always empty, and bytes are collected and
 * handed to the SerialBackend in batches (flush()). Receive: up to 16 bytes sit in the RX
 * FIFO; further host input waits in a host-side queue and is moved into the FIFO as the
 * guest drains it, so nothing typed is lost.
 */
import type { MmioDevice, IrqLine, SerialBackend, Stateful } from './device.js';

const FIFO_SIZE = 16;
const TX_FLUSH_BYTES = 4096;

// Register offsets (DLAB=0 unless noted).
const RBR_THR_DLL = 0, IER_DLM = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;
// IER bits.
const IER_ERBFI = 0x01, IER_ETBEI = 0x02, IER_ELSI = 0x04, IER_EDSSI = 0x08;
// IIR interrupt identifiers (bits 3:0).
const IIR_NONE = 0x01, IIR_MSI = 0x00, IIR_THRI = 0x02, IIR_RDI = 0x04, IIR_RLSI = 0x06, IIR_CTI = 0x0c;
const IIR_FIFO_ENABLED = 0xc0;
// FCR bits.
const FCR_ENABLE = 0x01, FCR_CLEAR_RX = 0x02;
// LCR / MCR bits.
const LCR_DLAB = 0x80;
const MCR_DTR = 0x01, MCR_RTS = 0x02, MCR_OUT1 = 0x04, MCR_OUT2 = 0x08, MCR_LOOP = 0x10;
// LSR bits.
const LSR_DR = 0x01, LSR_OE = 0x02, LSR_THRE = 0x20, LSR_TEMT = 0x40;
// MSR bits.
const MSR_CTS = 0x10, MSR_DSR = 0x20, MSR_RI = 0x40, MSR_DCD = 0x80;
const RX_TRIGGER = [1, 4, 8, 14];

export interface Uart16550State {
  v: 1; ier: number; lcr: number; mcr: number; scr: number; dll: number; dlm: number; fcr: number;
  lsrErrors: number; msrDelta: number; thrIpending: boolean; mcrWritten: boolean; irqLevel: boolean;
  /** RX FIFO contents in order, and which of them came from the host (not loopback). */
  rx: Uint8Array; rxFromHost: Uint8Array;
  /** Host input not yet delivered to the FIFO. */
  hostQueue: Uint8Array;
}

export class Uart16550 implements MmioDevice, Stateful<Uart16550State> {
  readonly name = 'uart16550a';
  private ier = 0;
  private lcr = 0x03;
  private mcr = MCR_OUT2;
  private scr = 0;
  private dll = 0x0c;
  private dlm = 0;
  private fcr = 0;
  private lsrErrors = 0;
  private msrDelta = 0;
  /** THRE interrupt pending: set when THR empties (or ETBEI is enabled), cleared by an IIR read or a THR write. */
  private thrIpending = false;

  private readonly rx = new Uint8Array(FIFO_SIZE);
  /** 1 where the FIFO slot holds host input (0: a looped-back byte). */
  private readonly rxFromHost = new Uint8Array(FIFO_SIZE);
  private rxHead = 0;
  private rxCount = 0;
  /**
   * Whether the guest has written MCR since reset. Host input follows RTS/CTS flow control,
   * as a terminal set to CRTSCTS would: it is sent only while the guest asserts MCR.RTS, so
   * bytes do not arrive while a driver is still resetting the UART (Linux's 8250 startup
   * reads RBR to discard stale input before it raises RTS). A guest that never programs
   * MCR (a polling bare-metal program) is treated as ready.
   */
  private mcrWritten = false;
  /** Host input not yet in the FIFO ("on the wire"). */
  private hostQueue: Uint8Array[] = [];
  private hostQueueOffset = 0;

  private tx = new Uint8Array(TX_FLUSH_BYTES);
  private txLen = 0;
  private irqLevel = false;

  constructor(private readonly irq: IrqLine, private readonly serial: SerialBackend) {}

  // ---- state ----

  /** Pending output is flushed to the backend first (it is not guest state). */
  save(): Uart16550State {
    this.flush();
    const rx = new Uint8Array(this.rxCount), rxFromHost = new Uint8Array(this.rxCount);
    for (let k = 0; k < this.rxCount; k++) {
      const i = (this.rxHead + k) % FIFO_SIZE;
      rx[k] = this.rx[i]; rxFromHost[k] = this.rxFromHost[i];
    }
    let queued = 0;
    for (const b of this.hostQueue) queued += b.length;
    const hostQueue = new Uint8Array(queued - this.hostQueueOffset);
    let o = 0;
    this.hostQueue.forEach((b, j) => { const part = j === 0 ? b.subarray(this.hostQueueOffset) : b; hostQueue.set(part, o); o += part.length; });
    return {
      v: 1, ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr, dll: this.dll, dlm: this.dlm, fcr: this.fcr,
      lsrErrors: this.lsrErrors, msrDelta: this.msrDelta, thrIpending: this.thrIpending, mcrWritten: this.mcrWritten,
      irqLevel: this.irqLevel, rx, rxFromHost, hostQueue,
    };
  }

  load(s: Uart16550State): void {
    const bytes = [s?.ier, s?.lcr, s?.mcr, s?.scr, s?.dll, s?.dlm, s?.fcr, s?.lsrErrors, s?.msrDelta];
    if (s?.v !== 1 || !bytes.every((b) => Number.isInteger(b) && b >= 0 && b <= 0xff) || !(s.rx instanceof Uint8Array) ||
      !(s.rxFromHost instanceof Uint8Array) || s.rx.length > FIFO_SIZE || s.rxFromHost.length !== s.rx.length || !(s.hostQueue instanceof Uint8Array)) {
      throw new Error('uart16550 state: unsupported version or malformed');
    }
    this.ier = s.ier; this.lcr = s.lcr; this.mcr = s.mcr; this.scr = s.scr; this.dll = s.dll; this.dlm = s.dlm; this.fcr = s.fcr;
    this.lsrErrors = s.lsrErrors; this.msrDelta = s.msrDelta; this.thrIpending = s.thrIpending === true;
    this.mcrWritten = s.mcrWritten === true; this.irqLevel = s.irqLevel === true;
    this.rxHead = 0; this.rxCount = s.rx.length;
    this.rx.set(s.rx); this.rxFromHost.set(s.rxFromHost);
    this.hostQueue = s.hostQueue.length > 0 ? [s.hostQueue.slice()] : [];
    this.hostQueueOffset = 0;
    this.txLen = 0;
  }

  // ---- host side ----

  /** Console input from the host. */
  receive(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.hostQueue.push(bytes.slice());
    this.refill();
    this.update();
  }

  /** Bytes of host input waiting (FIFO plus queue). */
  get inputPending(): number {
    let n = this.rxCount - this.hostQueueOffset;
    for (const b of this.hostQueue) n += b.length;
    return n;
  }

  /** Take one byte of pending host input directly (SBI legacy getchar / DBCN read), or -1. */
  takeInputByte(): number {
    if (this.rxCount > 0) {
      const v = this.popRx();
      this.update();
      return v;
    }
    if (this.hostQueue.length === 0) return -1;
    // The SBI console is not the UART: it does not wait for RTS.
    const head = this.hostQueue[0];
    const v = head[this.hostQueueOffset++];
    if (this.hostQueueOffset >= head.length) { this.hostQueue.shift(); this.hostQueueOffset = 0; }
    return v;
  }

  /** Output that bypasses the UART registers (SBI console), kept in order with THR output. */
  emit(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) this.putTx(bytes[i]);
  }

  /** Hand buffered output to the serial backend. */
  flush(): void {
    if (this.txLen === 0) return;
    const out = this.tx.slice(0, this.txLen);
    this.txLen = 0;
    this.serial.write(out);
  }

  private putTx(b: number): void {
    this.tx[this.txLen++] = b;
    if (this.txLen === this.tx.length) this.flush();
  }

  /** The line delivers host input: RTS asserted (or MCR never programmed) and not in loopback. */
  private get lineReady(): boolean {
    return (this.mcr & MCR_LOOP) === 0 && ((this.mcr & MCR_RTS) !== 0 || !this.mcrWritten);
  }

  private refill(): void {
    if (!this.lineReady) return;
    while (this.rxCount < FIFO_SIZE && this.hostQueue.length > 0) {
      const head = this.hostQueue[0];
      this.pushRx(head[this.hostQueueOffset++], 1);
      if (this.hostQueueOffset >= head.length) { this.hostQueue.shift(); this.hostQueueOffset = 0; }
    }
  }

  private pushRx(b: number, fromHost: number): void {
    if (this.rxCount >= FIFO_SIZE) { this.lsrErrors |= LSR_OE; return; }
    const i = (this.rxHead + this.rxCount) % FIFO_SIZE;
    this.rx[i] = b;
    this.rxFromHost[i] = fromHost;
    this.rxCount++;
  }

  /**
   * RX FIFO reset (FCR.CLEAR_RX, or toggling FCR.ENABLE). Host input is moved into the FIFO
   * early only as a shortcut: on a real line those bytes would still be arriving, so they
   * go back to the head of the host queue and are delivered again. Only looped-back bytes,
   * which really were in the receiver, are discarded.
   */
  private resetRx(): void {
    let kept = 0;
    const keep = new Uint8Array(this.rxCount);
    for (let k = 0; k < this.rxCount; k++) {
      const i = (this.rxHead + k) % FIFO_SIZE;
      if (this.rxFromHost[i]) keep[kept++] = this.rx[i];
    }
    this.rxHead = 0;
    this.rxCount = 0;
    if (kept > 0) {
      if (this.hostQueueOffset > 0) {
        this.hostQueue[0] = this.hostQueue[0].subarray(this.hostQueueOffset);
        this.hostQueueOffset = 0;
      }
      this.hostQueue.unshift(keep.subarray(0, kept));
    }
    this.refill();
  }

  private popRx(): number {
    const v = this.rx[this.rxHead];
    this.rxHead = (this.rxHead + 1) % FIFO_SIZE;
    this.rxCount--;
    this.refill();
    return v;
  }

  // ---- interrupts ----

  private get fifoEnabled(): boolean { return (this.fcr & FCR_ENABLE) !== 0; }

  private iir(): number {
    if ((this.ier & IER_ELSI) !== 0 && (this.lsrErrors & LSR_OE) !== 0) return IIR_RLSI;
    if ((this.ier & IER_ERBFI) !== 0 && this.rxCount > 0) {
      if (!this.fifoEnabled) return IIR_RDI;
      return this.rxCount >= RX_TRIGGER[this.fcr >>> 6] ? IIR_RDI : IIR_CTI;
    }
    if ((this.ier & IER_ETBEI) !== 0 && this.thrIpending) return IIR_THRI;
    if ((this.ier & IER_EDSSI) !== 0 && this.msrDelta !== 0) return IIR_MSI;
    return IIR_NONE;
  }

  private update(): void {
    // On PC boards MCR.OUT2 gates the IRQ; on virt (as in QEMU) the line is wired straight to the PLIC, so OUT2 is ignored.
    const level = this.iir() !== IIR_NONE;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq.set(level);
    }
  }

  // ---- registers ----

  read(offset: number, size: 1 | 2 | 4): number {
    if (size !== 1 && offset !== 0) return 0;
    switch (offset) {
      case RBR_THR_DLL: {
        if (this.lcr & LCR_DLAB) return this.dll;
        const v = this.rxCount > 0 ? this.popRx() : 0;
        this.update();
        return v;
      }
      case IER_DLM: return this.lcr & LCR_DLAB ? this.dlm : this.ier;
      case IIR_FCR: {
        const id = this.iir();
        if (id === IIR_THRI) { this.thrIpending = false; this.update(); }
        return id | (this.fifoEnabled ? IIR_FIFO_ENABLED : 0);
      }
      case LCR: return this.lcr;
      case MCR: return this.mcr;
      case LSR: {
        const v = (this.rxCount > 0 ? LSR_DR : 0) | this.lsrErrors | LSR_THRE | LSR_TEMT;
        if (this.lsrErrors) { this.lsrErrors = 0; this.update(); }
        return v;
      }
      case MSR: {
        let v: number;
        if (this.mcr & MCR_LOOP) {
          v = (this.mcr & MCR_RTS ? MSR_CTS : 0) | (this.mcr & MCR_DTR ? MSR_DSR : 0) |
            (this.mcr & MCR_OUT1 ? MSR_RI : 0) | (this.mcr & MCR_OUT2 ? MSR_DCD : 0);
        } else {
          v = MSR_DCD | MSR_DSR | MSR_CTS; // a connected, ready terminal
        }
        v |= this.msrDelta;
        if (this.msrDelta) { this.msrDelta = 0; this.update(); }
        return v;
      }
      case SCR: return this.scr;
      default: return 0;
    }
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 1 && offset !== 0) return;
    value &= 0xff;
    switch (offset) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) { this.dll = value; return; }
        if (this.mcr & MCR_LOOP) this.pushRx(value, 0); else this.putTx(value);
        // The byte leaves at once, so THR is empty again: THRE interrupt (re)arms.
        this.thrIpending = true;
        this.update();
        return;
      case IER_DLM:
        if (this.lcr & LCR_DLAB) { this.dlm = value; return; }
        // Enabling ETBEI while THR is empty raises THRE at once (8250 drivers rely on it).
        if ((value & IER_ETBEI) !== 0 && (this.ier & IER_ETBEI) === 0) this.thrIpending = true;
        this.ier = value & 0x0f;
        this.update();
        return;
      case IIR_FCR: {
        if ((value & FCR_ENABLE) !== (this.fcr & FCR_ENABLE) || (value & FCR_CLEAR_RX) !== 0) this.resetRx();
        this.fcr = value & 0xc9;
        this.update();
        return;
      }
      case LCR: this.lcr = value; return;
      case MCR:
        this.mcr = value & 0x1f;
        this.mcrWritten = true;
        this.refill();
        this.update();
        return;
      case LSR: case MSR: return; // read-only
      case SCR: this.scr = value; return;
      default: return;
    }
  }
}
