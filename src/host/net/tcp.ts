/**
 * The guest-facing TCP endpoint (RFC 9293): the user-mode network terminates each guest
 * connection here and relays its byte stream to a host socket (slirp's model).
 *
 * - Three-way handshake both ways (guest connects out; hostfwd connects in), MSS option,
 *   window scaling (RFC 7323) when the guest offers it. No timestamps or SACK: the guest
 *   sees them refused in our SYN and does without.
 * - Sending: host data sits in a bounded send buffer until the guest ACKs it. Segments go
 *   out up to min(guest window, cwnd). Retransmission timer with RTO from RFC 6298 (Karn's
 *   rule), go-back-N after a timeout with slow start, fast retransmit on 3 duplicate ACKs with limited transmit,
 *   NewReno partial ACKs, zero-window probes.
 * - Receiving: data reaches the host in order only; segments beyond a hole wait in a
 *   reassembly queue (within the window) and are re-ACKed at once so the guest's fast
 *   retransmit fills the hole. The advertised
 *   window is what the host socket has not yet flushed, so a slow host peer throttles the
 *   guest instead of growing host memory.
 * - FIN both ways with half-close, RST both ways; a short TIME-WAIT.
 */
import { ETH_HLEN, ETHERTYPE_IPV4, writeEthHeader } from './ethernet.js';
import { IP_HLEN, IPPROTO_TCP, readU16, readU32, setL4Checksum, writeIpv4Header, writeU16, writeU32, type Ipv4Packet } from './ipv4.js';
import type { HostTcp, HostTcpEvents } from './host.js';

export const FIN = 0x01, SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10, URG = 0x20;
export const TCP_HLEN = 20;
/** Our MSS: a 1500-byte MTU minus IP and TCP headers. */
export const OUR_MSS = 1460;
/** Bounds per connection: bytes from the host waiting for the guest's ACK, and bytes from the guest waiting for the host socket. */
export const SEND_BUF = 256 * 1024;
export const RCV_BUF = 256 * 1024;
const OUR_WSCALE = 3; // 256 KiB window fits 16 bits << 3
// RTO_MIN: RFC 6298 2.4's 1 s. The link to the guest loses nothing; what looks like loss is an
// interpreted guest that fell behind (host load), and a spurious timeout costs a go-back-N.
const RTO_INIT = 1000, RTO_MIN = 1000, RTO_MAX = 60_000, MAX_RETRIES = 12;
const DELACK_MS = 5;
const TIME_WAIT_MS = 1000;

export const enum State { SynSent, SynRcvd, Established, FinWait1, FinWait2, Closing, TimeWait, CloseWait, LastAck, Closed }

/** A parsed guest segment. */
export interface TcpSegment {
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  wnd: number;
  dataOff: number;
  dataLen: number;
  /** SYN options: MSS (0 if absent) and window shift (-1 if absent). */
  mss: number;
  wscale: number;
}

/** Validate a TCP header and checksum; fills `s` or returns false. */
export function parseTcp(f: Uint8Array, p: Ipv4Packet, s: TcpSegment): boolean {
  if (p.l4Len < TCP_HLEN) return false;
  const o = p.l4Off;
  const hlen = (f[o + 12] >>> 4) * 4;
  if (hlen < TCP_HLEN || hlen > p.l4Len) return false;
  s.sport = readU16(f, o); s.dport = readU16(f, o + 2);
  s.seq = readU32(f, o + 4); s.ack = readU32(f, o + 8);
  s.flags = f[o + 13]; s.wnd = readU16(f, o + 14);
  s.dataOff = o + hlen; s.dataLen = p.l4Len - hlen;
  s.mss = 0; s.wscale = -1;
  if (s.flags & SYN) {
    let i = o + TCP_HLEN;
    const end = o + hlen;
    while (i < end) {
      const kind = f[i];
      if (kind === 0) break;
      if (kind === 1) { i++; continue; }
      if (i + 1 >= end) break;
      const len = f[i + 1];
      if (len < 2 || i + len > end) break;
      if (kind === 2 && len === 4) s.mss = readU16(f, i + 2);
      else if (kind === 3 && len === 3) s.wscale = Math.min(f[i + 2], 14);
      i += len;
    }
  }
  return true;
}

const seqLt = (a: number, b: number): boolean => ((a - b) | 0) < 0;
const seqLe = (a: number, b: number): boolean => ((a - b) | 0) <= 0;

/** What a connection needs from the network it lives in. */
export interface TcpNetwork {
  /** Deliver a frame to the guest. */
  toGuest(frame: Uint8Array): void;
  /**
   * The most data one segment to the guest may carry: above the MSS when the NIC takes large
   * TCP frames (segmentation offload), so the interpreted guest handles fewer, larger ones.
   */
  segmentMax(): number;
  ourMac: Uint8Array;
  guestMac(ip: number): Uint8Array;
  /** The connection reached CLOSED: forget it. */
  removed(c: TcpConn): void;
  /** Count a retransmission (statistics). */
  retransmitted(kind: 'timeout' | 'fast'): void;
}

