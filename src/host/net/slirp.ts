/**
 * User-mode networking (QEMU's `-netdev user`): a virtual gateway that the guest reaches
 * over Ethernet, with ARP, DHCP, DNS, ICMP echo, and NAT of the guest's UDP and TCP onto
 * host sockets. No root, no TAP: every guest connection becomes an ordinary host socket
 * (through `HostNet`), and host ports forward into the guest (hostfwd).
 *
 * Addresses as slirp: network 10.0.2.0/24, gateway (and host) 10.0.2.2, DNS 10.0.2.3,
 * guests from 10.0.2.15. Traffic to the gateway address goes to the host's 127.0.0.1.
 *
 * Large TCP segments from the guest (GSO frames, `gso`) are taken whole: one segment, one ACK,
 * where the guest would otherwise handle an ACK for every two MTU-sized pieces.
 *
 * Bounds: frames waiting for guest receive buffers, TCP connections (total and half-open),
 * UDP associations, DNS queries and per-connection buffers are all capped; what exceeds a
 * cap is dropped and counted in `stats`.
 */
import type { NetBackend, NetReceiver } from '../../devices/device.js';
import { MAX_GSO_FRAME, tcpHeaderEnd } from '../../devices/virtio/tcp-offload.js';
import { ArpPacket, ARP_REPLY, ARP_REQUEST, buildArp, parseArp } from './arp.js';
import { DhcpServer, DHCP_CLIENT_PORT, DHCP_SERVER_PORT } from './dhcp.js';
import { DnsService } from './dns.js';
import { BROADCAST_MAC, ETH_HLEN, ETH_MAX_FRAME, ETHERTYPE_ARP, ETHERTYPE_IPV4, etherType, isBroadcastOrMulticast, macEquals } from './ethernet.js';
import { canRelay, relayHeader, RELAY_KEY_BYTES, type AcceptedTcp, type HostListener, type HostNet, type HostTcpRelay, type HostUdp, type MovableNet } from './host.js';
import { echoReply } from './icmp.js';
import { IP_HLEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, ipToString, l4ChecksumOk, parseIp, parseIpv4, type Ipv4Packet } from './ipv4.js';
import { checkTcpConnState, parseTcp, resetFor, State, SYN, ACK, TCP_HLEN, TcpConn, type TcpConnState, type TcpNetwork, type TcpSegment } from './tcp.js';
import { buildUdpFrame, parseUdp } from './udp.js';

export interface HostFwd {
  proto: 'tcp' | 'udp';
  hostAddr: string;
  hostPort: number;
  /** 0: the first DHCP address. */
  guestAddr: number;
  guestPort: number;
}

export interface UserNetConfig {
  /** Network address and prefix length (10.0.2.0/24). */
  net: number;
  prefix: number;
  host: number;
  dns: number;
  dhcpStart: number;
  restrict: boolean;
  hostfwd: HostFwd[];
  /** Forward DNS to this server; null: answer from the host's resolver. */
  dnsUpstream: { addr: string; port: number } | null;
  /** Our MAC (slirp's 52:55:0a:00:02:02). */
  mac: Uint8Array;
}

export function defaultUserNetConfig(): UserNetConfig {
  return {
    net: parseIp('10.0.2.0'), prefix: 24, host: parseIp('10.0.2.2'), dns: parseIp('10.0.2.3'), dhcpStart: parseIp('10.0.2.15'),
    restrict: false, hostfwd: [], dnsUpstream: null, mac: new Uint8Array([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02]),
  };
}

export const LIMITS = {
  rxQueueFrames: 1024,
  /**
   * Frames held for guest addresses whose MAC is not known yet, until the guest answers our
   * ARP request: per address, and addresses at once (the oldest address's frames go first).
   */
  arpHoldFrames: 16,
  arpHoldAddrs: 8,
  /** An address that has not answered for this long gets its held frames dropped and a new request. */
  arpHoldMs: 3_000,
  maxConnections: 512,
  maxHalfOpen: 64,
  maxUdp: 128,
  udpIdleMs: 60_000,
};

