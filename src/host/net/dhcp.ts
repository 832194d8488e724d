/**
 * A DHCP server (RFC 2131, options RFC 2132) for the user-mode network: DISCOVER -> OFFER,
 * REQUEST -> ACK or NAK, RELEASE. Leases are per client MAC from a small pool starting at
 * the first guest address (10.0.2.15, as slirp), so several guests on one switch behind one
 * NAT uplink get distinct addresses.
 */
import { formatMac } from './ethernet.js';
import { readU32, writeU32 } from './ipv4.js';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
const MAGIC = 0x63825363;
const BOOTP_LEN = 236;

export const DHCPDISCOVER = 1;
export const DHCPOFFER = 2;
export const DHCPREQUEST = 3;
export const DHCPDECLINE = 4;
export const DHCPACK = 5;
export const DHCPNAK = 6;
export const DHCPRELEASE = 7;

export interface DhcpConfig {
  server: number;
  router: number;
  dns: number;
  mask: number;
  firstAddr: number;
  poolSize: number;
  leaseSeconds: number;
}

export interface DhcpReply {
  payload: Uint8Array;
  /** Client address the reply is for (the frame still goes to broadcast, as the client has no address yet). */
  yiaddr: number;
}

interface ParsedDhcp { type: number; xid: number; flags: number; ciaddr: number; chaddr: Uint8Array; requested: number; serverId: number }

function parse(d: Uint8Array): ParsedDhcp | null {
  if (d.length < BOOTP_LEN + 4 || d[0] !== 1 || d[1] !== 1 || d[2] !== 6) return null;
  if (readU32(d, BOOTP_LEN) !== MAGIC) return null;
  const r: ParsedDhcp = { type: 0, xid: readU32(d, 4), flags: (d[10] << 8) | d[11], ciaddr: readU32(d, 12), chaddr: d.slice(28, 34), requested: 0, serverId: 0 };
  let i = BOOTP_LEN + 4;
  while (i < d.length) {
    const code = d[i++];
    if (code === 0) continue;
    if (code === 255) break;
    if (i >= d.length) return null;
    const len = d[i++];
    if (i + len > d.length) return null;
    if (code === 53 && len >= 1) r.type = d[i];
    else if (code === 50 && len === 4) r.requested = readU32(d, i);
    else if (code === 54 && len === 4) r.serverId = readU32(d, i);
    i += len;
  }
  return r.type ? r : null;
}

export class DhcpServer {
  private readonly leases = new Map<string, number>();
  constructor(private readonly cfg: DhcpConfig) {}

  /** The address for a MAC: its lease, or a free pool address; 0 when the pool is full. */
  private addressFor(mac: string): number {
    const have = this.leases.get(mac);
    if (have !== undefined) return have;
    const used = new Set(this.leases.values());
    for (let i = 0; i < this.cfg.poolSize; i++) {
      const a = (this.cfg.firstAddr + i) >>> 0;
      if (!used.has(a)) return a;
    }
    return 0;
  }

  /** The guest MAC that holds `addr`, if any. */
  leaseOf(mac: Uint8Array): number | undefined {
    return this.leases.get(formatMac(mac));
  }

  /** The leases as plain data (live migration). */
  saveLeases(): Array<{ mac: string; ip: number }> {
    return [...this.leases].map(([mac, ip]) => ({ mac, ip }));
  }

  /** Take moved leases; entries that are malformed or outside the pool are skipped. */
  loadLeases(l: ReadonlyArray<{ mac: unknown; ip: unknown }>): void {
    for (const e of l) {
      if (typeof e?.mac !== 'string' || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(e.mac) || typeof e.ip !== 'number') continue;
      const off = (e.ip - this.cfg.firstAddr) >>> 0;
      if (off < this.cfg.poolSize) this.leases.set(e.mac, e.ip);
    }
  }

  /** Handle one client message (UDP payload to port 67); the reply payload or null. */
  handle(d: Uint8Array): DhcpReply | null {
    const m = parse(d);
    if (!m) return null;
    const mac = formatMac(m.chaddr);
    if (m.type === DHCPDISCOVER) {
      const a = this.addressFor(mac);
      return a ? { payload: this.reply(m, DHCPOFFER, a), yiaddr: a } : null;
    }
    if (m.type === DHCPREQUEST) {
      if (m.serverId && m.serverId !== this.cfg.server) return null; // the client chose another server
      const want = m.requested || m.ciaddr;
      const a = this.addressFor(mac);
      if (!a || (want && want !== a)) return { payload: this.reply(m, DHCPNAK, 0), yiaddr: 0 };
      this.leases.set(mac, a);
      return { payload: this.reply(m, DHCPACK, a), yiaddr: a };
    }
    if (m.type === DHCPRELEASE) this.leases.delete(mac);
    return null;
  }

  private reply(m: ParsedDhcp, type: number, yiaddr: number): Uint8Array {
    const c = this.cfg;
    const r = new Uint8Array(BOOTP_LEN + 4 + 64);
    r[0] = 2; r[1] = 1; r[2] = 6;
    writeU32(r, 4, m.xid);
    r[10] = m.flags >>> 8; r[11] = m.flags & 0xff;
    writeU32(r, 16, yiaddr);
    writeU32(r, 20, type === DHCPNAK ? 0 : c.server);
    r.set(m.chaddr, 28);
    writeU32(r, BOOTP_LEN, MAGIC);
    let i = BOOTP_LEN + 4;
    const opt = (code: number, v: number[]): void => { r[i++] = code; r[i++] = v.length; for (const b of v) r[i++] = b; };
    const ip = (a: number): number[] => [a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff];
    opt(53, [type]);
    opt(54, ip(c.server));
    if (type !== DHCPNAK) {
      opt(51, ip(c.leaseSeconds));
      opt(1, ip(c.mask));
      opt(3, ip(c.router));
      opt(6, ip(c.dns));
    }
    r[i++] = 255;
    return r.subarray(0, Math.max(i, 300)); // the BOOTP minimum message size (RFC 1542 2.1)
  }
}
