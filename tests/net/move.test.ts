/**
 * A user network's TCP connections follow a live migration (UserNet.freeze / adopt /
 * commitMove, the relay in src/host/net/relay.ts), with real loopback sockets and crafted
 * guest frames: the host peer's connection survives, bytes in flight to the guest are sent
 * again by the destination, bytes the peer sends during the move wait and arrive after it,
 * the guest's bytes reach the peer in order, and FIN and RST pass through. A failed move
 * (thaw) leaves the source's connection working; a relay connection with a wrong key is
 * reset; corrupt moved state is refused with a clear message.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { UserNet, checkMoveState } from '../../src/host/net/slirp.js';
import { NodeHostNet } from '../../src/host/net/node-host.js';
import { fromJson, toJson } from '../../src/snapshot/format.js';
import { relayHeader } from '../../src/host/net/host.js';
import { relayHostToward } from '../../src/daemon/migrate.js';
import { parseTcpFrame, tcp, type SeenTcp } from '../lib/net-frames.js';

const G = '10.0.2.15', GW = '10.0.2.2';
const SYN = 2, ACK = 16, FIN = 1, RST = 4, PSH = 8;
const text = (b: Uint8Array): string => Buffer.from(b).toString();

function net(): { un: UserNet; out: Uint8Array[] } {
  const un = new UserNet(new NodeHostNet());
  const out: Uint8Array[] = [];
  un.attach({ receive: (f) => { out.push(f.slice()); return true; } });
  return { un, out };
}

const segs = (out: Uint8Array[]): SeenTcp[] => out.map(parseTcpFrame).filter((x): x is SeenTcp => x !== null);

async function until<T>(f: () => T | undefined | false, what: string, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A loopback server whose accepted socket collects what it receives. */
async function peerServer(): Promise<{ server: Server; port: number; sock: Promise<Socket>; got: () => string }> {
  let got = '';
  let resolve!: (s: Socket) => void;
  const sock = new Promise<Socket>((r) => { resolve = r; });
  const server = createServer({ allowHalfOpen: true }, (s) => { s.on('data', (d: Buffer) => { got += d.toString(); }); s.on('error', () => undefined); resolve(s); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, port: (server.address() as { port: number }).port, sock, got: () => got };
}

/** The guest (crafted frames) connects out through `un` to the peer and they exchange a line each way. */
async function connected(un: UserNet, out: Uint8Array[], port: number, sport: number): Promise<{ iss: number; seq: number }> {
  un.transmit(tcp(G, sport, GW, port, { seq: 5000, flags: SYN, mss: 1460, wscale: 2, wnd: 8000 }));
  const synack = await until(() => segs(out).find((s) => s.dport === sport && s.flags === (SYN | ACK)), 'SYN-ACK');
  un.transmit(tcp(G, sport, GW, port, { seq: 5001, ack: synack.seq + 1, flags: ACK, wnd: 8000 }));
  return { iss: synack.seq, seq: 5001 };
}

test('a guest TCP connection moves to another user network and the peer never notices', async () => {
  const peer = await peerServer();
  const src = net(), dst = net();
  await src.un.start(); await dst.un.start({ listen: false });
  const { iss } = await connected(src.un, src.out, peer.port, 41000);
  const s = await peer.sock;
  src.un.transmit(tcp(G, 41000, GW, peer.port, { seq: 5001, ack: iss + 1, flags: ACK | PSH, wnd: 8000, data: [...Buffer.from('hello ')] }));
  await until(() => peer.got() === 'hello ', 'the first guest bytes at the peer');
  // The peer's bytes reach the guest, which does not acknowledge them: they are in flight at the move.
  s.write('in-flight ');
  await until(() => segs(src.out).find((x) => text(x.data) === 'in-flight '), 'data to the guest');

  const state = fromJson(new TextEncoder().encode(toJson(await src.un.freeze('127.0.0.1'))));
  s.write('during-the-move ');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(segs(src.out).filter((x) => text(x.data).includes('during')).length, 0, 'nothing flows while frozen');
  await dst.un.adopt(state);
  // The destination sends what was in flight again at once, from the same sequence number.
  const again = await until(() => segs(dst.out).find((x) => text(x.data) === 'in-flight '), 'the retransmission');
  assert.equal(again.seq, iss + 1);
  assert.equal(again.ack, 5007, 'it acknowledges what the source had');
  const relayed = src.un.commitMove();
  // After the commit the bytes the peer sent meanwhile arrive, after the in-flight ones.
  const during = await until(() => segs(dst.out).find((x) => text(x.data) === 'during-the-move '), 'the bytes sent during the move');
  assert.equal(during.seq, iss + 1 + 'in-flight '.length);
  dst.un.transmit(tcp(G, 41000, GW, peer.port, { seq: 5007, ack: during.seq + during.data.length, flags: ACK | PSH, wnd: 8000, data: [...Buffer.from('world')] }));
  await until(() => peer.got() === 'hello world', 'the guest bytes after the move, in order');
  // The peer closes: the guest sees a FIN after the data; it closes too, and the relay ends.
  s.end();
  const fin = await until(() => segs(dst.out).find((x) => (x.flags & FIN) !== 0), 'FIN');
  assert.equal(fin.seq, during.seq + during.data.length);
  dst.un.transmit(tcp(G, 41000, GW, peer.port, { seq: 5012, ack: fin.seq + 1, flags: ACK | FIN, wnd: 8000 }));
  await Promise.race([relayed, new Promise((_, rej) => setTimeout(() => rej(new Error('the relay did not end')), 5000))]);
  src.un.close(); dst.un.close(); peer.server.close();
});

test('a failed move leaves the connection with the source; a peer reset during the move resets the guest', async () => {
  const peer = await peerServer();
  const src = net(), dst = net();
  await src.un.start(); await dst.un.start({ listen: false });
  const { iss } = await connected(src.un, src.out, peer.port, 41001);
  const s = await peer.sock;
  const state = checkMoveState(fromJson(new TextEncoder().encode(toJson(await src.un.freeze('127.0.0.1')))));
  assert.equal(state.conns.length, 1);
  assert.ok(state.relay);
  // Someone without the key gets a reset, not the connection.
  const bad = connect(state.relay.port, '127.0.0.1');
  bad.on('error', () => undefined);
  bad.write(relayHeader(state.conns[0].relay!.id, new Uint8Array(16)));
  await new Promise<void>((r) => bad.on('close', () => r()));
  s.write('after ');
  await src.un.thaw();
  await until(() => segs(src.out).find((x) => text(x.data) === 'after '), 'data through the source again');
  src.un.transmit(tcp(G, 41001, GW, peer.port, { seq: 5001, ack: iss + 1 + 6, flags: ACK | PSH, wnd: 8000, data: [...Buffer.from('still-here')] }));
  await until(() => peer.got() === 'still-here', 'the guest bytes at the peer');

  // Moved for real this time; the peer resets while frozen: the destination's guest gets a RST.
  const st2 = fromJson(new TextEncoder().encode(toJson(await src.un.freeze('127.0.0.1'))));
  s.resetAndDestroy();
  await new Promise((r) => setTimeout(r, 100));
  await dst.un.adopt(st2);
  const relayed = src.un.commitMove();
  await until(() => segs(dst.out).find((x) => (x.flags & RST) !== 0), 'RST to the guest');
  await relayed;
  assert.equal(dst.un.stats.tcpConnections, 0);
  src.un.close(); dst.un.close(); peer.server.close();
});

test('moved network state from another process is checked: corrupt entries are refused with the field', () => {
  const good = { version: 1, arp: [], leases: [], relay: null, conns: [] };
  assert.equal(checkMoveState(good).conns.length, 0);
  assert.throws(() => checkMoveState({ ...good, version: 2 }), /not version 1/);
  assert.throws(() => checkMoveState({ ...good, arp: [{ ip: 1, mac: new Uint8Array(5) }] }), /ARP entry/);
  const conn = {
    guestIp: 0x0a00020f, guestPort: 40000, remoteIp: 0x0a000202, remotePort: 80, state: 2, iss: 1, sndUna: 2, sndNxt: 2, sndMax: 2,
    sndWnd: 1000, maxSndWnd: 1000, sndWl1: 0, sndWl2: 0, sndShift: 0, rcvShift: 0, rcvNxt: 7, mss: 1460, cwnd: 14600, ssthresh: 65535,
    rto: 1000, srtt: 0, rttvar: 0, finQueued: false, finSeq: null, sendBuf: new Uint8Array(0), ooo: [], hostGone: false, hostWriteEnded: false,
  };
  assert.equal(checkMoveState({ ...good, relay: { host: '127.0.0.1', port: 9 }, conns: [{ conn, relay: { id: 0, key: new Uint8Array(16) } }] }).conns.length, 1);
  assert.throws(() => checkMoveState({ ...good, conns: [{ conn: { ...conn, state: 1 }, relay: null }] }), /state 1 cannot move/);
  assert.throws(() => checkMoveState({ ...good, conns: [{ conn: { ...conn, mss: 1e9 }, relay: null }] }), /mss/);
  assert.throws(() => checkMoveState({ ...good, conns: [{ conn: { ...conn, sndMax: 900 }, relay: null }] }), /beyond the buffered data/);
  assert.throws(() => checkMoveState({ ...good, conns: [{ conn, relay: { id: 0, key: new Uint8Array(16) } }] }), /relay entry/, 'a relayed connection needs the relay address');
  assert.throws(() => checkMoveState({ ...good, relay: { host: '127.0.0.1', port: 9 }, conns: [{ conn, relay: { id: 0, key: new Uint8Array(3) } }] }), /relay entry/);
});

test('the relay listens where the destination can reach it', async () => {
  assert.equal(await relayHostToward('127.0.0.1', 'http://127.0.0.1:8446'), '127.0.0.1', 'loopback for a destination on loopback');
  assert.equal(await relayHostToward('192.0.2.7', 'http://192.0.2.9:8446'), '192.0.2.7', 'a specific listen address as it is');
  // A wildcard listen: the local end of the route toward the destination (here, loopback's).
  assert.equal(await relayHostToward('0.0.0.0', 'http://127.0.0.1:8446'), '127.0.0.1');
});