export interface UserNetStats {
  fromGuest: number;
  toGuest: number;
  dropBadFrame: number;
  dropNotForUs: number;
  dropFragment: number;
  dropRxQueueFull: number;
  dropRestricted: number;
  dropLimit: number;
  dropUnsupported: number;
  tcpConnections: number;
  tcpTimeouts: number;
  tcpFastRetransmits: number;
  udpAssociations: number;
  /** Frames held for a guest address until it answered ARP, and held frames dropped (no answer, or too many). */
  arpHeld: number;
  dropArpUnresolved: number;
}

interface UdpAssoc { sock: Promise<HostUdp>; guestIp: number; guestPort: number; lastUsed: number }

export class UserNet implements NetBackend, TcpNetwork, MovableNet {
  readonly cfg: UserNetConfig;
  readonly ourMac: Uint8Array;
  private nic: NetReceiver | null = null;
  private readonly rxQueue: Uint8Array[] = [];
  /** NetBackend: the guest's large TCP segments come whole. */
  readonly gso = true;
  private readonly mask: number;
  private readonly dhcp: DhcpServer;
  private readonly dns: DnsService;
  private readonly arpTable = new Map<number, Uint8Array>();
  private readonly conns = new Map<number, TcpConn[]>();
  private connCount = 0;
  private readonly udp = new Map<number, UdpAssoc>();
  private readonly listeners: HostListener[] = [];
  private readonly udpFwd: Array<{ fwd: HostFwd; sock: HostUdp; peers: Map<number, { addr: string; port: number }> }> = [];
  private sweep: ReturnType<typeof setInterval> | null = null;
  private closed = false;
  readonly stats: UserNetStats = {
    fromGuest: 0, toGuest: 0, dropBadFrame: 0, dropNotForUs: 0, dropFragment: 0, dropRxQueueFull: 0,
    dropRestricted: 0, dropLimit: 0, dropUnsupported: 0, tcpConnections: 0, tcpTimeouts: 0, tcpFastRetransmits: 0, udpAssociations: 0,
    arpHeld: 0, dropArpUnresolved: 0,
  };
  /** Frames waiting for a guest address's ARP answer, by address, and when it was asked. */
  private readonly arpHold = new Map<number, { frames: Uint8Array[]; asked: number }>();
  private readonly ip: Ipv4Packet = { src: 0, dst: 0, proto: 0, ttl: 0, l4Off: 0, l4Len: 0 };
  private readonly seg: TcpSegment = { sport: 0, dport: 0, seq: 0, ack: 0, flags: 0, wnd: 0, dataOff: 0, dataLen: 0, mss: 0, wscale: -1 };

  constructor(private readonly hostNet: HostNet, cfg: Partial<UserNetConfig> = {}) {
    this.cfg = { ...defaultUserNetConfig(), ...cfg };
    this.ourMac = this.cfg.mac;
    this.mask = this.cfg.prefix === 0 ? 0 : (0xffffffff << (32 - this.cfg.prefix)) >>> 0;
    this.dhcp = new DhcpServer({
      server: this.cfg.host, router: this.cfg.host, dns: this.cfg.dns, mask: this.mask,
      firstAddr: this.cfg.dhcpStart, poolSize: 16, leaseSeconds: 86400,
    });
    this.dns = new DnsService(hostNet, this.cfg.dnsUpstream);
  }

  /**
   * Start, and open the hostfwd listeners (rejects, with the address, if a host port is
   * taken). `listen: false`: not yet (a live migration's destination binds them in `adopt`,
   * once the source let go of them).
   */
  async start(opts: { listen?: boolean } = {}): Promise<void> {
    this.sweep = setInterval(() => this.sweepUdp(), 10_000);
    (this.sweep as { unref?: () => void }).unref?.();
    if (opts.listen !== false) await this.listen();
  }

  /** Open the hostfwd listeners; on a failure the ones opened are closed again. */
  private async listen(): Promise<void> {
    try { await this.listenAll(); } catch (e) { this.unlisten(); throw e; }
  }

  private unlisten(): void {
    for (const l of this.listeners) l.close();
    for (const u of this.udpFwd) u.sock.close();
    this.listeners.length = 0;
    this.udpFwd.length = 0;
  }

