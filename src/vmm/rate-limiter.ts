/**
 * Token-bucket rate limiting for disk and network I/O, with Firecracker's semantics:
 * a bucket of `size` tokens refills from empty to full in `refillTimeMs`, starts full,
 * and has an optional `oneTimeBurst` of extra tokens that is spent first and never
 * refills. A limiter pairs a bandwidth bucket (bytes) with an ops bucket (requests).
 *
 * A request larger than the bucket is admitted when the bucket is full and leaves it in
 * debt, so long-run throughput still equals the refill rate (Firecracker's
 * "overconsumption"). Platform-neutral: the clock and the timer are injected.
 */

export interface TokenBucketConfig {
  /** Tokens the bucket holds (bytes or ops). */
  size: number;
  /** Milliseconds to refill from empty to full. */
  refillTimeMs: number;
  /** Extra tokens available once, before the bucket's own budget. */
  oneTimeBurst?: number;
}

export interface RateLimiterConfig {
  bandwidth?: TokenBucketConfig | null;
  ops?: TokenBucketConfig | null;
}

/** Throws a clear Error for an invalid bucket (API and CLI input). */
export function checkBucket(c: TokenBucketConfig, what: string): void {
  const ok = (n: unknown, min: number): boolean => typeof n === 'number' && Number.isSafeInteger(n) && n >= min;
  if (!ok(c.size, 1)) throw new Error(`${what}.size must be a positive integer, got ${String(c.size)}`);
  if (!ok(c.refillTimeMs, 1)) throw new Error(`${what}.refillTimeMs must be a positive integer (ms), got ${String(c.refillTimeMs)}`);
  if (c.oneTimeBurst !== undefined && !ok(c.oneTimeBurst, 0)) {
    throw new Error(`${what}.oneTimeBurst must be a non-negative integer, got ${String(c.oneTimeBurst)}`);
  }
}

const EPS = 1e-6;

export class TokenBucket {
  readonly size: number;
  readonly refillTimeMs: number;
  private budget: number;
  private burst: number;
  private last: number;

  constructor(cfg: TokenBucketConfig, nowMs: number) {
    checkBucket(cfg, 'bucket');
    this.size = cfg.size;
    this.refillTimeMs = cfg.refillTimeMs;
    this.budget = cfg.size;
    this.burst = cfg.oneTimeBurst ?? 0;
    this.last = nowMs;
  }

  private refill(now: number): void {
    const dt = now - this.last;
    if (dt <= 0) return;
    this.last = now;
    this.budget = Math.min(this.size, this.budget + (dt * this.size) / this.refillTimeMs);
  }

  /** Take `tokens` now if allowed; false (nothing taken) otherwise. */
  tryReduce(tokens: number, now: number): boolean {
    this.refill(now);
    if (this.burst > 0) {
      const b = Math.min(this.burst, tokens);
      if (b === tokens) { this.burst -= b; return true; }
      // Part from the burst, the rest from the budget: only if the rest is allowed too.
      if (!this.allowed(tokens - b)) return false;
      this.burst -= b;
      this.budget -= tokens - b;
      return true;
    }
    if (!this.allowed(tokens)) return false;
    this.budget -= tokens;
    return true;
  }

  /** Enough budget, or an oversized request against a full bucket (it then runs into debt). */
  private allowed(tokens: number): boolean {
    // EPS absorbs float rounding of the incremental refills.
    return this.budget + EPS >= tokens || (tokens > this.size && this.budget + EPS >= this.size);
  }

  /** Milliseconds until tryReduce(tokens) can succeed (0 if it can now). */
  msUntil(tokens: number, now: number): number {
    this.refill(now);
    const need = Math.min(Math.max(0, tokens - this.burst), this.size);
    if (this.budget + EPS >= need) return 0;
    return Math.ceil(((need - this.budget) * this.refillTimeMs) / this.size);
  }

  /** Give back tokens taken by a tryReduce whose partner bucket refused. */
  giveBack(tokens: number): void { this.budget = Math.min(this.size, this.budget + tokens); }

  get remainingBurst(): number { return this.burst; }
}

export interface LimiterClock {
  now(): number;
  setTimer(ms: number, cb: () => void): unknown;
  clearTimer(handle: unknown): void;
}

const realClock: LimiterClock = {
  now: () => performance.now(),
  setTimer: (ms, cb) => setTimeout(cb, ms),
  clearTimer: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

interface Waiter { bytes: number; resolve: () => void; }

/**
 * A bandwidth bucket and an ops bucket. `acquire(bytes)` resolves, in FIFO order, when
 * both admit the request; `update()` changes the limits of a running VM.
 */
export class RateLimiter {
  private bw: TokenBucket | null = null;
  private ops: TokenBucket | null = null;
  private readonly queue: Waiter[] = [];
  private timer: unknown = null;
  /** Requests that had to wait (for metrics). */
  throttled = 0;

  constructor(cfg: RateLimiterConfig, private readonly clock: LimiterClock = realClock) {
    this.update(cfg);
  }

  update(cfg: RateLimiterConfig): void {
    if (cfg.bandwidth) checkBucket(cfg.bandwidth, 'bandwidth');
    if (cfg.ops) checkBucket(cfg.ops, 'ops');
    const now = this.clock.now();
    this.bw = cfg.bandwidth ? new TokenBucket(cfg.bandwidth, now) : null;
    this.ops = cfg.ops ? new TokenBucket(cfg.ops, now) : null;
    this.pump();
  }

  get unlimited(): boolean { return this.bw === null && this.ops === null; }

  /** Admit one request of `bytes` now if allowed (and nothing is queued ahead of it). */
  tryConsume(bytes: number): boolean {
    if (this.queue.length > 0) return false;
    return this.take(bytes);
  }

  private take(bytes: number): boolean {
    const now = this.clock.now();
    if (this.ops && !this.ops.tryReduce(1, now)) return false;
    if (this.bw && bytes > 0 && !this.bw.tryReduce(bytes, now)) {
      this.ops?.giveBack(1);
      return false;
    }
    return true;
  }

  /** Resolves when the request may proceed. */
  acquire(bytes: number): Promise<void> {
    if (this.tryConsume(bytes)) return Promise.resolve();
    this.throttled++;
    return new Promise((resolve) => {
      this.queue.push({ bytes, resolve });
      this.pump();
    });
  }

  private pump(): void {
    if (this.timer !== null) { this.clock.clearTimer(this.timer); this.timer = null; }
    while (this.queue.length > 0 && this.take(this.queue[0].bytes)) this.queue.shift()!.resolve();
    if (this.queue.length === 0) return;
    const now = this.clock.now();
    const bytes = this.queue[0].bytes;
    const wait = Math.max(this.ops?.msUntil(1, now) ?? 0, bytes > 0 ? this.bw?.msUntil(bytes, now) ?? 0 : 0);
    this.timer = this.clock.setTimer(Math.max(1, wait), () => { this.timer = null; this.pump(); });
  }

  /** Release every waiter (the VM is stopping). */
  close(): void {
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timer = null;
    for (const w of this.queue.splice(0)) w.resolve();
  }
}
