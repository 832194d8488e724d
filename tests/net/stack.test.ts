/**
 * The user-mode network with crafted guest frames (no QEMU): checksums against a known
 * vector, ARP, DHCP, ICMP echo, DNS, the TCP state machine against a fake host (handshake,
 * options, window, retransmission, FIN, RST, refused), restrict=on, and bounds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { finishSum, parseIp, sum16 } from '../../src/host/net/ipv4.js';
import { ARP_REPLY, buildArp } from '../../src/host/net/arp.js';
import { LIMITS, UserNet } from '../../src/host/net/slirp.js';
import { RCV_BUF } from '../../src/host/net/tcp.js';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../lib/toolchain.js';
import { NodeHostNet } from '../../src/host/net/node-host.js';
import { arpRequest, FakeHostNet, FakeTcp, GUEST_MAC, GW_MAC, icmpEcho, parseTcpFrame, tcp, udp, type SeenTcp } from '../lib/net-frames.js';
import type { HostTcpEvents } from '../../src/host/net/host.js';

const G = '10.0.2.15', GW = '10.0.2.2';
const SYN = 2, ACK = 16, FIN = 1, RST = 4, PSH = 8;

function setup(cfg: ConstructorParameters<typeof UserNet>[1] = {}, host = new FakeHostNet()): { un: UserNet; host: FakeHostNet; out: Uint8Array[] } {
  const un = new UserNet(host, cfg);
  const out: Uint8Array[] = [];
  un.attach({ receive: (f) => { out.push(f.slice()); return true; } });
  return { un, host, out };
}

const ETH = 14;
/** The guest's ARP reply to the gateway's request for `guest`. */
const arpReply = (guest: string, gw: string): Uint8Array => buildArp(ARP_REPLY, new Uint8Array(GUEST_MAC), parseIp(guest), new Uint8Array(GW_MAC), parseIp(gw));

const tcpOut = (out: Uint8Array[]): SeenTcp[] => out.map(parseTcpFrame).filter((x): x is SeenTcp => x !== null);

test('Internet checksum: RFC 1071 style known IPv4 header', () => {
  const h = new Uint8Array([0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7]);
  assert.equal(finishSum(sum16(h, 0, 20)), 0xb861);
  h[10] = 0xb8; h[11] = 0x61;
  assert.equal(finishSum(sum16(h, 0, 20)), 0);
  assert.equal(finishSum(sum16(new Uint8Array([1, 2, 3]), 0, 3)), ~(0x0102 + 0x0300) & 0xffff); // odd length pads with zero
});

test('ARP: the gateway and DNS addresses answer; others do not', () => {
  const { un, out } = setup();
  un.transmit(arpRequest(G, GW));
  assert.equal(out.length, 1);
  const r = out[0];
  assert.deepEqual([...r.subarray(0, 6)], GUEST_MAC);
  assert.equal((r[12] << 8) | r[13], 0x0806);
  assert.equal((r[20] << 8) | r[21], 2, 'ARP reply');
  assert.deepEqual([...r.subarray(22, 28)], GW_MAC);
  assert.deepEqual([...r.subarray(28, 32)], [10, 0, 2, 2]);
  assert.deepEqual([...r.subarray(32, 38)], GUEST_MAC);
  assert.deepEqual([...r.subarray(38, 42)], [10, 0, 2, 15]);
  un.transmit(arpRequest(G, '10.0.2.3'));
  assert.equal(out.length, 2);
  un.transmit(arpRequest(G, '10.0.2.99'));
  assert.equal(out.length, 2);
  un.close();
});

function dhcpMsg(type: number, mac: number[], xid: number, requested?: number[]): number[] {
  const m = new Array<number>(240).fill(0);
  m[0] = 1; m[1] = 1; m[2] = 6;
  m[4] = xid >>> 24; m[5] = (xid >>> 16) & 255; m[6] = (xid >>> 8) & 255; m[7] = xid & 255;
  m[10] = 0x80;
  for (let i = 0; i < 6; i++) m[28 + i] = mac[i];
  m[236] = 0x63; m[237] = 0x82; m[238] = 0x53; m[239] = 0x63;
  m.push(53, 1, type);
  if (requested) m.push(50, 4, ...requested, 54, 4, 10, 0, 2, 2);
  m.push(255);
  return m;
}

