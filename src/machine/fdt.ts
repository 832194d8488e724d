/**
 * A flattened devicetree (DTB) writer: Devicetree Specification v0.4, chapter 5
 * ("Flattened Devicetree (DTB) Format"), version 17. Big-endian throughout.
 */
const FDT_MAGIC = 0xd00dfeed;
const FDT_BEGIN_NODE = 1, FDT_END_NODE = 2, FDT_PROP = 3, FDT_END = 9;
const HEADER_SIZE = 40;

/** A property value: a string, a list of strings (stringlist), u32 cells, or raw bytes. */
export type FdtValue = string | readonly string[] | readonly number[] | Uint8Array | null;

export class FdtBuilder {
  private structBytes: number[] = [];
  private strings = new Map<string, number>();
  private stringBytes: number[] = [];
  private depth = 0;
  private nextPhandle = 1;
  private readonly reservations: Array<[number, number]> = [];

  /** A fresh phandle number. */
  phandle(): number { return this.nextPhandle++; }

  /** A /memreserve/ entry. */
  reserve(address: number, size: number): void { this.reservations.push([address, size]); }

  beginNode(name: string): this {
    this.u32(FDT_BEGIN_NODE);
    this.bytesPadded(utf8z(name));
    this.depth++;
    return this;
  }

  endNode(): this {
    if (this.depth === 0) throw new Error('fdt: endNode without beginNode');
    this.u32(FDT_END_NODE);
    this.depth--;
    return this;
  }

  prop(name: string, value: FdtValue): this {
    const data = encodeValue(value);
    this.u32(FDT_PROP);
    this.u32(data.length);
    this.u32(this.stringOffset(name));
    this.bytesPadded(data);
    return this;
  }

  /** A property of 64-bit values written as cell pairs (reg with #address-cells = 2, etc.). */
  prop64(name: string, values: readonly number[]): this {
    const cells: number[] = [];
    for (const v of values) cells.push(Math.floor(v / 0x1_0000_0000), v >>> 0);
    return this.prop(name, cells);
  }

  finish(bootCpuid = 0): Uint8Array {
    if (this.depth !== 0) throw new Error(`fdt: ${this.depth} node(s) left open`);
    this.u32(FDT_END);
    const rsvSize = (this.reservations.length + 1) * 16;
    const offRsv = HEADER_SIZE;
    const offStruct = offRsv + rsvSize;
    const structSize = this.structBytes.length;
    const offStrings = offStruct + structSize;
    const stringsSize = this.stringBytes.length;
    const total = align(offStrings + stringsSize, 8);
    const out = new Uint8Array(total);
    const dv = new DataView(out.buffer);
    const hdr = [FDT_MAGIC, total, offStruct, offStrings, offRsv, 17, 16, bootCpuid, stringsSize, structSize];
    hdr.forEach((v, i) => dv.setUint32(i * 4, v >>> 0));
    let o = offRsv;
    for (const [a, s] of this.reservations) {
      dv.setUint32(o, Math.floor(a / 0x1_0000_0000)); dv.setUint32(o + 4, a >>> 0);
      dv.setUint32(o + 8, Math.floor(s / 0x1_0000_0000)); dv.setUint32(o + 12, s >>> 0);
      o += 16;
    }
    out.set(this.structBytes, offStruct);
    out.set(this.stringBytes, offStrings);
    return out;
  }

  private stringOffset(name: string): number {
    let off = this.strings.get(name);
    if (off === undefined) {
      off = this.stringBytes.length;
      this.strings.set(name, off);
      for (const b of utf8z(name)) this.stringBytes.push(b);
    }
    return off;
  }

  private u32(v: number): void {
    this.structBytes.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  }

  private bytesPadded(b: Uint8Array): void {
    for (const x of b) this.structBytes.push(x);
    while (this.structBytes.length % 4 !== 0) this.structBytes.push(0);
  }
}

function align(n: number, a: number): number { return Math.ceil(n / a) * a; }

function utf8z(s: string): Uint8Array {
  const e = new TextEncoder().encode(s);
  const out = new Uint8Array(e.length + 1);
  out.set(e);
  return out;
}

function encodeValue(v: FdtValue): Uint8Array {
  if (v === null) return new Uint8Array(0);
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return utf8z(v);
  if (v.length === 0) return new Uint8Array(0);
  if (typeof v[0] === 'string') {
    const parts = (v as readonly string[]).map(utf8z);
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  }
  const cells = v as readonly number[];
  const out = new Uint8Array(cells.length * 4);
  const dv = new DataView(out.buffer);
  cells.forEach((c, i) => dv.setUint32(i * 4, c >>> 0));
  return out;
}