export class TcpConn implements HostTcpEvents {
  state: State;
  host: HostTcp | null = null;
  private hostGone = false;
  /** The guest's FIN was passed on: nothing more is written to the host. */
  private hostWriteEnded = false;
  /** True between a guest SYN and the host socket's connect. */
  connecting = false;

  private iss: number;
  private sndUna: number;
  private sndNxt: number;
  private sndMax: number;
  private sndWnd = 0;
  /** The largest window the guest has offered (for sender SWS avoidance). */
  private maxSndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  private sndShift = 0;
  private rcvShift = 0;
  private rcvNxt = 0;
  private mss = 536;
  private cwnd = 10 * OUR_MSS;
  private ssthresh = 0x7fffffff;
  private dupAcks = 0;
  private recovering = false;
  private recover = 0;

  // Send buffer: bytes from sndUna on (the SYN is not in it).
  private chunks: Uint8Array[] = [];
  private headOff = 0;
  private bufBytes = 0;
  private finQueued = false;
  /** Sequence number of our FIN once sent. */
  private finSeq: number | null = null;
  private hostPaused = false;

  private rto = RTO_INIT;
  private srtt = 0;
  private rttvar = 0;
  private rttSeq = 0;
  private rttStart = 0;
  private timing = false;
  private retries = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private deadline = 0;
  private ackTimer: ReturnType<typeof setTimeout> | null = null;
  /** Segments received ahead of a hole, bounded by the receive window. */
  private ooo: Array<{ seq: number; data: Uint8Array }> = [];
  private oooBytes = 0;
  private unacked = 0;

  private constructor(
    private readonly net: TcpNetwork,
    readonly guestIp: number, readonly guestPort: number,
    readonly remoteIp: number, readonly remotePort: number, state: State,
  ) {
    this.state = state;
    this.iss = (Math.random() * 0x100000000) >>> 0;
    this.sndUna = this.sndNxt = this.sndMax = this.iss;
  }

  /** A guest SYN: the caller connects the host socket and passes it to `attachHost`; SYN-ACK follows its connect. */
  static fromGuestSyn(net: TcpNetwork, ip: Ipv4Packet, s: TcpSegment): TcpConn {
    const c = new TcpConn(net, ip.src, s.sport, ip.dst, s.dport, State.SynRcvd);
    c.rcvNxt = (s.seq + 1) >>> 0;
    c.takeSynOptions(s);
    c.sndWnd = s.wnd; // unscaled in a SYN
    c.connecting = true;
    return c;
  }

  /** A host connection accepted by a hostfwd listener: we send the SYN. */
  static toGuest(net: TcpNetwork, guestIp: number, guestPort: number, remoteIp: number, remotePort: number, host: HostTcp): TcpConn {
    const c = new TcpConn(net, guestIp, guestPort, remoteIp, remotePort, State.SynSent);
    c.host = host;
    c.sndNxt = c.sndMax = (c.iss + 1) >>> 0;
    c.sendSyn();
    c.arm(c.rto);
    return c;
  }

  attachHost(h: HostTcp): void { this.host = h; }

  /**
   * Whether a live migration can carry this connection: synchronized and not closing
   * (half-open ones are left to the guest's retransmitted SYN; closing ones end on their own).
   */
  get movable(): boolean {
    return this.state === State.Established || this.state === State.CloseWait || this.state === State.FinWait1 || this.state === State.FinWait2;
  }

  /** The connection as plain data (live migration); the connection itself is not changed. */
  save(): TcpConnState {
    const sendBuf = new Uint8Array(this.bufBytes);
    this.copyOut(0, this.bufBytes, sendBuf, 0);
    return {
      guestIp: this.guestIp, guestPort: this.guestPort, remoteIp: this.remoteIp, remotePort: this.remotePort, state: this.state,
      iss: this.iss, sndUna: this.sndUna, sndNxt: this.sndNxt, sndMax: this.sndMax, sndWnd: this.sndWnd, maxSndWnd: this.maxSndWnd,
      sndWl1: this.sndWl1, sndWl2: this.sndWl2, sndShift: this.sndShift, rcvShift: this.rcvShift, rcvNxt: this.rcvNxt, mss: this.mss,
      cwnd: this.cwnd, ssthresh: this.ssthresh, rto: this.rto, srtt: this.srtt, rttvar: this.rttvar,
      finQueued: this.finQueued, finSeq: this.finSeq, sendBuf, ooo: this.ooo.map((e) => ({ seq: e.seq, data: e.data.slice() })),
      hostGone: this.hostGone, hostWriteEnded: this.hostWriteEnded,
    };
  }

