/** The learning switch, the netdev parser, and pcap files read back by tcpdump. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseNetdev } from '../../src/host/net/netdev.js';
import { PcapWriter, pcapTap } from '../../src/host/net/pcap.js';
import { pcapFileSink } from '../../src/host/net/node-host.js';
import { UserNet } from '../../src/host/net/slirp.js';
import { Switch } from '../../src/host/net/switch.js';
import { eth, FakeHostNet, icmpEcho, arpRequest, tcp } from '../lib/net-frames.js';
import { NodeHostNet } from '../../src/host/net/node-host.js';
import { createServer, type AddressInfo } from 'node:net';
import { openNetdev } from '../../src/host/net/open.js';
import { Switches, switchSocketPath } from '../../src/daemon/switches.js';
import type { NetBackend } from '../../src/devices/device.js';

test('switch: broadcast floods, unicast goes to the learned port only, unknown unicast floods', () => {
  const sw = new Switch();
  const seen: number[][] = [[], [], []];
  const ports = [0, 1, 2].map((i) => { const p = sw.createPort(); p.attach({ receive: (f) => { seen[i].push(f[5]); return true; } }); return p; });
  const mac = (n: number): number[] => [2, 0, 0, 0, 0, n];
  ports[0].transmit(eth([255, 255, 255, 255, 255, 255], 0x0800, [0], mac(10)));
  assert.deepEqual(seen, [[], [255], [255]]);
  ports[1].transmit(eth(mac(10), 0x0800, [0], mac(11)));
  assert.deepEqual(seen, [[10], [255], [255]], 'learned: only port 0');
  ports[2].transmit(eth(mac(11), 0x0800, [0], mac(12)));
  assert.deepEqual(seen, [[10], [255, 11], [255]]);
  ports[0].transmit(eth(mac(99), 0x0800, [0], mac(10)));
  assert.deepEqual(seen, [[10], [255, 11, 99], [255, 99]], 'unknown unicast floods');
  ports[1].transmit(new Uint8Array(5));
  assert.equal(sw.dropped, 1);
  ports[2].close();
  assert.equal(sw.portCount, 2);
});

test('switch: a port whose device has no buffers queues a bounded number of frames', () => {
  const sw = new Switch();
  const a = sw.createPort();
  const b = sw.createPort();
  let ok = false, got = 0;
  b.attach({ receive: () => { if (ok) got++; return ok; } });
  a.attach({ receive: () => true });
  for (let i = 0; i < 1000; i++) a.transmit(eth([255, 255, 255, 255, 255, 255], 0x0800, [i & 255]));
  assert.equal(b.dropped, 1000 - 256);
  ok = true;
  b.rxReady();
  assert.equal(got, 256);
});

test('netdev parser: QEMU spellings and clear errors', () => {
  const u = parseNetdev('user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp::5353-10.0.2.15:53,restrict=on,dnsupstream=127.0.0.1:5300,pcap=/tmp/x.pcap');
  assert.equal(u.type, 'user');
  if (u.type !== 'user') return;
  assert.equal(u.id, 'n0');
  assert.equal(u.pcap, '/tmp/x.pcap');
  assert.equal(u.user.restrict, true);
  assert.deepEqual(u.user.hostfwd, [
    { proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 8080, guestAddr: 0, guestPort: 80 },
    { proto: 'udp', hostAddr: '0.0.0.0', hostPort: 5353, guestAddr: 0x0a00020f, guestPort: 53 },
  ]);
  assert.deepEqual(u.user.dnsUpstream, { addr: '127.0.0.1', port: 5300 });
  const n = parseNetdev('user,net=192.168.76.0/255.255.255.0');
  assert.ok(n.type === 'user' && n.user.host === 0xc0a84c02 && n.user.dns === 0xc0a84c03 && n.user.dhcpStart === 0xc0a84c0f && n.user.prefix === 24);
  assert.deepEqual(parseNetdev('socket,id=s,connect=127.0.0.1:1234'), { type: 'socket', id: 's', mode: 'connect', addr: { host: '127.0.0.1', port: 1234 }, pcap: null });
  assert.deepEqual(parseNetdev('socket,udp=127.0.0.1:1,localaddr=127.0.0.1:2'), { type: 'dgram', id: '', remote: { host: '127.0.0.1', port: 1 }, local: { host: '127.0.0.1', port: 2 }, pcap: null });
  assert.throws(() => parseNetdev('user,hostfwd=tcp:127.0.0.1:99999-:80'), /hostfwd=.*bad port/);
  assert.throws(() => parseNetdev('user,hostfwd=sctp::1-:2'), /hostfwd=sctp::1-:2: expected/);
  assert.throws(() => parseNetdev('user,restrict=maybe'), /restrict=maybe: expected on or off/);
  assert.throws(() => parseNetdev('user,bogus=1'), /unknown option 'bogus'/);
  assert.throws(() => parseNetdev('tap,ifname=x'), /unknown type 'tap'/);
  assert.throws(() => parseNetdev('socket,connect=127.0.0.1:1,listen=:2'), /exactly one/);
  assert.throws(() => parseNetdev('user,dns=10.0.2.300'), /bad IPv4 address/);
  // QEMU 7.2's stream spelling (reconnect= as in QEMU 8).
  assert.deepEqual(parseNetdev('stream,id=s,server=off,addr.type=unix,addr.path=/run/x.sock,reconnect=2'),
    { type: 'stream', id: 's', server: false, addr: { kind: 'unix', path: '/run/x.sock' }, reconnect: 2, pcap: null });
  assert.deepEqual(parseNetdev('stream,server=on,addr.type=inet,addr.port=7000'),
    { type: 'stream', id: '', server: true, addr: { kind: 'inet', host: '0.0.0.0', port: 7000 }, reconnect: 0, pcap: null });
  assert.throws(() => parseNetdev('stream,addr.type=unix,addr.path=/x'), /server=on\|off is needed/);
  assert.throws(() => parseNetdev('stream,server=on,addr.type=unix,addr.path=/x,reconnect=1'), /reconnect= is for clients/);
  assert.throws(() => parseNetdev('stream,server=off,addr.type=unix'), /needs addr.path/);
  assert.throws(() => parseNetdev(`stream,server=off,addr.type=unix,addr.path=/${'x'.repeat(200)}`), /longer than 107 bytes/);
  assert.throws(() => parseNetdev('stream,server=off,addr.type=vsock'), /addr.type=inet\|unix is needed/);
});

test('daemon switches: VMs\' stream ports (reconnect=1) join a switch, and join its successor after a restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-sw-'));
  const got: Array<Array<number>> = [[], []];
  const ports: NetBackend[] = [];
  let hub = new Switches(dir);
  try {
    await hub.ensure('lan0');
    await assert.rejects(hub.ensure('bad/name'), /switch name 'bad\/name'/);
    for (const i of [0, 1]) {
      const b = await openNetdev(`stream,server=off,addr.type=unix,addr.path=${switchSocketPath(dir, 'lan0')},reconnect=1`);
      b.attach({ receive: (f) => { got[i].push(f[f.length - 1]); return true; } });
      ports.push(b);
    }
    const frame = (from: number, tag: number): Uint8Array => eth([255, 255, 255, 255, 255, 255], 0x88b5, [tag], [0x52, 0x54, 0, 0, 0, from]);
    const until = async (ok: () => boolean, what: string): Promise<void> => {
      for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(ok(), what);
    };
    await until(() => hub.list()[0]?.ports === 2, 'both ports plugged in');
    ports[0].transmit(frame(1, 7));
    await until(() => got[1].includes(7), 'port 1 got the broadcast of port 0');
    assert.deepEqual(got[0], [], 'no echo to the sender');
    // The daemon restarts: a new switch on the same socket path; the ports reconnect by themselves.
    hub.close();
    hub = new Switches(dir);
    await hub.ensure('lan0');
    await until(() => hub.list()[0]?.ports === 2, 'both ports joined the new switch');
    ports[1].transmit(frame(2, 9));
    await until(() => got[0].includes(9), 'port 0 got the broadcast of port 1 through the new switch');
  } finally {
    for (const p of ports) p.close();
    hub.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pcap: tcpdump reads what the tap wrote, both directions', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-pcap-'));
  try {
    const path = join(dir, 'x.pcap');
    const file = pcapFileSink(path);
    const un = new UserNet(new FakeHostNet());
    const tap = pcapTap(un, new PcapWriter(file.sink));
    tap.attach({ receive: () => true });
    tap.transmit(arpRequest('10.0.2.15', '10.0.2.2'));
    tap.transmit(icmpEcho('10.0.2.15', '10.0.2.2', 0x77, 1, [1, 2, 3, 4]));
    file.close();
    un.close();
    const text = execFileSync('tcpdump', ['-nn', '-r', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = text.trim().split('\n');
    assert.equal(lines.length, 4, text);
    assert.match(lines[0], /ARP, Request who-has 10\.0\.2\.2 tell 10\.0\.2\.15/);
    assert.match(lines[1], /ARP, Reply 10\.0\.2\.2 is-at 52:55:0a:00:02:02/);
    assert.match(lines[2], /10\.0\.2\.15 > 10\.0\.2\.2: ICMP echo request, id 119, seq 1/);
    assert.match(lines[3], /10\.0\.2\.2 > 10\.0\.2\.15: ICMP echo reply, id 119, seq 1/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pcap: the largest GSO frame (an IPv4 packet of 65,535 bytes) is recorded whole (tcpdump sees all its bytes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-pcap-'));
  try {
    const path = join(dir, 'gso.pcap');
    const file = pcapFileSink(path);
    const w = new PcapWriter(file.sink);
    w.record(tcp('10.0.3.1', 40000, '10.0.3.2', 5000, { seq: 1, ack: 1, flags: 0x10, data: new Array<number>(65_495).fill(7) }));
    file.close();
    const text = execFileSync('tcpdump', ['-nn', '-r', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.match(text, /10\.0\.3\.1\.40000 > 10\.0\.3\.2\.5000: Flags \[\.\], seq 1:65496, ack 1, win 65535, length 65495/);
    // The record's captured length is the frame's length: nothing cut at the snaplen.
    const bytes = readFileSync(path);
    const rec = new DataView(bytes.buffer, bytes.byteOffset + 24, 16);
    assert.equal(rec.getUint32(12, true), 14 + 65_535);
    assert.equal(rec.getUint32(8, true), 14 + 65_535, 'captured whole');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('hostfwd on a host port already in use fails with the forward and the reason', async () => {
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const port = (busy.address() as AddressInfo).port;
  try {
    const spec = parseNetdev(`user,hostfwd=tcp:127.0.0.1:${port}-:80`);
    assert.ok(spec.type === 'user');
    const un = new UserNet(new NodeHostNet(), spec.user);
    await assert.rejects(un.start(), new RegExp(`hostfwd=tcp:127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    un.close();
  } finally {
    busy.close();
  }
});
