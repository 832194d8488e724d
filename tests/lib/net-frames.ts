/**
 * Test-side frame crafting for the network unit tests: a guest's Ethernet/IPv4/ARP/UDP/TCP/ICMP
 * frames built from scratch here (independently of src/host/net's builders) and a fake
 * HostNet that records what the stack asks of the host.
 */
import type { AcceptedTcp, HostListener, HostNet, HostTcp, HostTcpEvents, HostUdp } from '../../src/host/net/host.js';

export const GUEST_MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
export const GW_MAC = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
export const ip4 = (s: string): number[] => s.split('.').map(Number);

function csum(b: number[], init = 0): number {
  let s = init;
  for (let i = 0; i < b.length; i += 2) s += (b[i] << 8) | (b[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
const u16 = (v: number): number[] => [(v >>> 8) & 0xff, v & 0xff];
const u32 = (v: number): number[] => [v >>> 24 & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];

export function eth(dst: number[], type: number, payload: number[], src = GUEST_MAC): Uint8Array {
  return new Uint8Array([...dst, ...src, ...u16(type), ...payload]);
}

export function arpRequest(senderIp: string, targetIp: string, mac = GUEST_MAC): Uint8Array {
  return eth([255, 255, 255, 255, 255, 255], 0x0806, [0, 1, 8, 0, 6, 4, 0, 1, ...mac, ...ip4(senderIp), 0, 0, 0, 0, 0, 0, ...ip4(targetIp)], mac);
}

export function ipv4(src: string, dst: string, proto: number, l4: number[], mac = GUEST_MAC, dstMac = GW_MAC): Uint8Array {
  const h = [0x45, 0, ...u16(20 + l4.length), 0, 1, 0x40, 0, 64, proto, 0, 0, ...ip4(src), ...ip4(dst)];
  const c = csum(h);
  h[10] = c >>> 8; h[11] = c & 0xff;
  return eth(dstMac, 0x0800, [...h, ...l4], mac);
}

function pseudo(src: string, dst: string, proto: number, len: number): number {
  const a = [...ip4(src), ...ip4(dst)];
  let s = proto + len;
  for (let i = 0; i < 8; i += 2) s += (a[i] << 8) | a[i + 1];
  return s;
}

export function udp(src: string, sport: number, dst: string, dport: number, payload: number[], mac = GUEST_MAC, dstMac = GW_MAC): Uint8Array {
  const l4 = [...u16(sport), ...u16(dport), ...u16(8 + payload.length), 0, 0, ...payload];
  const c = csum(l4, pseudo(src, dst, 17, l4.length)) || 0xffff;
  l4[6] = c >>> 8; l4[7] = c & 0xff;
  return ipv4(src, dst, 17, l4, mac, dstMac);
}

export interface TcpOpts { seq: number; ack?: number; flags: number; wnd?: number; data?: number[]; mss?: number; wscale?: number }

export function tcp(src: string, sport: number, dst: string, dport: number, o: TcpOpts): Uint8Array {
  const opts: number[] = [];
  if (o.mss !== undefined) opts.push(2, 4, ...u16(o.mss));
  if (o.wscale !== undefined) opts.push(1, 3, 3, o.wscale);
  while (opts.length % 4) opts.push(0);
  const hl = 20 + opts.length;
  const l4 = [...u16(sport), ...u16(dport), ...u32(o.seq >>> 0), ...u32((o.ack ?? 0) >>> 0), (hl / 4) << 4, o.flags, ...u16(o.wnd ?? 65535), 0, 0, 0, 0, ...opts, ...(o.data ?? [])];
  const c = csum(l4, pseudo(src, dst, 6, l4.length));
  l4[16] = c >>> 8; l4[17] = c & 0xff;
  return ipv4(src, dst, 6, l4);
}

export function icmpEcho(src: string, dst: string, id: number, seq: number, payload: number[]): Uint8Array {
  const l4 = [8, 0, 0, 0, ...u16(id), ...u16(seq), ...payload];
  const c = csum(l4);
  l4[2] = c >>> 8; l4[3] = c & 0xff;
  return ipv4(src, dst, 1, l4);
}

/** Fields of a TCP frame sent to the guest. */
export interface SeenTcp { sport: number; dport: number; seq: number; ack: number; flags: number; wnd: number; data: Uint8Array; opts: Uint8Array; csumOk: boolean }

export function parseTcpFrame(f: Uint8Array): SeenTcp | null {
  if (f.length < 54 || f[12] !== 8 || f[13] !== 0 || f[23] !== 6) return null;
  const ihl = (f[14] & 15) * 4;
  const o = 14 + ihl;
  const total = (f[16] << 8) | f[17];
  const l4 = [...f.subarray(o, 14 + total)];
  const src = [...f.subarray(26, 30)].join('.'), dst = [...f.subarray(30, 34)].join('.');
  const hl = (f[o + 12] >>> 4) * 4;
  const r = (i: number): number => (f[o + i] << 8) | f[o + i + 1];
  const r32 = (i: number): number => ((f[o + i] << 24) | (f[o + i + 1] << 16) | (f[o + i + 2] << 8) | f[o + i + 3]) >>> 0;
  return {
    sport: r(0), dport: r(2), seq: r32(4), ack: r32(8), flags: f[o + 13], wnd: r(14),
    data: f.slice(o + hl, 14 + total), opts: f.slice(o + 20, o + hl), csumOk: csum(l4, pseudo(src, dst, 6, l4.length)) === 0,
  };
}

export class FakeTcp implements HostTcp {
  written: Uint8Array[] = [];
  ended = false;
  destroyed = false;
  paused = false;
  pending = 0;
  constructor(readonly addr: string, readonly port: number, public ev: HostTcpEvents | null) {}
  write(d: Uint8Array): void { this.written.push(d.slice()); this.pending += d.length; }
  buffered(): number { return this.pending; }
  pause(): void { this.paused = true; }
  resume(): void { this.paused = false; }
  end(): void { this.ended = true; }
  destroy(): void { this.destroyed = true; }
  bytes(): Uint8Array { const out = new Uint8Array(this.written.reduce((n, w) => n + w.length, 0)); let i = 0; for (const w of this.written) { out.set(w, i); i += w.length; } return out; }
}

/** A HostNet that records requests and lets the test play the host's side. */
export class FakeHostNet implements HostNet {
  tcp: FakeTcp[] = [];
  udpBinds = 0;
  udpSent: Array<{ d: Uint8Array; addr: string; port: number }> = [];
  listeners: Array<{ addr: string; port: number; accept: (s: AcceptedTcp) => void }> = [];
  tcpConnect(addr: string, port: number, ev: HostTcpEvents): HostTcp {
    const t = new FakeTcp(addr, port, ev);
    this.tcp.push(t);
    return t;
  }
  tcpListen(addr: string, port: number, accept: (s: AcceptedTcp) => void): Promise<HostListener> {
    this.listeners.push({ addr, port, accept });
    return Promise.resolve({ port: port || 40000 + this.listeners.length, close: () => undefined });
  }
  udpBind(_addr: string, _port: number, _message: (d: Uint8Array, addr: string, port: number) => void): Promise<HostUdp> {
    this.udpBinds++;
    return Promise.resolve({ send: (d, addr, port) => { this.udpSent.push({ d: d.slice(), addr, port }); }, close: () => undefined });
  }
  lookup(name: string): Promise<string[]> { return Promise.resolve(name === 'localhost' ? ['127.0.0.1'] : []); }
}
