/**
 * Large TCP segments (GSO frames) between NICs: a switch hands them whole to a port that
 * takes them and cuts them (valid checksums, consecutive seq, same bytes) for one that does
 * not; stream links between two typevisor ends carry them whole after GSO_HELLO, and toward a
 * peer that never says it (QEMU) cut; the NIC transmits whole only to a backend that carries
 * them and only for the segment size the far end will cut at.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Switch } from '../../src/host/net/switch.js';
import { connectStream, listenStream, type StreamLink } from '../../src/host/net/socket-transport.js';
import { encodeFrame, GSO_HELLO, isGsoHello, StreamDecoder } from '../../src/host/net/framing.js';
import { checksumValid, MAX_GSO_FRAME, TcpSegmenter } from '../../src/devices/virtio/tcp-offload.js';
import type { NetBackend, NetReceiver } from '../../src/devices/device.js';
import { parseTcpFrame, tcp } from '../lib/net-frames.js';

/** A 30,000-byte TCP segment (20-byte TCP header: segments of 1460 bytes at the MTU). */
const DATA = Array.from({ length: 30_000 }, (_, i) => (i * 31 + 7) & 0xff);
const big = (): Uint8Array => tcp('10.0.3.1', 40000, '10.0.3.2', 5000, { seq: 0xffffa000, ack: 9, flags: 0x18 /* PSH ACK */, data: DATA });

/** Frames to one receiver; `max` its maxFrame (undefined: 1518). */
function sink(max?: number): NetReceiver & { got: Uint8Array[] } {
  const got: Uint8Array[] = [];
  return { got, maxFrame: max, receive: (f) => { got.push(Uint8Array.from(f)); return true; } };
}

/** The frames are `big()` cut at 1460: checksums valid, seq consecutive, PSH on the last, bytes equal. */
function assertCut(frames: Uint8Array[], what: string): void {
  assert.equal(frames.length, Math.ceil(DATA.length / 1460), `${what}: segment count`);
  const data: number[] = [];
  frames.forEach((f, i) => {
    const t = parseTcpFrame(f);
    assert.ok(t && t.csumOk && checksumValid(f), `${what}: segment ${i} checksums`);
    assert.ok(f.length <= 1514, `${what}: segment ${i} fits the MTU`);
    assert.equal(t.seq, (0xffffa000 + i * 1460) >>> 0, `${what}: seq`);
    assert.equal(t.flags, i === frames.length - 1 ? 0x18 : 0x10, `${what}: PSH only on the last`);
    data.push(...t.data);
  });
  assert.deepEqual(data, DATA, `${what}: bytes`);
}

class Recorder implements NetBackend {
  sent: Uint8Array[] = [];
  constructor(readonly gso: boolean) {}
  attach(): void { /* nothing to receive */ }
  transmit(f: Uint8Array): void { this.sent.push(f.slice()); }
  rxReady(): void { /* nothing held */ }
  close(): void { /* nothing */ }
}

test('switch: a large TCP segment goes whole to ports that take it and cut to the others', () => {
  const sw = new Switch();
  const from = sw.createPort();
  from.attach(sink(MAX_GSO_FRAME));
  const tso = sink(MAX_GSO_FRAME), plain = sink();
  sw.createPort().attach(tso);
  sw.createPort().attach(plain);
  const gsoLink = new Recorder(true), qemuLink = new Recorder(false);
  sw.connect(gsoLink);
  sw.connect(qemuLink);
  assert.equal(from.gso, true, 'a switch port carries GSO frames');
  const f = big();
  from.transmit(f); // unknown destination: floods
  assert.deepEqual(tso.got, [f], 'a TSO NIC gets it whole');
  assert.deepEqual(gsoLink.sent, [f], 'a GSO link gets it whole');
  assertCut(plain.got, 'NIC without TSO');
  assertCut(qemuLink.sent, 'link to QEMU');
  // Over the MTU but not a TCP segment (a UDP datagram): nobody without TSO gets it.
  const udp = f.slice();
  udp[23] = 17;
  const before = plain.got.length;
  from.transmit(udp);
  assert.equal(plain.got.length, before);
  assert.ok(sw.dropped >= 2, 'dropped and counted for each port that cannot take it');
  // A "segment" marked as an IP fragment (MF) is not cut either.
  const frag = f.slice();
  frag[20] |= 0x20;
  const dropped = sw.dropped;
  from.transmit(frag);
  assert.equal(plain.got.length, before);
  assert.ok(sw.dropped > dropped);
});