  /**
   * A connection carried by a live migration (`st` checked by checkTcpConnState). `host`:
   * its host side here (null when that side was gone). What was in flight to the guest is
   * sent again at once (go-back-N): frames queued on the source never reached it.
   */
  static restore(net: TcpNetwork, st: TcpConnState, connect: (c: TcpConn) => HostTcp | null): TcpConn {
    const c = new TcpConn(net, st.guestIp, st.guestPort, st.remoteIp, st.remotePort, st.state);
    const host = st.hostGone ? null : connect(c);
    c.iss = st.iss; c.sndUna = st.sndUna; c.sndNxt = st.sndNxt; c.sndMax = st.sndMax; c.sndWnd = st.sndWnd; c.maxSndWnd = st.maxSndWnd;
    c.sndWl1 = st.sndWl1; c.sndWl2 = st.sndWl2; c.sndShift = st.sndShift; c.rcvShift = st.rcvShift; c.rcvNxt = st.rcvNxt; c.mss = st.mss;
    c.cwnd = st.cwnd; c.ssthresh = st.ssthresh; c.rto = st.rto; c.srtt = st.srtt; c.rttvar = st.rttvar;
    c.finQueued = st.finQueued; c.finSeq = st.finSeq;
    if (st.sendBuf.length > 0) { c.chunks = [st.sendBuf]; c.bufBytes = st.sendBuf.length; }
    c.ooo = st.ooo.map((e) => ({ seq: e.seq, data: e.data }));
    c.oooBytes = st.ooo.reduce((a, e) => a + e.data.length, 0);
    c.hostGone = st.hostGone || host === null;
    c.hostWriteEnded = st.hostWriteEnded;
    c.host = host;
    if (host && c.bufBytes >= SEND_BUF) { c.hostPaused = true; host.pause(); }
    if (c.sndNxt !== c.sndUna) { c.sndNxt = c.sndUna; c.recovering = false; }
    c.sendAck(); // the guest learns our window at once
    c.output();
    return c;
  }

  /** The host socket is gone (closed both ways, or never there). */
  get hostClosed(): boolean { return this.hostGone; }

  /** A live migration failed: the host side flows again (unless our own flow control holds it). */
  thaw(): void {
    if (this.host && !this.hostGone && !this.hostPaused) this.host.resume();
  }

  /** Let go of the host side without closing it (it was handed to a relay); the connection is forgotten. */
  handOff(): void {
    this.host = null;
    this.hostGone = true;
    this.destroy();
  }

  /** Whether the guest ended its sending side (the host side must not be written to). */
  get guestEnded(): boolean { return this.hostWriteEnded; }

  /** Whether this connection counts as half-open (for the SYN-flood bound). */
  get halfOpen(): boolean { return this.state === State.SynRcvd || this.state === State.SynSent; }

  private takeSynOptions(s: TcpSegment): void {
    this.mss = Math.max(64, Math.min(s.mss || 536, OUR_MSS));
    if (s.wscale >= 0) { this.sndShift = s.wscale; this.rcvShift = OUR_WSCALE; }
  }

  // ---- host socket events ----

  connect(): void {
    if (this.state !== State.SynRcvd || !this.connecting) return;
    this.connecting = false;
    this.sndNxt = this.sndMax = (this.iss + 1) >>> 0;
    this.sendSyn();
    this.arm(this.rto);
  }

  data(d: Uint8Array): void {
    if (this.state === State.Closed || this.finQueued) return;
    this.chunks.push(d);
    this.bufBytes += d.length;
    if (this.bufBytes >= SEND_BUF && !this.hostPaused) { this.hostPaused = true; this.host?.pause(); }
    this.output();
  }

  end(): void {
    if (this.finQueued || this.state === State.Closed) return;
    this.finQueued = true;
    this.output();
  }

  drain(): void {
    // The host flushed: tell the guest the window opened (it may be waiting on zero).
    if (this.synchronized()) this.sendAck();
  }

  close(error?: string): void {
    this.hostGone = true;
    if (this.state === State.Closed) return;
    if (error !== undefined) {
      // Connection refused, reset, host port exhaustion: the guest gets a RST.
      if (this.state === State.SynRcvd && this.connecting) this.segment(RST | ACK, 0, this.rcvNxt, null, 0, 0);
      else if (this.state !== State.SynSent) this.segment(RST | ACK, this.sndNxt, this.rcvNxt, null, 0, 0);
      this.destroy();
      return;
    }
    this.end();
  }

  // ---- guest segments ----

