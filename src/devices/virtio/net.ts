/**
 * virtio-net (Virtio 1.2 §5.1) over a NetBackend: queue 0 is receiveq1, queue 1 transmitq1;
 * no control queue, one queue pair.
 *
 * Features: MAC (the config space holds the address), STATUS (link always up), MRG_RXBUF
 * (a frame may span several receive buffers, §5.1.6.4.2), CSUM (the driver leaves partial
 * checksums to us: completed here on transmit, §5.1.6.2) and GUEST_CSUM (received TCP/UDP
 * over IPv4 frames whose checksum we verified carry DATA_VALID, so the interpreted guest
 * does not sum every byte again, §5.1.6.4.1), HOST_TSO4 and GUEST_TSO4 (TCP segmentation
 * offload, §5.1.6.2.1 and §5.1.6.4.1). The guest's per-segment work is its cost that counts
 * (it is interpreted), so both directions move TCP in frames of up to 64 KiB:
 * - transmit: a GSO frame is cut here into MSS-sized frames (IP id, lengths and checksums,
 *   TCP seq, flags and checksum redone per segment) before the backend sees it, so every
 *   backend still carries frames of at most 1514 bytes (+4 for a VLAN tag);
 * - receive: `maxFrame` tells a backend that TCP/IPv4 frames of up to 64 KiB are welcome
 *   (the user-mode NAT then sends large segments); they reach the guest marked GSO TCPV4
 *   with gso_size from the 1500-byte MTU.
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
export const VIRTIO_NET_F_GUEST_TSO4 = 7, VIRTIO_NET_F_HOST_TSO4 = 11;
const VIRTIO_NET_S_LINK_UP = 1;
// struct virtio_net_hdr (§5.1.6): flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers.
export const NET_HDR_SIZE = 12;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1, VIRTIO_NET_HDR_F_DATA_VALID = 2;
const VIRTIO_NET_HDR_GSO_NONE = 0, VIRTIO_NET_HDR_GSO_TCPV4 = 1, VIRTIO_NET_HDR_GSO_ECN = 0x80;

const RX = 0, TX = 1;
const QUEUE_SIZE = 256;
const ETH_HLEN = 14;
/** 1514 bytes plus a VLAN tag: the largest frame without offloads. */
export const MAX_FRAME = 1518;
/** A TCP/IPv4 segmentation-offload frame: an IPv4 packet of at most 64 KiB (+ VLAN tag). */
export const MAX_GSO_FRAME = ETH_HLEN + 4 + 0xffff;
/** The link MTU: segments sent to the wire or marked for the guest fit it. */
const MTU = 1500;
const TCP_FIN = 0x01, TCP_PSH = 0x08, TCP_CWR = 0x80;
const ETHERTYPE_IPV4 = 0x0800, ETHERTYPE_VLAN = 0x8100;

export interface VirtioNetState { v: 1; mac: number[] }

/** Counters for diagnostics and tests. */
export interface VirtioNetStats {
  txFrames: number;
  rxFrames: number;
  /** Guest frames dropped: bad length, bad GSO request, bad checksum offsets. */
  txDropped: number;
  /** GSO frames from the guest, cut into `txFrames`. */
  txGsoFrames: number;
  /** Frames given to the guest as GSO (large TCP segments). */
  rxGsoFrames: number;
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
  readonly stats: VirtioNetStats = { txFrames: 0, rxFrames: 0, txDropped: 0, txGsoFrames: 0, rxGsoFrames: 0, rxDropped: 0, rxNoBuffer: 0 };
  private t!: VirtioTransport;
  private readonly txBuf = new Uint8Array(NET_HDR_SIZE + MAX_GSO_FRAME);
  /** One segment of a GSO frame being cut. */
  private readonly segBuf = new Uint8Array(MAX_FRAME);
  private readonly segViews: Array<Uint8Array | undefined> = [];
  /** Exact-length views of txBuf's frame part, made once per length (no allocation per frame). */
  private readonly txViews: Array<Uint8Array | undefined> = [];
  private readonly rxHdr = new Uint8Array(NET_HDR_SIZE);
  // Mergeable receive: the chains one frame is spread over.
  private readonly mergeHeads = new Uint32Array(QUEUE_SIZE);
  private readonly mergeLens = new Uint32Array(QUEUE_SIZE);
  private readonly numBuffers = new Uint8Array(2);

