/**
 * Parsing of netdev specifications in QEMU's spelling:
 *   user[,id=ID][,net=ADDR[/MASK]][,host=ADDR][,dns=ADDR][,dhcpstart=ADDR][,restrict=on|off]
 *       [,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...[,dnsupstream=ADDR:PORT][,pcap=FILE]
 *   socket[,id=ID],connect=HOST:PORT | listen=HOST:PORT | udp=HOST:PORT,localaddr=HOST:PORT [,pcap=FILE]
 *   stream[,id=ID],server=on|off,addr.type=inet,addr.host=HOST,addr.port=PORT [,reconnect=SECONDS][,pcap=FILE]
 *   stream[,id=ID],server=on|off,addr.type=unix,addr.path=PATH [,reconnect=SECONDS][,pcap=FILE]
 *   switch[,id=ID],name=NAME[,listen=HOST:PORT][,connect=HOST:PORT][,uplink=on][,pcap=FILE]   (ours)
 * `stream` is QEMU 7.2's spelling of the stream transport (reconnect= as in QEMU 8: a client
 * that loses its server retries every SECONDS, so a restarted switch is joined again).
 * A `switch` is a port on the named switch of this process; the first use of a name creates
 * it, with `listen` (peers in other processes join over the stream transport), `connect`
 * (join a switch another process listens with) and `uplink` (a user-mode NAT on it).
 * `dnsupstream` (ours) forwards DNS to a server instead of asking the host's resolver.
 * `pcap` (ours) records the link's frames. Errors name the offending option.
 */
import { parseIp } from './ipv4.js';
import type { HostFwd, UserNetConfig } from './slirp.js';

export interface HostPort { host: string; port: number }
/** Where a stream transport listens or connects: TCP, or a unix socket (QEMU's addr.type). */
export type StreamAddr = { kind: 'inet'; host: string; port: number } | { kind: 'unix'; path: string };

export type NetdevSpec =
  | { type: 'user'; id: string; user: Partial<UserNetConfig>; pcap: string | null }
  | { type: 'socket'; id: string; mode: 'connect' | 'listen'; addr: HostPort; pcap: string | null }
  | { type: 'dgram'; id: string; remote: HostPort; local: HostPort; pcap: string | null }
  | { type: 'stream'; id: string; server: boolean; addr: StreamAddr; reconnect: number; pcap: string | null }
  | { type: 'switch'; id: string; name: string; listen: HostPort | null; connect: HostPort | null; uplink: boolean; pcap: string | null };

function port(s: string, what: string): number {
  if (!/^\d{1,5}$/.test(s) || Number(s) > 65535) throw new Error(`${what}: bad port '${s}'`);
  return Number(s);
}

function hostPort(s: string, what: string, defHost = '127.0.0.1'): HostPort {
  const i = s.lastIndexOf(':');
  if (i < 0) throw new Error(`${what}: expected HOST:PORT, got '${s}'`);
  const host = s.slice(0, i) || defHost;
  return { host, port: port(s.slice(i + 1), what) };
}

function ip(s: string, what: string): number {
  try { return parseIp(s); } catch { throw new Error(`${what}: bad IPv4 address '${s}'`); }
}

export function parseHostFwd(s: string): HostFwd {
  const what = `hostfwd=${s}`;
  const m = /^(?:(tcp|udp):)?([^:-]*):(\d+)-([^:]*):(\d+)$/.exec(s);
  if (!m) throw new Error(`${what}: expected [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport`);
  return {
    proto: (m[1] ?? 'tcp') as 'tcp' | 'udp',
    hostAddr: m[2] || '0.0.0.0',
    hostPort: port(m[3], what),
    guestAddr: m[4] ? ip(m[4], what) : 0,
    guestPort: port(m[5], what),
  };
}

function onOff(v: string, what: string): boolean {
  if (v === 'on' || v === 'yes' || v === 'true') return true;
  if (v === 'off' || v === 'no' || v === 'false') return false;
  throw new Error(`${what}: expected on or off, got '${v}'`);
}