  input(s: TcpSegment, f: Uint8Array): void {
    switch (this.state) {
      case State.Closed: return;
      case State.SynSent: this.inputSynSent(s); return;
      case State.SynRcvd:
        if (this.connecting) {
          // Still connecting on the host: a retransmitted SYN waits; a RST gives up.
          if ((s.flags & RST) && s.seq === this.rcvNxt) this.destroy();
          return;
        }
        if ((s.flags & SYN) && !(s.flags & ACK) && s.seq === ((this.rcvNxt - 1) >>> 0)) { this.sendSyn(); return; }
        break;
      default: break;
    }
    // RFC 9293 3.10.7.4: sequence number check.
    const rwnd = this.rcvWindow();
    const segEnd = (s.seq + s.dataLen + ((s.flags & (SYN | FIN)) ? 1 : 0)) >>> 0;
    let ok: boolean;
    if (s.dataLen === 0 && !(s.flags & (SYN | FIN))) {
      ok = rwnd === 0 ? s.seq === this.rcvNxt : seqLe(this.rcvNxt, s.seq) && seqLt(s.seq, (this.rcvNxt + rwnd) >>> 0);
    } else {
      ok = rwnd > 0 && (seqLe(this.rcvNxt, s.seq) && seqLt(s.seq, (this.rcvNxt + rwnd) >>> 0)
        || seqLt(this.rcvNxt, segEnd) && seqLe(segEnd, (this.rcvNxt + rwnd) >>> 0)
        || seqLt(s.seq, this.rcvNxt) && seqLt(this.rcvNxt, segEnd));
    }
    if (!ok) {
      if (rwnd === 0 && s.seq === this.rcvNxt && (s.flags & ACK)) this.processAck(s); // window probe still carries ACKs
      if (!(s.flags & RST)) this.sendAck();
      return;
    }
    if (s.flags & RST) {
      if (s.seq === this.rcvNxt) this.destroy();
      else this.sendAck(); // RFC 5961 challenge ACK
      return;
    }
    if (s.flags & SYN) { this.sendAck(); return; } // RFC 5961: challenge ACK
    if (!(s.flags & ACK)) return;
    if (this.state === State.SynRcvd) {
      if (s.ack !== this.sndNxt) { this.segment(RST, s.ack, 0, null, 0, 0); return; }
      this.sndUna = s.ack;
      this.established(s);
    }
    if (!this.processAck(s)) return;
    if (this.done()) return;

    // Data: in order to the host; ahead of a hole into the bounded reassembly queue.
    let consumed = false;
    if (s.dataLen > 0 && (this.state === State.Established || this.state === State.FinWait1 || this.state === State.FinWait2)) {
      if (seqLt(this.rcvNxt, s.seq)) { this.queueOoo(s.seq, f, s.dataOff, s.dataLen, rwnd); this.sendAck(); return; }
      const skip = (this.rcvNxt - s.seq) >>> 0;
      const len = Math.min(s.dataLen - skip, rwnd);
      if (len > 0) {
        this.deliver(f.slice(s.dataOff + skip, s.dataOff + skip + len));
        consumed = true;
        if (this.ooo.length) { this.drainOoo(); this.sendAck(); }
      }
      if (skip + len < s.dataLen) { this.sendAck(); return; } // trimmed to the window; FIN not reached
    }
    if ((s.flags & FIN) && ((s.seq + s.dataLen) >>> 0) === this.rcvNxt) {
      this.rcvNxt = (this.rcvNxt + 1) >>> 0;
      if (this.host && !this.hostGone) this.host.end();
      this.hostWriteEnded = true;
      if (this.state === State.Established) this.state = State.CloseWait;
      else if (this.state === State.FinWait1) this.state = this.finAcked() ? State.TimeWait : State.Closing;
      else if (this.state === State.FinWait2) this.state = State.TimeWait;
      this.sendAck();
      if (this.state === State.TimeWait) this.enterTimeWait();
      return;
    }
    if (consumed) {
      // RFC 9293 3.8.6.3: at least every second full-sized segment; a TSO segment is many.
      if (++this.unacked >= 2 || s.dataLen > this.mss) this.sendAck();
      else this.ackTimer ??= setTimeout(() => { this.ackTimer = null; if (this.unacked) this.sendAck(); }, DELACK_MS);
    }
  }

  private inputSynSent(s: TcpSegment): void {
    const ackOk = (s.flags & ACK) !== 0 && s.ack === this.sndNxt;
    if ((s.flags & ACK) && !ackOk) {
      if (!(s.flags & RST)) this.segment(RST, s.ack, 0, null, 0, 0);
      return;
    }
    if (s.flags & RST) { if (ackOk) { this.host?.destroy(); this.destroy(); } return; }
    if (!(s.flags & SYN) || !ackOk) return;
    this.rcvNxt = (s.seq + 1) >>> 0;
    this.takeSynOptions(s);
    this.sndUna = s.ack;
    this.sndWnd = s.wnd;
    this.sndWl1 = s.seq; this.sndWl2 = s.ack;
    this.state = State.Established;
    this.disarm();
    this.retries = 0;
    this.sendAck();
    this.host?.resume();
    this.output();
  }

  private established(s: TcpSegment): void {
    this.state = State.Established;
    this.sndWnd = s.wnd << this.sndShift;
    this.sndWl1 = s.seq; this.sndWl2 = s.ack;
    this.disarm();
    this.retries = 0;
  }