function dhcpReply(f: Uint8Array): { type: number; yiaddr: string; opts: Map<number, number[]> } {
  const d = f.subarray(42);
  const opts = new Map<number, number[]>();
  let i = 240;
  while (i < d.length && d[i] !== 255) { if (d[i] === 0) { i++; continue; } opts.set(d[i], [...d.subarray(i + 2, i + 2 + d[i + 1])]); i += 2 + d[i + 1]; }
  return { type: opts.get(53)![0], yiaddr: [...d.subarray(16, 20)].join('.'), opts };
}

test('DHCP: DISCOVER/OFFER/REQUEST/ACK with mask, router, DNS, lease; per-MAC addresses; NAK for a wrong address', () => {
  const { un, out } = setup();
  const bc = [255, 255, 255, 255, 255, 255];
  un.transmit(udp('0.0.0.0', 68, '255.255.255.255', 67, dhcpMsg(1, GUEST_MAC, 0x1234), GUEST_MAC, bc));
  assert.equal(out.length, 1);
  let r = dhcpReply(out[0]);
  assert.equal(r.type, 2);
  assert.equal(r.yiaddr, G);
  assert.deepEqual(r.opts.get(1), [255, 255, 255, 0]);
  assert.deepEqual(r.opts.get(3), [10, 0, 2, 2]);
  assert.deepEqual(r.opts.get(6), [10, 0, 2, 3]);
  assert.deepEqual(r.opts.get(54), [10, 0, 2, 2]);
  assert.deepEqual(r.opts.get(51), [0, 1, 0x51, 0x80]);
  assert.equal((out[0][34] << 8) | out[0][35], 67); // from the server port
  assert.equal((out[0][36] << 8) | out[0][37], 68);
  un.transmit(udp('0.0.0.0', 68, '255.255.255.255', 67, dhcpMsg(3, GUEST_MAC, 0x1234, [10, 0, 2, 15]), GUEST_MAC, bc));
  r = dhcpReply(out[1]);
  assert.equal(r.type, 5);
  assert.equal(r.yiaddr, G);
  const mac2 = [0x52, 0x54, 0, 0, 0, 2];
  un.transmit(udp('0.0.0.0', 68, '255.255.255.255', 67, dhcpMsg(1, mac2, 7), mac2, bc));
  assert.equal(dhcpReply(out[2]).yiaddr, '10.0.2.16');
  un.transmit(udp('0.0.0.0', 68, '255.255.255.255', 67, dhcpMsg(3, mac2, 7, [10, 0, 2, 15]), mac2, bc));
  assert.equal(dhcpReply(out[3]).type, 6, 'NAK: .15 belongs to another MAC');
  un.close();
});

test('ICMP echo to the gateway is answered with the same id, sequence and data', () => {
  const { un, out } = setup();
  un.transmit(icmpEcho(G, GW, 0x4242, 7, [1, 2, 3, 4, 5]));
  assert.equal(out.length, 1);
  const r = out[0];
  assert.deepEqual([...r.subarray(26, 30)], [10, 0, 2, 2]);
  assert.deepEqual([...r.subarray(30, 34)], [10, 0, 2, 15]);
  assert.equal(r[34], 0, 'echo reply');
  assert.deepEqual([...r.subarray(38, 47)], [0x42, 0x42, 0, 7, 1, 2, 3, 4, 5]);
  assert.equal(finishSum(sum16(r, 14, 20)), 0, 'IP checksum');
  assert.equal(finishSum(sum16(r, 34, r.length - 34)), 0, 'ICMP checksum');
  un.transmit(icmpEcho(G, '10.0.2.77', 1, 1, []));
  assert.equal(out.length, 1);
  un.close();
});