  private async listenAll(): Promise<void> {
    for (const f of this.cfg.hostfwd) {
      try {
        if (f.proto === 'tcp') this.listeners.push(await this.hostNet.tcpListen(f.hostAddr, f.hostPort, (s) => this.acceptFwd(f, s)));
        else {
          const peers = new Map<number, { addr: string; port: number }>();
          const sock = await this.hostNet.udpBind(f.hostAddr, f.hostPort, (d, addr, port) => {
            if (peers.size >= LIMITS.maxUdp && !peers.has(port)) { this.stats.dropLimit++; return; }
            peers.set(port, { addr, port });
            this.sendUdpToGuest(this.cfg.host, port, f.guestAddr || this.cfg.dhcpStart, f.guestPort, d);
          });
          this.udpFwd.push({ fwd: f, sock, peers });
        }
      } catch (e) {
        throw new Error(`hostfwd=${f.proto}:${f.hostAddr}:${f.hostPort}: ${(e as Error).message}`);
      }
    }
  }

  /** The host port a hostfwd listener got (useful with port 0). */
  boundPorts(): number[] { return this.listeners.map((l) => l.port); }

  attach(nic: NetReceiver): void { this.nic = nic; }

  rxReady(): void {
    const nic = this.nic;
    if (!nic) return;
    while (this.rxQueue.length > 0 && nic.receive(this.rxQueue[0])) this.rxQueue.shift();
  }

  /** TcpNetwork: a frame for the guest. */
  toGuest(frame: Uint8Array): void {
    if (this.closed) return;
    // Unicast IPv4 for a guest address whose MAC we have not learnt (built with the
    // broadcast MAC: the guest's TCP drops such a frame, and a SYN through hostfwd was then
    // retransmitted after the 1 s RTO): hold it until the guest answers ARP, as slirp and
    // Linux's neighbour queue do.
    if (frame.length >= ETH_HLEN + IP_HLEN && isBroadcastOrMulticast(frame, 0) && etherType(frame) === ETHERTYPE_IPV4) {
      const dst = ((frame[ETH_HLEN + 16] << 24) | (frame[ETH_HLEN + 17] << 16) | (frame[ETH_HLEN + 18] << 8) | frame[ETH_HLEN + 19]) >>> 0;
      if (this.unresolvedGuest(dst)) { this.holdForArp(dst, frame); return; }
    }
    this.stats.toGuest++;
    if (this.rxQueue.length === 0 && this.nic?.receive(frame)) return;
    if (this.rxQueue.length >= LIMITS.rxQueueFrames) { this.stats.dropRxQueueFull++; return; }
    this.rxQueue.push(frame);
  }

  /** TcpNetwork: TCP payload per frame the NIC takes whole (64 KiB minus headers with TSO). */
  segmentMax(): number {
    const m = this.nic?.maxFrame ?? 0;
    return m > ETH_MAX_FRAME + 4 /* a VLAN tag */ ? Math.min(m, ETH_HLEN + 0xffff) - ETH_HLEN - IP_HLEN - TCP_HLEN : 0;
  }

  guestMac(ip: number): Uint8Array {
    return this.arpTable.get(ip) ?? BROADCAST_MAC;
  }

  removed(c: TcpConn): void {
    const k = c.guestPort * 65536 + c.remotePort;
    const l = this.conns.get(k);
    if (!l) return;
    const i = l.indexOf(c);
    if (i < 0) return;
    l.splice(i, 1);
    if (l.length === 0) this.conns.delete(k);
    this.connCount--;
    this.stats.tcpConnections = this.connCount;
  }

  retransmitted(kind: 'timeout' | 'fast'): void {
    if (kind === 'timeout') this.stats.tcpTimeouts++; else this.stats.tcpFastRetransmits++;
  }

  private inNet(a: number): boolean { return ((a & this.mask) >>> 0) === this.cfg.net; }

  /** A guest unicast address (in the network, not ours, not its broadcast) with no ARP entry. */
  private unresolvedGuest(ip: number): boolean {
    return this.inNet(ip) && ip !== this.cfg.host && ip !== this.cfg.dns && ip !== ((this.cfg.net | ~this.mask) >>> 0) &&
      ip !== this.cfg.net && !this.arpTable.has(ip);
  }