  /** The ACK field; false if the segment must be dropped. */
  private processAck(s: TcpSegment): boolean {
    if (seqLt(this.sndMax, s.ack)) { this.sendAck(); return false; } // acks data never sent
    const wnd = s.wnd << this.sndShift;
    if (seqLt(this.sndUna, s.ack)) {
      const acked = (s.ack - this.sndUna) >>> 0;
      if (this.timing && seqLe(this.rttSeq, s.ack)) { this.timing = false; this.sampleRtt(Date.now() - this.rttStart); }
      const dataAcked = Math.min(acked, this.bufBytes);
      this.dropAcked(dataAcked);
      this.sndUna = s.ack;
      if (seqLt(this.sndNxt, this.sndUna)) this.sndNxt = this.sndUna;
      this.dupAcks = 0;
      this.retries = 0;
      // NewReno (RFC 6582): a partial ACK in fast recovery means the next segment was lost too.
      if (this.recovering && seqLt(s.ack, this.recover)) {
        const len = Math.min(this.bufBytes, this.mss);
        if (len > 0) this.segment(ACK, this.sndUna, this.rcvNxt, this, 0, len);
      } else this.recovering = false;
      this.cwnd += this.cwnd < this.ssthresh ? dataAcked : Math.max(1, Math.floor(this.mss * this.mss / this.cwnd));
      if (this.cwnd > 4 * SEND_BUF) this.cwnd = 4 * SEND_BUF;
      if (this.sndUna === this.sndMax) this.disarm(); else this.arm(this.rto);
      if (this.hostPaused && this.bufBytes < SEND_BUF / 2) { this.hostPaused = false; this.host?.resume(); }
    } else if (s.ack === this.sndUna && s.dataLen === 0 && this.sndUna !== this.sndMax && !(s.flags & (SYN | FIN))) {
      if (++this.dupAcks === 3) this.fastRetransmit();
      else if (this.dupAcks < 3) this.limitedTransmit();
    }
    if (seqLt(this.sndWl1, s.seq) || (this.sndWl1 === s.seq && seqLe(this.sndWl2, s.ack))) {
      this.sndWnd = wnd;
      this.sndWl1 = s.seq; this.sndWl2 = s.ack;
    }
    if (this.finAcked()) {
      if (this.state === State.FinWait1) this.state = State.FinWait2;
      else if (this.state === State.Closing) { this.state = State.TimeWait; this.enterTimeWait(); return false; }
      else if (this.state === State.LastAck) { this.destroy(); return false; }
    }
    this.output();
    return true;
  }

  private finAcked(): boolean {
    return this.finSeq !== null && seqLt(this.finSeq, this.sndUna);
  }

  private done(): boolean { return this.state === State.Closed || this.state === State.TimeWait; }

  /** The sequence number the FIN takes: just after the buffered data. */
  private finBase(): number { return (this.sndUna + this.bufBytes) >>> 0; }

  private synchronized(): boolean {
    return this.state !== State.SynSent && this.state !== State.SynRcvd && this.state !== State.Closed;
  }

  // ---- output ----

  /** Send what the windows allow. */
  private output(): void {
    if (!this.synchronized() || this.state === State.TimeWait) return;
    const wnd = Math.min(this.sndWnd, this.cwnd);
    const seg = Math.max(this.mss, this.net.segmentMax());
    if (this.sndWnd > this.maxSndWnd) this.maxSndWnd = this.sndWnd;
    for (;;) {
      const off = (this.sndNxt - this.sndUna) >>> 0; // offset of sndNxt in the buffer
      const avail = this.bufBytes - off;
      const room = wnd - off;
      if (avail > 0 && room > 0) {
        const len = Math.min(avail, seg, room);
        // Sender SWS avoidance (RFC 9293 3.8.6.2.1), sized for large segments: with data in
        // flight, a short segment waits for the ACKs that will make it a full one (each
        // segment costs the interpreted guest the same, whatever its size).
        if (len < avail && off > 0 && len < Math.min(seg, this.maxSndWnd >>> 1)) break;
        this.sendData(off, len);
        continue;
      }
      if (avail <= 0 && this.finQueued && this.sndNxt === this.finBase()) {
        if (this.finSeq === null && (this.state === State.Established || this.state === State.CloseWait)) {
          this.finSeq = this.sndNxt;
          this.segment(FIN | ACK, this.sndNxt, this.rcvNxt, null, 0, 0);
          this.sndNxt = this.sndMax = (this.sndNxt + 1) >>> 0;
          this.state = this.state === State.Established ? State.FinWait1 : State.LastAck;
        } else if (this.finSeq === this.sndNxt) {
          // Retransmitting after go-back-N: the FIN again.
          this.segment(FIN | ACK, this.sndNxt, this.rcvNxt, null, 0, 0);
          this.sndNxt = (this.sndNxt + 1) >>> 0;
        }
      }
      break;
    }
    // RFC 6298 5.1: start the timer if it is not running (an ACK of new data restarts it).
    if (!this.timer && (this.sndUna !== this.sndMax || (this.bufBytes > 0 && this.sndWnd === 0))) this.arm(this.rto);
  }

