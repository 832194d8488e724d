/**
 * IPv4 (RFC 791) header parsing and building, and the Internet checksum (RFC 1071).
 * Addresses are unsigned 32-bit numbers. Fragments are not reassembled: a fragment (MF set
 * or a non-zero offset) is dropped and counted. Slirp guests use a 1500-byte MTU and set DF
 * on TCP, so fragments only come from hostile or unusual guests. IP options are skipped.
 */
import { fold, sum16 as sumRange } from '../../devices/virtio/tcp-offload.js';
import { ETH_HLEN } from './ethernet.js';

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IP_HLEN = 20;

/** One's-complement sum of `len` bytes at `off`, added to `acc` (not folded). */
export function sum16(b: Uint8Array, off: number, len: number, acc = 0): number {
  return sumRange(b, off, off + len, acc);
}

/** Fold and complement a sum16 accumulator into a checksum field value. */
export function finishSum(acc: number): number {
  return ~fold(acc) & 0xffff;
}

/** The TCP/UDP pseudo-header sum (RFC 793 3.1, RFC 768). */
export function pseudoSum(src: number, dst: number, proto: number, len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
}

export function ipToString(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

export function parseIp(s: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) throw new Error(`bad IPv4 address '${s}'`);
  const p = m.slice(1).map(Number);
  if (p.some((x) => x > 255)) throw new Error(`bad IPv4 address '${s}'`);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}

export function readU32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

export function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24; b[off + 1] = (v >>> 16) & 0xff; b[off + 2] = (v >>> 8) & 0xff; b[off + 3] = v & 0xff;
}

export function readU16(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1];
}

export function writeU16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff; b[off + 1] = v & 0xff;
}

/** A validated IPv4 packet inside a frame: where its payload is. */
export interface Ipv4Packet {
  src: number;
  dst: number;
  proto: number;
  ttl: number;
  /** Offset of the L4 payload in the frame, and its length (from the IP total length). */
  l4Off: number;
  l4Len: number;
}

export type Ipv4Error = 'short' | 'version' | 'checksum' | 'length' | 'fragment';

/** Validate the IPv4 header at ETH_HLEN; fills `out` or returns why the packet is dropped. */
export function parseIpv4(f: Uint8Array, len: number, out: Ipv4Packet): Ipv4Error | null {
  const o = ETH_HLEN;
  if (len < o + IP_HLEN) return 'short';
  if (f[o] >>> 4 !== 4) return 'version';
  const ihl = (f[o] & 0xf) * 4;
  if (ihl < IP_HLEN || len < o + ihl) return 'short';
  const total = readU16(f, o + 2);
  if (total < ihl || o + total > len) return 'length';
  if (finishSum(sum16(f, o, ihl)) !== 0) return 'checksum';
  const frag = readU16(f, o + 6);
  if ((frag & 0x3fff) !== 0) return 'fragment';
  out.ttl = f[o + 8];
  out.proto = f[o + 9];
  out.src = readU32(f, o + 12);
  out.dst = readU32(f, o + 16);
  out.l4Off = o + ihl;
  out.l4Len = total - ihl;
  return null;
}

let ipId = 1;

/** Write a 20-byte IPv4 header at ETH_HLEN for a payload of `l4Len` bytes. */
export function writeIpv4Header(f: Uint8Array, src: number, dst: number, proto: number, l4Len: number, df: boolean): void {
  const o = ETH_HLEN;
  f[o] = 0x45; f[o + 1] = 0;
  writeU16(f, o + 2, IP_HLEN + l4Len);
  writeU16(f, o + 4, ipId); ipId = (ipId + 1) & 0xffff;
  writeU16(f, o + 6, df ? 0x4000 : 0);
  f[o + 8] = 64; f[o + 9] = proto;
  writeU16(f, o + 10, 0);
  writeU32(f, o + 12, src);
  writeU32(f, o + 16, dst);
  writeU16(f, o + 10, finishSum(sum16(f, o, IP_HLEN)));
}

/** Verify a TCP/UDP checksum over the payload at l4Off (zero means valid). */
export function l4ChecksumOk(f: Uint8Array, p: Ipv4Packet): boolean {
  return finishSum(sum16(f, p.l4Off, p.l4Len, pseudoSum(p.src, p.dst, p.proto, p.l4Len))) === 0;
}

/** Compute and store the TCP/UDP checksum at l4Off+csumOff (the field must be zero). */
export function setL4Checksum(f: Uint8Array, l4Off: number, l4Len: number, src: number, dst: number, proto: number, csumOff: number): void {
  let c = finishSum(sum16(f, l4Off, l4Len, pseudoSum(src, dst, proto, l4Len)));
  if (proto === IPPROTO_UDP && c === 0) c = 0xffff;
  writeU16(f, l4Off + csumOff, c);
}
