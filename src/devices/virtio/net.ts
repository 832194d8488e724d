/**
 * virtio-net (Virtio 1.2 §5.1) over a NetBackend: queue 0 is receiveq1, queue 1 transmitq1;
 * no control queue, one queue pair.
 *
 * Features: MAC (the config space holds the address), STATUS (link always up), MRG_RXBUF
 * (a frame may span several receive buffers, §5.1.6.4.2), CSUM (the driver leaves partial
 * checksums to us: completed here on transmit, §5.1.6.2) and GUEST_CSUM (received TCP/UDP
 * over IPv4 frames whose checksum we verified carry DATA_VALID, so the interpreted guest
 * does not sum every byte again, §5.1.6.4.1). No TSO/GSO/UFO: the backends carry frames of
 * at most 1514 bytes (+4 for a VLAN tag), so offering them would need segmentation here.
 *
 * Every transmitted frame is length-checked (header + 14..1518 bytes of frame); bad frames,
 * GSO requests and checksum offsets outside the frame are dropped and counted. Receive never
 * overruns a buffer: with no buffer posted, receive() returns false and the backend keeps the
 * frame (bounded) and retries on rxReady(); a frame no posted buffer can hold is dropped.
 */
import type { NetBackend, NetReceiver } from '../device.js';
import type { VirtioDevice, VirtioTransport } from './mmio.js';

export const VIRTIO_ID_NET = 1;
// Feature bits (§5.1.3).
export const VIRTIO_NET_F_CSUM = 0, VIRTIO_NET_F_GUEST_CSUM = 1, VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_MRG_RXBUF = 15, VIRTIO_NET_F_STATUS = 16;
const VIRTIO_NET_S_LINK_UP = 1;
// struct virtio_net_hdr (§5.1.6): flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers.
export const NET_HDR_SIZE = 12;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1, VIRTIO_NET_HDR_F_DATA_VALID = 2;
const VIRTIO_NET_HDR_GSO_NONE = 0;

const RX = 0, TX = 1;
const QUEUE_SIZE = 256;
const ETH_HLEN = 14;
/** 1514 bytes plus a VLAN tag: the largest frame without offloads. */
export const MAX_FRAME = 1518;
const ETHERTYPE_IPV4 = 0x0800, ETHERTYPE_VLAN = 0x8100;

export interface VirtioNetState { v: 1; mac: number[] }

/** Counters for diagnostics and tests. */
export interface VirtioNetStats {
  txFrames: number;
  rxFrames: number;
  /** Guest frames dropped: bad length, GSO requested, bad checksum offsets. */
  txDropped: number;
  /** Host frames dropped: too large, or larger than every buffer the guest posted. */
  rxDropped: number;
  /** receive() refusals because no buffer was posted (the backend kept or dropped the frame). */
  rxNoBuffer: number;
}

export class VirtioNet implements VirtioDevice, NetReceiver {
  readonly deviceId = VIRTIO_ID_NET;
  readonly name = 'virtio-net';
  readonly queueMax = [QUEUE_SIZE, QUEUE_SIZE];
  readonly features: number;
  /** struct virtio_net_config (§5.1.4): mac[6], status, max_virtqueue_pairs (+2 padding). */
  readonly config = new Uint8Array(12);
  readonly stats: VirtioNetStats = { txFrames: 0, rxFrames: 0, txDropped: 0, rxDropped: 0, rxNoBuffer: 0 };
  private t!: VirtioTransport;
  private readonly txBuf = new Uint8Array(NET_HDR_SIZE + MAX_FRAME);
  /** Exact-length views of txBuf's frame part, made once per length (no allocation per frame). */
  private readonly txViews: Array<Uint8Array | undefined> = [];
  private readonly rxHdr = new Uint8Array(NET_HDR_SIZE);
  // Mergeable receive: the chains one frame is spread over.
  private readonly mergeHeads = new Uint32Array(QUEUE_SIZE);
  private readonly mergeLens = new Uint32Array(QUEUE_SIZE);
  private readonly numBuffers = new Uint8Array(2);

  /** `offloads` false: no CSUM/GUEST_CSUM (to measure what they are worth). */
  constructor(private readonly backend: NetBackend, mac: Uint8Array, offloads = true) {
    if (mac.length !== 6 || (mac[0] & 1)) throw new Error('virtio-net: the MAC must be 6 bytes, unicast');
    this.features = (1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_MRG_RXBUF) | (1 << VIRTIO_NET_F_STATUS) |
      (offloads ? (1 << VIRTIO_NET_F_CSUM) | (1 << VIRTIO_NET_F_GUEST_CSUM) : 0);
    this.config.set(mac, 0);
    this.config[6] = VIRTIO_NET_S_LINK_UP;
    this.config[8] = 1; // max_virtqueue_pairs (meaningful only with MQ)
    backend.attach(this);
  }