  private sendData(off: number, len: number): void {
    const seq = this.sndNxt;
    const psh = off + len === this.bufBytes ? PSH : 0;
    this.segment(ACK | psh, seq, this.rcvNxt, this, off, len);
    this.sndNxt = (this.sndNxt + len) >>> 0;
    if (seqLt(this.sndMax, this.sndNxt)) {
      this.sndMax = this.sndNxt;
      if (!this.timing) { this.timing = true; this.rttSeq = this.sndNxt; this.rttStart = Date.now(); }
    }
  }

  /**
   * RFC 3042: on the first two duplicate ACKs send one new segment beyond cwnd, so the guest
   * sees more data past the hole and sends the duplicate ACKs fast retransmit needs (a
   * guest's receive offload merges back-to-back segments into one ACK).
   */
  private limitedTransmit(): void {
    if (this.sndNxt !== this.sndMax || !this.synchronized()) return;
    const off = (this.sndNxt - this.sndUna) >>> 0;
    const len = Math.min(this.bufBytes - off, this.mss, this.sndWnd - off);
    if (len > 0) this.sendData(off, len);
  }

  private fastRetransmit(): void {
    if (this.recovering) return;
    this.recovering = true;
    this.net.retransmitted('fast');
    this.recover = this.sndMax;
    const inFlight = (this.sndMax - this.sndUna) >>> 0;
    this.ssthresh = Math.max(inFlight >>> 1, 2 * this.mss);
    this.cwnd = this.ssthresh;
    this.timing = false;
    const len = Math.min(this.bufBytes, this.mss);
    if (len > 0) this.segment(ACK, this.sndUna, this.rcvNxt, this, 0, len);
  }

  private onTimer(): void {
    this.timer = null;
    const now = Date.now();
    if (now < this.deadline) { this.timer = setTimeout(() => this.onTimer(), this.deadline - now); return; }
    if (this.state === State.TimeWait) { this.destroy(); return; }
    if (this.state === State.Closed) return;
    if (++this.retries > MAX_RETRIES) {
      if (this.synchronized() || this.state === State.SynSent) this.segment(RST | ACK, this.sndNxt, this.rcvNxt, null, 0, 0);
      this.host?.destroy();
      this.destroy();
      return;
    }
    this.rto = Math.min(this.rto * 2, RTO_MAX);
    this.timing = false;
    this.net.retransmitted('timeout');
    if (this.state === State.SynSent || this.state === State.SynRcvd) {
      this.sendSyn();
      this.arm(this.rto);
      return;
    }
    const inFlight = (this.sndMax - this.sndUna) >>> 0;
    if (this.sndWnd === 0 && this.bufBytes > 0 && inFlight <= 1) {
      // Zero-window probe: one byte beyond the window.
      this.segment(ACK, this.sndUna, this.rcvNxt, this, 0, 1);
      if (this.sndMax === this.sndUna) this.sndMax = this.sndNxt = (this.sndUna + 1) >>> 0;
      this.arm(this.rto);
      return;
    }
    this.ssthresh = Math.max(inFlight >>> 1, 2 * this.mss);
    this.cwnd = this.mss;
    this.recovering = false;
    this.sndNxt = this.sndUna; // go back N
    this.output();
    this.arm(this.rto);
  }

