/**
 * Ethernet II framing (IEEE 802.3 with EtherType; no FCS, no VLAN tags: tagged frames are
 * dropped as unknown EtherTypes). MAC addresses are 6-byte Uint8Arrays.
 */
export const ETH_HLEN = 14;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
/** Largest frame we accept or emit (1500 MTU + header); a jumbo frame from a guest is dropped. */
export const ETH_MAX_FRAME = 1514;

export const BROADCAST_MAC = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

export function etherType(f: Uint8Array): number {
  return (f[12] << 8) | f[13];
}

export function macEquals(a: Uint8Array, aOff: number, b: Uint8Array, bOff = 0): boolean {
  for (let i = 0; i < 6; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}

export function isBroadcastOrMulticast(f: Uint8Array, off: number): boolean {
  return (f[off] & 1) !== 0;
}

/** A MAC as a number key (48 bits fit a double exactly). */
export function macKey(f: Uint8Array, off: number): number {
  return f[off] * 2 ** 40 + f[off + 1] * 2 ** 32 + ((f[off + 2] << 24) >>> 0) + (f[off + 3] << 16) + (f[off + 4] << 8) + f[off + 5];
}

export function parseMac(s: string): Uint8Array {
  const m = /^([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i.exec(s);
  if (!m) throw new Error(`bad MAC address '${s}' (expected xx:xx:xx:xx:xx:xx)`);
  return new Uint8Array(m.slice(1).map((h) => parseInt(h, 16)));
}

export function formatMac(m: Uint8Array, off = 0): string {
  const p: string[] = [];
  for (let i = 0; i < 6; i++) p.push(m[off + i].toString(16).padStart(2, '0'));
  return p.join(':');
}

export function writeEthHeader(f: Uint8Array, dst: Uint8Array, src: Uint8Array, type: number): void {
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = type >>> 8;
  f[13] = type & 0xff;
}
