/**
 * A NetBackend behind two RateLimiters (Firecracker's per-interface rx_rate_limiter and
 * tx_rate_limiter: bytes and packets), counting what passes.
 * - tx (guest → host): a frame the bucket refuses waits in a bounded queue and goes out
 *   when tokens return; beyond the queue frames are dropped (counted), as a full NIC would.
 * - rx (host → guest): a frame the bucket refuses is not taken (`receive` returns false),
 *   so the backend holds it as it does when the guest has no buffers, and is told to
 *   retry (`rxReady`) once the tokens are there.
 * Limits change live (update); the vCPU never waits.
 */
import type { NetBackend, NetReceiver } from '../devices/device.js';
import { RateLimiter, type RateLimiterConfig } from './rate-limiter.js';

export interface NetCounters { rxBytes: number; rxPackets: number; txBytes: number; txPackets: number; txDropped: number }
export interface NetLimits { rx?: RateLimiterConfig | null; tx?: RateLimiterConfig | null }

/** Frames held for the tx bucket (a NIC's transmit ring is about this deep). */
const TX_QUEUE = 256;
/** And bytes: GSO frames are up to 64 KiB each. */
const TX_QUEUE_BYTES = 4 << 20;

export class RateLimitedNet implements NetBackend {
  readonly counters: NetCounters = { rxBytes: 0, rxPackets: 0, txBytes: 0, txPackets: 0, txDropped: 0 };
  private readonly rx: RateLimiter;
  private readonly tx: RateLimiter;
  private readonly txQueue: Uint8Array[] = [];
  private txQueued = 0;
  private txWaiting = false;
  /** rx tokens already taken for the frame the backend will offer again. */
  private rxPrepaid = 0;
  private rxWaiting = false;
  private closed = false;

  constructor(private readonly inner: NetBackend, limits: NetLimits = {}) {
    this.rx = new RateLimiter(limits.rx ?? {});
    this.tx = new RateLimiter(limits.tx ?? {});
  }

  update(limits: NetLimits): void {
    this.rx.update(limits.rx ?? {});
    this.tx.update(limits.tx ?? {});
  }

  attach(nic: NetReceiver): void {
    this.inner.attach({
      receive: (frame) => {
        if (this.rxPrepaid >= frame.length) this.rxPrepaid -= frame.length;
        else if (!this.rx.tryConsume(frame.length)) { this.waitRx(frame.length); return false; }
        if (!nic.receive(frame)) return false;
        this.counters.rxBytes += frame.length;
        this.counters.rxPackets++;
        return true;
      },
      get maxFrame() { return nic.maxFrame; },
    });
  }

  private waitRx(bytes: number): void {
    if (this.rxWaiting || this.closed) return;
    this.rxWaiting = true;
    void this.rx.acquire(bytes).then(() => {
      this.rxWaiting = false;
      if (this.closed) return;
      this.rxPrepaid = bytes;
      this.inner.rxReady();
    });
  }

  get gso(): boolean | undefined { return this.inner.gso; }

  transmit(frame: Uint8Array): void {
    if (this.txQueue.length === 0 && this.tx.tryConsume(frame.length)) { this.send(frame); return; }
    if (this.txQueue.length >= TX_QUEUE || this.txQueued + frame.length > TX_QUEUE_BYTES) { this.counters.txDropped++; return; }
    this.txQueue.push(frame.slice()); // the NIC reuses its buffer
    this.txQueued += frame.length;
    this.pumpTx();
  }

  private send(frame: Uint8Array): void {
    this.counters.txBytes += frame.length;
    this.counters.txPackets++;
    this.inner.transmit(frame);
  }

  private dequeue(): Uint8Array {
    const f = this.txQueue.shift()!;
    this.txQueued -= f.length;
    return f;
  }

  private pumpTx(): void {
    if (this.txWaiting || this.closed || this.txQueue.length === 0) return;
    this.txWaiting = true;
    void this.tx.acquire(this.txQueue[0].length).then(() => {
      this.txWaiting = false;
      if (this.closed) return;
      this.send(this.dequeue());
      while (this.txQueue.length > 0 && this.tx.tryConsume(this.txQueue[0].length)) this.send(this.dequeue());
      this.pumpTx();
    });
  }

  rxReady(): void { this.inner.rxReady(); }

  close(): void {
    this.closed = true;
    this.rx.close();
    this.tx.close();
    this.txQueue.length = 0;
    this.txQueued = 0;
    this.inner.close();
  }
}