test('DNS: answered from the host resolver (localhost -> 127.0.0.1), NXDOMAIN for unknown names', async () => {
  const { un, out } = setup({}, new NodeHostNet() as unknown as FakeHostNet);
  const q = (id: number, name: string): number[] => [id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
    ...name.split('.').flatMap((l) => [l.length, ...[...l].map((c) => c.charCodeAt(0))]), 0, 0, 1, 0, 1];
  un.transmit(udp(G, 5555, '10.0.2.3', 53, q(0xabcd, 'localhost')));
  un.transmit(udp(G, 5556, '10.0.2.3', 53, q(0x0102, 'no-such-name.invalid')));
  for (let i = 0; i < 100 && out.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(out.length, 2);
  const byPort = new Map(out.map((f) => [(f[36] << 8) | f[37], f.subarray(42)]));
  const a = byPort.get(5555)!;
  assert.equal((a[0] << 8) | a[1], 0xabcd);
  assert.equal(a[3] & 15, 0);
  assert.ok(((a[6] << 8) | a[7]) >= 1, 'one answer or more');
  assert.deepEqual([...a.subarray(a.length - 4)], [127, 0, 0, 1]);
  const b = byPort.get(5556)!;
  assert.equal(b[3] & 15, 3, 'NXDOMAIN');
  un.close();
});

async function handshake(un: UserNet, host: FakeHostNet, out: Uint8Array[], sport = 40000, wscale: number | undefined = 2): Promise<{ iss: number; t: SeenTcp }> {
  un.transmit(tcp(G, sport, GW, 8080, { seq: 1000, flags: SYN, mss: 1400, wscale, wnd: 8000 }));
  assert.equal(host.tcp.length, 1, 'one host connect');
  assert.equal(host.tcp[0].addr, '127.0.0.1', 'the gateway maps to the host loopback');
  assert.equal(host.tcp[0].port, 8080);
  assert.equal(tcpOut(out).length, 0, 'no SYN-ACK before the host connects');
  host.tcp[0].ev!.connect();
  const t = tcpOut(out).at(-1)!;
  assert.equal(t.flags, SYN | ACK);
  assert.equal(t.ack, 1001);
  assert.ok(t.csumOk);
  un.transmit(tcp(G, sport, GW, 8080, { seq: 1001, ack: t.seq + 1, flags: ACK, wnd: 8000 }));
  return { iss: t.seq, t };
}

test('TCP: handshake with MSS and window scale; data both ways within the window; FIN both ways', async () => {
  const { un, host, out } = setup();
  const { iss, t: synack } = await handshake(un, host, out);
  const rel = (seq: number): number => (seq - iss - 1) >>> 0; // offset in our byte stream (ISS is random)
  assert.deepEqual([...synack.opts.subarray(0, 4)], [2, 4, 0x05, 0xb4], 'MSS 1460');
  assert.equal(synack.opts[5], 3, 'window scale option');
  const h = host.tcp[0];
  // Guest -> host: a segment ahead of a hole waits (and is re-ACKed) until the hole is filled.
  un.transmit(tcp(G, 40000, GW, 8080, { seq: 1001, ack: iss + 1, flags: ACK | PSH, data: [...Buffer.from('hello ')] }));
  un.transmit(tcp(G, 40000, GW, 8080, { seq: 1013, ack: iss + 1, flags: ACK | PSH, data: [...Buffer.from('WXYZ')] }));
  assert.equal(Buffer.from(h.bytes()).toString(), 'hello ');
  assert.equal(tcpOut(out).at(-1)!.ack, 1007, 'duplicate ACK for the hole');
  un.transmit(tcp(G, 40000, GW, 8080, { seq: 1011, ack: iss + 1, flags: ACK | PSH, data: [...Buffer.from('d!WX')] })); // overlaps the queued one
  un.transmit(tcp(G, 40000, GW, 8080, { seq: 1007, ack: iss + 1, flags: ACK | PSH, data: [...Buffer.from('worl')] }));
  assert.equal(Buffer.from(h.bytes()).toString(), 'hello world!WXYZ');
  assert.equal(tcpOut(out).at(-1)!.ack, 1017);
  un.transmit(tcp(G, 40000, GW, 8080, { seq: 1001, ack: iss + 1, flags: ACK | PSH, data: [...Buffer.from('hello ')] })); // an old duplicate
  assert.equal(Buffer.from(h.bytes()).toString(), 'hello world!WXYZ');
  // Host -> guest: 20000 bytes; guest window 8000 << 2 = 32000 but MSS 1400.
  out.length = 0;
  const payload = new Uint8Array(20000).map((_, i) => i * 7);
  h.ev!.data(payload);
  let segs = tcpOut(out).filter((s) => s.data.length > 0);
  assert.ok(segs.every((s) => s.data.length <= 1400 && s.csumOk));
  let got = segs.reduce((n, s) => n + s.data.length, 0);
  assert.ok(got <= 32000);
  assert.equal(rel(segs[0].seq), 0);
  // The guest shrinks its window to 1000 << 2 and acks everything so far.
  un.transmit(tcp(G, 40000, GW, 8080, { seq: 1017, ack: iss + 1 + got, flags: ACK, wnd: 1000 }));
  segs = tcpOut(out).filter((s) => s.data.length > 0);
  const total = segs.reduce((n, s) => n + s.data.length, 0);
  assert.ok(total - got <= 4000, `sent ${total - got} bytes into a 4000-byte window`);
  got = total;
  const bytes = new Uint8Array(got);
  for (const s of segs) bytes.set(s.data, rel(s.seq));
  assert.deepEqual(bytes, payload.subarray(0, got));
  // Ack the rest in steps until everything has arrived.
  for (let i = 0; i < 20 && got < 20000; i++) {
    un.transmit(tcp(G, 40000, GW, 8080, { seq: 1017, ack: iss + 1 + got, flags: ACK, wnd: 8000 }));
    segs = tcpOut(out).filter((s) => s.data.length > 0);
    got = Math.max(...segs.map((s) => rel(s.seq) + s.data.length));
  }
  assert.equal(got, 20000);
  un.transmit(tcp(G, 40000, GW, 8080, { seq: 1017, ack: iss + 1 + 20000, flags: ACK, wnd: 8000 }));
  // Host closes: FIN to the guest after the data.
  out.length = 0;
  h.ev!.end();
  const fin = tcpOut(out).at(-1)!;
  assert.equal(fin.flags & FIN, FIN);
  assert.equal(rel(fin.seq), 20000);
  // Guest acks our FIN and sends its own: the host side is half-closed, the connection ends.
  un.transmit(tcp(G, 40000, GW, 8080, { seq: 1017, ack: fin.seq + 1, flags: ACK | FIN }));
  assert.ok(h.ended);
  assert.equal(tcpOut(out).at(-1)!.ack, 1018);
  await new Promise((r) => setTimeout(r, 1100)); // TIME-WAIT
  assert.equal(un.stats.tcpConnections, 0);
  un.close();
});

test('TCP: a large segment from the guest (GSO) is taken whole with one ACK; an oversized non-TCP frame is dropped', async () => {
  const { un, host, out } = setup();
  assert.equal(un.gso, true);
  const { iss } = await handshake(un, host, out);
  out.length = 0;
  const data = Array.from({ length: 30_000 }, (_, i) => (i * 5 + 1) & 0xff);
  un.transmit(tcp(G, 40000, GW, 8080, { seq: 1001, ack: iss + 1, flags: ACK | PSH, data }));
  assert.deepEqual([...host.tcp[0].bytes()], data);
  const acks = tcpOut(out);
  assert.equal(acks.length, 1, 'one ACK for the whole segment');
  assert.equal(acks[0].ack, 1001 + 30_000);
  // Over the MTU and not TCP: dropped as a bad frame, nothing sent.
  const udpBig = tcp(G, 40000, GW, 8080, { seq: 31001, ack: iss + 1, flags: ACK, data });
  udpBig[23] = 17;
  const bad = un.stats.dropBadFrame;
  un.transmit(udpBig);
  assert.equal(un.stats.dropBadFrame, bad + 1);
  un.close();
});

test('TCP: an unacknowledged segment is retransmitted after the RTO; RST from the guest closes the host socket', async () => {
  const { un, host, out } = setup();
  const { iss } = await handshake(un, host, out, 40001);
  const rel = (seq: number): number => (seq - iss - 1) >>> 0;
  out.length = 0;
  host.tcp[0].ev!.data(new Uint8Array([1, 2, 3]));
  assert.equal(tcpOut(out).length, 1);
  await new Promise((r) => setTimeout(r, 1150));
  const again = tcpOut(out);
  assert.ok(again.length >= 2, 'retransmitted');
  assert.equal(rel(again[1].seq), 0);
  assert.deepEqual([...again[1].data], [1, 2, 3]);
  un.transmit(tcp(G, 40001, GW, 8080, { seq: 1001, flags: RST }));
  assert.ok(host.tcp[0].destroyed);
  assert.equal(un.stats.tcpConnections, 0);
  un.close();
});

test('TCP: a refused host connection is a RST to the guest; segments for no connection get RST', () => {
  const { un, host, out } = setup();
  un.transmit(tcp(G, 40002, GW, 9, { seq: 5000, flags: SYN, mss: 1460 }));
  host.tcp[0].ev!.close('ECONNREFUSED');
  let r = tcpOut(out).at(-1)!;
  assert.equal(r.flags, RST | ACK);
  assert.equal(r.ack, 5001);
  assert.equal(un.stats.tcpConnections, 0);
  un.transmit(tcp(G, 40003, GW, 9, { seq: 1, ack: 777, flags: ACK }));
  r = tcpOut(out).at(-1)!;
  assert.equal(r.flags, RST);
  assert.equal(r.seq, 777);
  un.close();
});

test('restrict=on: no host connections or datagrams from the guest; DHCP and the gateway still answer', () => {
  const { un, host, out } = setup({ restrict: true });
  un.transmit(tcp(G, 40004, GW, 80, { seq: 1, flags: SYN }));
  assert.equal(host.tcp.length, 0);
  assert.equal(tcpOut(out).at(-1)!.flags & RST, RST);
  un.transmit(udp(G, 1000, GW, 53, [1, 2, 3]));
  un.transmit(udp(G, 1000, '10.0.2.3', 53, [1, 2, 3]));
  assert.equal(host.udpBinds, 0);
  assert.ok(un.stats.dropRestricted >= 3);
  un.transmit(icmpEcho(G, GW, 1, 1, []));
  assert.equal(out.at(-1)![34], 0, 'echo reply');
  un.close();
});

test('SYN flood from the guest: half-open connections and host connects stay bounded', () => {
  const { un, host } = setup();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 20000; i++) un.transmit(tcp(G, 1024 + (i % 60000), GW, 80, { seq: i * 7919, flags: SYN }));
  assert.ok(host.tcp.length <= LIMITS.maxHalfOpen, `${host.tcp.length} host connects`);
  assert.ok(un.stats.tcpConnections <= LIMITS.maxHalfOpen);
  assert.ok(un.stats.dropLimit >= 20000 - LIMITS.maxHalfOpen);
  assert.ok(process.memoryUsage().heapUsed - before < 64 << 20);
  un.close();
});