  private holdForArp(ip: number, frame: Uint8Array): void {
    const now = Date.now();
    let h = this.arpHold.get(ip);
    if (h !== undefined && now - h.asked > LIMITS.arpHoldMs) {
      // No answer: what waited is dropped (TCP retransmits it), and the guest is asked again.
      this.stats.dropArpUnresolved += h.frames.length;
      this.arpHold.delete(ip);
      h = undefined;
    }
    if (h === undefined) {
      if (this.arpHold.size >= LIMITS.arpHoldAddrs) {
        const [oldest, o] = this.arpHold.entries().next().value as [number, { frames: Uint8Array[] }];
        this.stats.dropArpUnresolved += o.frames.length;
        this.arpHold.delete(oldest);
      }
      h = { frames: [], asked: now };
      this.arpHold.set(ip, h);
      this.probeGuest(ip);
    }
    if (h.frames.length >= LIMITS.arpHoldFrames) { this.stats.dropArpUnresolved++; return; }
    h.frames.push(frame);
    this.stats.arpHeld++;
  }

  private learn(ip: number, f: Uint8Array, macOff: number): void {
    if (!this.inNet(ip) || ip === this.cfg.host || ip === this.cfg.dns || isBroadcastOrMulticast(f, macOff)) return;
    const have = this.arpTable.get(ip);
    if (have && macEquals(f, macOff, have)) return;
    if (!have && this.arpTable.size >= 256) return;
    const mac = f.slice(macOff, macOff + 6);
    this.arpTable.set(ip, mac);
    const held = this.arpHold.get(ip);
    if (held !== undefined) {
      this.arpHold.delete(ip);
      for (const fr of held.frames) { fr.set(mac, 0); this.toGuest(fr); }
    }
  }

  transmit(f: Uint8Array): void {
    if (this.closed) return;
    this.stats.fromGuest++;
    const len = f.length;
    if (len < ETH_HLEN || (len > ETH_MAX_FRAME + 4 && (len > MAX_GSO_FRAME || tcpHeaderEnd(f) === 0))) { this.stats.dropBadFrame++; return; }
    if (!isBroadcastOrMulticast(f, 0) && !macEquals(f, 0, this.ourMac)) { this.stats.dropNotForUs++; return; }
    const type = etherType(f);
    if (type === ETHERTYPE_ARP) { this.arp(f, len); return; }
    if (type !== ETHERTYPE_IPV4) { this.stats.dropUnsupported++; return; }
    const ip = this.ip;
    const err = parseIpv4(f, len, ip);
    if (err) { if (err === 'fragment') this.stats.dropFragment++; else this.stats.dropBadFrame++; return; }
    this.learn(ip.src, f, 6);
    if (ip.proto === IPPROTO_UDP) this.udpIn(f, ip);
    else if (ip.proto === IPPROTO_TCP) this.tcpIn(f, ip);
    else if (ip.proto === IPPROTO_ICMP) this.icmpIn(f, ip);
    else this.stats.dropUnsupported++;
  }

  private arp(f: Uint8Array, len: number): void {
    const a: ArpPacket | null = parseArp(f, len);
    if (!a) { this.stats.dropBadFrame++; return; }
    this.learn(a.senderIp, f, ETH_HLEN + 8);
    if (a.op === ARP_REQUEST && (a.targetIp === this.cfg.host || a.targetIp === this.cfg.dns)) {
      this.toGuest(buildArp(ARP_REPLY, this.ourMac, a.targetIp, a.senderMac.slice(), a.senderIp));
    }
  }

  private icmpIn(f: Uint8Array, ip: Ipv4Packet): void {
    if (ip.dst !== this.cfg.host && ip.dst !== this.cfg.dns) { this.stats.dropUnsupported++; return; }
    const r = echoReply(f, ip, this.ourMac, f.subarray(6, 12));
    if (r) this.toGuest(r); else this.stats.dropBadFrame++;
  }

  private sendUdpToGuest(src: number, sport: number, dst: number, dport: number, payload: Uint8Array): void {
    const mac = dst === 0xffffffff ? BROADCAST_MAC : this.guestMac(dst);
    this.toGuest(buildUdpFrame(mac, this.ourMac, src, sport, dst, dport, payload));
  }

