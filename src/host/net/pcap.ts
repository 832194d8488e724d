/**
 * A pcap writer (the classic libpcap format, LINKTYPE_ETHERNET, microsecond timestamps)
 * and a tap that records every frame through a `NetBackend`, both directions.
 */
import type { NetBackend, NetReceiver } from '../../devices/device.js';

/** tcpdump's own default snaplen: whole GSO frames (up to 65,553 bytes) fit. */
export const PCAP_SNAPLEN = 262144;

export class PcapWriter {
  constructor(private readonly sink: (chunk: Uint8Array) => void, private readonly snaplen = PCAP_SNAPLEN) {
    const h = new Uint8Array(24);
    const v = new DataView(h.buffer);
    v.setUint32(0, 0xa1b2c3d4, true);
    v.setUint16(4, 2, true); v.setUint16(6, 4, true);
    v.setInt32(8, 0, true); v.setUint32(12, 0, true);
    v.setUint32(16, snaplen, true);
    v.setUint32(20, 1, true); // LINKTYPE_ETHERNET
    sink(h);
  }

  record(frame: Uint8Array, timeMs = Date.now()): void {
    const cap = Math.min(frame.length, this.snaplen);
    const r = new Uint8Array(16 + cap);
    const v = new DataView(r.buffer);
    const sec = Math.floor(timeMs / 1000);
    v.setUint32(0, sec, true);
    v.setUint32(4, Math.floor((timeMs - sec * 1000) * 1000), true);
    v.setUint32(8, cap, true);
    v.setUint32(12, frame.length, true);
    r.set(frame.subarray(0, cap), 16);
    this.sink(r);
  }
}

/** Wrap a backend so every frame to and from the guest is recorded; `onClose` after the backend closes. */
export function pcapTap(inner: NetBackend, w: PcapWriter, onClose?: () => void): NetBackend {
  return {
    attach(nic: NetReceiver): void {
      inner.attach({ receive: (f) => { const ok = nic.receive(f); if (ok) w.record(f); return ok; }, get maxFrame() { return nic.maxFrame; } });
    },
    transmit(frame: Uint8Array): void { w.record(frame); inner.transmit(frame); },
    get gso() { return inner.gso; },
    rxReady(): void { inner.rxReady(); },
    close(): void { inner.close(); onClose?.(); },
  };
}