test('a guest without receive buffers: frames for it are queued up to a bound, then dropped and counted', () => {
  const un = new UserNet(new FakeHostNet());
  let accept = false;
  const got: Uint8Array[] = [];
  un.attach({ receive: (f) => { if (accept) got.push(f); return accept; } });
  for (let i = 0; i < LIMITS.rxQueueFrames + 500; i++) un.transmit(icmpEcho(G, GW, 1, i & 0xffff, [i & 255]));
  assert.equal(un.stats.dropRxQueueFull, 500);
  accept = true;
  un.rxReady();
  assert.equal(got.length, LIMITS.rxQueueFrames);
  un.close();
});

test('hostfwd tcp: an accepted host connection becomes a SYN to the guest; the stream flows both ways once established', async () => {
  const host = new FakeHostNet();
  const { un, out } = setup({ hostfwd: [{ proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 0, guestAddr: 0, guestPort: 80 }] }, host);
  await un.start();
  assert.equal(host.listeners.length, 1);
  const t = new FakeTcp('127.0.0.1', 51000, null);
  t.paused = true;
  host.listeners[0].accept(Object.assign(t, { remoteAddress: '127.0.0.1', remotePort: 51000, start: (ev: HostTcpEvents) => { t.ev = ev; } }));
  // The guest's MAC is not known yet: an ARP request, and the SYN waits for the answer
  // (sent to the broadcast MAC, the guest's TCP would drop it: 1 s to the retransmission).
  assert.equal(out.some((f) => f[12] === 8 && f[13] === 6), true, 'an ARP probe for the unknown guest');
  assert.equal(tcpOut(out).length, 0, 'the SYN is held');
  un.transmit(arpReply(G, GW));
  const syn = tcpOut(out).at(-1)!;
  assert.equal(syn.flags, SYN);
  assert.equal(syn.dport, 80);
  assert.equal(syn.sport, 51000);
  assert.deepEqual([...out.at(-1)!.subarray(0, 6)], GUEST_MAC, 'to the MAC the guest answered with');
  assert.equal(un.stats.arpHeld, 1);
  t.ev!.data(new Uint8Array([9, 9, 9])); // early host data waits for the handshake
  assert.equal(tcpOut(out).filter((s) => s.data.length).length, 0);
  un.transmit(tcp(G, 80, GW, 51000, { seq: 7000, ack: syn.seq + 1, flags: SYN | ACK, mss: 1460, wscale: 7 }));
  assert.equal(t.paused, false);
  const segs = tcpOut(out);
  assert.equal(segs.at(-1)!.ack, 7001);
  assert.deepEqual([...segs.at(-1)!.data], [9, 9, 9]);
  un.transmit(tcp(G, 80, GW, 51000, { seq: 7001, ack: syn.seq + 4, flags: ACK | PSH, data: [1, 2] }));
  assert.deepEqual([...t.bytes()], [1, 2]);
  un.close();
});