  private udpIn(f: Uint8Array, ip: Ipv4Packet): void {
    const u = parseUdp(f, ip);
    if (!u) { this.stats.dropBadFrame++; return; }
    const payload = f.subarray(u.off, u.off + u.len);
    if (u.dport === DHCP_SERVER_PORT) {
      const r = this.dhcp.handle(payload);
      if (r) this.toGuest(buildUdpFrame(BROADCAST_MAC, this.ourMac, this.cfg.host, DHCP_SERVER_PORT, 0xffffffff, DHCP_CLIENT_PORT, r.payload));
      return;
    }
    const src = ip.src, sport = u.sport;
    if (ip.dst === this.cfg.host) {
      for (const uf of this.udpFwd) {
        const peer = uf.peers.get(u.dport);
        if (uf.fwd.guestPort === sport && peer) { uf.sock.send(payload.slice(), peer.addr, peer.port); return; }
      }
    }
    if (this.cfg.restrict) { this.stats.dropRestricted++; return; }
    if (ip.dst === this.cfg.dns) {
      if (u.dport !== 53) { this.stats.dropUnsupported++; return; }
      this.dns.query(payload.slice(), (d) => this.sendUdpToGuest(this.cfg.dns, 53, src, sport, d));
      return;
    }
    const hostAddr = this.hostAddrFor(ip.dst);
    if (!hostAddr) { this.stats.dropUnsupported++; return; }
    const key = (src & 0xff) * 65536 + sport;
    let a = this.udp.get(key);
    if (!a) {
      if (this.udp.size >= LIMITS.maxUdp) { this.stats.dropLimit++; return; }
      const assoc: UdpAssoc = {
        guestIp: src, guestPort: sport, lastUsed: Date.now(),
        sock: this.hostNet.udpBind('0.0.0.0', 0, (d, addr, port) => {
          assoc.lastUsed = Date.now();
          const from = addr.startsWith('127.') ? this.cfg.host : /^\d+\.\d+\.\d+\.\d+$/.test(addr) ? parseIp(addr) : 0;
          if (from) this.sendUdpToGuest(from, port, assoc.guestIp, assoc.guestPort, d);
        }),
      };
      assoc.sock.catch(() => { this.udp.delete(key); });
      a = assoc;
      this.udp.set(key, a);
      this.stats.udpAssociations = this.udp.size;
    }
    a.lastUsed = Date.now();
    const data = payload.slice();
    const dport = u.dport;
    a.sock.then((s) => s.send(data, hostAddr, dport), () => { this.stats.dropLimit++; });
  }

  private sweepUdp(): void {
    const old = Date.now() - LIMITS.udpIdleMs;
    for (const [k, a] of this.udp) {
      if (a.lastUsed < old) { this.udp.delete(k); a.sock.then((s) => s.close(), () => undefined); }
    }
    this.stats.udpAssociations = this.udp.size;
  }

  /** Where a guest destination is on the host: the gateway is the host's loopback. */
  private hostAddrFor(dst: number): string | null {
    if (dst === this.cfg.host) return '127.0.0.1';
    if (this.inNet(dst) || dst === 0xffffffff || dst >>> 28 === 0xe || dst === 0) return null;
    return ipToString(dst);
  }

  private findConn(guestIp: number, guestPort: number, remoteIp: number, remotePort: number): TcpConn | undefined {
    const l = this.conns.get(guestPort * 65536 + remotePort);
    if (!l) return undefined;
    for (const c of l) if (c.guestIp === guestIp && c.remoteIp === remoteIp) return c;
    return undefined;
  }

  private addConn(c: TcpConn): void {
    const k = c.guestPort * 65536 + c.remotePort;
    const l = this.conns.get(k);
    if (l) l.push(c); else this.conns.set(k, [c]);
    this.connCount++;
    this.stats.tcpConnections = this.connCount;
  }

  private halfOpen(): number {
    let n = 0;
    for (const l of this.conns.values()) for (const c of l) if (c.halfOpen) n++;
    return n;
  }

