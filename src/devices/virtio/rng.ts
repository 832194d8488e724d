/**
 * virtio-rng (Virtio 1.2 §5.4): one request queue; every device-writable buffer the guest
 * posts is filled from the host's CSPRNG (Web Crypto getRandomValues, at most 65536 bytes a call).
 */
import type { VirtioDevice, VirtioTransport } from './mmio.js';

export const VIRTIO_ID_ENTROPY = 4;
const QUEUE_SIZE = 64;
/** Bytes per request we fill; the driver asks again for more. */
const MAX_FILL = 4096;

export class VirtioRng implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_ENTROPY;
  readonly name = 'virtio-rng';
  readonly queueMax = [QUEUE_SIZE];
  readonly features = 0;
  readonly config = new Uint8Array(0);
  private t!: VirtioTransport;
  private readonly buf = new Uint8Array(MAX_FILL);

  attach(t: VirtioTransport): void { this.t = t; }
  reset(): void { /* stateless */ }

  notify(): void {
    const t = this.t, q = t.queue(0), c = t.chain(0);
    let any = false;
    for (;;) {
      const r = q.pop(c);
      if (r === 0) break;
      if (r < 0) { t.fail(); return; }
      const n = Math.min(c.writeLen, MAX_FILL);
      const bytes = this.buf.subarray(0, n);
      globalThis.crypto.getRandomValues(bytes);
      q.push(c.head, c.write(0, bytes));
      any = true;
    }
    if (any) t.notifyUsed(0);
  }

  save(): { v: 1 } { return { v: 1 }; }
  load(s: { v: number }): void {
    if (s.v !== 1) throw new Error(`virtio-rng: unknown state version ${String(s.v)}`);
  }
}
