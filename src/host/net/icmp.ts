/** ICMP (RFC 792): echo replies from the virtual gateway and DNS addresses. */
import { ETH_HLEN, ETHERTYPE_IPV4, writeEthHeader } from './ethernet.js';
import { IP_HLEN, IPPROTO_ICMP, finishSum, sum16, writeIpv4Header, writeU16, type Ipv4Packet } from './ipv4.js';

export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO_REQUEST = 8;

/** The echo reply to an echo request in `f`, or null if it is not a valid echo request. */
export function echoReply(f: Uint8Array, p: Ipv4Packet, ourMac: Uint8Array, guestMac: Uint8Array): Uint8Array | null {
  if (p.l4Len < 8 || f[p.l4Off] !== ICMP_ECHO_REQUEST || f[p.l4Off + 1] !== 0) return null;
  if (finishSum(sum16(f, p.l4Off, p.l4Len)) !== 0) return null;
  const r = new Uint8Array(ETH_HLEN + IP_HLEN + p.l4Len);
  writeEthHeader(r, guestMac, ourMac, ETHERTYPE_IPV4);
  writeIpv4Header(r, p.dst, p.src, IPPROTO_ICMP, p.l4Len, false);
  const o = ETH_HLEN + IP_HLEN;
  r.set(f.subarray(p.l4Off, p.l4Off + p.l4Len), o);
  r[o] = ICMP_ECHO_REPLY;
  writeU16(r, o + 2, 0);
  writeU16(r, o + 2, finishSum(sum16(r, o, p.l4Len)));
  return r;
}