test('frames for a guest address that has not answered ARP are held (bounded), then sent to its MAC; unanswered ones are dropped and the guest asked again', async () => {
  const fwd = (): { un: UserNet; out: Uint8Array[]; send: (d: Uint8Array) => void } => {
    const host = new FakeHostNet();
    const msgs: Array<(d: Uint8Array, a: string, p: number) => void> = [];
    host.udpBind = (_a, _p, m) => { msgs.push(m); return Promise.resolve({ send: () => undefined, close: () => undefined }); };
    const { un, out } = setup({ hostfwd: [{ proto: 'udp', hostAddr: '127.0.0.1', hostPort: 5353, guestAddr: 0, guestPort: 53 }] }, host);
    return { un, out, send: (d) => msgs[0](d, '127.0.0.1', 6000) };
  };
  const arps = (out: Uint8Array[]): number => out.filter((f) => f[12] === 8 && f[13] === 6).length;
  const udps = (out: Uint8Array[]): Uint8Array[] => out.filter((f) => f[12] === 8 && f[13] === 0 && f[ETH + 9] === 17);
  const { un, out, send } = fwd();
  await un.start();
  for (let i = 0; i < LIMITS.arpHoldFrames + 4; i++) send(new Uint8Array([i]));
  assert.equal(arps(out), 1, 'one ARP request');
  assert.equal(udps(out).length, 0, 'nothing to the broadcast MAC');
  assert.equal(un.stats.arpHeld, LIMITS.arpHoldFrames);
  assert.equal(un.stats.dropArpUnresolved, 4, 'past the bound: dropped and counted');
  un.transmit(arpReply(G, GW));
  const got = udps(out);
  assert.equal(got.length, LIMITS.arpHoldFrames, 'the held frames');
  got.forEach((f, i) => { assert.deepEqual([...f.subarray(0, 6)], GUEST_MAC); assert.equal(f[f.length - 1], i, 'in order'); });
  send(new Uint8Array([99]));
  assert.equal(udps(out).length, LIMITS.arpHoldFrames + 1, 'known now: sent at once');
  un.close();
  // A guest that never answers: after LIMITS.arpHoldMs what waited is dropped and it is asked again.
  const real = Date.now;
  const b = fwd();
  await b.un.start();
  try {
    let now = real();
    Date.now = () => now;
    b.send(new Uint8Array([1]));
    assert.equal(arps(b.out), 1);
    now += LIMITS.arpHoldMs + 1;
    b.send(new Uint8Array([2]));
    assert.equal(b.un.stats.dropArpUnresolved, 1, 'the unanswered frame dropped');
    assert.equal(arps(b.out), 2, 'asked again');
    assert.equal(udps(b.out).length, 0);
  } finally {
    Date.now = real;
    b.un.close();
  }
});