  private tcpIn(f: Uint8Array, ip: Ipv4Packet): void {
    const s = this.seg;
    if (!parseTcp(f, ip, s)) { this.stats.dropBadFrame++; return; }
    // Checksum over the pseudo-header (after the header check, which bounds the lengths).
    if (!l4ChecksumOk(f, ip)) { this.stats.dropBadFrame++; return; }
    const c = this.findConn(ip.src, s.sport, ip.dst, s.dport);
    if (c) {
      // A new SYN for a pair in TIME-WAIT reopens it (RFC 9293 3.6.1) instead of waiting.
      if (c.state === State.TimeWait && (s.flags & (SYN | ACK)) === SYN) c.destroy();
      else { c.input(s, f); return; }
    }
    if ((s.flags & (SYN | ACK)) !== SYN) { resetFor(this, ip, s); return; }
    if (this.cfg.restrict) { this.stats.dropRestricted++; resetFor(this, ip, s); return; }
    const hostAddr = this.hostAddrFor(ip.dst);
    if (!hostAddr || !this.inNet(ip.src)) { this.stats.dropUnsupported++; resetFor(this, ip, s); return; }
    // SYN flood bound: excess SYNs are dropped (the guest retries), not answered.
    if (this.connCount >= LIMITS.maxConnections || this.halfOpen() >= LIMITS.maxHalfOpen) { this.stats.dropLimit++; return; }
    const conn = TcpConn.fromGuestSyn(this, ip, s);
    this.addConn(conn);
    conn.attachHost(this.hostNet.tcpConnect(hostAddr, s.dport, conn));
  }

  private acceptFwd(f: HostFwd, s: AcceptedTcp): void {
    if (this.closed || this.connCount >= LIMITS.maxConnections || this.halfOpen() >= LIMITS.maxHalfOpen) { this.stats.dropLimit++; s.destroy(); return; }
    const guestIp = f.guestAddr || this.cfg.dhcpStart;
    let port = s.remotePort;
    for (let i = 0; this.findConn(guestIp, f.guestPort, this.cfg.host, port) && i < 65536; i++) port = 1024 + ((port - 1024 + 1) % 64512);
    const conn = TcpConn.toGuest(this, guestIp, f.guestPort, this.cfg.host, port, s);
    this.addConn(conn);
    s.start(conn);
  }

  // ---- live migration (MovableNet) ----

  private frozen: { conns: TcpConn[]; relay: HostTcpRelay | null } | null = null;

  /**
   * Source, the vCPU paused: stop the host side and describe the network as plain data:
   * the ARP table, the DHCP leases and the TCP connections that can move; their host
   * sockets are paused and offered to a relay on `relayHost`, which the destination
   * connects back to. The hostfwd ports are let go, so a destination on this host can bind
   * them. Nothing is lost if the move fails: `thaw` puts everything back.
   */
  async freeze(relayHost: string): Promise<UserNetMoveState> {
    if (this.frozen) throw new Error('user network: already frozen');
    const movable: TcpConn[] = [];
    for (const l of this.conns.values()) for (const c of l) if (c.movable) movable.push(c);
    const withHost = movable.filter((c) => c.host !== null && !c.hostClosed);
    let relay: HostTcpRelay | null = null;
    if (withHost.length > 0) {
      if (!canRelay(this.hostNet)) throw new Error('user network: this host cannot relay TCP connections');
      relay = await this.hostNet.openRelay(relayHost);
    }
    const conns: UserNetMoveState['conns'] = [];
    for (const [id, c] of movable.entries()) {
      const st = c.save();
      if (relay && c.host && !c.hostClosed) {
        const key = crypto.getRandomValues(new Uint8Array(RELAY_KEY_BYTES));
        relay.offer(c.host, id, key, c.guestEnded);
        conns.push({ conn: st, relay: { id, key } });
      } else conns.push({ conn: st, relay: null });
    }
    this.frozen = { conns: movable, relay };
    this.unlisten();
    return {
      version: 1,
      arp: [...this.arpTable].map(([ip, mac]) => ({ ip, mac: mac.slice() })),
      leases: this.dhcp.saveLeases(),
      relay: relay ? { host: relay.host, port: relay.port } : null,
      conns,
    };
  }