  private sampleRtt(ms: number): void {
    if (this.srtt === 0) { this.srtt = ms; this.rttvar = ms / 2; }
    else { this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - ms); this.srtt = 0.875 * this.srtt + 0.125 * ms; }
    this.rto = Math.min(RTO_MAX, Math.max(RTO_MIN, this.srtt + Math.max(10, 4 * this.rttvar)));
  }

  private arm(ms: number): void {
    const d = Date.now() + ms;
    if (this.timer && d < this.deadline) { clearTimeout(this.timer); this.timer = null; }
    this.deadline = d;
    this.timer ??= setTimeout(() => this.onTimer(), ms);
  }

  private disarm(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
  }

  private enterTimeWait(): void {
    this.disarm();
    this.arm(TIME_WAIT_MS);
  }

  private dropAcked(n: number): void {
    this.bufBytes -= n;
    let left = n;
    while (left > 0) {
      const c = this.chunks[0];
      const have = c.length - this.headOff;
      if (have > left) { this.headOff += left; break; }
      left -= have;
      this.chunks.shift();
      this.headOff = 0;
    }
  }

  /** Copy `len` buffered bytes from offset `off` (relative to sndUna) into dst. */
  copyOut(off: number, len: number, dst: Uint8Array, dstOff: number): void {
    let skip = off + this.headOff;
    let d = dstOff;
    let left = len;
    for (let i = 0; i < this.chunks.length && left > 0; i++) {
      const c = this.chunks[i];
      if (skip >= c.length) { skip -= c.length; continue; }
      const n = Math.min(c.length - skip, left);
      dst.set(c.subarray(skip, skip + n), d);
      d += n; left -= n; skip = 0;
    }
  }

  private deliver(d: Uint8Array): void {
    if (this.host && !this.hostGone) this.host.write(d);
    this.rcvNxt = (this.rcvNxt + d.length) >>> 0;
  }

  /** Keep a segment that arrived ahead of a hole (within the window), sorted by sequence number. */
  private queueOoo(seq: number, f: Uint8Array, off: number, len: number, rwnd: number): void {
    const ahead = (seq - this.rcvNxt) >>> 0;
    if (ahead >= rwnd) return;
    const n = Math.min(len, rwnd - ahead);
    if (this.oooBytes + n > RCV_BUF) return;
    let i = this.ooo.length;
    while (i > 0 && seqLt(seq, this.ooo[i - 1].seq)) i--;
    if (i > 0 && this.ooo[i - 1].seq === seq && this.ooo[i - 1].data.length >= n) return; // a duplicate
    this.ooo.splice(i, 0, { seq, data: f.slice(off, off + n) });
    this.oooBytes += n;
  }

  /** Deliver queued segments that the hole-filling data made contiguous. */
  private drainOoo(): void {
    while (this.ooo.length && seqLe(this.ooo[0].seq, this.rcvNxt)) {
      const e = this.ooo.shift()!;
      this.oooBytes -= e.data.length;
      const skip = (this.rcvNxt - e.seq) >>> 0;
      if (skip < e.data.length) this.deliver(e.data.subarray(skip));
    }
  }

  private rcvWindow(): number {
    const w = RCV_BUF - (this.host && !this.hostGone ? this.host.buffered() : 0);
    return w > 0 ? w : 0;
  }

  sendAck(): void { this.segment(ACK, this.sndNxt, this.rcvNxt, null, 0, 0); }

  private sendSyn(): void {
    const flags = this.state === State.SynSent ? SYN : SYN | ACK;
    this.segment(flags, this.iss, this.rcvNxt, null, 0, 0);
  }

  /** Build and send one segment; data is copied from the send buffer at offset `off`. */
  private segment(flags: number, seq: number, ack: number, src: TcpConn | null, off: number, len: number): void {
    const syn = (flags & SYN) !== 0;
    const optLen = syn ? (this.state === State.SynSent || this.rcvShift ? 8 : 4) : 0;
    const l4Len = TCP_HLEN + optLen + len;
    const fr = new Uint8Array(ETH_HLEN + IP_HLEN + l4Len);
    writeEthHeader(fr, this.net.guestMac(this.guestIp), this.net.ourMac, ETHERTYPE_IPV4);
    writeIpv4Header(fr, this.remoteIp, this.guestIp, IPPROTO_TCP, l4Len, true);
    const o = ETH_HLEN + IP_HLEN;
    writeU16(fr, o, this.remotePort); writeU16(fr, o + 2, this.guestPort);
    writeU32(fr, o + 4, seq); writeU32(fr, o + 8, (flags & ACK) ? ack : 0);
    fr[o + 12] = ((TCP_HLEN + optLen) / 4) << 4;
    fr[o + 13] = flags;
    const w = this.rcvWindow();
    writeU16(fr, o + 14, syn ? Math.min(w, 0xffff) : Math.min(w >>> this.rcvShift, 0xffff));
    if (syn) {
      fr[o + 20] = 2; fr[o + 21] = 4; writeU16(fr, o + 22, OUR_MSS);
      if (optLen === 8) { fr[o + 24] = 1; fr[o + 25] = 3; fr[o + 26] = 3; fr[o + 27] = OUR_WSCALE; }
    }
    if (src && len > 0) src.copyOut(off, len, fr, o + TCP_HLEN + optLen);
    setL4Checksum(fr, o, l4Len, this.remoteIp, this.guestIp, IPPROTO_TCP, 16);
    if (flags & ACK) {
      this.unacked = 0;
      if (this.ackTimer) { clearTimeout(this.ackTimer); this.ackTimer = null; }
    }
    this.net.toGuest(fr);
  }

  /** Forget the connection (after RST, close, or abort); the host socket is destroyed. */
  destroy(): void {
    if (this.state === State.Closed) return;
    this.state = State.Closed;
    this.disarm();
    if (this.ackTimer) { clearTimeout(this.ackTimer); this.ackTimer = null; }
    this.chunks = [];
    this.bufBytes = 0;
    this.ooo = [];
    this.oooBytes = 0;
    if (this.host && !this.hostGone) this.host.destroy();
    this.hostGone = true;
    this.net.removed(this);
  }
}

