/** UDP (RFC 768): header parsing and frame building. */
import { ETH_HLEN, ETHERTYPE_IPV4, writeEthHeader } from './ethernet.js';
import { IP_HLEN, IPPROTO_UDP, readU16, setL4Checksum, writeIpv4Header, writeU16, type Ipv4Packet, l4ChecksumOk } from './ipv4.js';

export const UDP_HLEN = 8;

export interface UdpDatagram {
  sport: number;
  dport: number;
  /** Payload offset and length in the frame. */
  off: number;
  len: number;
}

/** Validate the UDP header (length, checksum unless zero); null if the datagram is dropped. */
export function parseUdp(f: Uint8Array, p: Ipv4Packet): UdpDatagram | null {
  if (p.l4Len < UDP_HLEN) return null;
  const o = p.l4Off;
  const ulen = readU16(f, o + 4);
  if (ulen < UDP_HLEN || ulen > p.l4Len) return null;
  if (readU16(f, o + 6) !== 0 && !l4ChecksumOk(f, { ...p, l4Len: ulen })) return null;
  return { sport: readU16(f, o), dport: readU16(f, o + 2), off: o + UDP_HLEN, len: ulen - UDP_HLEN };
}

export function buildUdpFrame(dstMac: Uint8Array, srcMac: Uint8Array, src: number, sport: number, dst: number, dport: number, payload: Uint8Array): Uint8Array {
  const l4Len = UDP_HLEN + payload.length;
  const f = new Uint8Array(ETH_HLEN + IP_HLEN + l4Len);
  writeEthHeader(f, dstMac, srcMac, ETHERTYPE_IPV4);
  writeIpv4Header(f, src, dst, IPPROTO_UDP, l4Len, false);
  const o = ETH_HLEN + IP_HLEN;
  writeU16(f, o, sport); writeU16(f, o + 2, dport); writeU16(f, o + 4, l4Len);
  f.set(payload, o + UDP_HLEN);
  setL4Checksum(f, o, l4Len, src, dst, IPPROTO_UDP, 6);
  return f;
}
