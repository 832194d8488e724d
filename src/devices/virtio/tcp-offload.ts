/**
 * TCP/IPv4 checksum and segmentation offload, the work a NIC does for virtio-net's CSUM and
 * TSO4 features (Virtio 1.2 §5.1.6.2, §5.1.6.4): complete a partial checksum, verify one, and
 * cut a large TCP segment (a GSO frame) into frames that fit the 1500-byte MTU. Shared by the
 * NIC (transmit) and by whatever carries GSO frames between NICs (the switch, stream links)
 * and must cut them for a peer that takes only MTU-sized frames. Pure: no Node APIs.
 */

/** 1514 bytes plus a VLAN tag: the largest frame without offloads. */
export const MAX_FRAME = 1518;
/** A TCP/IPv4 segmentation-offload frame: an IPv4 packet of at most 64 KiB (+ VLAN tag). */
export const MAX_GSO_FRAME = 14 + 4 + 0xffff;
/** The link MTU: segments sent to the wire or marked for the guest fit it. */
export const MTU = 1500;

const TCP_FIN = 0x01, TCP_PSH = 0x08, TCP_CWR = 0x80;
const ETHERTYPE_IPV4 = 0x0800, ETHERTYPE_VLAN = 0x8100;

/** One's-complement sum of b[from, to) added to `sum` (not folded). */
export function sum16(b: Uint8Array, from: number, to: number, sum: number): number {
  let i = from;
  for (; i + 1 < to; i += 2) sum += (b[i] << 8) | b[i + 1];
  if (i < to) sum += b[i] << 8;
  return sum;
}