  /** Source: the move failed; the connections carry on here and the hostfwd ports are bound again. */
  async thaw(): Promise<void> {
    const f = this.frozen;
    if (!f) return;
    this.frozen = null;
    f.relay?.abort();
    for (const c of f.conns) c.thaw();
    if (this.closed) return;
    // A destination on this host may still hold the ports for a moment.
    for (let i = 0; ; i++) {
      try { await this.listen(); return; } catch (e) {
        if (i >= 50 || this.closed) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Source: the move is done; the relay owns the moved sockets. Resolves when the last relayed connection ended. */
  commitMove(): Promise<void> {
    const f = this.frozen;
    if (!f) return Promise.resolve();
    this.frozen = null;
    for (const c of f.conns) c.handOff();
    return f.relay ? f.relay.commit() : Promise.resolve();
  }

  /**
   * Destination, before the guest runs: take the source's network (null: nothing came, a
   * fresh network), connect each moved connection's host side to the source's relay, and
   * bind the hostfwd ports (throws if one cannot be bound: the move then fails cleanly).
   */
  async adopt(raw: unknown): Promise<void> {
    if (raw !== null && raw !== undefined) {
      const st = checkMoveState(raw);
      for (const a of st.arp) this.arpTable.set(a.ip, a.mac);
      this.dhcp.loadLeases(st.leases);
      for (const m of st.conns) {
        const c = TcpConn.restore(this, m.conn, (conn) => {
          if (!m.relay || !st.relay) return null;
          const h = this.hostNet.tcpConnect(st.relay.host, st.relay.port, conn);
          h.write(relayHeader(m.relay.id, m.relay.key));
          return h;
        });
        this.addConn(c);
      }
    }
    await this.listen();
  }

  /** Send an ARP request so a guest we have not heard from answers (hostfwd before any guest traffic). */
  probeGuest(ip: number): void {
    this.toGuest(buildArp(ARP_REQUEST, this.ourMac, this.cfg.host, null, ip));
  }

  close(): void {
    if (this.closed) return;
    this.frozen?.relay?.abort();
    this.frozen = null;
    for (const l of [...this.conns.values()]) for (const c of [...l]) c.destroy();
    this.closed = true;
    for (const l of this.listeners) l.close();
    for (const u of this.udpFwd) u.sock.close();
    for (const a of this.udp.values()) a.sock.then((s) => s.close(), () => undefined);
    this.udp.clear();
    this.dns.close();
    if (this.sweep) clearInterval(this.sweep);
    this.rxQueue.length = 0;
  }
}

/** A user network as plain data, for live migration (UserNet.freeze / adopt). */
export interface UserNetMoveState {
  version: 1;
  arp: Array<{ ip: number; mac: Uint8Array }>;
  leases: Array<{ mac: string; ip: number }>;
  /** Where the source relays the connections from (null: none to relay). */
  relay: { host: string; port: number } | null;
  conns: Array<{ conn: TcpConnState; relay: { id: number; key: Uint8Array } | null }>;
}

/** Check a moved network's state (it crossed the network between daemons); throws a clear Error. */
export function checkMoveState(x: unknown): UserNetMoveState {
  const o = x as Partial<UserNetMoveState> | null;
  if (typeof o !== 'object' || o === null || o.version !== 1) throw new Error('user network state: not version 1');
  if (!Array.isArray(o.arp) || o.arp.length > 256) throw new Error('user network state: arp is not a list');
  for (const a of o.arp) {
    if (typeof a?.ip !== 'number' || !Number.isInteger(a.ip) || a.ip < 0 || a.ip > 0xffffffff || !(a.mac instanceof Uint8Array) || a.mac.length !== 6) throw new Error('user network state: a malformed ARP entry');
  }
  if (!Array.isArray(o.leases) || o.leases.length > 256) throw new Error('user network state: leases is not a list');
  if (o.relay !== null && (typeof o.relay?.host !== 'string' || o.relay.host.length > 255 || !Number.isInteger(o.relay.port) || o.relay.port < 1 || o.relay.port > 0xffff)) {
    throw new Error('user network state: a malformed relay address');
  }
  if (!Array.isArray(o.conns) || o.conns.length > LIMITS.maxConnections) throw new Error('user network state: conns is not a list within the connection limit');
  const ids = new Set<number>();
  for (const m of o.conns) {
    if (typeof m !== 'object' || m === null) throw new Error('user network state: a malformed connection');
    checkTcpConnState(m.conn);
    if (m.relay !== null) {
      const r = m.relay as { id?: unknown; key?: unknown } | undefined;
      if (o.relay === null || typeof r?.id !== 'number' || !Number.isInteger(r.id) || r.id < 0 || r.id > 0xffffffff || ids.has(r.id)
        || !(r.key instanceof Uint8Array) || r.key.length !== RELAY_KEY_BYTES) throw new Error('user network state: a malformed relay entry');
      ids.add(r.id);
    }
  }
  return o as UserNetMoveState;
}