  /**
   * `offloads` false: no CSUM/GUEST_CSUM and no TSO; `tso` false: checksums only (to measure
   * what each is worth).
   */
  constructor(private readonly backend: NetBackend, mac: Uint8Array, offloads = true, tso = offloads) {
    if (mac.length !== 6 || (mac[0] & 1)) throw new Error('virtio-net: the MAC must be 6 bytes, unicast');
    this.features = (1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_MRG_RXBUF) | (1 << VIRTIO_NET_F_STATUS) |
      (offloads ? (1 << VIRTIO_NET_F_CSUM) | (1 << VIRTIO_NET_F_GUEST_CSUM) : 0) |
      // TSO needs the matching checksum offload (§5.1.3.1).
      (offloads && tso ? (1 << VIRTIO_NET_F_HOST_TSO4) | (1 << VIRTIO_NET_F_GUEST_TSO4) : 0);
    this.config.set(mac, 0);
    this.config[6] = VIRTIO_NET_S_LINK_UP;
    this.config[8] = 1; // max_virtqueue_pairs (meaningful only with MQ)
    backend.attach(this);
  }

  get mac(): Uint8Array { return this.config.slice(0, 6); }

  /** NetReceiver: 64 KiB TCP/IPv4 frames once the driver took GUEST_TSO4. */
  get maxFrame(): number {
    return this.t?.hasFeature(VIRTIO_NET_F_GUEST_TSO4) ? MAX_GSO_FRAME : MAX_FRAME;
  }

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
    const maxLen = t.hasFeature(VIRTIO_NET_F_HOST_TSO4) ? MAX_GSO_FRAME : MAX_FRAME;
    let any = false;
    while (t.live) {
      const r = q.pop(c);
      if (r === 0) break;
      if (r < 0) { t.fail(); return; }
      any = true;
      const len = c.readLen - NET_HDR_SIZE;
      const ok = len >= ETH_HLEN && len <= maxLen;
      if (ok) c.read(0, len <= MAX_FRAME ? this.txView(NET_HDR_SIZE + len, 0) : buf.subarray(0, NET_HDR_SIZE + len));
      q.push(c.head, 0);
      if (!ok) { this.stats.txDropped++; continue; }
      // One subarray per GSO frame (up to 64 KiB of data): the per-length view cache is for MTU frames.
      const frame = len <= MAX_FRAME ? this.txView(len, NET_HDR_SIZE) : buf.subarray(NET_HDR_SIZE, NET_HDR_SIZE + len);
      const gso = buf[1] & ~VIRTIO_NET_HDR_GSO_ECN;
      if (gso !== VIRTIO_NET_HDR_GSO_NONE) {
        // §5.1.6.2.1: only with HOST_TSO4 negotiated; the checksum is ours to compute per segment.
        if (gso !== VIRTIO_NET_HDR_GSO_TCPV4 || !t.hasFeature(VIRTIO_NET_F_HOST_TSO4) || !this.segment(frame, buf[4] | (buf[5] << 8))) this.stats.txDropped++;
        continue;
      }
      if (len > MAX_FRAME) { this.stats.txDropped++; continue; }
      if ((buf[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !completeChecksum(frame, buf[6] | (buf[7] << 8), buf[8] | (buf[9] << 8))) {
        this.stats.txDropped++;
        continue;
      }
      this.stats.txFrames++;
      this.backend.transmit(frame);
    }
    if (any) t.notifyUsed(TX);
  }

  /**
   * TCP segmentation (what a TSO NIC does): cut a TCP/IPv4 GSO frame into segments of at most
   * `mss` payload bytes, each a complete frame with its own IP length, id and checksum and TCP
   * seq, flags and checksum. False (nothing sent) if the headers are not TCP/IPv4 or the
   * segments would not fit the MTU.
   */
  private segment(frame: Uint8Array, mss: number): boolean {
    const ip = ipv4Offset(frame);
    if (ip < 0) return false;
    const ihl = (frame[ip] & 15) * 4;
    const totalLen = (frame[ip + 2] << 8) | frame[ip + 3];
    if (frame[ip + 9] !== 6 || ip + totalLen > frame.length || totalLen < ihl + 20) return false;
    const tcp = ip + ihl, thl = (frame[tcp + 12] >> 4) * 4;
    const hdrEnd = tcp + thl;
    if (thl < 20 || hdrEnd > ip + totalLen) return false;
    const payload = ip + totalLen - hdrEnd;
    if (mss < 1 || ihl + thl + mss > MTU) return false;
    const out = this.segBuf;
    const id0 = (frame[ip + 4] << 8) | frame[ip + 5];
    const seq0 = ((frame[tcp + 4] << 24) | (frame[tcp + 5] << 16) | (frame[tcp + 6] << 8) | frame[tcp + 7]) >>> 0;
    const flags = frame[tcp + 13];
    let n = 0;
    for (let off = 0; off < payload || (payload === 0 && n === 0); off += mss, n++) {
      const dlen = Math.min(mss, payload - off);
      const last = off + mss >= payload;
      out.set(frame.subarray(0, hdrEnd), 0);
      out.set(frame.subarray(hdrEnd + off, hdrEnd + off + dlen), hdrEnd);
      const ipLen = ihl + thl + dlen;
      out[ip + 2] = ipLen >>> 8; out[ip + 3] = ipLen & 0xff;
      const id = (id0 + n) & 0xffff;
      out[ip + 4] = id >>> 8; out[ip + 5] = id & 0xff;
      out[ip + 10] = 0; out[ip + 11] = 0;
      const ipSum = (~fold(sum16(out, ip, tcp, 0))) & 0xffff;
      out[ip + 10] = ipSum >>> 8; out[ip + 11] = ipSum & 0xff;
      const seq = (seq0 + off) >>> 0;
      out[tcp + 4] = seq >>> 24; out[tcp + 5] = (seq >>> 16) & 0xff; out[tcp + 6] = (seq >>> 8) & 0xff; out[tcp + 7] = seq & 0xff;
      out[tcp + 13] = flags & ~((last ? 0 : TCP_FIN | TCP_PSH) | (n === 0 ? 0 : TCP_CWR));
      out[tcp + 16] = 0; out[tcp + 17] = 0;
      const l4 = thl + dlen;
      let sum = sum16(out, ip + 12, ip + 20, 0) + 6 + l4;
      sum = (~fold(sum16(out, tcp, tcp + l4, sum))) & 0xffff;
      out[tcp + 16] = sum >>> 8; out[tcp + 17] = sum & 0xff;
      this.stats.txFrames++;
      this.backend.transmit(this.segView(hdrEnd + dlen));
      if (payload === 0) break;
    }
    this.stats.txGsoFrames++;
    return true;
  }

  private segView(len: number): Uint8Array {
    let v = this.segViews[len];
    if (!v) { v = this.segBuf.subarray(0, len); this.segViews[len] = v; }
    return v;
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
    const gso = len > MAX_FRAME ? this.gsoHeaderLen(frame) : 0;
    if (len < ETH_HLEN || (len > MAX_FRAME && gso === 0)) { this.stats.rxDropped++; return true; }
    const q = t.queue(RX), c = t.chain(RX);
    const hdr = this.rxHdr;
    hdr.fill(0);
    if (t.hasFeature(VIRTIO_NET_F_GUEST_CSUM) && checksumValid(frame)) hdr[0] = VIRTIO_NET_HDR_F_DATA_VALID;
    if (gso > 0) {
      // §5.1.6.4.1: a large TCP segment, for the driver to treat as segments of gso_size.
      const ip = ipv4Offset(frame), mss = MTU - (gso - ip);
      hdr[1] = VIRTIO_NET_HDR_GSO_TCPV4;
      hdr[2] = gso & 0xff; hdr[3] = gso >>> 8;
      hdr[4] = mss & 0xff; hdr[5] = mss >>> 8;
    }
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
    if (gso > 0) this.stats.rxGsoFrames++;
    t.notifyUsed(RX);
    t.wake();
    return true;
  }

  /**
   * For a frame larger than the MTU: the length of its Ethernet+IPv4+TCP headers if the guest
   * takes it as GSO (GUEST_TSO4 negotiated, TCP/IPv4, within 64 KiB, checksum-valid headers),
   * else 0.
   */
  private gsoHeaderLen(frame: Uint8Array): number {
    if (frame.length > MAX_GSO_FRAME || !this.t.hasFeature(VIRTIO_NET_F_GUEST_TSO4)) return 0;
    const ip = ipv4Offset(frame);
    if (ip < 0 || frame[ip + 9] !== 6) return 0;
    const ihl = (frame[ip] & 15) * 4, totalLen = (frame[ip + 2] << 8) | frame[ip + 3];
    const tcp = ip + ihl;
    if (ip + totalLen !== frame.length || tcp + 20 > frame.length) return 0;
    const end = tcp + (frame[tcp + 12] >> 4) * 4;
    return end - ip + 1 <= MTU && end <= frame.length ? end : 0;
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

/** Offset of the IPv4 header (after an optional VLAN tag) with a sane IHL, or -1. */
function ipv4Offset(frame: Uint8Array): number {
  let p = 12;
  let type = (frame[p] << 8) | frame[p + 1];
  if (type === ETHERTYPE_VLAN) { p += 4; if (p + 2 > frame.length) return -1; type = (frame[p] << 8) | frame[p + 1]; }
  const ip = p + 2;
  if (type !== ETHERTYPE_IPV4 || ip + 20 > frame.length || (frame[ip] >> 4) !== 4 || (frame[ip] & 15) < 5) return -1;
  return ip;
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