test('hostfwd udp: datagrams from a host peer reach the guest port, and the guest replies go back to that peer', async () => {
  const host = new FakeHostNet();
  const msgs: Array<(d: Uint8Array, a: string, p: number) => void> = [];
  host.udpBind = (_a, _p, m) => { msgs.push(m); host.udpBinds++; return Promise.resolve({ send: (d, addr, port) => { host.udpSent.push({ d: d.slice(), addr, port }); }, close: () => undefined }); };
  const { un, out } = setup({ hostfwd: [{ proto: 'udp', hostAddr: '127.0.0.1', hostPort: 5353, guestAddr: 0, guestPort: 53 }] }, host);
  await un.start();
  un.transmit(arpReply(G, GW)); // (the guest's MAC is known)
  msgs[0](new Uint8Array([1, 2, 3]), '127.0.0.1', 45678);
  const f = out.at(-1)!;
  assert.equal(f[23], 17);
  assert.equal((f[34] << 8) | f[35], 45678);
  assert.equal((f[36] << 8) | f[37], 53);
  assert.deepEqual([...f.subarray(42)], [1, 2, 3]);
  un.transmit(udp(G, 53, GW, 45678, [4, 5]));
  assert.deepEqual(host.udpSent.at(-1), { d: new Uint8Array([4, 5]), addr: '127.0.0.1', port: 45678 });
  un.close();
});