export function parseNetdev(spec: string): NetdevSpec {
  const parts = spec.split(',');
  const type = parts[0];
  const opts: Array<[string, string]> = [];
  for (const p of parts.slice(1)) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new Error(`netdev ${type}: option '${p}' is not KEY=VALUE`);
    opts.push([p.slice(0, eq), p.slice(eq + 1)]);
  }
  let id = '';
  let pcap: string | null = null;
  if (type === 'user') {
    const u: Partial<UserNetConfig> = { hostfwd: [] };
    let netSet = false;
    for (const [k, v] of opts) {
      const what = `netdev user: ${k}=${v}`;
      switch (k) {
        case 'id': id = v; break;
        case 'pcap': pcap = v; break;
        case 'restrict': u.restrict = onOff(v, what); break;
        case 'hostfwd': u.hostfwd!.push(parseHostFwd(v)); break;
        case 'host': u.host = ip(v, what); break;
        case 'dns': u.dns = ip(v, what); break;
        case 'dhcpstart': u.dhcpStart = ip(v, what); break;
        case 'dnsupstream': { const hp = hostPort(v, what); u.dnsUpstream = { addr: hp.host, port: hp.port }; break; }
        case 'net': {
          const [a, m] = v.split('/');
          let prefix = 24;
          if (m !== undefined) {
            if (/^\d{1,2}$/.test(m) && Number(m) <= 32) prefix = Number(m);
            else {
              const mask = ip(m, what);
              prefix = 32 - Math.log2(((~mask) >>> 0) + 1);
              if (!Number.isInteger(prefix)) throw new Error(`${what}: mask is not contiguous`);
            }
          }
          if (prefix < 8 || prefix > 30) throw new Error(`${what}: prefix must be 8..30`);
          const maskBits = (0xffffffff << (32 - prefix)) >>> 0;
          u.net = (ip(a, what) & maskBits) >>> 0;
          u.prefix = prefix;
          netSet = true;
          break;
        }
        default: throw new Error(`netdev user: unknown option '${k}'`);
      }
    }
    if (netSet) {
      // As QEMU: host .2, DNS .3, DHCP from .15 of the new network unless given.
      u.host ??= (u.net! + 2) >>> 0;
      u.dns ??= (u.net! + 3) >>> 0;
      u.dhcpStart ??= (u.net! + 15) >>> 0;
    }
    return { type: 'user', id, user: u, pcap };
  }
  if (type === 'socket' || type === 'dgram') {
    let connect: HostPort | null = null, listen: HostPort | null = null, udp: HostPort | null = null, local: HostPort | null = null;
    for (const [k, v] of opts) {
      const what = `netdev ${type}: ${k}=${v}`;
      switch (k) {
        case 'id': id = v; break;
        case 'pcap': pcap = v; break;
        case 'connect': connect = hostPort(v, what); break;
        case 'listen': listen = hostPort(v, what, '0.0.0.0'); break;
        case 'udp': udp = hostPort(v, what); break;
        case 'localaddr': local = hostPort(v, what); break;
        default: throw new Error(`netdev ${type}: unknown option '${k}'`);
      }
    }
    const n = Number(!!connect) + Number(!!listen) + Number(!!udp);
    if (n !== 1) throw new Error(`netdev ${type}: exactly one of connect=, listen=, udp= is needed`);
    if (udp) {
      if (!local) throw new Error(`netdev ${type}: udp= needs localaddr=HOST:PORT`);
      return { type: 'dgram', id, remote: udp, local, pcap };
    }
    return { type: 'socket', id, mode: connect ? 'connect' : 'listen', addr: (connect ?? listen)!, pcap };
  }
  if (type === 'switch') {
    let name = '', listen: HostPort | null = null, connect: HostPort | null = null, uplink = false;
    for (const [k, v] of opts) {
      const what = `netdev switch: ${k}=${v}`;
      switch (k) {
        case 'id': id = v; break;
        case 'pcap': pcap = v; break;
        case 'name': name = v; break;
        case 'listen': listen = hostPort(v, what, '127.0.0.1'); break;
        case 'connect': connect = hostPort(v, what); break;
        case 'uplink': uplink = onOff(v, what); break;
        default: throw new Error(`netdev switch: unknown option '${k}'`);
      }
    }
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new Error('netdev switch: name=NAME is needed (letters, digits, _ . -)');
    return { type: 'switch', id, name, listen, connect, uplink, pcap };
  }
  if (type === 'stream') return parseStream(opts);
  throw new Error(`netdev: unknown type '${type}' (supported: user, socket, stream, dgram, switch)`);
}

/** Longest unix socket path the kernel takes (sun_path is 108 bytes with its NUL). */
const UNIX_PATH_MAX = 107;

function parseStream(opts: Array<[string, string]>): NetdevSpec {
  let id = '', pcap: string | null = null, server: boolean | null = null, kind = '', host = '', portText = '', path = '', reconnect = 0;
  for (const [k, v] of opts) {
    const what = `netdev stream: ${k}=${v}`;
    switch (k) {
      case 'id': id = v; break;
      case 'pcap': pcap = v; break;
      case 'server': server = onOff(v, what); break;
      case 'addr.type': kind = v; break;
      case 'addr.host': host = v; break;
      case 'addr.port': portText = v; break;
      case 'addr.path': path = v; break;
      case 'reconnect':
        if (!/^\d{1,4}$/.test(v)) throw new Error(`${what}: seconds expected`);
        reconnect = Number(v);
        break;
      default: throw new Error(`netdev stream: unknown option '${k}'`);
    }
  }
  if (server === null) throw new Error('netdev stream: server=on|off is needed');
  if (server && reconnect) throw new Error('netdev stream: reconnect= is for clients (server=off)');
  if (kind === 'inet') {
    if (path) throw new Error('netdev stream: addr.path= is for addr.type=unix');
    return { type: 'stream', id, server, addr: { kind: 'inet', host: host || (server ? '0.0.0.0' : '127.0.0.1'), port: port(portText, 'netdev stream: addr.port') }, reconnect, pcap };
  }
  if (kind === 'unix') {
    if (host || portText) throw new Error('netdev stream: addr.host= and addr.port= are for addr.type=inet');
    if (!path) throw new Error('netdev stream: addr.type=unix needs addr.path=PATH');
    if (new TextEncoder().encode(path).length > UNIX_PATH_MAX) throw new Error(`netdev stream: addr.path is longer than ${UNIX_PATH_MAX} bytes (a unix socket limit)`);
    return { type: 'stream', id, server, addr: { kind: 'unix', path }, reconnect, pcap };
  }
  throw new Error(`netdev stream: addr.type=inet|unix is needed`);
}