test('switch: a device without buffers for a cut frame keeps the whole frame and takes all its segments later', () => {
  const sw = new Switch();
  const from = sw.createPort();
  from.attach(sink());
  const to = sw.createPort();
  let open = false;
  const got: Uint8Array[] = [];
  to.attach({ receive: (f) => { if (!open) return false; got.push(f.slice()); return true; } });
  const f = big();
  from.transmit(f);
  f.fill(0); // the sender reuses its buffer: the port kept a copy
  assert.equal(got.length, 0);
  open = true;
  to.rxReady();
  assertCut(got, 'after rxReady');
});

test('switch: what a port holds for a device without buffers is bounded in bytes too', () => {
  const sw = new Switch();
  const from = sw.createPort();
  from.attach(sink());
  const to = sw.createPort();
  to.attach({ maxFrame: MAX_GSO_FRAME, receive: () => false });
  const f = big();
  for (let i = 0; i < 200; i++) from.transmit(f);
  assert.equal(to.dropped, 200 - Math.floor((4 << 20) / f.length), '4 MiB held, the rest dropped and counted');
});

test('segmenter: a receiver that stops taking segments midway drops the rest and counts once', () => {
  const s = new TcpSegmenter();
  let n = 0;
  const rx = { receive: (): boolean => ++n <= 3 };
  assert.equal(s.deliver(rx, big()), true, 'the first segments were taken: the frame is not offered again');
  assert.equal(n, 4, 'no segment is offered after a refusal');
  assert.equal(s.dropped, 1);
  n = 0;
  assert.equal(s.deliver({ receive: (): boolean => (++n, false) }, big()), false, 'the first refused: the caller keeps the frame');
  assert.equal(s.busy, false);
});

async function linkPair(): Promise<{ a: StreamLink; b: StreamLink; close(): void }> {
  let b: StreamLink | null = null;
  const srv = await listenStream('127.0.0.1', 0, (l) => { b = l; });
  const a = await connectStream('127.0.0.1', srv.port);
  for (let i = 0; i < 100 && (!b || !a.gso || !(b as StreamLink).gso); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(b, 'the listener got the connection');
  return { a, b, close: () => { a.close(); b!.close(); srv.close(); } };
}

test('stream links: two typevisor ends agree on GSO and carry a large segment whole; a device without TSO gets it cut', async () => {
  const { a, b, close } = await linkPair();
  try {
    assert.equal(a.gso, true);
    assert.equal(b.gso, true);
    const tso = sink(MAX_GSO_FRAME);
    b.attach(tso);
    const f = big();
    a.transmit(f);
    for (let i = 0; i < 100 && tso.got.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(tso.got, [f], 'whole, and GSO_HELLO was not passed on');
    const plain = sink();
    b.attach(plain);
    a.transmit(f);
    for (let i = 0; i < 100 && plain.got.length < 21; i++) await new Promise((r) => setTimeout(r, 10));
    assertCut(plain.got, 'to a NIC without TSO');
  } finally { close(); }
});

test('stream links: toward a peer that never says GSO_HELLO (QEMU) large segments are cut; the peer sees the hello once', async () => {
  const frames: Uint8Array[] = [];
  let peer: Socket | null = null;
  const srv = createServer((s) => { peer = s; const d = new StreamDecoder((f) => frames.push(f), (m) => assert.fail(m)); s.on('data', (c: Buffer) => d.push(c)); });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const link = await connectStream('127.0.0.1', (srv.address() as AddressInfo).port);
  try {
    const got = sink(MAX_GSO_FRAME);
    link.attach(got);
    link.transmit(big());
    for (let i = 0; i < 100 && frames.length < 22; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(link.gso, false);
    assert.ok(isGsoHello(frames[0]), 'the hello comes first');
    assertCut(frames.slice(1), 'to QEMU');
    // The peer's frames, large ones included, reach the device as sent; a forged hello from
    // the peer only turns GSO on (it is never passed to the device).
    peer!.write(encodeFrame(GSO_HELLO));
    peer!.write(encodeFrame(big()));
    for (let i = 0; i < 100 && got.got.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.got.length, 1);
    assert.deepEqual(got.got[0], big());
    assert.equal(link.gso, true);
  } finally { link.close(); srv.close(); }
});
