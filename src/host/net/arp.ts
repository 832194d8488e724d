/** ARP (RFC 826) for Ethernet/IPv4: parsing requests and building replies and requests. */
import { ETH_HLEN, ETHERTYPE_ARP, writeEthHeader, BROADCAST_MAC } from './ethernet.js';
import { readU16, readU32, writeU16, writeU32 } from './ipv4.js';

export const ARP_LEN = 28;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;

export interface ArpPacket {
  op: number;
  senderMac: Uint8Array;
  senderIp: number;
  targetIp: number;
}

/** Parse an Ethernet/IPv4 ARP packet; null if malformed. senderMac is a view into `f`. */
export function parseArp(f: Uint8Array, len: number): ArpPacket | null {
  const o = ETH_HLEN;
  if (len < o + ARP_LEN) return null;
  if (readU16(f, o) !== 1 || readU16(f, o + 2) !== 0x0800 || f[o + 4] !== 6 || f[o + 5] !== 4) return null;
  return { op: readU16(f, o + 6), senderMac: f.subarray(o + 8, o + 14), senderIp: readU32(f, o + 14), targetIp: readU32(f, o + 24) };
}

export function buildArp(op: number, srcMac: Uint8Array, srcIp: number, dstMac: Uint8Array | null, dstIp: number): Uint8Array {
  const f = new Uint8Array(ETH_HLEN + ARP_LEN);
  writeEthHeader(f, dstMac ?? BROADCAST_MAC, srcMac, ETHERTYPE_ARP);
  const o = ETH_HLEN;
  writeU16(f, o, 1); writeU16(f, o + 2, 0x0800); f[o + 4] = 6; f[o + 5] = 4;
  writeU16(f, o + 6, op);
  f.set(srcMac, o + 8); writeU32(f, o + 14, srcIp);
  if (dstMac) f.set(dstMac, o + 18);
  writeU32(f, o + 24, dstIp);
  return f;
}