test('TCP: duplicate ACKs send new data (limited transmit), the third retransmits the hole (fast retransmit)', async () => {
  const { un, host, out } = setup();
  const { iss } = await handshake(un, host, out, 40005, 7);
  const rel = (seq: number): number => (seq - iss - 1) >>> 0;
  const h = host.tcp[0];
  out.length = 0;
  h.ev!.data(new Uint8Array(100_000));
  const first = tcpOut(out).filter((s) => s.data.length > 0);
  const mss = first[0].data.length;
  assert.equal(mss, 1400, 'the guest\'s MSS');
  // The initial cwnd is 14600 bytes: ten full segments; the 600-byte rest waits for ACKs (sender SWS avoidance).
  assert.deepEqual(first.map((x) => x.data.length), new Array(10).fill(1400));
  const dup = (): void => un.transmit(tcp(G, 40005, GW, 8080, { seq: 1001, ack: iss + 1 + mss, flags: ACK, wnd: 8000 }));
  un.transmit(tcp(G, 40005, GW, 8080, { seq: 1001, ack: iss + 1 + mss, flags: ACK, wnd: 8000 })); // first segment acked
  const sent = tcpOut(out).filter((x) => x.data.length > 0);
  const end = Math.max(...sent.map((x) => rel(x.seq) + x.data.length));
  assert.equal(end, 14000 + 2 * mss, 'slow start: two more segments for one acked');
  out.length = 0;
  dup();
  let segs = tcpOut(out).filter((s) => s.data.length > 0);
  assert.equal(segs.length, 1, 'first dup ACK: one new segment');
  assert.equal(rel(segs[0].seq), end, 'beyond cwnd');
  dup();
  dup();
  segs = tcpOut(out).filter((s) => s.data.length > 0);
  assert.equal(rel(segs.at(-1)!.seq), mss, 'third dup ACK: the missing segment again');
  assert.equal(un.stats.tcpFastRetransmits, 1);
  un.close();
});

test('TCP to a NIC with segmentation offload: segments up to 64 KiB, never a short one while data waits and ACKs are due', async () => {
  const host = new FakeHostNet();
  const un = new UserNet(host, {});
  const out: Uint8Array[] = [];
  un.attach({ receive: (f) => { out.push(f.slice()); return true; }, maxFrame: 14 + 4 + 65535 });
  const { iss } = await handshake(un, host, out, 40007, 7);
  out.length = 0;
  host.tcp[0].ev!.data(new Uint8Array(200_000));
  let segs = tcpOut(out).filter((x) => x.data.length > 0);
  assert.deepEqual(segs.map((x) => x.data.length), [14600], 'the initial cwnd in one segment');
  assert.ok(segs[0].csumOk);
  let acked = 14600;
  const all: number[] = [];
  for (let round = 0; round < 6; round++) {
    out.length = 0;
    un.transmit(tcp(G, 40007, GW, 8080, { seq: 1001, ack: (iss + 1 + acked) >>> 0, flags: ACK, wnd: 0xffff }));
    segs = tcpOut(out).filter((x) => x.data.length > 0);
    all.push(...segs.map((x) => x.data.length));
    for (const x of segs) assert.ok(x.data.length <= 65535 - 40 && x.csumOk);
    acked = ((segs.at(-1)?.seq ?? iss + 1 + acked) - iss - 1 + (segs.at(-1)?.data.length ?? 0)) >>> 0;
  }
  // Slow start doubles what each ACK releases: 29200, 58400, then 64 KiB segments.
  assert.deepEqual(all, [29200, 58400, 65495, 200_000 - 14600 - 29200 - 58400 - 65495]);
  un.close();
});