/** Send a RST for a segment that matches no connection (RFC 9293 3.10.7.1). */
export function resetFor(net: TcpNetwork, ip: Ipv4Packet, s: TcpSegment): void {
  if (s.flags & RST) return;
  const hasAck = (s.flags & ACK) !== 0;
  const seq = hasAck ? s.ack : 0;
  const ack = hasAck ? 0 : (s.seq + s.dataLen + ((s.flags & SYN) ? 1 : 0) + ((s.flags & FIN) ? 1 : 0)) >>> 0;
  const flags = hasAck ? RST : RST | ACK;
  const l4Len = TCP_HLEN;
  const fr = new Uint8Array(ETH_HLEN + IP_HLEN + l4Len);
  writeEthHeader(fr, net.guestMac(ip.src), net.ourMac, ETHERTYPE_IPV4);
  writeIpv4Header(fr, ip.dst, ip.src, IPPROTO_TCP, l4Len, true);
  const o = ETH_HLEN + IP_HLEN;
  writeU16(fr, o, s.dport); writeU16(fr, o + 2, s.sport);
  writeU32(fr, o + 4, seq); writeU32(fr, o + 8, ack);
  fr[o + 12] = 5 << 4; fr[o + 13] = flags;
  setL4Checksum(fr, o, l4Len, ip.dst, ip.src, IPPROTO_TCP, 16);
  net.toGuest(fr);
}

/** A TCP connection as plain data, for live migration (TcpConn.save / restore). */
export interface TcpConnState {
  guestIp: number; guestPort: number; remoteIp: number; remotePort: number; state: State;
  iss: number; sndUna: number; sndNxt: number; sndMax: number; sndWnd: number; maxSndWnd: number;
  sndWl1: number; sndWl2: number; sndShift: number; rcvShift: number; rcvNxt: number; mss: number;
  cwnd: number; ssthresh: number; rto: number; srtt: number; rttvar: number;
  finQueued: boolean; finSeq: number | null;
  /** Host data the guest has not acknowledged yet, from sndUna. */
  sendBuf: Uint8Array;
  /** Guest segments held ahead of a hole. */
  ooo: Array<{ seq: number; data: Uint8Array }>;
  hostGone: boolean; hostWriteEnded: boolean;
}

const U32_FIELDS = ['guestIp', 'remoteIp', 'iss', 'sndUna', 'sndNxt', 'sndMax', 'sndWl1', 'sndWl2', 'rcvNxt'] as const;

/** Check migrated connection state from another process; throws an Error naming the field. */
export function checkTcpConnState(x: unknown): TcpConnState {
  if (typeof x !== 'object' || x === null) throw new Error('tcp connection: not an object');
  const o = x as Record<string, unknown>;
  const int = (k: string, lo: number, hi: number): void => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new Error(`tcp connection: ${k} ${String(v)} is not an integer in [${lo}, ${hi}]`);
  };
  const num = (k: string, lo: number, hi: number): void => {
    const v = o[k];
    if (typeof v !== 'number' || !(v >= lo && v <= hi)) throw new Error(`tcp connection: ${k} ${String(v)} is out of range`);
  };
  for (const k of U32_FIELDS) int(k, 0, 0xffffffff);
  int('guestPort', 1, 0xffff); int('remotePort', 1, 0xffff);
  int('state', 0, State.Closed);
  if (o.state !== State.Established && o.state !== State.CloseWait && o.state !== State.FinWait1 && o.state !== State.FinWait2) throw new Error(`tcp connection: state ${String(o.state)} cannot move`);
  int('sndWnd', 0, 0x3fffffff); int('maxSndWnd', 0, 0x3fffffff); int('sndShift', 0, 14); int('rcvShift', 0, 14);
  int('mss', 64, 65535); int('cwnd', 1, 4 * SEND_BUF); int('ssthresh', 1, 0x7fffffff);
  num('rto', RTO_MIN, RTO_MAX); num('srtt', 0, RTO_MAX); num('rttvar', 0, RTO_MAX);
  for (const k of ['finQueued', 'hostGone', 'hostWriteEnded']) if (typeof o[k] !== 'boolean') throw new Error(`tcp connection: ${k} is not a boolean`);
  if (o.finSeq !== null) int('finSeq', 0, 0xffffffff);
  if (!(o.sendBuf instanceof Uint8Array) || o.sendBuf.length > SEND_BUF + 0x10000) throw new Error('tcp connection: sendBuf is not bytes within the send buffer');
  if (!Array.isArray(o.ooo) || o.ooo.length > 1024) throw new Error('tcp connection: ooo is not a list');
  let oooBytes = 0;
  for (const e of o.ooo as unknown[]) {
    const q = e as { seq?: unknown; data?: unknown } | null;
    if (typeof q !== 'object' || q === null || typeof q.seq !== 'number' || !Number.isInteger(q.seq) || q.seq < 0 || q.seq > 0xffffffff || !(q.data instanceof Uint8Array)) throw new Error('tcp connection: a malformed ooo segment');
    oooBytes += q.data.length;
  }
  if (oooBytes > RCV_BUF) throw new Error('tcp connection: ooo holds more than the receive buffer');
  const u = o as unknown as TcpConnState;
  // In-flight data lies within what is buffered (plus a FIN).
  if (((u.sndMax - u.sndUna) >>> 0) > u.sendBuf.length + 1 || ((u.sndNxt - u.sndUna) >>> 0) > ((u.sndMax - u.sndUna) >>> 0)) throw new Error('tcp connection: send sequence numbers beyond the buffered data');
  return u;
}