export function fold(sum: number): number {
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
export function ipv4Offset(frame: Uint8Array): number {
  let p = 12;
  let type = (frame[p] << 8) | frame[p + 1];
  if (type === ETHERTYPE_VLAN) { p += 4; if (p + 2 > frame.length) return -1; type = (frame[p] << 8) | frame[p + 1]; }
  const ip = p + 2;
  if (type !== ETHERTYPE_IPV4 || ip + 20 > frame.length || (frame[ip] >> 4) !== 4 || (frame[ip] & 15) < 5) return -1;
  return ip;
}

/** MF or a fragment offset: a piece of a datagram, never a segment to cut or mark GSO. */
function isFragment(frame: Uint8Array, ip: number): boolean {
  return ((frame[ip + 6] & 0x3f) | frame[ip + 7]) !== 0;
}

/** Whether frame is TCP or UDP over IPv4 (unfragmented) with a correct header and L4 checksum. */
export function checksumValid(frame: Uint8Array): boolean {
  const ip = ipv4Offset(frame);
  if (ip < 0) return false;
  const ihl = (frame[ip] & 15) * 4;
  const totalLen = (frame[ip + 2] << 8) | frame[ip + 3];
  if (totalLen < ihl || ip + totalLen > frame.length) return false;
  if (fold(sum16(frame, ip, ip + ihl, 0)) !== 0xffff) return false;
  if (isFragment(frame, ip)) return false;
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

/**
 * For a TCP/IPv4 frame that is one whole IP packet (no padding) of at most MAX_GSO_FRAME
 * bytes: the end of its TCP header, if headers plus one byte of data fit the MTU; else 0.
 * Such a frame is a large segment that `TcpSegmenter` cuts at MTU − headers.
 */
export function tcpHeaderEnd(frame: Uint8Array): number {
  if (frame.length > MAX_GSO_FRAME) return 0;
  const ip = ipv4Offset(frame);
  if (ip < 0 || frame[ip + 9] !== 6) return 0;
  const ihl = (frame[ip] & 15) * 4, totalLen = (frame[ip + 2] << 8) | frame[ip + 3];
  const tcp = ip + ihl;
  if (ip + totalLen !== frame.length || tcp + 20 > frame.length || isFragment(frame, ip)) return 0;
  const end = tcp + (frame[tcp + 12] >> 4) * 4;
  return end - ip + 1 <= MTU && end <= frame.length ? end : 0;
}

/** Rewrite the IPv4 header checksum of the packet at `ip` (header length from its IHL). */
export function setIpChecksum(frame: Uint8Array, ip: number): void {
  const ihl = (frame[ip] & 15) * 4;
  frame[ip + 10] = 0; frame[ip + 11] = 0;
  const s = (~fold(sum16(frame, ip, ip + ihl, 0))) & 0xffff;
  frame[ip + 10] = s >>> 8; frame[ip + 11] = s & 0xff;
}

/** What takes frames: a NIC (NetReceiver) or a backend's receive side. */
export interface FrameSink { receive(frame: Uint8Array): boolean; readonly maxFrame?: number }

/**
 * TCP segmentation (what a TSO NIC does): cut a TCP/IPv4 frame into segments of at most `mss`
 * payload bytes, each a complete frame with its own IP length, id and checksum and TCP seq,
 * flags and checksum. The segments are views of one reused buffer, valid only during `emit`
 * (which copies what it keeps).
 */
export class TcpSegmenter {
  private readonly buf = new Uint8Array(MAX_FRAME);
  private readonly views: Array<Uint8Array | undefined> = [];

  /**
   * Segments of `frame` to `emit`; returns how many, or -1 (nothing emitted) if the headers
   * are not TCP/IPv4 or the segments would not fit the MTU.
   */
  cut(frame: Uint8Array, mss: number, emit: (segment: Uint8Array) => void): number {
    const ip = ipv4Offset(frame);
    if (ip < 0) return -1;
    const ihl = (frame[ip] & 15) * 4;
    const totalLen = (frame[ip + 2] << 8) | frame[ip + 3];
    if (frame[ip + 9] !== 6 || ip + totalLen > frame.length || totalLen < ihl + 20 || isFragment(frame, ip)) return -1;
    const tcp = ip + ihl, thl = (frame[tcp + 12] >> 4) * 4;
    const hdrEnd = tcp + thl;
    if (thl < 20 || hdrEnd > ip + totalLen) return -1;
    const payload = ip + totalLen - hdrEnd;
    if (mss < 1 || ihl + thl + mss > MTU) return -1;
    const out = this.buf;
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
      setIpChecksum(out, ip);
      const seq = (seq0 + off) >>> 0;
      out[tcp + 4] = seq >>> 24; out[tcp + 5] = (seq >>> 16) & 0xff; out[tcp + 6] = (seq >>> 8) & 0xff; out[tcp + 7] = seq & 0xff;
      // FIN and PSH belong to the last segment, CWR to the first (as Linux's tcp_gso_segment).
      out[tcp + 13] = flags & ~((last ? 0 : TCP_FIN | TCP_PSH) | (n === 0 ? 0 : TCP_CWR));
      out[tcp + 16] = 0; out[tcp + 17] = 0;
      const l4 = thl + dlen;
      let sum = sum16(out, ip + 12, ip + 20, 0) + 6 + l4;
      sum = (~fold(sum16(out, tcp, tcp + l4, sum))) & 0xffff;
      out[tcp + 16] = sum >>> 8; out[tcp + 17] = sum & 0xff;
      emit(this.view(hdrEnd + dlen));
      if (payload === 0) { n++; break; }
    }
    return n;
  }

  /**
   * Hand `frame` to `rx`: whole if it takes frames that large (`maxFrame`, 1518 if absent),
   * else, for a large TCP segment, cut at MTU − headers. Returns what `rx.receive` returned;
   * for a cut frame, false if the first segment was refused (the caller keeps the frame and
   * offers it again), and if a later one is refused the rest are dropped and counted in
   * `dropped` (TCP sends them again). A frame too large that is not a TCP segment is dropped.
   */
  deliver(rx: FrameSink, frame: Uint8Array): boolean {
    if (frame.length <= (rx.maxFrame ?? MAX_FRAME)) return rx.receive(frame);
    const end = tcpHeaderEnd(frame);
    if (end === 0) { this.dropped++; return true; }
    this.sink = rx; this.sent = 0; this.refused = false;
    this.cut(frame, MTU - (end - ipv4Offset(frame)), this.emitToSink);
    this.sink = null;
    if (this.refused && this.sent > 0) this.dropped++;
    return !this.refused || this.sent > 0;
  }

  /** Inside deliver() (a receiver that re-enters needs another segmenter). */
  get busy(): boolean { return this.sink !== null; }

  /** Frames `deliver` dropped: too large and not TCP, or segments refused after the first. */
  dropped = 0;
  private sink: FrameSink | null = null;
  private sent = 0;
  private refused = false;
  private readonly emitToSink = (seg: Uint8Array): void => {
    if (this.refused || !this.sink) return;
    if (this.sink.receive(seg)) this.sent++; else this.refused = true;
  };

  private view(len: number): Uint8Array {
    let v = this.views[len];
    if (!v) { v = this.buf.subarray(0, len); this.views[len] = v; }
    return v;
  }
}
