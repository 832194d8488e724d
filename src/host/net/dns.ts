/**
 * The DNS service at the guest's DNS address (10.0.2.3). Two modes:
 *  - forward: queries go unchanged over UDP to an upstream server (host:port), answers come
 *    back with the original id; pending queries are bounded and time out.
 *  - lookup (default): A queries are answered from the host's resolver (getaddrinfo in Node:
 *    /etc/hosts and the system's name servers); other types get an empty answer.
 */
import { readU16, writeU16 } from './ipv4.js';
import type { HostNet, HostUdp } from './host.js';

const MAX_PENDING = 64;
const TIMEOUT_MS = 5000;

/** The first question's name, type and end offset; null if malformed. */
export function parseQuestion(q: Uint8Array): { name: string; qtype: number; qclass: number; end: number } | null {
  if (q.length < 12 || (q[2] & 0x80) !== 0 || readU16(q, 4) < 1) return null;
  let i = 12;
  const labels: string[] = [];
  for (;;) {
    if (i >= q.length) return null;
    const n = q[i++];
    if (n === 0) break;
    if (n > 63 || i + n > q.length || labels.length > 127) return null; // no compression in a question
    labels.push(String.fromCharCode(...q.subarray(i, i + n)));
    i += n;
  }
  if (i + 4 > q.length) return null;
  return { name: labels.join('.'), qtype: readU16(q, i), qclass: readU16(q, i + 2), end: i + 4 };
}

/** A response to query `q` with the given IPv4 answers (rcode 3 = NXDOMAIN). */
export function buildAnswer(q: Uint8Array, qEnd: number, addrs: number[], rcode: number): Uint8Array {
  const r = new Uint8Array(qEnd + addrs.length * 16);
  r.set(q.subarray(0, qEnd));
  r[2] = 0x80 | (q[2] & 0x79); // QR, keep opcode and RD
  r[3] = 0x80 | (rcode & 0xf); // RA
  writeU16(r, 4, 1); writeU16(r, 6, addrs.length); writeU16(r, 8, 0); writeU16(r, 10, 0);
  let i = qEnd;
  for (const a of addrs) {
    writeU16(r, i, 0xc00c); writeU16(r, i + 2, 1); writeU16(r, i + 4, 1);
    writeU16(r, i + 6, 0); writeU16(r, i + 8, 60); writeU16(r, i + 10, 4);
    r[i + 12] = a >>> 24; r[i + 13] = (a >>> 16) & 0xff; r[i + 14] = (a >>> 8) & 0xff; r[i + 15] = a & 0xff;
    i += 16;
  }
  return r;
}

export class DnsService {
  private sock: Promise<HostUdp> | null = null;
  private readonly pending = new Map<number, { id: number; reply: (d: Uint8Array) => void; timer: ReturnType<typeof setTimeout> }>();
  private nextId = 1;
  dropped = 0;

  /** `upstream` "host:port" to forward; null to answer from the host resolver. */
  constructor(private readonly host: HostNet, private readonly upstream: { addr: string; port: number } | null) {}

  query(q: Uint8Array, reply: (d: Uint8Array) => void): void {
    const pq = parseQuestion(q);
    if (!pq) { this.dropped++; return; }
    if (this.upstream) { this.forward(q, reply); return; }
    if (pq.qclass !== 1 || pq.qtype !== 1) { reply(buildAnswer(q, pq.end, [], 0)); return; }
    if (this.pending.size >= MAX_PENDING) { this.dropped++; return; }
    const key = this.nextId++;
    const timer = setTimeout(() => this.pending.delete(key), TIMEOUT_MS);
    this.pending.set(key, { id: 0, reply, timer });
    const copy = q.slice(0, pq.end);
    this.host.lookup(pq.name).then((addrs) => {
      if (!this.pending.delete(key)) return;
      clearTimeout(timer);
      const nums = addrs.map((s) => s.split('.').map(Number)).filter((p) => p.length === 4)
        .map((p) => ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0);
      reply(buildAnswer(copy, pq.end, nums.slice(0, 16), nums.length ? 0 : 3));
    }, () => { if (this.pending.delete(key)) clearTimeout(timer); });
  }

  private forward(q: Uint8Array, reply: (d: Uint8Array) => void): void {
    if (this.pending.size >= MAX_PENDING) { this.dropped++; return; }
    const up = this.upstream!;
    this.sock ??= this.host.udpBind('0.0.0.0', 0, (d) => this.answer(d));
    const id = this.nextId = (this.nextId % 0xffff) + 1;
    const old = this.pending.get(id);
    if (old) clearTimeout(old.timer);
    const timer = setTimeout(() => this.pending.delete(id), TIMEOUT_MS);
    this.pending.set(id, { id: readU16(q, 0), reply, timer });
    const out = q.slice();
    writeU16(out, 0, id);
    this.sock.then((s) => s.send(out, up.addr, up.port), () => { this.dropped++; });
  }

  private answer(d: Uint8Array): void {
    if (d.length < 12) return;
    const p = this.pending.get(readU16(d, 0));
    if (!p) return;
    this.pending.delete(readU16(d, 0));
    clearTimeout(p.timer);
    const out = d.slice();
    writeU16(out, 0, p.id);
    p.reply(out);
  }

  close(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    this.sock?.then((s) => s.close(), () => undefined);
  }
}