test('TCP memory bounds: a guest ignoring the window and a guest that never ACKs cannot grow host buffers', async () => {
  const { un, host, out } = setup();
  const { iss } = await handshake(un, host, out, 40006, 7);
  const h = host.tcp[0];
  // The host peer reads nothing (pending grows); the guest sends 2 MiB regardless of our window.
  let seq = 1001;
  const chunk = new Array<number>(1400).fill(7);
  for (let i = 0; i < 1500; i++) { un.transmit(tcp(G, 40006, GW, 8080, { seq, ack: iss + 1, flags: ACK, data: chunk })); seq += 1400; }
  assert.ok(h.pending <= RCV_BUF, `${h.pending} bytes accepted for a host peer that reads nothing`);
  assert.ok(h.pending >= RCV_BUF - 1400, 'the window was used');
  assert.equal(tcpOut(out).at(-1)!.wnd, 0, 'a zero window is advertised');
  // Host data the guest never ACKs: the host socket is paused at the send buffer bound.
  for (let i = 0; i < 100 && !h.paused; i++) h.ev!.data(new Uint8Array(16384));
  assert.ok(h.paused, 'host socket paused');
  // The host drains: the window opens again.
  h.pending = 0;
  h.ev!.drain();
  assert.ok(tcpOut(out).at(-1)!.wnd > 0);
  un.close();
});

test('the protocol code imports no Node API (it runs in a browser behind HostNet)', () => {
  const dir = join(repoRoot, 'src', 'host', 'net');
  const nodeOnly = new Set(['node-host.ts', 'socket-transport.ts', 'open.ts', 'relay.ts']);
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts') && !nodeOnly.has(n))) {
    const text = readFileSync(join(dir, f), 'utf8');
    assert.doesNotMatch(text, /from '(node:|fs|net|dgram)|\bBuffer\b|\bprocess\./, f);
    for (const m of text.matchAll(/from '\.\/([\w-]+)\.js'/g)) assert.ok(!nodeOnly.has(`${m[1]}.ts`), `${f} imports ${m[1]}`);
  }
});

test('TCP: the guest closes first (CLOSE-WAIT, LAST-ACK); we close first (FIN-WAIT, TIME-WAIT) and a new SYN reopens the pair', async () => {
  const { un, host, out } = setup();
  const { iss } = await handshake(un, host, out, 40007);
  un.transmit(tcp(G, 40007, GW, 8080, { seq: 1001, ack: iss + 1, flags: ACK | FIN }));
  assert.ok(host.tcp[0].ended, 'guest FIN half-closes the host socket');
  assert.equal(tcpOut(out).at(-1)!.ack, 1002);
  host.tcp[0].ev!.end(); // host closes too: our FIN
  const fin = tcpOut(out).at(-1)!;
  assert.equal(fin.flags & FIN, FIN);
  un.transmit(tcp(G, 40007, GW, 8080, { seq: 1002, ack: fin.seq + 1, flags: ACK }));
  assert.equal(un.stats.tcpConnections, 0, 'LAST-ACK acknowledged: closed');
  // Now we close first: FIN-WAIT, then TIME-WAIT after the guest's FIN.
  un.transmit(tcp(G, 40008, GW, 8080, { seq: 5000, flags: SYN, mss: 1460 }));
  host.tcp[1].ev!.connect();
  const sa = tcpOut(out).at(-1)!;
  un.transmit(tcp(G, 40008, GW, 8080, { seq: 5001, ack: sa.seq + 1, flags: ACK }));
  host.tcp[1].ev!.end();
  const fin2 = tcpOut(out).at(-1)!;
  assert.equal(fin2.flags & FIN, FIN);
  un.transmit(tcp(G, 40008, GW, 8080, { seq: 5001, ack: fin2.seq + 1, flags: ACK | FIN }));
  assert.equal(tcpOut(out).at(-1)!.ack, 5002);
  assert.equal(un.stats.tcpConnections, 1, 'in TIME-WAIT');
  // A new SYN on the same ports reopens at once instead of waiting.
  un.transmit(tcp(G, 40008, GW, 8080, { seq: 90000, flags: SYN, mss: 1460 }));
  assert.equal(host.tcp.length, 3);
  assert.equal(un.stats.tcpConnections, 1);
  un.close();
});

test('TCP: a guest RST while the host is still connecting abandons the host connection', () => {
  const { un, host } = setup();
  un.transmit(tcp(G, 40009, GW, 8080, { seq: 300, flags: SYN }));
  assert.equal(un.stats.tcpConnections, 1);
  un.transmit(tcp(G, 40009, GW, 8080, { seq: 301, flags: RST }));
  assert.equal(un.stats.tcpConnections, 0);
  assert.ok(host.tcp[0].destroyed);
  host.tcp[0].ev!.connect(); // late: ignored
  un.close();
});
