/**
 * Hostile guest frames never crash the host: every truncation of valid frames, oversized
 * frames, corrupted checksums, and random and mutated frames from the shared PRNG, through
 * the user-mode network and the switch (large TCP segments too, cut for a NIC without TSO,
 * and the segmenter on its own); the stack keeps working afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { finishSum, sum16 } from '../../src/host/net/ipv4.js';
import { UserNet } from '../../src/host/net/slirp.js';
import { Switch } from '../../src/host/net/switch.js';
import { StreamDecoder } from '../../src/host/net/framing.js';
import { checksumValid, TcpSegmenter } from '../../src/devices/virtio/tcp-offload.js';
import { prng } from '../lib/prng.js';
import { arpRequest, FakeHostNet, icmpEcho, tcp, udp } from '../lib/net-frames.js';

const G = '10.0.2.15', GW = '10.0.2.2';

function valid(): Uint8Array[] {
  return [
    arpRequest(G, GW),
    icmpEcho(G, GW, 1, 1, [1, 2, 3]),
    udp(G, 68, '255.255.255.255', 67, new Array<number>(300).fill(0), undefined, [255, 255, 255, 255, 255, 255]),
    udp(G, 1000, '10.0.2.3', 53, [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0, 0, 1, 0, 1]),
    udp(G, 1000, GW, 7, [1, 2]),
    tcp(G, 4000, GW, 80, { seq: 1, flags: 2, mss: 1460, wscale: 7 }),
    tcp(G, 4000, GW, 80, { seq: 2, ack: 5, flags: 0x18, data: [1, 2, 3] }),
  ];
}

test('truncated, oversized and corrupted frames are dropped and counted, never thrown', () => {
  const host = new FakeHostNet();
  const un = new UserNet(host);
  let out = 0;
  un.attach({ receive: () => { out++; return true; } });
  for (const f of valid()) for (let n = 0; n < f.length; n++) un.transmit(f.subarray(0, n));
  un.transmit(new Uint8Array(9000).fill(0xff));
  un.transmit(new Uint8Array(0));
  assert.ok(un.stats.dropBadFrame > 100, `dropBadFrame ${un.stats.dropBadFrame}`);
  const before = un.stats.dropBadFrame;
  // One flipped bit in the TCP payload, the UDP payload, the ICMP payload, the IP header.
  for (const [f, at] of [[valid()[6], 56], [valid()[4], 43], [valid()[1], 40], [valid()[5], 20]] as Array<[Uint8Array, number]>) {
    f[at] ^= 0x10;
    un.transmit(f);
  }
  assert.equal(un.stats.dropBadFrame - before, 4, 'each bad checksum dropped');
  assert.equal(host.tcp.length, 0, 'no connection from a corrupted SYN');
  // A length field larger than the frame.
  const big = icmpEcho(G, GW, 1, 1, [1, 2, 3]);
  big[16] = 0x40;
  un.transmit(big);
  assert.equal(un.stats.dropBadFrame - before, 5);
  // A fragment.
  const frag = icmpEcho(G, GW, 1, 1, [1]);
  frag[20] = 0x20; // MF, with a correct header checksum
  frag[24] = 0; frag[25] = 0;
  const c = finishSum(sum16(frag, 14, 20));
  frag[24] = c >>> 8; frag[25] = c & 0xff;
  un.transmit(frag);
  assert.equal(un.stats.dropFragment, 1);
  // Still answers afterwards.
  const n = out;
  un.transmit(icmpEcho(G, GW, 9, 9, [9]));
  assert.equal(out, n + 1);
  un.close();
});

/** A user-mode NAT (on a fake host) as a switch's uplink: the fuzz tests' setup. */
function natOnSwitch(): { host: FakeHostNet; un: UserNet; sw: Switch } {
  const host = new FakeHostNet();
  const un = new UserNet(host);
  const sw = new Switch();
  sw.connect(un);
  return { host, un, sw };
}

