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
 * - transmit: a GSO frame goes whole to a backend that carries them (`NetBackend.gso`: a
 *   switch, a link to another typevisor; checksums completed), else it is cut here into
 *   MSS-sized frames (IP id, lengths and checksums, TCP seq, flags and checksum redone per
 *   segment, tcp-offload.ts), so other backends carry frames of at most 1514 (+4) bytes;
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
import {
  checksumValid, completeChecksum, ipv4Offset, MAX_FRAME, MAX_GSO_FRAME, MTU, setIpChecksum, tcpHeaderEnd, TcpSegmenter,
} from './tcp-offload.js';

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
  private readonly segmenter = new TcpSegmenter();
  private readonly transmitSegment = (seg: Uint8Array): void => this.backend.transmit(seg);
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
  /** Bytes of frames sent and received (VirtioDevice.traffic). */
  private bytes = 0;
  get traffic(): number { return this.bytes; }

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
      this.bytes += len;
      // One subarray per GSO frame (up to 64 KiB of data): the per-length view cache is for MTU frames.
      const frame = len <= MAX_FRAME ? this.txView(len, NET_HDR_SIZE) : buf.subarray(NET_HDR_SIZE, NET_HDR_SIZE + len);
      const gso = buf[1] & ~VIRTIO_NET_HDR_GSO_ECN;
      if (gso !== VIRTIO_NET_HDR_GSO_NONE) {
        // §5.1.6.2.1: only with HOST_TSO4 negotiated; the checksum is ours to compute per segment.
        if (gso !== VIRTIO_NET_HDR_GSO_TCPV4 || !t.hasFeature(VIRTIO_NET_F_HOST_TSO4) || !this.transmitGso(frame, buf)) this.stats.txDropped++;
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
   * A TCP/IPv4 GSO frame (§5.1.6.2.1): whole to a backend that carries GSO frames (`gso`), when
   * the guest's segment size is the one the far end will cut or mark at (MTU − headers) and
   * the checksum request is the TCP checksum; else cut here into MTU-sized frames. False
   * (nothing sent) if it is neither.
   */
  private transmitGso(frame: Uint8Array, hdr: Uint8Array): boolean {
    const mss = hdr[4] | (hdr[5] << 8);
    const end = this.backend.gso ? tcpHeaderEnd(frame) : 0;
    if (end > 0) {
      const ip = ipv4Offset(frame), tcp = ip + (frame[ip] & 15) * 4;
      const start = hdr[6] | (hdr[7] << 8), offset = hdr[8] | (hdr[9] << 8);
      if (mss === MTU - (end - ip) && (hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) && start === tcp && offset === 16) {
        completeChecksum(frame, start, offset);
        setIpChecksum(frame, ip);
        this.stats.txFrames++;
        this.stats.txGsoFrames++;
        this.backend.transmit(frame);
        return true;
      }
    }
    const n = this.segmenter.cut(frame, mss, this.transmitSegment);
    if (n < 0) return false;
    this.stats.txFrames += n;
    this.stats.txGsoFrames++;
    return true;
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
    this.bytes += len;
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
    return this.t.hasFeature(VIRTIO_NET_F_GUEST_TSO4) ? tcpHeaderEnd(frame) : 0;
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

/** QEMU's default MAC pattern: 52:54:00:12:34:56 for the first NIC, then :57, :58, ... */
export function defaultMac(index: number): Uint8Array {
  const n = 0x12_34_56 + index;
  return Uint8Array.of(0x52, 0x54, 0x00, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}