  get mac(): Uint8Array { return this.config.slice(0, 6); }

  attach(t: VirtioTransport): void { this.t = t; }
  reset(): void { /* no device state beyond the queues */ }
  driverOk(): void { this.backend.rxReady(); }

  notify(i: number): void {
    if (i === RX) this.backend.rxReady();
    else if (i === TX) this.transmit();
  }

  // ---- transmit (§5.1.6.2) ----

  private transmit(): void {
    const t = this.t, q = t.queue(TX), c = t.chain(TX), buf = this.txBuf;
    let any = false;
    while (t.live) {
      const r = q.pop(c);
      if (r === 0) break;
      if (r < 0) { t.fail(); return; }
      any = true;
      const len = c.readLen - NET_HDR_SIZE;
      if (len >= ETH_HLEN && len <= MAX_FRAME) c.read(0, this.txView(NET_HDR_SIZE + len, 0));
      q.push(c.head, 0);
      if (len < ETH_HLEN || len > MAX_FRAME) { this.stats.txDropped++; continue; }
      const frame = this.txView(len, NET_HDR_SIZE);
      if (buf[1] !== VIRTIO_NET_HDR_GSO_NONE) { this.stats.txDropped++; continue; }
      if ((buf[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !completeChecksum(frame, buf[6] | (buf[7] << 8), buf[8] | (buf[9] << 8))) {
        this.stats.txDropped++;
        continue;
      }
      this.stats.txFrames++;
      this.backend.transmit(frame);
    }
    if (any) t.notifyUsed(TX);
  }

  /** A view of txBuf[off, off+len), cached per (len, off) pair in use (two offsets). */
  private txView(len: number, off: number): Uint8Array {
    const k = off === 0 ? len : len + NET_HDR_SIZE + MAX_FRAME + 1;
    let v = this.txViews[k];
    if (!v) { v = this.txBuf.subarray(off, off + len); this.txViews[k] = v; }
    return v;
  }

  // ---- receive (§5.1.6.3, §5.1.6.4) ----

  receive(frame: Uint8Array): boolean {
    const t = this.t;
    if (!t.live) { this.stats.rxNoBuffer++; return false; }
    const len = frame.length;
    if (len < ETH_HLEN || len > MAX_FRAME) { this.stats.rxDropped++; return true; }
    const q = t.queue(RX), c = t.chain(RX);
    const hdr = this.rxHdr;
    hdr.fill(0);
    if (t.hasFeature(VIRTIO_NET_F_GUEST_CSUM) && checksumValid(frame)) hdr[0] = VIRTIO_NET_HDR_F_DATA_VALID;
    const total = NET_HDR_SIZE + len;
    const r = q.pop(c);
    if (r === 0) { this.stats.rxNoBuffer++; return false; }
    if (r < 0) { t.fail(); return true; }
    if (c.writeLen === 0) { t.fail(); return true; }
    if (c.writeLen >= total) {
      hdr[10] = 1; // num_buffers (always present with VERSION_1)
      c.write(0, hdr);
      c.write(NET_HDR_SIZE, frame);
      q.push(c.head, total);
    } else if (!t.hasFeature(VIRTIO_NET_F_MRG_RXBUF) || c.writeLen < NET_HDR_SIZE) {
      // The buffer cannot hold the frame: give it back empty (Linux counts a length error).
      q.push(c.head, 0);
      this.stats.rxDropped++;
      t.notifyUsed(RX);
      t.wake();
      return true;
    } else if (!this.receiveMerged(frame, total)) {
      return false;
    }
    this.stats.rxFrames++;
    t.notifyUsed(RX);
    t.wake();
    return true;
  }

  /**
   * Spread a frame over several buffers; the first is already in chain(RX). If the ring runs
   * out first, every chain taken is given back (the bytes written there are not the driver's
   * business until they are on the used ring) and the frame waits.
   */
  private receiveMerged(frame: Uint8Array, total: number): boolean {
    const t = this.t, q = t.queue(RX), c = t.chain(RX), bus = c.bus;
    const nbLo = c.writableAddr(10), nbHi = c.writableAddr(11);
    c.write(0, this.rxHdr);
    let done = c.write(NET_HDR_SIZE, frame) + NET_HDR_SIZE;
    let n = 0;
    this.mergeHeads[n] = c.head; this.mergeLens[n] = done; n++;
    while (done < total) {
      const r = n < this.mergeHeads.length ? q.pop(c) : 0;
      if (r < 0) { t.fail(); return true; }
      if (r === 0) {
        for (let i = 0; i < n; i++) q.unpop();
        this.stats.rxNoBuffer++;
        return false;
      }
      if (c.writeLen === 0) { t.fail(); return true; }
      const w = c.write(0, frame.subarray(done - NET_HDR_SIZE));
      this.mergeHeads[n] = c.head; this.mergeLens[n] = w; n++;
      done += w;
    }
    this.numBuffers[0] = n & 0xff; this.numBuffers[1] = n >>> 8;
    bus.dmaWrite(nbLo, this.numBuffers.subarray(0, 1));
    bus.dmaWrite(nbHi, this.numBuffers.subarray(1, 2));
    for (let i = 0; i < n; i++) q.push(this.mergeHeads[i], this.mergeLens[i]);
    return true;
  }

  save(): VirtioNetState { return { v: 1, mac: Array.from(this.config.subarray(0, 6)) }; }

  load(s: { v: number; mac?: unknown }): void {
    const mac = s.mac;
    if (s.v !== 1 || !Array.isArray(mac) || mac.length !== 6 || !mac.every((b) => Number.isInteger(b) && b >= 0 && b < 256)) {
      throw new Error('virtio-net: malformed or unknown state');
    }
    this.config.set(mac as number[], 0);
  }
}

/** One's-complement sum of b[from, to) added to `sum` (not folded). */
function sum16(b: Uint8Array, from: number, to: number, sum: number): number {
  let i = from;
  for (; i + 1 < to; i += 2) sum += (b[i] << 8) | b[i + 1];
  if (i < to) sum += b[i] << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum over frame[start..] goes at start+offset (the
 * driver has put the pseudo-header sum there). False if the offsets lie outside the frame.
 */
export function completeChecksum(frame: Uint8Array, start: number, offset: number): boolean {
  const at = start + offset;
  if (start >= frame.length || at + 2 > frame.length) return false;
  const v = (~fold(sum16(frame, start, frame.length, 0))) & 0xffff;
  const out = v === 0 ? 0xffff : v; // -0: also "no checksum" for UDP otherwise
  frame[at] = out >>> 8; frame[at + 1] = out & 0xff;
  return true;
}

/** Whether frame is TCP or UDP over IPv4 (unfragmented) with a correct header and L4 checksum. */
export function checksumValid(frame: Uint8Array): boolean {
  let p = 12;
  let type = (frame[p] << 8) | frame[p + 1];
  if (type === ETHERTYPE_VLAN) { p += 4; if (p + 2 > frame.length) return false; type = (frame[p] << 8) | frame[p + 1]; }
  if (type !== ETHERTYPE_IPV4) return false;
  const ip = p + 2;
  if (ip + 20 > frame.length || (frame[ip] >> 4) !== 4) return false;
  const ihl = (frame[ip] & 15) * 4;
  const totalLen = (frame[ip + 2] << 8) | frame[ip + 3];
  if (ihl < 20 || totalLen < ihl || ip + totalLen > frame.length) return false;
  if (fold(sum16(frame, ip, ip + ihl, 0)) !== 0xffff) return false;
  if (((frame[ip + 6] & 0x3f) | frame[ip + 7]) !== 0) return false; // MF or a fragment offset
  const proto = frame[ip + 9];
  const l4 = ip + ihl, l4len = totalLen - ihl;
  if (proto === 6) { if (l4len < 20) return false; } else if (proto === 17) {
    if (l4len < 8) return false;
    if (frame[l4 + 6] === 0 && frame[l4 + 7] === 0) return true; // no UDP checksum
  } else return false;
  let s = sum16(frame, ip + 12, ip + 20, 0) + proto + l4len;
  s = sum16(frame, l4, l4 + l4len, s);
  return fold(s) === 0xffff;
}

/** QEMU's default MAC pattern: 52:54:00:12:34:56 for the first NIC, then :57, :58, ... */
export function defaultMac(index: number): Uint8Array {
  const n = 0x12_34_56 + index;
  return Uint8Array.of(0x52, 0x54, 0x00, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}