test('random and mutated frames (PRNG) through the NAT and a switch: no exception, bounded state', () => {
  const rnd = prng(0x5eed);
  const { host, un, sw } = natOnSwitch();
  const nic = sw.createPort();
  let rx = 0;
  nic.attach({ receive: () => { rx++; return rx % 3 !== 0; } }); // a NIC that is sometimes full
  const seeds = valid();
  for (let i = 0; i < 30000; i++) {
    let f: Uint8Array;
    if (i % 3 === 0) {
      f = new Uint8Array(rnd() % 1600);
      for (let j = 0; j < f.length; j++) f[j] = rnd() & 0xff;
      if (f.length > 14 && (rnd() & 1)) { f[12] = 8; f[13] = rnd() & 1 ? 0 : 6; }
    } else {
      f = seeds[rnd() % seeds.length].slice();
      const flips = 1 + (rnd() % 4);
      for (let k = 0; k < flips; k++) f[rnd() % f.length] = rnd() & 0xff;
      if (rnd() % 5 === 0) f = f.subarray(0, rnd() % f.length);
    }
    nic.transmit(f);
    if (i % 1000 === 0) nic.rxReady();
  }
  // Host events on whatever connections the fuzz opened: refuse half, connect the rest.
  for (const [i, t] of host.tcp.entries()) if (i % 2) t.ev!.close('ECONNRESET'); else t.ev!.connect();
  assert.ok(un.stats.tcpConnections <= 64);
  assert.ok(un.stats.fromGuest > 0);
  un.close();
});

test('large frames, mutated (PRNG): the segmenter, the switch and the NAT never throw; every segment fits the MTU and checks', () => {
  const rnd = prng(0x650);
  const { un, sw } = natOnSwitch();
  const from = sw.createPort();
  from.attach({ receive: () => true });
  let cut = 0;
  const plain = sw.createPort(); // a NIC without TSO: gets MTU-sized segments only
  plain.attach({ receive: (f) => { assert.ok(f.length <= 1518, `a ${f.length}-byte frame to a NIC without TSO`); cut++; return rnd() % 7 !== 0; } });
  const seg = new TcpSegmenter();
  const seed = tcp(G, 4000, '10.0.2.99', 80, { seq: 7, ack: 5, flags: 0x18, data: new Array<number>(20_000).fill(0).map((_, i) => i & 0xff) });
  for (let i = 0; i < 3000; i++) {
    const f = seed.slice(0, i % 10 === 0 ? rnd() % seed.length : seed.length);
    const flips = rnd() % 4;
    // Mostly the headers: lengths, IHL, data offset, protocol, VLAN type.
    for (let k = 0; k < flips; k++) f[rnd() % 60] = rnd() & 0xff;
    from.transmit(f);
    const mss = rnd() % 1600;
    seg.cut(f, mss, (s) => {
      assert.ok(s.length <= 1518, `segment of ${s.length} bytes`);
      assert.ok(checksumValid(s) || s[12] !== 8 || s[13] !== 0, 'an IPv4 segment carries valid checksums');
    });
  }
  assert.ok(cut > 0, 'some mutated frames were still cut and delivered');
  assert.ok(sw.dropped > 0, 'the unusable ones were dropped and counted');
  un.close();
});

test('stream framing: frames survive any chunking; an absurd length is an error, not an allocation', () => {
  const rnd = prng(42);
  const frames: Uint8Array[] = [];
  const wire: number[] = [];
  for (let i = 0; i < 200; i++) {
    const f = new Uint8Array(14 + (rnd() % 1500)).map(() => rnd() & 255);
    frames.push(f);
    wire.push(f.length >>> 24, (f.length >>> 16) & 255, (f.length >>> 8) & 255, f.length & 255, ...f);
  }
  const got: Uint8Array[] = [];
  const d = new StreamDecoder((f) => got.push(f), (m) => assert.fail(m));
  const bytes = new Uint8Array(wire);
  for (let i = 0; i < bytes.length;) { const n = 1 + (rnd() % 3000); d.push(bytes.subarray(i, i + n)); i += n; }
  assert.equal(got.length, frames.length);
  for (let i = 0; i < frames.length; i++) assert.deepEqual(got[i], frames[i]);
  let err = '';
  const bad = new StreamDecoder(() => assert.fail('no frame'), (m) => { err = m; });
  bad.push(new Uint8Array([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
  assert.match(err, /exceeds/);
});
